//! The command line of `mkfs.lcfs`, apart so that the man page and completions are generated
//! from it (`lcfs-gen`).

use std::path::PathBuf;

use clap::Parser;

/// Create an LCFS (Layer Cloning Filesystem) filesystem.
#[derive(Debug, Parser)]
// The about text is the doc comment, not a bare `about` (Cargo.toml's description of the crate
// compiling this file, which for lcfs-gen is its own).
#[command(name = "mkfs.lcfs", version, long_about = None)]
pub(crate) struct Args {
    /// Block device or image file to format.
    pub(crate) device: PathBuf,

    /// Overwrite an existing filesystem or partition table signature.
    #[arg(short, long)]
    pub(crate) force: bool,

    /// Volume label (at most 63 bytes).
    #[arg(short = 'L', long)]
    pub(crate) label: Option<String>,

    /// Filesystem UUID (default: random).
    #[arg(short = 'U', long)]
    pub(crate) uuid: Option<uuid::Uuid>,

    /// Size of the filesystem, in bytes or with one of mke2fs's suffixes K, M, G, T (powers of
    /// 1024, either case: 512M, 10G). An image file is created or resized to it (a file larger
    /// than SIZE is cut only with -f); on a block device the filesystem takes the first SIZE
    /// bytes and leaves the rest alone.
    #[arg(short, long, value_parser = parse_size)]
    pub(crate) size: Option<u64>,

    /// The filesystem's size as mke2fs takes it after the device: as --size, but a number
    /// without a suffix counts KiB.
    #[arg(value_name = "FS-SIZE", value_parser = parse_fs_size)]
    pub(crate) fs_size: Option<u64>,

    /// Show what would be done without writing anything.
    #[arg(short = 'n', long)]
    pub(crate) dry_run: bool,

    /// Print nothing but errors.
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// Name of the first read-write layer (empty unless --rootdir or --tar fills it).
    #[arg(long, default_value = "default")]
    pub(crate) layer: String,

    /// Copy the directory tree DIR into the first layer (as mkfs.ext4 -d): directories, regular
    /// files, symbolic links, device nodes, FIFOs and sockets, with their owners, permissions
    /// (setuid, setgid and sticky bits too), access, modification and change times (to the
    /// nanosecond), extended attributes in the user., trusted. and security. namespaces and
    /// POSIX ACLs (other system. ones are left out and counted). Names of one inode (hard links)
    /// stay one inode. Holes of sparse files, found with SEEK_DATA and SEEK_HOLE, and all-zero
    /// blocks are not written. Symbolic links are copied, never followed. With -n the tree is
    /// read and counted, and nothing is written.
    #[arg(short = 'd', long, value_name = "DIR", conflicts_with = "tar")]
    pub(crate) rootdir: Option<PathBuf>,

    /// Copy the entries of the tar archive FILE (- for standard input) into the first layer,
    /// as extracting it as root with numeric owners would: ustar, GNU and PAX archives with
    /// long names, PAX owners, sub-second times and extended attributes (SCHILY.xattr.*),
    /// hard links, symbolic links, device nodes, FIFOs and GNU sparse files (PAX sparse files
    /// are refused). All-zero blocks are not written. Directories the archive does not list
    /// are made with mode 0755, owner 0:0 and the current time; a path listed twice takes
    /// the later entry. Compressed archives must be decompressed first (for example
    /// `zstd -dc image.tar.zst | mkfs.lcfs --tar - ...`).
    #[arg(long, value_name = "FILE")]
    pub(crate) tar: Option<PathBuf>,
}

/// Parses mke2fs's trailing fs-size: a number without a suffix counts KiB (mke2fs without -b).
pub(crate) fn parse_fs_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_size(&format!("{s}K"));
    }
    parse_size(s)
}

/// Parses a byte count with mke2fs's suffixes: one of K, M, G, T (powers of 1024), either case.
/// `MB` or `KiB` are refused rather than guessed at (`MB` means 10^6 elsewhere).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size '{s}'"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "invalid size suffix in '{s}': use K, M, G or T (powers of 1024)"
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size '{s}' too large"))
}
