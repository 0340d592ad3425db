//! `mkfs.lcfs` (built as `mkfs-lcfs`, installed as `mkfs.lcfs`): creates an LCFS filesystem on a block device or an image file.
//!
//! With `--rootdir DIR` or `--tar FILE` it also writes a tree into the first layer (see
//! [`populate`]).
//!
//! Exit status, as mkfs(8): 0 on success, 1 on any failure (including usage errors and a device
//! that already holds a filesystem when `--force` is not given).

use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use lcfs_format::records::{self, Timespec};
use lcfs_format::superblock::{self, Superblock, MIN_BLOCKS};
use lcfs_format::volume::Volume;
use lcfs_format::BLOCK_SIZE;
use lcfs_image::output::{count, ignore_broken_pipe};
use lcfs_image::{outln, probe, Access, Device};

mod cli;
mod populate;
mod rootdir;
mod tarball;
use cli::Args;
use populate::{Sink, Stats, Vol};

/// The tree to write into the first layer.
enum Source {
    Rootdir(PathBuf),
    Tar(PathBuf),
}

impl Source {
    fn of(args: &Args) -> Option<Self> {
        match (&args.rootdir, &args.tar) {
            (Some(d), _) => Some(Self::Rootdir(d.clone())),
            (None, Some(t)) => Some(Self::Tar(t.clone())),
            (None, None) => None,
        }
    }

    /// Refuses a source that cannot be read, before the device is touched.
    fn check(&self) -> Result<()> {
        match self {
            Self::Rootdir(d) => {
                let m =
                    std::fs::metadata(d).with_context(|| format!("--rootdir {}", d.display()))?;
                if !m.is_dir() {
                    bail!("--rootdir {}: not a directory", d.display());
                }
                std::fs::read_dir(d).with_context(|| format!("--rootdir {}", d.display()))?;
            }
            Self::Tar(t) if t.as_os_str() == "-" => {}
            Self::Tar(t) => {
                std::fs::File::open(t).with_context(|| format!("--tar {}", t.display()))?;
            }
        }
        Ok(())
    }

    /// Writes the tree into the layer named `layer` of `vol` (`None`: a dry run, which reads
    /// and counts it). `image` is the (device, inode) of the image file, which a tree holding
    /// it leaves out.
    fn copy(
        &self,
        vol: Option<&mut Vol>,
        layer: &str,
        now: Timespec,
        image: Option<(u64, u64)>,
    ) -> Result<Stats> {
        let mut sink = Sink::new(vol, layer.as_bytes(), now)?;
        match self {
            Self::Rootdir(d) => rootdir::copy(&mut sink, d, image)?,
            Self::Tar(t) => tarball::copy(&mut sink, t, now)?,
        }
        sink.finish()?;
        Ok(sink.stats)
    }
}

/// The summary of a tree written (or to be written, in a dry run).
fn report(stats: &Stats, dry_run: bool) -> std::io::Result<()> {
    let s = stats;
    let dirs = if s.dirs == 1 {
        "1 directory".to_owned()
    } else {
        format!("{} directories", s.dirs)
    };
    outln!(
        "  {} {}, {dirs}, {}, {}, {}",
        if dry_run {
            "would write:"
        } else {
            "written:    "
        },
        count(s.files, "file"),
        count(s.symlinks, "symbolic link"),
        count(s.specials, "special file"),
        count(s.hard_links, "extra hard link"),
    )?;
    outln!(
        "               {} of file data in {} of {BLOCK_SIZE} bytes (holes and zero blocks left out), {}",
        count(s.bytes, "byte"),
        count(s.data_blocks, "block"),
        count(s.xattrs, "extended attribute"),
    )?;
    if s.xattrs_skipped > 0 {
        outln!(
            "  left out:    {} outside the user., trusted. and security. namespaces",
            count(s.xattrs_skipped, "extended attribute")
        )?;
    }
    if s.replaced > 0 {
        outln!(
            "  replaced:    {} by later entries of the same path",
            count(s.replaced, "entry")
        )?;
    }
    Ok(())
}

