//! `containerd-lcfs-grpc`: see the crate's library and `Documentation/containerd.md`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use lcfs_snapshotter::cli::{Args, LogFormat};
use lcfs_snapshotter::config::{self, Settings};
use lcfs_snapshotter::layers::Lcfs;
use lcfs_snapshotter::{mount, serve, LcfsSnapshotter};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

fn init_logging(s: &Settings) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(&s.log_level),
    }
    .context("bad log level")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match s.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// Binds the socket, replacing a stale one (nothing answers on it).
async fn bind(address: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = address.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if address.exists() {
        if tokio::net::UnixStream::connect(address).await.is_ok() {
            anyhow::bail!("{} is in use by another server", address.display());
        }
        std::fs::remove_file(address)
            .with_context(|| format!("cannot remove {}", address.display()))?;
    }
    UnixListener::bind(address).with_context(|| format!("cannot listen on {}", address.display()))
}

async fn run(s: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&s.root)
        .with_context(|| format!("cannot create {}", s.root.display()))?;
    let source = s.source.clone();
    let root = tokio::task::spawn_blocking(move || mount::prepare(&source)).await??;
    let store =
        Arc::new(Lcfs::open(&root).with_context(|| format!("cannot open {}", root.display()))?);
    let (snapshotter, recovery) =
        tokio::task::spawn_blocking(move || LcfsSnapshotter::open(store)).await??;
    info!(
        commits_finished = recovery.commits_finished,
        commits_rolled_back = recovery.commits_rolled_back,
        records_dropped = recovery.records_dropped,
        orphans_removed = recovery.orphans_removed,
        "metadata recovered"
    );
    let listener = bind(&s.address).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
        }
    };
    info!(address = %s.address.display(), root = %root.display(), "serving");
    let served = serve(snapshotter, listener, shutdown).await;
    let _ = std::fs::remove_file(&s.address);
    served.context("gRPC server")
}

fn main() -> ExitCode {
    let settings = match config::resolve(Args::parse()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("containerd-lcfs-grpc: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&settings) {
        eprintln!("containerd-lcfs-grpc: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("containerd-lcfs-grpc: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
