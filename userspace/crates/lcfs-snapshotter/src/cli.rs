//! The command line of `containerd-lcfs-grpc`, apart so that its man page is generated from it
//! (`lcfs-gen`).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Default state directory.
pub const DEFAULT_ROOT: &str = "/var/lib/containerd-lcfs";
/// Default socket.
pub const DEFAULT_ADDRESS: &str = "/run/containerd-lcfs/containerd-lcfs-grpc.sock";

/// containerd snapshotter on LCFS layers, served as a proxy plugin.
///
/// Serves containerd's snapshots gRPC service on a unix socket. Each snapshot is an LCFS layer of
/// one filesystem the daemon mounts (--device) or is given (--mounted); containers get bind
/// mounts of the layers' directories. Options may also come from a TOML file (--config) whose
/// keys are the long option names with '_' for '-' (root, address, device, size, format,
/// mountpoint, mounted, log_format, log_level); options on the command line win.
#[derive(Debug, Default, Parser)]
// The about text is the doc comment, not a bare `about` (Cargo.toml's description of the crate
// compiling this file, which for lcfs-gen is its own).
#[command(name = "containerd-lcfs-grpc", version)]
pub struct Args {
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// State directory [default: /var/lib/containerd-lcfs].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Unix socket to serve on [default: /run/containerd-lcfs/containerd-lcfs-grpc.sock].
    #[arg(short, long, value_name = "SOCKET")]
    pub address: Option<PathBuf>,

    /// Block device or image file holding the LCFS filesystem to mount (a regular file goes
    /// through a loop device).
    #[arg(short, long, value_name = "DEVICE", conflicts_with = "mounted")]
    pub device: Option<PathBuf>,

    /// Make the image file with mkfs.lcfs if it does not hold LCFS yet, at this size (K, M, G,
    /// T suffixes, as mkfs.lcfs -s); implies --format.
    #[arg(short, long, value_name = "SIZE")]
    pub size: Option<String>,

    /// Run mkfs.lcfs on --device if it does not hold LCFS yet (never over another signature).
    #[arg(long)]
    pub format: bool,

    /// Where to mount --device [default: ROOT/mnt].
    #[arg(short, long, value_name = "DIR")]
    pub mountpoint: Option<PathBuf>,

    /// Use the LCFS filesystem already mounted at DIR instead of mounting one.
    #[arg(long, value_name = "DIR")]
    pub mounted: Option<PathBuf>,

    /// Log format [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log level or tracing filter (error, warn, info, debug, trace, or directives such as
    /// lcfs_snapshotter=debug) [default: info; the RUST_LOG variable overrides it].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// How log records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per record.
    Json,
}
