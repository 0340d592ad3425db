//! `lcfs`: the LCFS command-line tool.
//!
//! Online commands talk to a mounted filesystem through the ioctls of
//! `include/uapi/linux/lcfs.h` (`info`, `layer`, `df`); `debug` commands read a device offline.

mod cli;
mod dump;
mod layer;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command, DebugCommand};
use lcfs_format::superblock::{Superblock, VERSION};
use lcfs_format::BLOCK_SIZE;
use lcfs_image::output::is_broken_pipe;
use lcfs_image::{outln, Access, Device};
use serde::Serialize;

/// One superblock copy as printed.
#[derive(Debug, Serialize)]
struct CopyReport {
    slot: u64,
    current: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    superblock: Option<SuperReport>,
}

#[derive(Debug, Serialize)]
struct SuperReport {
    version: u32,
    block_size: u32,
    uuid: String,
    label: String,
    generation: u64,
    total_blocks: u64,
    free_blocks: u64,
    create_time: u64,
    commit_time: u64,
    root_mode: String,
    root_uid: u32,
    root_gid: u32,
    incompat: u64,
    ro_compat: u64,
    compat: u64,
    map_root: u64,
    map_level: u8,
    layer_root: u64,
    layer_count: u64,
    next_layer_id: u64,
    next_data_id: u64,
    reserve_blocks: u64,
}

impl From<&Superblock> for SuperReport {
    fn from(sb: &Superblock) -> Self {
        Self {
            version: VERSION,
            block_size: BLOCK_SIZE,
            uuid: uuid::Uuid::from_bytes(sb.uuid).to_string(),
            label: sb.label().unwrap_or("<invalid utf-8>").to_owned(),
            generation: sb.generation,
            total_blocks: sb.total_blocks,
            free_blocks: sb.free_blocks,
            create_time: sb.create_time,
            commit_time: sb.commit_time,
            root_mode: format!("{:o}", sb.root_mode),
            root_uid: sb.root_uid,
            root_gid: sb.root_gid,
            incompat: sb.incompat,
            ro_compat: sb.ro_compat,
            compat: sb.compat,
            map_root: sb.map_root,
            map_level: sb.map_level,
            layer_root: sb.layer_root,
            layer_count: sb.layer_count,
            next_layer_id: sb.next_layer_id,
            next_data_id: sb.next_data_id,
            reserve_blocks: sb.reserve_blocks,
        }
    }
}

fn debug_super(device: &Path, json: bool) -> Result<bool> {
    let mut dev = Device::open(device, Access::ReadOnly)?;
    let current = dev.read_superblock().ok().map(|sel| sel.sb.slot());
    let mut reports = Vec::new();
    for slot in 0..lcfs_format::superblock::SUPERBLOCK_COPIES {
        let copy = dev.read_superblock_copy(slot)?;
        reports.push(CopyReport {
            slot,
            current: current == Some(slot),
            error: copy.as_ref().err().map(ToString::to_string),
            superblock: copy.as_ref().ok().map(SuperReport::from),
        });
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&reports)?)?;
    } else {
        for r in &reports {
            outln!(
                "superblock copy {} (block {}){}",
                r.slot,
                r.slot,
                if r.current { " [current]" } else { "" }
            )?;
            if let Some(e) = &r.error {
                outln!("  invalid: {e}")?;
            }
            if let Some(s) = &r.superblock {
                let value = serde_json::to_value(s)?;
                if let Some(map) = value.as_object() {
                    for (k, v) in map {
                        outln!("  {k:<13} {}", v.to_string().trim_matches('"'))?;
                    }
                }
            }
        }
    }
    Ok(current.is_some())
}

/// `lcfs info` output.
#[derive(Debug, Serialize)]
struct InfoReport {
    format_version: u32,
    block_size: u32,
    generation: u64,
    total_blocks: u64,
    free_blocks: u64,
    uuid: String,
    label: String,
    /// Metadata blocks the mount's node cache holds in memory (4 KiB each).
    cached_nodes: u64,
}

