//! `--tar FILE`: copies the entries of a tar archive (ustar, GNU or PAX; `-` reads standard
//! input) into the first layer, as extracting it as root with numeric owners would.
//!
//! GNU long names and PAX paths, PAX owners and sub-second times, PAX extended attributes
//! (`SCHILY.xattr.NAME`), hard links, symbolic links, device nodes, FIFOs and GNU sparse files
//! are understood. Directories missing from the archive are made with mode 0755, owner 0:0 and
//! the time of mkfs. A path given twice takes the later entry, as extraction does (a directory
//! keeps its contents and takes the later attributes).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use lcfs_format::records::Timespec;
use lcfs_format::ROOT_INO;
use tar::EntryType;

use crate::populate::{encode_dev, Kind, Meta, Sink, BLOCK};

/// Bytes read at a time.
const READ_CHUNK: usize = 1 << 20;

/// Copies the archive `src` (`-`: standard input) into `sink`.
pub(crate) fn copy(sink: &mut Sink<'_>, src: &Path, now: Timespec) -> Result<()> {
    let label = src.display().to_string();
    let input: Box<dyn Read> = if src == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(src).with_context(|| label.clone())?)
    };
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 16, input));
    let mut walk = Walk {
        paths: HashMap::new(),
        now,
        buf: vec![0; READ_CHUNK],
    };
    walk.paths.insert(Vec::new(), (ROOT_INO, true));
    for entry in archive.entries().with_context(|| label.clone())? {
        let mut entry = entry.with_context(|| label.clone())?;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        walk.entry(sink, &mut entry)
            .with_context(|| format!("{label}: {shown}"))?;
    }
    Ok(())
}

struct Walk {
    /// Every path written so far (components joined by `/`, the root empty): its inode and
    /// whether it is a directory.
    paths: HashMap<Vec<u8>, (u64, bool)>,
    now: Timespec,
    buf: Vec<u8>,
}

/// `path` without `.` components, empty ones and leading `/`: `None` if it has a `..`.
fn normalize(path: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.len());
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Some(out)
}

/// Splits a normalized, non-empty path into its parent and last component.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// A PAX time: decimal seconds with an optional fraction, possibly negative.
fn pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sec: i64 = int.parse().ok()?;
    // Nine digits at most, padded with zeros.
    let mut nsec = 0u32;
    let mut digits = frac.bytes();
    for _ in 0..9 {
        nsec = nsec * 10 + digits.next().map_or(0, |d| u32::from(d - b'0'));
    }
    Some(if !neg {
        Timespec { sec, nsec }
    } else if nsec == 0 {
        Timespec { sec: -sec, nsec: 0 }
    } else {
        Timespec {
            sec: -sec - 1,
            nsec: 1_000_000_000 - nsec,
        }
    })
}

/// A header time in whole seconds.
fn header_time(sec: u64) -> Timespec {
    Timespec {
        sec: i64::try_from(sec).unwrap_or(i64::MAX),
        nsec: 0,
    }
}

