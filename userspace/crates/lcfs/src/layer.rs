//! `lcfs layer ...` and `lcfs df`: layers of a mounted filesystem, through the layer ioctls.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;

use crate::cli::{LayerCommand, MountArg};

use anyhow::{anyhow, Result};
use lcfs_image::outln;
use lcfs_uapi::{LayerInfo, NewLayer, Which};
use serde::Serialize;

/// A failed layer operation: what was asked, of what, and the kernel's answer.
fn failed(what: &str, object: &str, path: &Path, err: &io::Error) -> anyhow::Error {
    if lcfs_uapi::is_not_lcfs(err) {
        return anyhow!("{} is not on an LCFS filesystem", path.display());
    }
    let text = errno_text(err);
    let hint = if err.kind() == io::ErrorKind::PermissionDenied {
        " (needs CAP_SYS_ADMIN)"
    } else {
        ""
    };
    anyhow!("{what}: {object}: {text}{hint}")
}

/// The error's text without Rust's " (os error N)" suffix.
fn errno_text(err: &io::Error) -> String {
    lcfs_image::os_text(err)
}

fn open(at: &MountArg) -> Result<File> {
    File::open(&at.mount)
        .map_err(|e| anyhow!("cannot open {}: {}", at.mount.display(), errno_text(&e)))
}

/// The layer named `name`.
fn find(fd: &File, what: &str, name: &str, at: &MountArg) -> Result<LayerInfo> {
    lcfs_uapi::layer_info(fd, Which::Name(name)).map_err(|e| failed(what, name, &at.mount, &e))
}

/// Runs a `lcfs layer` command.
pub(crate) fn run(cmd: &LayerCommand) -> Result<()> {
    match cmd {
        LayerCommand::Create { name, at } => {
            let fd = open(at)?;
            lcfs_uapi::layer_create(&fd, NewLayer::Empty, name)
                .map_err(|e| failed("layer create", name, &at.mount, &e))?;
        }
        LayerCommand::Clone {
            source,
            name,
            readonly,
            at,
        } => {
            let fd = open(at)?;
            let parent = find(&fd, "layer clone", source, at)?.id;
            let how = NewLayer::Clone {
                parent,
                read_only: *readonly,
            };
            lcfs_uapi::layer_create(&fd, how, name).map_err(|e| {
                failed("layer clone", &format!("{source} -> {name}"), &at.mount, &e)
            })?;
        }
        LayerCommand::Snapshot { source, name, at } => {
            let fd = open(at)?;
            let id = find(&fd, "layer snapshot", source, at)?.id;
            lcfs_uapi::layer_create(&fd, NewLayer::Snapshot { source: id }, name).map_err(|e| {
                failed(
                    "layer snapshot",
                    &format!("{source} -> {name}"),
                    &at.mount,
                    &e,
                )
            })?;
        }
        LayerCommand::Freeze { name, at } => {
            let fd = open(at)?;
            let id = find(&fd, "layer freeze", name, at)?.id;
            lcfs_uapi::layer_freeze(&fd, id)
                .map_err(|e| failed("layer freeze", name, &at.mount, &e))?;
        }
        LayerCommand::Rename { name, new_name, at } => {
            let fd = open(at)?;
            let id = find(&fd, "layer rename", name, at)?.id;
            lcfs_uapi::layer_rename(&fd, id, new_name).map_err(|e| {
                failed(
                    "layer rename",
                    &format!("{name} -> {new_name}"),
                    &at.mount,
                    &e,
                )
            })?;
        }
        LayerCommand::Remove { names, wait, at } => {
            let fd = open(at)?;
            for name in names {
                let id = find(&fd, "layer remove", name, at)?.id;
                lcfs_uapi::layer_remove(&fd, id)
                    .map_err(|e| failed("layer remove", name, &at.mount, &e))?;
            }
            if *wait {
                wait_for_reclaim(&fd, &at.mount)?;
            }
        }
        LayerCommand::List { json, bytes, at } => {
            let fd = open(at)?;
            let layers = lcfs_uapi::layer_list(&fd)
                .map_err(|e| failed("layer list", "layers", &at.mount, &e))?;
            let rows = rows(&layers);
            if *json {
                outln!("{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                for line in table(&rows, *bytes) {
                    outln!("{line}")?;
                }
            }
        }
        LayerCommand::Diff {
            name,
            base,
            json,
            null,
            at,
        } => {
            let fd = open(at)?;
            let id = find(&fd, "layer diff", name, at)?.id;
            let base = match base {
                Some(b) => Some(find(&fd, "layer diff", b, at)?.id),
                None => None,
            };
            print_diff(&fd, id, base, *json, *null).map_err(|e| {
                match e.downcast::<io::Error>() {
                    Ok(io) if !lcfs_image::output::is_broken_pipe(&io) => {
                        failed("layer diff", name, &at.mount, &io)
                    }
                    Ok(io) => io.into(),
                    Err(e) => e,
                }
            })?;
        }
        LayerCommand::Show { name, json, at } => {
            let fd = open(at)?;
            let l = match name {
                Some(n) => find(&fd, "layer show", n, at)?,
                None => lcfs_uapi::layer_info(&fd, Which::Own).map_err(|e| {
                    failed("layer show", &at.mount.display().to_string(), &at.mount, &e)
                })?,
            };
            // The parent's name, when the caller may see it.
            let parent = (l.parent != 0)
                .then(|| lcfs_uapi::layer_info(&fd, Which::Id(l.parent)).ok())
                .flatten()
                .map(|p| p.name_string());
            let row = Row::new(&l, parent);
            if *json {
                outln!("{}", serde_json::to_string_pretty(&row)?)?;
            } else {
                for (k, v) in show(&row) {
                    outln!("{k:<10} {v}")?;
                }
            }
        }
    }
    Ok(())
}

