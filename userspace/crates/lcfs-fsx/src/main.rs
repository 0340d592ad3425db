//! `lcfs-fsx`: a file-system exerciser for direct I/O mixed with buffered and mmap I/O.
//!
//! `lcfs-fsx [OPTIONS] FILE` creates (or truncates) `FILE` and runs a seeded pseudo-random
//! sequence of operations on it: buffered `pread`/`pwrite`, `O_DIRECT` `pread`/`pwrite` through
//! a second descriptor (offsets, lengths and memory aligned as `statx`'s `STATX_DIOALIGN`
//! reports, and sometimes only to 512 bytes), `MAP_SHARED` mmap reads and writes, truncates,
//! `fallocate` (punch hole, zero range, allocate), `fsync`/`fdatasync`, `copy_file_range`,
//! `FICLONERANGE` and page-cache drops. It keeps a model of the file's bytes in memory, checks
//! every read and every size against it, and at the end reopens the file and reads all of it,
//! buffered and direct. On a mismatch it prints where, a hexdump of what differs, the last
//! operations and the seed, and exits 1. The same seed gives the same operations.
//!
//! Written bytes identify the operation and the offset: byte at file offset `o` written by
//! operation `n` is `(n + o % 251) mod 256`.

mod fsx;
mod model;
mod rng;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// The operations `--ops-mix` can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OpKind {
    /// Buffered `pread`.
    Read,
    /// Buffered `pwrite`.
    Write,
    /// `O_DIRECT` `pread`.
    Dread,
    /// `O_DIRECT` `pwrite`.
    Dwrite,
    /// Read through a `MAP_SHARED` mapping.
    Mapread,
    /// Write through a `MAP_SHARED` mapping, then `msync`.
    Mapwrite,
    /// `ftruncate`, growing or shrinking.
    Truncate,
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
    Punch,
    /// `fallocate(ZERO_RANGE)`, with or without `KEEP_SIZE`.
    Zero,
    /// `fallocate` allocating, with or without `KEEP_SIZE`.
    Alloc,
    /// `fsync`.
    Fsync,
    /// `fdatasync`.
    Fdatasync,
    /// `copy_file_range`.
    Copy,
    /// `FICLONERANGE`.
    Clone,
    /// Page-cache drop: `msync(MS_INVALIDATE)` and `posix_fadvise(DONTNEED)`.
    Invalidate,
}

impl OpKind {
    /// Every operation, in the order of the summary.
    pub(crate) const ALL: [OpKind; 15] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::Dread,
        OpKind::Dwrite,
        OpKind::Mapread,
        OpKind::Mapwrite,
        OpKind::Truncate,
        OpKind::Punch,
        OpKind::Zero,
        OpKind::Alloc,
        OpKind::Fsync,
        OpKind::Fdatasync,
        OpKind::Copy,
        OpKind::Clone,
        OpKind::Invalidate,
    ];

    /// The name `--ops-mix` and the output use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Dread => "dread",
            OpKind::Dwrite => "dwrite",
            OpKind::Mapread => "mapread",
            OpKind::Mapwrite => "mapwrite",
            OpKind::Truncate => "truncate",
            OpKind::Punch => "punch",
            OpKind::Zero => "zero",
            OpKind::Alloc => "alloc",
            OpKind::Fsync => "fsync",
            OpKind::Fdatasync => "fdatasync",
            OpKind::Copy => "copy",
            OpKind::Clone => "clone",
            OpKind::Invalidate => "invalidate",
        }
    }

    /// How often the operation is picked, relative to the others that are enabled.
    pub(crate) fn weight(self) -> u64 {
        match self {
            OpKind::Read | OpKind::Write | OpKind::Dread | OpKind::Dwrite => 4,
            OpKind::Mapread | OpKind::Mapwrite => 3,
            OpKind::Truncate | OpKind::Punch | OpKind::Zero | OpKind::Alloc => 2,
            OpKind::Copy | OpKind::Clone => 2,
            OpKind::Fsync | OpKind::Fdatasync | OpKind::Invalidate => 1,
        }
    }
}

/// Exercise one file with direct, buffered and mmap I/O, checking every read against a model.
#[derive(Debug, Parser)]
#[command(name = "lcfs-fsx", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The file to exercise (created, or truncated to nothing).
    pub(crate) file: PathBuf,

    /// Number of operations.
    #[arg(short = 'N', long = "ops", value_name = "N", default_value_t = 10_000)]
    pub(crate) ops: u64,

    /// Seed of the operation sequence (default: from the clock; the seed used is printed).
    #[arg(short = 'S', long, value_name = "N")]
    pub(crate) seed: Option<u64>,

    /// Largest file size (K, M and G suffixes: powers of 1024).
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size)]
    pub(crate) max_len: u64,

    /// Largest length of one operation (K, M and G suffixes).
    #[arg(long, value_name = "BYTES", default_value = "64K", value_parser = parse_size)]
    pub(crate) max_op: u64,

    /// Operations to run, comma-separated (default: all but clone).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub(crate) ops_mix: Option<Vec<OpKind>>,

    /// Keep a second file, FILE.2, with its own model: copy and clone go between the two files
    /// and within each, the other operations go to FILE.2 one time in four.
    #[arg(long)]
    pub(crate) second_file: bool,

    /// Fail when FICLONERANGE is refused (EOPNOTSUPP, EXDEV, EINVAL) instead of counting it.
    #[arg(long)]
    pub(crate) require_clone: bool,

    /// Print only the seed and the summary.
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// Print every operation as it completes.
    #[arg(short, long)]
    pub(crate) verbose: bool,

    /// Operations to keep in the log printed on a failure.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) log: usize,

    /// Test the checker: before operation N, overwrite bytes of FILE behind the model's back.
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) inject_corruption: Option<u64>,
}

/// `BYTES` with an optional K, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 10),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 20),
        Some(b'g' | b'G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a size: {s:?} (e.g. 4096, 64K, 1M)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size too large: {s}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.max_len == 0 || cli.max_op == 0 {
        eprintln!("lcfs-fsx: --max-len and --max-op must be at least 1");
        return ExitCode::from(2);
    }
    match fsx::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("lcfs-fsx: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
    }
}
