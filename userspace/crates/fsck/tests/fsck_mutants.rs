//! Repair never makes things worse: `fsck.lcfs -y` on mutants of the corruption suite's image
//! (1 to 3 live metadata blocks damaged each) either repairs (exit 1, and `-n` then finds the
//! image clean) or refuses (exit 4, the image unchanged); an image found clean (exit 0) is left
//! as it was; a mutant without either superblock copy is no LCFS filesystem (exit 8, unchanged).
//! No other exit code, no panic. `-p` likewise, on the same mutants.

use std::process::Command;
use std::time::Instant;

/// Mutants checked (mutant `n` is the same whatever the count).
const MUTANTS: u32 = 200;
const SEED: u64 = 0x5eed_f5c4;

fn fsck(opt: &str, path: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fsck-lcfs"))
        .arg(opt)
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn repair_of_mutants_converges_or_leaves_them_alone() {
    let start = Instant::now();
    let base = lcfs_corrupt::base_image(2048).unwrap();
    let mutants = lcfs_corrupt::mutants(&base, SEED, MUTANTS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    // Per option: clean, repaired, refused, not LCFS.
    let mut counts = [[0u32; 4]; 2];
    for m in &mutants {
        let img = m.apply(&base);
        for (i, opt) in ["-y", "-p"].into_iter().enumerate() {
            std::fs::write(&path, &img).unwrap();
            let (code, out) = fsck(opt, &path);
            let after = std::fs::read(&path).unwrap();
            let what = format!("mutant {} ({}) {opt}", m.id, m.desc);
            match code {
                0 => {
                    assert_eq!(after, img, "{what}: clean but written: {out}");
                    counts[i][0] += 1;
                }
                1 => {
                    let (code2, out2) = fsck("-n", &path);
                    assert_eq!(
                        code2, 0,
                        "{what}: repaired but not clean after:\n{out2}\nthe repair said:\n{out}"
                    );
                    counts[i][1] += 1;
                }
                4 => {
                    assert!(after == img, "{what}: refused but written: {out}");
                    counts[i][2] += 1;
                }
                // Both superblock copies gone: no LCFS filesystem to check, as fsck.lcfs has
                // always said (operational error, nothing written).
                8 if out.contains("not an LCFS filesystem") => {
                    assert!(after == img, "{what}: written: {out}");
                    counts[i][3] += 1;
                }
                c => panic!("{what}: exit {c}: {out}"),
            }
        }
    }
    for (i, opt) in ["-y", "-p"].into_iter().enumerate() {
        let [clean, repaired, refused, none] = counts[i];
        println!(
            "fsck.lcfs {opt} on {MUTANTS} mutants: {clean} clean, {repaired} repaired, \
             {refused} refused (image unchanged), {none} without an LCFS superblock (exit 8)"
        );
    }
    println!("{:.1} s", start.elapsed().as_secs_f64());
    // -y repairs everything -p does, and more.
    // Going back to the commit before a damaged one is for -y alone.
    assert!(counts[0][1] > counts[1][1], "{counts:?}");
    assert!(counts[0][1] > 0, "no mutant repaired: {counts:?}");
}
