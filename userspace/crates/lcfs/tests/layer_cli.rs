//! `lcfs layer` and `lcfs df` without a mounted LCFS filesystem: usage errors, names refused
//! before any call, and a clear one-line error on a filesystem that is not LCFS. The commands
//! against a mount are tested in the guest (tests/guest/layers.sh).

use std::process::Command;

/// Exit code, stdout and stderr of `lcfs ARGS`.
fn lcfs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lcfs"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["layer"][..],
        &["layer", "create"],
        &["layer", "clone", "only-one"],
        &["layer", "remove"],
        &["layer", "create", "a", "b"],
        &["layer", "list", "--no-such-flag"],
    ] {
        let (code, _, err) = lcfs(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn not_lcfs_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().to_str().unwrap();
    for args in [
        &["layer", "list", "-m", m][..],
        &["layer", "create", "x", "--mount", m],
        &["layer", "clone", "a", "b", "-m", m],
        &["layer", "snapshot", "a", "b", "-m", m],
        &["layer", "freeze", "a", "-m", m],
        &["layer", "rename", "a", "b", "-m", m],
        &["layer", "remove", "a", "b", "-m", m],
        &["layer", "show", "-m", m],
        &["df", m],
    ] {
        let (code, out, err) = lcfs(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(
            err,
            format!("lcfs: {m} is not on an LCFS filesystem\n"),
            "{args:?}"
        );
    }
}

#[test]
fn bad_names_are_refused_before_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().to_str().unwrap();
    let long = "n".repeat(256);
    for name in ["..", ".", "a/b", "", long.as_str()] {
        let (code, _, err) = lcfs(&["layer", "create", name, "-m", m]);
        assert_eq!(code, 1, "{name:?}");
        assert_eq!(
            err,
            format!("lcfs: layer create: {name}: Invalid argument\n")
        );
    }
}

#[test]
fn a_missing_mount_path_is_reported() {
    let (code, _, err) = lcfs(&["layer", "list", "-m", "/nonexistent/lcfs"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "lcfs: cannot open /nonexistent/lcfs: No such file or directory\n"
    );
}
