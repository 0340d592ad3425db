//! `lcfs-gen MANDIR COMPLETIONSDIR`: writes the man pages (section 8: administration tools) and
//! the bash, zsh and fish completions of `mkfs.lcfs`, `fsck.lcfs`, `lcfs` and
//! `containerd-lcfs-grpc` from the same clap definitions the tools parse their arguments with
//! (`make man`). `lcfs`'s subcommands get pages
//! of their own (`lcfs-layer-create.8`, ...), as git's and btrfs's do.

#![allow(dead_code, unreachable_pub)] // The command-line modules are the tools' own.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Command, CommandFactory};
use clap_complete::Shell;

#[path = "../../fsck/src/cli.rs"]
mod fsck_cli;
#[path = "../../lcfs/src/cli.rs"]
mod lcfs_cli;
#[path = "../../mkfs/src/cli.rs"]
mod mkfs_cli;
#[path = "../../lcfs-snapshotter/src/cli.rs"]
mod snapshotter_cli;

/// Writes `cmd`'s page as `NAME.8`, and one page per subcommand, recursively (`build` named
/// them: `lcfs-layer-create`).
fn man_pages(cmd: &Command, dir: &Path) -> Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.clone())
        .section("8")
        .manual("LCFS")
        .render(&mut page)?;
    let path = dir.join(format!("{name}.8"));
    fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    // Not clap's own `help` subcommand: each page has the help.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(sub, dir)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [man, completions] = &args[..] else {
        bail!("usage: lcfs-gen MANDIR COMPLETIONSDIR");
    };
    for dir in [man, completions] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tools = [
        ("mkfs.lcfs", mkfs_cli::Args::command()),
        ("fsck.lcfs", fsck_cli::Args::command()),
        ("lcfs", lcfs_cli::Cli::command()),
        ("containerd-lcfs-grpc", snapshotter_cli::Args::command()),
    ];
    for (name, mut cmd) in tools {
        cmd.build();
        man_pages(&cmd, man)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            clap_complete::generate_to(shell, &mut cmd, name, completions)
                .with_context(|| format!("{shell} completion of {name}"))?;
        }
    }
    Ok(())
}