/// One change as `lcfs layer diff --json` prints it.
#[derive(Serialize)]
struct DiffRow {
    change: char,
    #[serde(rename = "type")]
    file_type: &'static str,
    path: String,
}

/// The name of a `DT_*` type.
fn type_name(dtype: u8) -> &'static str {
    match dtype {
        1 => "fifo",
        2 => "char",
        4 => "dir",
        6 => "block",
        8 => "file",
        10 => "symlink",
        12 => "socket",
        _ => "unknown",
    }
}

/// Prints the diff as it comes from the kernel, batch by batch.
fn print_diff(fd: &File, id: u64, base: Option<u64>, json: bool, null: bool) -> Result<()> {
    use std::io::Write;
    let mut out = io::stdout().lock();
    let mut werr = None;
    let mut first = true;
    if json {
        write!(out, "[")?;
    }
    lcfs_uapi::layer_diff(fd, id, base, &mut |d| {
        let tag = match d.change {
            lcfs_uapi::Change::Added => 'A',
            lcfs_uapi::Change::Modified => 'M',
            lcfs_uapi::Change::Deleted => 'D',
        };
        let path = String::from_utf8_lossy(&d.path);
        let r = if json {
            let sep = if first { "\n  " } else { ",\n  " };
            let row = DiffRow {
                change: tag,
                file_type: type_name(d.dtype),
                path: path.into_owned(),
            };
            serde_json::to_string(&row)
                .map_err(io::Error::other)
                .and_then(|j| write!(out, "{sep}{j}"))
        } else if null {
            write!(out, "{tag} {path}\0")
        } else {
            writeln!(out, "{tag} {path}")
        };
        first = false;
        werr = r.err();
        werr.is_none()
    })?;
    if let Some(e) = werr {
        return Err(e.into());
    }
    if json {
        writeln!(out, "{}]", if first { "" } else { "\n" })?;
    }
    Ok(())
}

/// A layer as printed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Row {
    id: u64,
    name: String,
    /// The parent's id, 0 for none.
    parent: u64,
    parent_name: Option<String>,
    read_only: bool,
    children: u32,
    inodes: u64,
    bytes: u64,
    /// `None` when the kernel does not report it.
    own_bytes: Option<u64>,
    /// Creation time, seconds since the epoch.
    created: i64,
    created_nsec: u32,
}

