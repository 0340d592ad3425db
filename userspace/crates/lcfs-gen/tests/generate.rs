//! The generated man pages and completions exist and describe the tools' real options.

use std::fs;
use std::process::Command;

#[test]
fn pages_and_completions_follow_the_clap_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let (man, comp) = (dir.path().join("man"), dir.path().join("completions"));
    let out = Command::new(env!("CARGO_BIN_EXE_lcfs-gen"))
        .args([&man, &comp])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = |name: &str| fs::read_to_string(man.join(name)).unwrap();
    let mkfs = page("mkfs.lcfs.8");
    assert!(mkfs.starts_with(".ie \\n(.g .ds Aq"), "not a roff page");
    assert!(mkfs.contains(".TH mkfs.lcfs 8"), "{mkfs}");
    for opt in [
        "\\-\\-label",
        "\\-\\-size",
        "\\-\\-force",
        "\\-\\-dry\\-run",
    ] {
        assert!(mkfs.contains(opt), "mkfs.lcfs.8 lacks {opt}");
    }
    assert!(page("fsck.lcfs.8").contains("\\-C"));
    let lcfs = page("lcfs.8");
    assert!(lcfs.contains("layer") && lcfs.contains("df"));
    let clone = page("lcfs-layer-clone.8");
    assert!(clone.contains("\\-\\-readonly"), "{clone}");
    for sub in [
        "create", "snapshot", "freeze", "rename", "remove", "list", "show", "diff",
    ] {
        assert!(
            man.join(format!("lcfs-layer-{sub}.8")).exists(),
            "no page for layer {sub}"
        );
    }
    assert!(man.join("lcfs-debug-dump.8").exists());
    let daemon = page("containerd-lcfs-grpc.8");
    assert!(daemon.contains(".TH containerd-lcfs-grpc 8"), "{daemon}");
    for opt in ["\\-\\-mounted", "\\-\\-device", "\\-\\-log\\-format"] {
        assert!(daemon.contains(opt), "containerd-lcfs-grpc.8 lacks {opt}");
    }
    // Each page's NAME line is its own tool's summary, not lcfs-gen's crate description (what a
    // bare clap `about` gives in the files lcfs-gen compiles).
    for (file, summary) in [
        ("mkfs.lcfs.8", "Create an LCFS"),
        ("fsck.lcfs.8", "Check an LCFS filesystem"),
        ("lcfs.8", "Manage LCFS"),
        (
            "containerd-lcfs-grpc.8",
            "containerd snapshotter on LCFS layers",
        ),
    ] {
        let text = page(file);
        let name = text
            .lines()
            .skip_while(|l| *l != ".SH NAME")
            .nth(1)
            .unwrap_or_default();
        assert!(
            name.contains(summary) && !text.contains("lcfs\\-gen"),
            "{file}: NAME is {name:?}"
        );
    }
    assert!(
        !man.join("lcfs-help.8").exists(),
        "a page for clap's help subcommand"
    );
    let bash = fs::read_to_string(comp.join("lcfs.bash")).unwrap();
    assert!(bash.contains("snapshot") && bash.contains("--readonly"));
    assert!(comp.join("_mkfs.lcfs").exists() && comp.join("fsck.lcfs.fish").exists());
    // A bad call is a usage error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_lcfs-gen"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}