fn is_block_device(m: &std::fs::Metadata) -> bool {
    std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type())
}

/// Refuses a size below the format's minimum.
fn check_size(args: &Args, size: u64) -> Result<()> {
    if size / u64::from(BLOCK_SIZE) < MIN_BLOCKS {
        bail!(
            "{}: device too small ({size} bytes); LCFS needs at least {} bytes",
            args.device.display(),
            MIN_BLOCKS * u64::from(BLOCK_SIZE)
        );
    }
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    // What can be refused without touching the device is refused first.
    records::check_layer_name(args.layer.as_bytes())
        .map_err(|_| anyhow::anyhow!("layer name must be 1 to 255 bytes without '/' or NUL"))?;
    if let Some(source) = Source::of(args) {
        source.check()?;
    }
    let meta = std::fs::metadata(&args.device);
    let mut created = false;
    if let Some(size) = args.size {
        // A block device keeps its size: the filesystem takes its first `size` bytes (format
        // checks that they exist).
        if let Some(m) = meta.as_ref().ok().filter(|m| !is_block_device(m)) {
            if m.len() > size && !args.force {
                bail!(
                    "{} is {} bytes: --size {size} would cut it; use -f to shrink it",
                    args.device.display(),
                    m.len()
                );
            }
        }
        check_size(args, size)?;
        if meta.is_err() && !args.dry_run {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&args.device)
                .with_context(|| format!("cannot create {}", args.device.display()))?;
            created = true;
        }
    }
    let result = format(args);
    // A file this run created and did not finish is not left behind.
    if result.is_err() && created {
        let _ = std::fs::remove_file(&args.device);
    }
    result
}

