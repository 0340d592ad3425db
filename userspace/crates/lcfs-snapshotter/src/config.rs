//! Settings: the command line over the optional TOML file over the defaults.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::ValueEnum;
use serde::Deserialize;

use crate::cli::{Args, LogFormat, DEFAULT_ADDRESS, DEFAULT_ROOT};

/// The TOML configuration file: the long options' names with `_`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    root: Option<PathBuf>,
    address: Option<PathBuf>,
    device: Option<PathBuf>,
    size: Option<String>,
    format: Option<bool>,
    mountpoint: Option<PathBuf>,
    mounted: Option<PathBuf>,
    log_format: Option<String>,
    log_level: Option<String>,
}

/// Where the filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Mount `device` at `mountpoint`, formatting it first if asked.
    Device {
        /// Block device or image file.
        device: PathBuf,
        /// Mount point.
        mountpoint: PathBuf,
        /// Run mkfs.lcfs if it holds no LCFS.
        format: bool,
        /// mkfs.lcfs's size for an image file.
        size: Option<String>,
    },
    /// An LCFS mount made by someone else.
    Mounted(PathBuf),
}

/// The daemon's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// State directory.
    pub root: PathBuf,
    /// Socket.
    pub address: PathBuf,
    /// The filesystem.
    pub source: Source,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
}

impl FileConfig {
    /// Reads `path`.
    pub fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }
}

/// The settings of `args`, reading its configuration file if it names one.
pub fn resolve(args: Args) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    merge(args, file)
}

/// The settings of `args` over `file` over the defaults.
pub fn merge(args: Args, file: FileConfig) -> anyhow::Result<Settings> {
    let root = args
        .root
        .or(file.root)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let address = args
        .address
        .or(file.address)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ADDRESS));
    // The command line's choice of source replaces the file's whole.
    let (device, mounted, size, format) = if args.device.is_some() || args.mounted.is_some() {
        (args.device, args.mounted, args.size, args.format)
    } else {
        (
            file.device,
            file.mounted,
            args.size.or(file.size),
            args.format || file.format.unwrap_or(false),
        )
    };
    let source = match (device, mounted) {
        (Some(_), Some(_)) => bail!("device and mounted exclude each other"),
        (None, Some(dir)) => {
            if size.is_some() || format {
                bail!("size and format need a device");
            }
            Source::Mounted(dir)
        }
        (Some(device), None) => Source::Device {
            device,
            mountpoint: args
                .mountpoint
                .or(file.mountpoint)
                .unwrap_or_else(|| root.join("mnt")),
            format: format || size.is_some(),
            size,
        },
        (None, None) => bail!("no filesystem: give --device or --mounted"),
    };
    let log_format = match (args.log_format, file.log_format) {
        (Some(f), _) => f,
        (None, Some(name)) => LogFormat::from_str(&name, true)
            .map_err(|_| anyhow::anyhow!("log_format {name:?}: use text or json"))?,
        (None, None) => LogFormat::Text,
    };
    let log_level = args
        .log_level
        .or(file.log_level)
        .unwrap_or_else(|| "info".into());
    Ok(Settings {
        root,
        address,
        source,
        log_format,
        log_level,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("containerd-lcfs-grpc").chain(argv.iter().copied()))
            .unwrap()
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_and_device() {
        let s = merge(args(&["--device", "/dev/vdb"]), FileConfig::default()).unwrap();
        assert_eq!(s.root, PathBuf::from(DEFAULT_ROOT));
        assert_eq!(s.address, PathBuf::from(DEFAULT_ADDRESS));
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.log_level, "info");
        assert_eq!(
            s.source,
            Source::Device {
                device: "/dev/vdb".into(),
                mountpoint: PathBuf::from(DEFAULT_ROOT).join("mnt"),
                format: false,
                size: None,
            }
        );
        let s = merge(
            args(&["--root", "/r", "-d", "/r/img", "--size", "10G"]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(
            s.source,
            Source::Device {
                device: "/r/img".into(),
                mountpoint: "/r/mnt".into(),
                format: true,
                size: Some("10G".into()),
            }
        );
    }

    #[test]
    fn command_line_wins_over_the_file() {
        let f = || {
            file(
                r#"
                root = "/f"
                address = "/f.sock"
                device = "/f.img"
                size = "1G"
                log_format = "json"
                log_level = "debug"
                "#,
            )
        };
        let s = merge(args(&[]), f()).unwrap();
        assert_eq!(s.root, PathBuf::from("/f"));
        assert_eq!(s.address, PathBuf::from("/f.sock"));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_level, "debug");
        assert!(matches!(s.source, Source::Device { format: true, .. }));
        let s = merge(
            args(&["--mounted", "/m", "--log-format", "text", "--address", "/a"]),
            f(),
        )
        .unwrap();
        assert_eq!(s.source, Source::Mounted("/m".into()));
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.address, PathBuf::from("/a"));
    }

    #[test]
    fn the_shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/config.toml");
        let s = merge(args(&[]), FileConfig::read(&path).unwrap()).unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        assert!(matches!(s.source, Source::Device { format: true, .. }));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(merge(args(&[]), FileConfig::default()).is_err());
        assert!(merge(args(&[]), file("mounted = \"/m\"\nformat = true")).is_err());
        assert!(merge(args(&[]), file("mounted = \"/m\"\ndevice = \"/d\"")).is_err());
        assert!(merge(args(&[]), file("mounted = \"/m\"\nlog_format = \"xml\"")).is_err());
        assert!(toml::from_str::<FileConfig>("unknown = 1").is_err());
        let both = Args::try_parse_from(["x", "--device", "/d", "--mounted", "/m"]);
        assert!(both.is_err());
        assert!(merge(args(&["--format"]), FileConfig::default()).is_err());
        assert!(merge(
            args(&["--mounted", "/m", "--size", "1G"]),
            FileConfig::default()
        )
        .is_err());
        // A size on the command line for the file's device.
        let s = merge(args(&["--size", "1G"]), file("device = \"/d\"")).unwrap();
        assert!(matches!(s.source, Source::Device { format: true, .. }));
    }
}