impl Walk {
    fn entry<R: Read>(&mut self, sink: &mut Sink<'_>, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let et = entry.header().entry_type();
        match et.as_byte() {
            // Global PAX headers and GNU volume labels describe no file.
            b'g' | b'V' => return Ok(()),
            b'M' => bail!("multi-volume archives are not supported"),
            _ => {}
        }
        let raw_path = entry.path_bytes().into_owned();
        let path = normalize(&raw_path).ok_or_else(|| anyhow!("path with '..' refused"))?;
        let link = entry.link_name_bytes().map(|l| l.into_owned());

        // PAX records: times and xattrs.
        let mut xattrs = Vec::new();
        let (mut atime, mut mtime, mut ctime) = (None, None, None);
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), value.to_vec()));
                } else if key.starts_with(b"GNU.sparse.") {
                    bail!(
                        "PAX sparse files are not supported (write the archive in GNU format, \
                         tar --format=gnu)"
                    );
                } else if key == b"mtime" {
                    mtime = Some(pax_time(value).ok_or_else(|| anyhow!("bad PAX mtime"))?);
                } else if key == b"atime" {
                    atime = Some(pax_time(value).ok_or_else(|| anyhow!("bad PAX atime"))?);
                } else if key == b"ctime" {
                    ctime = Some(pax_time(value).ok_or_else(|| anyhow!("bad PAX ctime"))?);
                }
            }
        }
        xattrs.sort();
        let header = entry.header();
        let mtime = match mtime {
            Some(t) => t,
            None => header_time(header.mtime()?),
        };
        // GNU headers have room for the other two times (set by some writers).
        let gnu_time = |t: Option<std::io::Result<u64>>| match t {
            Some(Ok(s)) if s != 0 => Some(header_time(s)),
            _ => None,
        };
        let gnu = header.as_gnu();
        let atime = atime
            .or_else(|| gnu_time(gnu.map(|g| g.atime())))
            .unwrap_or(mtime);
        let ctime = ctime
            .or_else(|| gnu_time(gnu.map(|g| g.ctime())))
            .unwrap_or(mtime);
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| anyhow!("{what} {v} does not fit in 32 bits"))
        };
        let kind = match et {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // Old archives mark directories with a trailing slash only.
                if raw_path.ends_with(b"/") && et != EntryType::GNUSparse {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink(
                link.clone()
                    .ok_or_else(|| anyhow!("symbolic link without a target"))?,
            ),
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            EntryType::Link => {
                let target = link.ok_or_else(|| anyhow!("hard link without a target"))?;
                return self.hard_link(sink, &path, &target);
            }
            other => bail!("unsupported entry type {:?}", other.as_byte() as char),
        };
        let rdev = if matches!(kind, Kind::Char | Kind::Block) {
            let major = header.device_major()?.unwrap_or(0);
            let minor = header.device_minor()?.unwrap_or(0);
            encode_dev(u64::from(major), u64::from(minor))
                .ok_or_else(|| anyhow!("device number {major}:{minor} beyond the kernel's"))?
        } else {
            0
        };
        let meta = Meta {
            kind,
            perm: header.mode()? & 0o7777,
            uid: id(header.uid()?, "uid")?,
            gid: id(header.gid()?, "gid")?,
            rdev,
            atime,
            mtime,
            ctime,
            xattrs,
        };

        if path.is_empty() {
            return sink.root(&meta);
        }
        let (parent, name) = split(&path);
        let dir = self.parent(sink, parent)?;
        match self.paths.get(&path).copied() {
            Some((ino, true)) if meta.kind == Kind::Dir => return sink.update_dir(ino, &meta),
            Some((_, true)) => bail!("a directory of this name is in the archive already"),
            Some((ino, false)) => {
                sink.replace(ino, dir, name)?;
                self.paths.remove(&path);
            }
            None => {}
        }
        let ino = sink.create(dir, name, &meta)?;
        self.paths.insert(path, (ino, meta.kind == Kind::Dir));
        if meta.kind == Kind::File {
            self.data(sink, entry, ino)?;
        }
        Ok(())
    }

    /// The directory `path` (normalized), made with default attributes if the archive has not
    /// named it yet, as tar does when it extracts.
    fn parent(&mut self, sink: &mut Sink<'_>, path: &[u8]) -> Result<u64> {
        match self.paths.get(path) {
            Some(&(ino, true)) => return Ok(ino),
            Some(&(_, false)) => bail!(
                "{} is not a directory in the archive",
                String::from_utf8_lossy(path)
            ),
            None => {}
        }
        let (up, name) = split(path);
        let dir = self.parent(sink, up)?;
        let meta = Meta {
            kind: Kind::Dir,
            perm: 0o755,
            uid: 0,
            gid: 0,
            rdev: 0,
            atime: self.now,
            mtime: self.now,
            ctime: self.now,
            xattrs: Vec::new(),
        };
        let ino = sink.create(dir, name, &meta)?;
        self.paths.insert(path.to_vec(), (ino, true));
        Ok(ino)
    }

    fn hard_link(&mut self, sink: &mut Sink<'_>, path: &[u8], target: &[u8]) -> Result<()> {
        let shown = String::from_utf8_lossy(target).into_owned();
        let target = normalize(target).ok_or_else(|| anyhow!("link target with '..' refused"))?;
        let ino = match self.paths.get(&target) {
            Some(&(_, true)) => bail!("hard link to the directory {shown}"),
            Some(&(ino, false)) => ino,
            None => bail!("hard link to {shown}, which the archive does not hold before it"),
        };
        if path.is_empty() {
            bail!("hard link as the root directory");
        }
        let (parent, name) = split(path);
        let dir = self.parent(sink, parent)?;
        match self.paths.get(path).copied() {
            Some((old, false)) if old == ino => return Ok(()),
            Some((_, true)) => bail!("a directory of this name is in the archive already"),
            Some((old, false)) => {
                sink.replace(old, dir, name)?;
                self.paths.remove(path);
            }
            None => {}
        }
        sink.link(ino, dir, name)?;
        self.paths.insert(path.to_vec(), (ino, false));
        Ok(())
    }

    /// Copies the data of a regular file entry (a GNU sparse one reads zeros in its holes).
    fn data<R: Read>(
        &mut self,
        sink: &mut Sink<'_>,
        entry: &mut tar::Entry<'_, R>,
        ino: u64,
    ) -> Result<()> {
        let size = entry.size();
        sink.begin_data(ino, size)?;
        let mut at = 0u64;
        while at < size {
            let want = usize::try_from(size - at)
                .unwrap_or(READ_CHUNK)
                .min(READ_CHUNK);
            let buf = &mut self.buf[..want];
            entry.read_exact(buf).context("reading the archive")?;
            for (i, block) in buf.chunks(BLOCK).enumerate() {
                sink.put_block(at / BLOCK as u64 + i as u64, block)?;
            }
            at += want as u64;
        }
        sink.end_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_pax_times() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"/").unwrap(), b"");
        assert!(normalize(b"a/../b").is_none());
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        let t = |sec, nsec| Some(Timespec { sec, nsec });
        assert_eq!(pax_time(b"1700000000"), t(1_700_000_000, 0));
        assert_eq!(pax_time(b"1700000000.5"), t(1_700_000_000, 500_000_000));
        assert_eq!(pax_time(b"1.123456789123"), t(1, 123_456_789));
        assert_eq!(pax_time(b"-1.25"), t(-2, 750_000_000));
        assert_eq!(pax_time(b"-3"), t(-3, 0));
        for bad in [&b""[..], b"x", b"1.x", b".5", b"-"] {
            assert_eq!(pax_time(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