fn format(args: &Args) -> Result<()> {
    let access = if args.dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    // A dry run of an image file that does not exist yet previews it as new and empty.
    let new_preview = args.dry_run && args.size.is_some() && !args.device.exists();
    let mut dev = if new_preview {
        None
    } else {
        Some(Device::open(&args.device, access).context("cannot open device")?)
    };

    let existing = match dev.as_mut() {
        Some(dev) => probe::signatures(dev)?,
        None => Vec::new(),
    };
    if !existing.is_empty() && !args.force {
        bail!(
            "{} holds an existing signature ({}); use -f to overwrite it",
            args.device.display(),
            existing.join(", ")
        );
    }

    let block = std::fs::metadata(&args.device).is_ok_and(|m| is_block_device(&m));
    // A preview without a device has a size (new_preview).
    let size = args.size.or(dev.as_ref().map(Device::size)).unwrap_or(0);
    if let Some(dev) = dev.as_ref().filter(|_| block) {
        if size > dev.size() {
            bail!(
                "{}: the filesystem size {size} is larger than the device ({} bytes)",
                args.device.display(),
                dev.size()
            );
        }
    }
    check_size(args, size)?;
    let blocks = size / u64::from(BLOCK_SIZE);

    let uuid = args.uuid.unwrap_or_else(uuid::Uuid::new_v4);
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = since_epoch.as_secs();
    let now_ts = Timespec {
        sec: i64::try_from(now).unwrap_or(i64::MAX),
        nsec: since_epoch.subsec_nanos(),
    };
    let mut sb = Superblock::new(blocks, *uuid.as_bytes(), now);
    // The directory hash key must not be guessable from the (public) UUID: take fresh random
    // bits, so nobody can prepare names that all land in one hash bucket.
    let (k0, k1) = uuid::Uuid::new_v4().as_u64_pair();
    sb.hash_key = [k0, k1];
    // Inode flags (`chattr`): a kernel that does not know them must not mount the filesystem.
    sb.incompat |= superblock::INCOMPAT_INODE_FLAGS;
    if let Some(label) = &args.label {
        sb.set_label(label)
            .map_err(|_| anyhow::anyhow!("label must be at most 63 bytes without NUL"))?;
    }

    if !args.quiet {
        ignore_broken_pipe(outln!(
            "{}Creating LCFS filesystem on {}",
            if args.dry_run { "[dry run] " } else { "" },
            args.device.display()
        ))?;
        if !existing.is_empty() {
            ignore_broken_pipe(outln!(
                "  overwriting existing signature: {}",
                existing.join(", ")
            ))?;
        }
        ignore_broken_pipe(outln!(
            "  size:        {} blocks of {} bytes ({} MiB)",
            blocks,
            BLOCK_SIZE,
            (blocks * u64::from(BLOCK_SIZE)) >> 20
        ))?;
        ignore_broken_pipe(outln!("  uuid:        {uuid}"))?;
        ignore_broken_pipe(outln!(
            "  label:       {}",
            args.label.as_deref().unwrap_or("")
        ))?;
        ignore_broken_pipe(outln!("  first layer: {}", args.layer))?;
    }
    let source = Source::of(args);
    // The image file itself, if a tree to copy holds it.
    let image = std::fs::metadata(&args.device)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| (m.dev(), m.ino()));
    if args.dry_run {
        if let Some(source) = source {
            let stats = source.copy(None, &args.layer, now_ts, image)?;
            if !args.quiet {
                ignore_broken_pipe(report(&stats, true))?;
            }
        }
        return Ok(());
    }

    let mut dev = match dev {
        Some(dev) if args.size.is_none() || block => dev,
        _ => {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&args.device)
                .and_then(|f| f.set_len(size))
                .with_context(|| format!("cannot resize {}", args.device.display()))?;
            Device::open(&args.device, Access::ReadWrite)?
        }
    };

    // Old signatures must not survive next to the new filesystem (blkid would report both).
    dev.write_at(0, &vec![0u8; probe::PROBE_BYTES])?;
    // The map, the layer tree and the first layer, committed twice so that both superblock
    // copies are valid from the start.
    let mut vol = match Volume::format(dev, sb, Some(args.layer.as_bytes()), now_ts) {
        Ok(vol) => vol,
        Err(e) => bail!(
            "{}: cannot write the filesystem: {e}",
            args.device.display()
        ),
    };
    let mut stats = None;
    if let Some(source) = source {
        let copied = source
            .copy(Some(&mut vol), &args.layer, now_ts, image)
            .and_then(|s| {
                vol.commit(now_ts).map_err(|e| {
                    anyhow::anyhow!("{}: cannot commit the tree: {e}", args.device.display())
                })?;
                Ok(s)
            });
        match copied {
            Ok(s) => stats = Some(s),
            Err(e) => {
                // A half-written tree must not pass for a filesystem (a commit made to free
                // space may have reached the superblocks): no signature is left.
                let dev = vol.store();
                let _ = dev.write_at(0, &vec![0u8; probe::PROBE_BYTES]);
                let _ = dev.sync();
                return Err(e);
            }
        }
    }
    if !args.quiet {
        if let Some(stats) = &stats {
            ignore_broken_pipe(report(stats, false))?;
        }
        let sb = vol.superblock();
        ignore_broken_pipe(outln!(
            "  free blocks: {} (reserve {})",
            sb.free_blocks,
            sb.reserve_blocks
        ))?;
        ignore_broken_pipe(outln!("Done."))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // mke2fs's trailing fs-size is --size by another name.
    match (args.size, args.fs_size) {
        (Some(a), Some(b)) if a != b => {
            eprintln!("mkfs.lcfs: --size {a} and the size argument {b} (bytes) disagree");
            return ExitCode::from(1);
        }
        (None, b) => args.size = b,
        _ => {}
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkfs.lcfs: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cli::{parse_fs_size, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        // Only mke2fs's single-letter suffixes: "MB" would mean 10^6 to some readers.
        for bad in ["1MB", "2GiB", "1KB", "1X", "1 M"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn trailing_fs_size_counts_kib_without_a_suffix() {
        assert_eq!(parse_fs_size("65536"), Ok(64 << 20));
        assert_eq!(parse_fs_size("64M"), Ok(64 << 20));
        assert!(parse_fs_size("64MB").is_err());
        assert!(parse_fs_size("").is_err());
        assert!(parse_fs_size("99999999999999999").is_err());
    }
}
