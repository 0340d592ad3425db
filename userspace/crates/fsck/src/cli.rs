//! The command line of `fsck.lcfs`, apart so that the man page and completions are generated
//! from it (`lcfs-gen`).

use std::path::PathBuf;

use clap::Parser;

/// Check an LCFS filesystem.
///
/// A damaged superblock copy of the newest commit is an error: the filesystem falls back to the
/// previous commit in the other copy, and what the newest commit changed is lost. With -y or -p
/// that surviving state is committed again so that both copies hold it (only when nothing else is
/// damaged); other damage is reported and left.
///
/// Exit status: 0 no errors, 1 errors corrected, 4 errors left uncorrected, 8 operational error
/// (the device could not be read or written, or holds no LCFS filesystem), 16 usage error.
#[derive(Parser, Debug)]
#[command(name = "fsck.lcfs", version)]
pub(crate) struct Args {
    /// Block device or image file.
    pub(crate) device: PathBuf,

    /// Open read-only and answer "no" to every repair: nothing is written (nor is it without -y
    /// or -p).
    #[arg(short = 'n')]
    pub(crate) no: bool,

    /// Answer "yes" to every repair. The one repair so far: a damaged newest superblock copy is
    /// rewritten with the state the filesystem fell back to, as the next read-write mount would.
    /// The device is opened exclusively, so a mounted one is refused.
    #[arg(short = 'y', conflicts_with = "no")]
    pub(crate) yes: bool,

    /// Preen: repair without asking what -y repairs (it writes only what the next mount's
    /// first commit would). Only one of -p, -n and -y may be given.
    #[arg(short = 'p', short_alias = 'a', conflicts_with_all = ["no", "yes"])]
    pub(crate) preen: bool,

    /// Check even if the filesystem seems clean (every check is always complete).
    #[arg(short = 'f')]
    pub(crate) force: bool,

    /// Progress, as e2fsck gives it: with 0, a completion bar on standard output when it is a
    /// terminal; with another FD, one line "PASS DONE TOTAL DEVICE" per step on that file
    /// descriptor (for fsck -C). Without -C, a completion bar on standard error when it is a
    /// terminal.
    #[arg(short = 'C', value_name = "FD")]
    pub(crate) progress_fd: Option<u32>,

    /// Print counters.
    #[arg(short = 'v')]
    pub(crate) verbose: bool,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}
