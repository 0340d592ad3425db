//! `containerd-lcfs-grpc`: a containerd snapshotter on LCFS layers, served as a proxy plugin
//! (containerd's `containerd.services.snapshots.v1.Snapshots` gRPC service on a unix socket).
//!
//! See `Documentation/containerd.md` for the mapping of snapshots to layers, the metadata
//! design and its crash behaviour.

use std::future::Future;
use std::sync::Arc;

use containerd_snapshots::tonic::transport::Server;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

pub mod cli;
pub mod config;
pub mod error;
pub mod filter;
pub mod layers;
pub mod meta;
pub mod mount;
pub mod names;
pub mod snapshotter;

pub use error::{Error, Result};
pub use snapshotter::LcfsSnapshotter;

/// Serves `snapshotter` on `listener` until `shutdown` completes.
pub async fn serve<S: layers::LayerStore>(
    snapshotter: LcfsSnapshotter<S>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), containerd_snapshots::tonic::transport::Error> {
    Server::builder()
        .add_service(containerd_snapshots::server(Arc::new(snapshotter)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