/// Why `lcfs info` failed on `path`. It asks a mounted filesystem; an image file or a device is
/// read by `lcfs debug super`, which the error names for those.
fn info_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    let shown = path.display();
    let meta = std::fs::metadata(path).ok();
    let what = if meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device())
    {
        Some("a block device")
    } else if meta.as_ref().is_some_and(std::fs::Metadata::is_file)
        && Device::open(path, Access::ReadOnly)
            .and_then(|mut d| lcfs_image::probe::signatures(&mut d))
            .is_ok_and(|s| s.contains(&"lcfs"))
    {
        Some("an LCFS image file")
    } else {
        None
    };
    match what {
        Some(what) => anyhow::anyhow!(
            "{shown} is {what}, not a path on a mounted LCFS filesystem (`lcfs info` asks a \
             mount); `lcfs debug super {shown}` reads it offline"
        ),
        None if lcfs_uapi::is_not_lcfs(&e) => {
            anyhow::anyhow!("{shown} is not on an LCFS filesystem")
        }
        None => anyhow::Error::new(e).context("LCFS_IOC_FS_INFO failed"),
    }
}

fn info(path: &Path, json: bool) -> Result<bool> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let raw = lcfs_uapi::fs_info(&file).map_err(|e| info_error(path, e))?;
    let report = InfoReport {
        format_version: raw.format_version,
        block_size: raw.block_size,
        generation: raw.generation,
        total_blocks: raw.total_blocks,
        free_blocks: raw.free_blocks,
        uuid: uuid::Uuid::from_bytes(raw.uuid).to_string(),
        label: raw.label_string(),
        cached_nodes: raw.cached_nodes,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        let value = serde_json::to_value(&report)?;
        if let Some(map) = value.as_object() {
            for (k, v) in map {
                outln!("{k:<15} {}", v.to_string().trim_matches('"'))?;
            }
        }
    }
    Ok(true)
}

/// `lcfs debug set-super`: the field set in each valid superblock copy, rewritten with its
/// checksum; a damaged copy is left as it is.
fn debug_set_super(device: &Path, field: &str, value: u64) -> Result<bool> {
    let mut dev = Device::open(device, Access::ReadWrite)?;
    let mut written = 0;
    for slot in 0..lcfs_format::superblock::SUPERBLOCK_COPIES {
        let mut sb = match dev.read_superblock_copy(slot)? {
            Ok(sb) => sb,
            Err(e) => {
                eprintln!("lcfs: superblock copy {slot} left as it is: {e}");
                continue;
            }
        };
        match field {
            "compat" => sb.compat = value,
            "ro_compat" => sb.ro_compat = value,
            "incompat" => sb.incompat = value,
            _ => anyhow::bail!("unknown field '{field}' (compat, ro_compat or incompat)"),
        }
        dev.write_superblock(&sb)
            .with_context(|| format!("writing superblock copy {slot}"))?;
        written += 1;
    }
    dev.sync()?;
    if written > 0 {
        outln!("{field} = {value:#x} in {written} superblock copies")?;
    }
    Ok(written > 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Info { path, json } => info(path, *json),
        Command::Layer(cmd) => layer::run(cmd).map(|()| true),
        Command::Df { path, json } => layer::df(path, *json).map(|()| true),
        Command::Debug(DebugCommand::Super { device, json }) => debug_super(device, *json),
        Command::Debug(DebugCommand::SetSuper {
            device,
            field,
            value,
        }) => debug_set_super(device, field, *value),
        Command::Debug(DebugCommand::Diff {
            device,
            layer,
            json,
            null,
        }) => dump::diff(device, layer, dump::DiffFormat::new(*json, *null)),
        Command::Debug(DebugCommand::Dump {
            device,
            layer,
            items,
            json,
        }) => dump::dump(device, layer.as_deref(), *items, *json),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("lcfs: no valid superblock");
            ExitCode::from(1)
        }
        // A reader that stopped reading (`| head`) is no error.
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lcfs: {e:#}");
            ExitCode::from(1)
        }
    }
}
