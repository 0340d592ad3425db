//! The `lcfs-fsx` binary on files in the target directory (the host's disk filesystem, which
//! takes `O_DIRECT`; a tmpfs temporary directory might not).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An empty scratch directory of the test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("lcfs-fsx")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fsx(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lcfs-fsx"))
        .args(args)
        .arg(dir.join("file"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn both(o: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", stdout(o), stderr(o))
}

/// The summary line's counts: `read 12, dread 3 (unaligned: 1 ok, 0 EINVAL), ...` gives
/// `read` -> 12, `dread` -> 3, `dread unaligned ok` -> 1, `dread EINVAL` -> 0, `clone refused`
/// -> N, `skipped` -> N.
fn summary_counts(out: &str, ops: u64, seed: u64) -> HashMap<String, u64> {
    let prefix = format!("lcfs-fsx: {ops} operations OK (seed {seed}): ");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no summary line {prefix:?} in:\n{out}"));
    let mut counts = HashMap::new();
    let (ops_part, skipped) = line.rsplit_once("; skipped ").unwrap();
    counts.insert("skipped".to_string(), skipped.parse().unwrap());
    // Split at ", " outside parentheses.
    let mut parts: Vec<String> = Vec::new();
    let mut depth = 0usize;
    for piece in ops_part.split(", ") {
        match parts.last_mut() {
            Some(last) if depth > 0 => {
                last.push_str(", ");
                last.push_str(piece);
            }
            _ => parts.push(piece.to_string()),
        }
        depth = depth + piece.matches('(').count() - piece.matches(')').count();
    }
    for part in &parts {
        let (head, inner) = match part.split_once(" (") {
            Some((h, i)) => (h, i.trim_end_matches(')')),
            None => (part.as_str(), ""),
        };
        let (name, n) = head.split_once(' ').unwrap();
        counts.insert(name.to_string(), n.parse().unwrap());
        if let Some(rest) = inner.strip_prefix("unaligned: ") {
            let (ok, einval) = rest.split_once(", ").unwrap();
            let ok = ok.strip_suffix(" ok").unwrap().parse().unwrap();
            let einval = einval.strip_suffix(" EINVAL").unwrap().parse().unwrap();
            counts.insert(format!("{name} unaligned ok"), ok);
            counts.insert(format!("{name} EINVAL"), einval);
        } else if let Some(r) = inner
            .strip_prefix("refused ")
            .or(inner.strip_prefix("unsupported "))
        {
            counts.insert(format!("{name} refused"), r.parse().unwrap());
        }
    }
    counts
}

#[test]
fn default_mix_passes() {
    let dir = scratch("default");
    let o = fsx(&dir, &["-N", "3000", "-S", "1"]);
    assert!(o.status.success(), "{}", both(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("lcfs-fsx: seed 1: 3000 operations on "),
        "{out}"
    );
    let c = summary_counts(&out, 3000, 1);
    for name in [
        "read",
        "write",
        "dread",
        "dwrite",
        "mapread",
        "mapwrite",
        "truncate",
        "punch",
        "zero",
        "alloc",
        "fsync",
        "fdatasync",
        "copy",
        "invalidate",
    ] {
        assert!(
            c.get(name).copied().unwrap_or(0) > 0,
            "{name} never ran: {out}"
        );
    }
    assert!(
        !c.contains_key("clone"),
        "clone is not in the default mix: {out}"
    );
    // The 512-byte direct operations ran, and worked or were refused with EINVAL.
    for name in ["dread", "dwrite"] {
        let tried = c[&format!("{name} unaligned ok")] + c[&format!("{name} EINVAL")];
        assert!(tried > 0, "no unaligned {name}: {out}");
    }
    assert!(std::fs::metadata(dir.join("file")).unwrap().len() <= 1 << 20);
}

#[test]
fn small_files_pass() {
    // A limit below the largest operation: clamps and skips at the edges.
    let dir = scratch("small");
    let o = fsx(
        &dir,
        &[
            "-N",
            "2000",
            "-S",
            "3",
            "--max-len",
            "16K",
            "--max-op",
            "64K",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", both(&o));
    let out = stdout(&o);
    assert_eq!(
        out.lines().next(),
        Some("lcfs-fsx: seed 3"),
        "-q prints the seed first: {out}"
    );
    summary_counts(&out, 2000, 3);
    assert!(std::fs::metadata(dir.join("file")).unwrap().len() <= 16 << 10);
}

#[test]
fn second_file_copies_pass() {
    let dir = scratch("second");
    let mix = "read,write,dread,dwrite,mapread,truncate,copy,clone";
    let o = fsx(
        &dir,
        &["-N", "2000", "-S", "2", "--second-file", "--ops-mix", mix],
    );
    assert!(o.status.success(), "{}", both(&o));
    let out = stdout(&o);
    let c = summary_counts(&out, 2000, 2);
    assert!(c["copy"] > 100, "{out}");
    assert!(c["clone"] > 100, "{out}");
    assert!(out.contains("file.2"), "{out}");
    assert!(dir.join("file.2").exists());
    // Copies went into both files, from both: the log shows all four directions.
    let o = fsx(
        &dir,
        &[
            "-N",
            "400",
            "-S",
            "2",
            "--second-file",
            "--ops-mix",
            "write,copy",
            "-v",
        ],
    );
    assert!(o.status.success(), "{}", both(&o));
    let out = stdout(&o);
    for dir in ["-> A", "-> B"] {
        assert!(
            out.lines().any(|l| l.contains(" copy ") && l.contains(dir)),
            "no copy {dir}: {out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.contains(" copy ") && l.contains(" B 0x") && l.contains("-> B")),
        "{out}"
    );

    // Where the filesystem refused clones (ext4 does), --require-clone makes that a failure.
    let o = fsx(
        &dir,
        &["-N", "2000", "-S", "2", "--second-file", "--ops-mix", mix],
    );
    if summary_counts(&stdout(&o), 2000, 2)["clone refused"] > 0 {
        let o = fsx(
            &dir,
            &[
                "-N",
                "2000",
                "-S",
                "2",
                "--second-file",
                "--ops-mix",
                mix,
                "--require-clone",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{}", both(&o));
        assert!(stderr(&o).contains("FICLONERANGE: "), "{}", both(&o));
    }
}

#[test]
fn injected_corruption_is_caught() {
    // Behind the model's back, half-way: a read (or the final check) finds it, on every seed.
    for seed in ["1", "2", "3", "7"] {
        let dir = scratch(&format!("inject{seed}"));
        let o = fsx(
            &dir,
            &[
                "-N",
                "3000",
                "-S",
                seed,
                "--inject-corruption",
                "1500",
                "--log",
                "3000",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "seed {seed}: {}", both(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("(seed {seed}): data mismatch: ")),
            "{err}"
        );
        assert!(
            err.contains(" expected ") && err.contains(" actual "),
            "no hexdump: {err}"
        );
        assert!(
            err.contains("corruption of A behind the model's back"),
            "log lacks the injection: {err}"
        );
        assert!(err.contains("<-- failed here"), "{err}");
        assert!(
            err.contains(&format!("lcfs-fsx: seed {seed}; rerun: ")),
            "{err}"
        );
    }
    // At the last operation: only the final check (buffered read after reopening) can see it.
    let dir = scratch("inject-last");
    let o = fsx(
        &dir,
        &["-N", "500", "-S", "5", "--inject-corruption", "500"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "FAILED at the final check of 500 (seed 5): data mismatch: final buffered read"
        ),
        "{err}"
    );
    // Without the injection the same run passes.
    let o = fsx(&dir, &["-N", "500", "-S", "5"]);
    assert!(o.status.success(), "{}", both(&o));
}

/// The operation lines of `-v` output (every line but lcfs-fsx's own).
fn op_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with("lcfs-fsx:"))
        .collect()
}

/// The failure report's operation log.
fn failure_log(err: &str) -> Vec<&str> {
    err.lines()
        .skip_while(|l| !l.starts_with("lcfs-fsx: the last "))
        .take_while(|l| !l.starts_with("lcfs-fsx: seed "))
        .collect()
}

#[test]
fn same_seed_same_operations() {
    let (d1, d2) = (scratch("seed-a"), scratch("seed-b"));
    let args = [
        "-v",
        "-N",
        "400",
        "-S",
        "11",
        "--log",
        "20",
        "--second-file",
    ];
    let (o1, o2) = (fsx(&d1, &args), fsx(&d2, &args));
    assert!(
        o1.status.success() && o2.status.success(),
        "{}\n{}",
        both(&o1),
        both(&o2)
    );
    let (out1, out2) = (stdout(&o1), stdout(&o2));
    let ops1 = op_lines(&out1);
    assert_eq!(
        ops1.len(),
        400 + 2,
        "400 operations and the final check of 2 files: {out1}"
    );
    assert_eq!(ops1, op_lines(&out2));
    assert_eq!(ops1[0].split_whitespace().next(), Some("1"));

    let o3 = fsx(
        &d2,
        &[
            "-v",
            "-N",
            "400",
            "-S",
            "12",
            "--log",
            "20",
            "--second-file",
        ],
    );
    assert!(o3.status.success(), "{}", both(&o3));
    assert_ne!(
        ops1,
        op_lines(&stdout(&o3)),
        "another seed, other operations"
    );

    // The failure report's log of the last 20 operations is the same too.
    let args = [
        "-N",
        "400",
        "-S",
        "11",
        "--log",
        "20",
        "--inject-corruption",
        "200",
    ];
    let (o1, o2) = (fsx(&d1, &args), fsx(&d2, &args));
    assert_eq!(o1.status.code(), Some(1), "{}", both(&o1));
    let (err1, err2) = (stderr(&o1), stderr(&o2));
    let log1 = failure_log(&err1);
    assert!(log1.len() > 10, "{err1}");
    assert_eq!(log1, failure_log(&err2));
}
