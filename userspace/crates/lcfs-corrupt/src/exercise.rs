//! The guest side of the corruption suite: everything a mounted (possibly damaged) filesystem is
//! put through, in one process so that a mutant costs a few system calls, not a few dozen
//! programs.
//!
//! Reads: a walk of the whole tree (at most [`MAX_DEPTH`] levels and [`MAX_ENTRIES`] names: a
//! damaged directory may loop), `lstat` and every xattr (list and get) of each name, `readdir`
//! of each directory, `readlink` of each symlink, the first MiB of each regular file (a damaged
//! size may promise exabytes of holes). Writes, in one read-write layer: create, write 8 KiB,
//! rename, unlink, mkdir, setxattr, a write into a file shared with the frozen layer
//! (copy-on-write), truncate, unlink of an old file, a create in the frozen layer (which must
//! fail), then `syncfs`.
//!
//! Errors are expected on damaged images: each failing operation is counted by step and errno.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Deepest directory level walked.
pub const MAX_DEPTH: usize = 12;

/// Most names visited.
pub const MAX_ENTRIES: u64 = 5000;

/// Bytes read from each regular file, at most.
const READ_MAX: u64 = 1 << 20;

/// What one exercise saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Failures, by `step:ERRNO`.
    pub errors: BTreeMap<String, u32>,
    /// Names visited.
    pub entries: u64,
    /// Xattrs read.
    pub xattrs: u64,
    /// File bytes read.
    pub bytes: u64,
    /// Milliseconds spent reading, writing (and syncing).
    pub millis: (u128, u128),
}

impl Outcome {
    fn fail(&mut self, step: &str, e: &io::Error) {
        *self
            .errors
            .entry(format!("{step}:{}", errno_name(e)))
            .or_default() += 1;
    }

    fn check<T>(&mut self, step: &str, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(step, &e);
                None
            }
        }
    }

    /// One line: `clean` or `errors STEP:ERRNO[xCOUNT],...`, then the counters.
    pub fn summary(&self) -> String {
        let head = if self.errors.is_empty() {
            "clean".to_string()
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, &n)| if n > 1 { format!("{k}x{n}") } else { k.clone() })
                .collect();
            format!("errors {}", list.join(","))
        };
        format!(
            "{head} [{} names, {} xattrs, {} KiB read in {} ms; writes {} ms]",
            self.entries,
            self.xattrs,
            self.bytes >> 10,
            self.millis.0,
            self.millis.1
        )
    }
}

/// The name of an errno (the number if unknown).
fn errno_name(e: &io::Error) -> String {
    let Some(n) = e.raw_os_error() else {
        return format!("{:?}", e.kind());
    };
    let name = match n {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        7 => "E2BIG",
        9 => "EBADF",
        12 => "ENOMEM",
        13 => "EACCES",
        17 => "EEXIST",
        18 => "EXDEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        31 => "EMLINK",
        34 => "ERANGE",
        36 => "ENAMETOOLONG",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        75 => "EOVERFLOW",
        95 => "EOPNOTSUPP",
        116 => "ESTALE",
        117 => "EUCLEAN",
        _ => return format!("errno{n}"),
    };
    name.to_string()
}

/// Puts the filesystem mounted at `root` through the reads, then, if `write_layer` is given,
/// through the writes in that layer (`frozen_layer` must refuse a create).
pub fn exercise(root: &Path, write_layer: Option<&str>, frozen_layer: Option<&str>) -> Outcome {
    let mut o = Outcome::default();
    let start = std::time::Instant::now();
    walk(&mut o, root, 0);
    o.millis.0 = start.elapsed().as_millis();
    let start = std::time::Instant::now();
    if let Some(layer) = write_layer {
        writes(&mut o, &root.join(layer));
    }
    if let Some(frozen) = frozen_layer {
        if File::create(root.join(frozen).join("created")).is_ok() {
            *o.errors.entry("frozen-writable".into()).or_default() += 1;
        }
    }
    if write_layer.is_some() {
        if let Some(f) = o.check("open-root", File::open(root)) {
            o.check("syncfs", rustix::fs::syncfs(&f).map_err(io::Error::from));
        }
    }
    o.millis.1 = start.elapsed().as_millis();
    o
}

fn xattrs(o: &mut Outcome, path: &Path) {
    let mut list = vec![0u8; 65536];
    let Some(n) = o.check(
        "listxattr",
        rustix::fs::llistxattr(path, &mut list[..]).map_err(io::Error::from),
    ) else {
        return;
    };
    let mut value = vec![0u8; 65536];
    for name in list[..n.min(list.len())].split(|&b| b == 0) {
        if name.is_empty() {
            continue;
        }
        let got = rustix::fs::lgetxattr(path, name, &mut value[..]).map_err(io::Error::from);
        if o.check("getxattr", got).is_some() {
            o.xattrs += 1;
        }
    }
}

fn walk(o: &mut Outcome, path: &Path, depth: usize) {
    if o.entries >= MAX_ENTRIES {
        return;
    }
    o.entries += 1;
    let Some(meta) = o.check("lstat", fs::symlink_metadata(path)) else {
        return;
    };
    xattrs(o, path);
    let ft = meta.file_type();
    if ft.is_dir() {
        if depth >= MAX_DEPTH {
            return;
        }
        let Some(dir) = o.check("opendir", fs::read_dir(path)) else {
            return;
        };
        for entry in dir {
            if let Some(entry) = o.check("readdir", entry) {
                walk(o, &entry.path(), depth + 1);
            }
            if o.entries >= MAX_ENTRIES {
                return;
            }
        }
    } else if ft.is_symlink() {
        o.check("readlink", fs::read_link(path));
    } else if ft.is_file() {
        if let Some(f) = o.check("open", File::open(path)) {
            let mut buf = Vec::new();
            if let Some(n) = o.check("read", f.take(READ_MAX).read_to_end(&mut buf)) {
                o.bytes += n as u64;
            }
        }
    }
}

fn writes(o: &mut Outcome, layer: &Path) {
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    let created = layer.join("created");
    if let Some(mut f) = o.check("create", File::create(&created)) {
        o.check("write", f.write_all(&data));
    }
    let moved = layer.join("moved");
    o.check("rename", fs::rename(&created, &moved));
    o.check("unlink", fs::remove_file(&moved));
    let dir = layer.join("newdir");
    o.check("mkdir", fs::create_dir(&dir));
    o.check(
        "setxattr",
        rustix::fs::lsetxattr(&dir, "user.corrupt", b"1", rustix::fs::XattrFlags::empty())
            .map_err(io::Error::from),
    );
    // Blocks of data/big are shared with the frozen layer: this write copies them.
    let cow = OpenOptions::new().write(true).open(layer.join("data/big"));
    if let Some(mut f) = o.check("cow-open", cow) {
        let r = f
            .seek(SeekFrom::Start(12288))
            .and_then(|_| f.write_all(&data));
        o.check("cow-write", r);
    }
    let trunc = OpenOptions::new()
        .write(true)
        .open(layer.join("etc/file000"));
    if let Some(f) = o.check("truncate-open", trunc) {
        o.check("truncate", f.set_len(100));
    }
    o.check("unlink-old", fs::remove_file(layer.join("etc/file001")));
}
