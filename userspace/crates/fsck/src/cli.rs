//! The command line of `fsck.lcfs`, apart so that the man page and completions are generated
//! from it (`lcfs-gen`).

use std::path::PathBuf;

use clap::Parser;

/// Check an LCFS filesystem.
///
/// A damaged superblock copy of the newest commit is an error: the filesystem falls back to the
/// previous commit in the other copy, and what the newest commit changed is lost.
///
/// Repair (-y, and -p for its safe part) covers: the reference-count map and the free count
/// (rebuilt from the references found), layer usage counters and child counts, link counts
/// (the safe part, with the superblock copy); directory entries naming a missing inode
/// (removed), inodes with links but no name (named #INO in the layer's /lost+found, made with
/// mode 0700) and inodes without links missing from the orphan index (indexed, so the next
/// read-write mount deletes them), and bytes after the superblock record of a copy (zeroed:
/// the repair's commits rewrite both copies). Damage none of these covers (a tree node that
/// does not read, or holds bytes where it holds nothing, a record that does not decode, back
/// references that disagree) is not rebuilt: -y goes back
/// to the previous commit if it checks sound, naming what is lost (generation, layers), and
/// otherwise leaves the filesystem as it is. A repair is tried in memory and checked first;
/// only one whose result is clean is written, through the format's own commits, so a crash
/// leaves the old state or the new one. Anything else writes nothing.
///
/// Memory follows the metadata (the trees, the reference-count map's nodes, the extents), not
/// the device's size: an empty or lightly used device of many TiB checks in a few MiB.
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

    /// Answer "yes" to every repair (see above), going back to the previous commit when the
    /// newest is damaged beyond them. The device is opened exclusively, so a mounted one is
    /// refused.
    #[arg(short = 'y', conflicts_with = "no")]
    pub(crate) yes: bool,

    /// Preen: repair without asking only what is safe (the map and free count, counters, link
    /// counts, the superblock copies); any other damage writes nothing and exits 4 ("UNEXPECTED
    /// INCONSISTENCY; RUN fsck MANUALLY"). Only one of -p, -n and -y may be given.
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
