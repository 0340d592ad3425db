//! The command line of `lcfs`, apart so that its man pages and completions are generated from it
//! (`lcfs-gen`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Manage LCFS (Layer Cloning Filesystem) filesystems.
#[derive(Debug, Parser)]
// The about text is the doc comment, not a bare `about` (Cargo.toml's description of the crate
// compiling this file, which for lcfs-gen is its own).
#[command(name = "lcfs", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show information about the mounted LCFS filesystem holding PATH (for an image file or an
    /// unmounted device, see `lcfs debug super`).
    Info {
        /// A regular file or directory on a mounted LCFS filesystem (its root, usually); not an
        /// image file or device.
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create, clone, snapshot, freeze, rename, remove and list the layers of a mounted
    /// filesystem.
    #[command(subcommand)]
    Layer(LayerCommand),
    /// Show the space of a mounted filesystem and of each layer.
    Df {
        /// A file or directory on the mounted LCFS filesystem.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect on-disk structures (offline, read-only).
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum DebugCommand {
    /// Print both superblock copies and which one is current.
    Super {
        /// Block device or image file.
        device: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set a feature field in both superblock copies, with their checksums (as debugfs's
    /// `set_super_value`): for testing how tools and the kernel treat features they do not know.
    /// Only on an unmounted filesystem.
    SetSuper {
        /// Block device or image file.
        device: PathBuf,
        /// The field: `compat` (features older code may ignore), `ro_compat` (features a
        /// writer must know: the kernel then mounts only read-only) or `incompat` (features a
        /// reader must know: 0x1 is inode flags; an unknown bit makes the filesystem
        /// unmountable and unreadable to these tools too).
        #[arg(value_parser = ["compat", "ro_compat", "incompat"])]
        field: String,
        /// The new value: decimal, or hexadecimal with 0x.
        #[arg(value_parser = parse_u64)]
        value: u64,
    },
    /// List the paths a layer adds, modifies or deletes relative to its parent (A/M/D).
    Diff {
        /// Block device or image file.
        device: PathBuf,
        /// Layer name, or id (a name is looked up first).
        layer: String,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "null")]
        json: bool,
        /// Print "A PATH" records ending in NUL instead of a newline, for scripts.
        #[arg(short = '0', long = "null")]
        null: bool,
    },
    /// Print every structure: superblock, reference-count map, layers and tree nodes.
    ///
    /// A node that cannot be read is shown as UNREADABLE, with the reason and the part of its
    /// tree or of the map it covers, and the rest is still shown; the exit status is then 1.
    /// Times (a layer's creation, an inode's mtime) are shown in UTC to the nanosecond, as
    /// `2026-12-06 17:52:04.123456789 UTC`; JSON keeps them as seconds since the epoch
    /// (`1796579524.123456789`) and adds a layer's `create_time_utc`.
    Dump {
        /// Block device or image file.
        device: PathBuf,
        /// Only this layer's tree: its name, or its id (a name is looked up first).
        #[arg(long)]
        layer: Option<String>,
        /// Decode every item of every leaf.
        #[arg(long)]
        items: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Where the filesystem is: any file or directory on it.
#[derive(Debug, Args)]
pub(crate) struct MountArg {
    /// A file or directory on the mounted LCFS filesystem (its root, usually).
    #[arg(short = 'm', long = "mount", value_name = "PATH", default_value = ".")]
    pub(crate) mount: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LayerCommand {
    /// Create an empty read-write layer.
    Create {
        /// The new layer's name.
        name: String,
        #[command(flatten)]
        at: MountArg,
    },
    /// Clone a frozen layer into a new child layer (O(1); read-write unless --readonly).
    Clone {
        /// The frozen layer to clone.
        source: String,
        /// The new layer's name.
        name: String,
        /// Make the clone frozen (read-only) from the start.
        #[arg(long)]
        readonly: bool,
        #[command(flatten)]
        at: MountArg,
    },
    /// Copy a layer as it is now into a new frozen layer; the source stays writable.
    Snapshot {
        /// The layer to copy.
        source: String,
        /// The new layer's name.
        name: String,
        #[command(flatten)]
        at: MountArg,
    },
    /// Make a read-write layer read-only for good (fails while a file of it is open for writing).
    Freeze {
        /// The layer.
        name: String,
        #[command(flatten)]
        at: MountArg,
    },
    /// Give a layer a new name.
    Rename {
        /// The layer.
        name: String,
        /// Its new name.
        new_name: String,
        #[command(flatten)]
        at: MountArg,
    },
    /// Remove layers (refused while a layer has children or is in use). Their space comes back
    /// in the background.
    Remove {
        /// The layers, removed in order; the first failure stops.
        #[arg(required = true)]
        names: Vec<String>,
        /// Wait until the space of every removed layer is free again.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        at: MountArg,
    },
    /// List every layer with its figures.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Sizes in bytes, not human-readable.
        #[arg(long)]
        bytes: bool,
        #[command(flatten)]
        at: MountArg,
    },
    /// List the paths a layer added (A), modified (M) and deleted (D) against its parent or an
    /// ancestor.
    Diff {
        /// The layer.
        name: String,
        /// Compare with this ancestor instead of the parent.
        #[arg(long)]
        base: Option<String>,
        /// Print JSON instead of text.
        #[arg(long, conflicts_with = "null")]
        json: bool,
        /// Print "A PATH" records ending in NUL instead of a newline, for scripts.
        #[arg(short = '0', long = "null")]
        null: bool,
        #[command(flatten)]
        at: MountArg,
    },
    /// Show one layer: NAME, or the layer holding the --mount path.
    Show {
        /// The layer (default: the one the --mount path is in).
        name: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: MountArg,
    },
}

/// A decimal or `0x` hexadecimal number.
fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("invalid number '{s}' (decimal, or hexadecimal with 0x)"))
}
