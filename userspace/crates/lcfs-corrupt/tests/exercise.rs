//! The guest-side exercise on an ordinary directory tree laid out like the base image's layers:
//! every step succeeds, and a missing layer shows up as errors.

use std::fs;

use lcfs_corrupt::exercise::exercise;

#[test]
fn exercise_is_clean_on_a_healthy_tree() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    fs::create_dir_all(work.join("data")).unwrap();
    fs::create_dir_all(work.join("etc/sub")).unwrap();
    fs::write(work.join("data/big"), vec![7u8; 65536]).unwrap();
    fs::write(work.join("etc/file000"), b"x").unwrap();
    fs::write(work.join("etc/file001"), b"y").unwrap();
    std::os::unix::fs::symlink("file000", work.join("etc/link")).unwrap();
    let o = exercise(root.path(), Some("work"), None);
    assert!(o.errors.is_empty(), "{}", o.summary());
    assert!(o.summary().starts_with("clean"));
    assert_eq!(o.entries, 9);
    assert_eq!(fs::metadata(work.join("etc/file000")).unwrap().len(), 100);
    assert!(!work.join("etc/file001").exists());
    assert!(work.join("newdir").is_dir());

    let o = exercise(root.path(), Some("missing"), None);
    assert!(o.summary().starts_with("errors "), "{}", o.summary());
    assert!(o.errors.contains_key("create:ENOENT"), "{:?}", o.errors);
}