impl Row {
    fn new(l: &LayerInfo, parent_name: Option<String>) -> Self {
        Self {
            id: l.id,
            name: l.name_string(),
            parent: l.parent,
            parent_name,
            read_only: l.is_read_only(),
            children: l.children,
            inodes: l.inodes,
            bytes: l.bytes,
            own_bytes: l.own_bytes(),
            created: l.create_sec,
            created_nsec: l.create_nsec,
        }
    }
}

/// Rows of `layers`, parents named.
fn rows(layers: &[LayerInfo]) -> Vec<Row> {
    let names: HashMap<u64, String> = layers.iter().map(|l| (l.id, l.name_string())).collect();
    layers
        .iter()
        .map(|l| Row::new(l, names.get(&l.parent).cloned()))
        .collect()
}

/// A size as `df -h` prints it: powers of 1024, one decimal below 10.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    #[allow(clippy::cast_precision_loss)] // Display only.
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

fn size(bytes: u64, raw: bool) -> String {
    if raw {
        bytes.to_string()
    } else {
        human(bytes)
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of `secs` since the epoch.
pub(crate) fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The `lcfs layer list` table, header first, columns aligned.
pub(crate) fn table(rows: &[Row], raw: bool) -> Vec<String> {
    let mut cells = vec![[
        "ID", "NAME", "PARENT", "STATE", "CHILDREN", "INODES", "SIZE", "OWN", "CREATED",
    ]
    .map(String::from)];
    for r in rows {
        cells.push([
            r.id.to_string(),
            r.name.clone(),
            r.parent_name.clone().unwrap_or_else(|| "-".into()),
            if r.read_only { "ro" } else { "rw" }.into(),
            r.children.to_string(),
            r.inodes.to_string(),
            size(r.bytes, raw),
            r.own_bytes.map_or_else(|| "-".into(), |b| size(b, raw)),
            utc(r.created),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    cells
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, (c, w)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                // Numbers right-aligned, text left-aligned; the last column unpadded.
                let numeric = matches!(i, 0 | 4 | 5 | 6 | 7);
                if i == row.len() - 1 {
                    line.push_str(c);
                } else if numeric {
                    line.push_str(&format!("{c:>w$}"));
                } else {
                    line.push_str(&format!("{c:<w$}"));
                }
            }
            line
        })
        .collect()
}

/// The `lcfs layer show` lines.
fn show(r: &Row) -> Vec<(&'static str, String)> {
    vec![
        ("id", r.id.to_string()),
        ("name", r.name.clone()),
        (
            "parent",
            match (&r.parent_name, r.parent) {
                (_, 0) => "-".into(),
                (Some(n), id) => format!("{n} ({id})"),
                (None, id) => id.to_string(),
            },
        ),
        ("state", if r.read_only { "ro" } else { "rw" }.into()),
        ("children", r.children.to_string()),
        ("inodes", r.inodes.to_string()),
        ("size", format!("{} ({} bytes)", human(r.bytes), r.bytes)),
        (
            "own",
            r.own_bytes.map_or_else(
                || "- (not reported)".into(),
                |b| format!("{} ({b} bytes)", human(b)),
            ),
        ),
        ("created", format!("{} UTC", utc(r.created))),
    ]
}

/// `lcfs df` output.
#[derive(Debug, Serialize)]
struct DfReport {
    block_size: u32,
    total_bytes: u64,
    used_bytes: u64,
    free_bytes: u64,
    /// Tree nodes of removed layers whose space is not free yet.
    reclaim_queued: u64,
    layers: Vec<Row>,
}

/// Waits until the filesystem has reclaimed the space of every removed layer (its background
/// work commits each chunk, so the space shows in `statfs` once the queue is empty).
fn wait_for_reclaim(fd: &File, mount: &Path) -> Result<()> {
    loop {
        let fs =
            lcfs_uapi::fs_info(fd).map_err(|e| failed("layer remove", "reclaim", mount, &e))?;
        if fs.reclaim_queued == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `lcfs df PATH`: the filesystem's space, then each layer's.
pub(crate) fn df(path: &Path, json: bool) -> Result<()> {
    let fd = File::open(path)
        .map_err(|e| anyhow!("cannot open {}: {}", path.display(), errno_text(&e)))?;
    let fs = lcfs_uapi::fs_info(&fd).map_err(|e| failed("df", "filesystem", path, &e))?;
    let layers = lcfs_uapi::layer_list(&fd).map_err(|e| failed("df", "layers", path, &e))?;
    let bs = u64::from(fs.block_size);
    let report = DfReport {
        block_size: fs.block_size,
        total_bytes: fs.total_blocks.saturating_mul(bs),
        used_bytes: fs
            .total_blocks
            .saturating_sub(fs.free_blocks)
            .saturating_mul(bs),
        free_bytes: fs.free_blocks.saturating_mul(bs),
        reclaim_queued: fs.reclaim_queued,
        layers: rows(&layers),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    outln!("{:<10}  {:>8}  {:>8}  {:>8}", "", "SIZE", "USED", "FREE")?;
    outln!(
        "{:<10}  {:>8}  {:>8}  {:>8}",
        "filesystem",
        human(report.total_bytes),
        human(report.used_bytes),
        human(report.free_bytes)
    )?;
    if report.reclaim_queued > 0 {
        outln!(
            "reclaiming removed layers: {} queued",
            lcfs_image::output::count(report.reclaim_queued, "tree node")
        )?;
    }
    outln!()?;
    for line in table(&report.layers, false) {
        outln!("{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, name: &str, parent: Option<&str>, own: Option<u64>) -> Row {
        Row {
            id,
            name: name.into(),
            parent: u64::from(parent.is_some()),
            parent_name: parent.map(Into::into),
            read_only: parent.is_none(),
            children: 0,
            inodes: 12,
            bytes: 5 << 20,
            own_bytes: own,
            created: 1_764_892_800,
            created_nsec: 0,
        }
    }

    #[test]
    fn human_sizes_follow_df() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(1024), "1.0K");
        assert_eq!(human(1536), "1.5K");
        assert_eq!(human(10 * 1024), "10K");
        assert_eq!(human(5 << 20), "5.0M");
        assert_eq!(human(3 << 30), "3.0G");
        assert_eq!(human(u64::MAX), "16E");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_764_892_800), "2025-12-05 00:00:00");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
    }

    #[test]
    fn table_aligns_and_marks_missing_figures() {
        let lines = table(
            &[
                row(1, "base", None, None),
                row(12, "container-a", Some("base"), Some(4096)),
            ],
            false,
        );
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("ID  NAME         PARENT  STATE"),
            "{}",
            lines[0]
        );
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&cols[..8], ["1", "base", "-", "ro", "0", "12", "5.0M", "-"]);
        let cols: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            &cols[..8],
            ["12", "container-a", "base", "rw", "0", "12", "5.0M", "4.0K"]
        );
        // Every line has its columns at the same places.
        let at = |l: &str| {
            l.find("STATE")
                .or_else(|| l.find(" ro ").or(l.find(" rw ")).map(|i| i + 1))
        };
        assert_eq!(at(&lines[0]), at(&lines[1]));
        assert_eq!(at(&lines[1]), at(&lines[2]));
        let raw = table(&[row(1, "base", None, None)], true);
        assert!(raw[1].contains(" 5242880 "), "{}", raw[1]);
    }

    #[test]
    fn json_rows_name_every_field() {
        let v = serde_json::to_value(row(12, "c", Some("base"), None)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "name",
                "parent",
                "parent_name",
                "read_only",
                "children",
                "inodes",
                "bytes",
                "own_bytes",
                "created",
                "created_nsec"
            ]
        );
        assert!(v["own_bytes"].is_null());
    }
}
