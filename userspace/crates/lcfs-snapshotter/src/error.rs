//! Errors, and the gRPC status codes containerd expects for them.
//!
//! containerd's proxy turns status codes back into its `errdefs` errors (`errdefs.FromGRPC`):
//! `NotFound`, `AlreadyExists`, `FailedPrecondition` and `InvalidArgument` become
//! `ErrNotFound`, `ErrAlreadyExists`, `ErrFailedPrecondition` and `ErrInvalidArgument`, which its
//! callers test for (the unpacker treats `AlreadyExists` from Prepare and Commit as another
//! unpack of the same layer having won). Everything else is `Internal`.

use std::io;

use containerd_snapshots::tonic::Status;

/// A snapshotter error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No snapshot has the key.
    #[error("{0}: not found")]
    NotFound(String),
    /// A snapshot has the key already.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// The snapshot is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// A layer operation failed.
    #[error("layer {op} {layer}: {source}")]
    Layer {
        /// The operation.
        op: &'static str,
        /// The layer's name or id.
        layer: String,
        /// The error.
        source: io::Error,
    },
    /// The metadata database failed.
    #[error("metadata: {0}")]
    Meta(String),
    /// A simulated crash (tests): the operation stopped at this point.
    #[error("cut at {0}")]
    Cut(&'static str),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// A snapshotter result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A layer error with its context.
    pub fn layer(op: &'static str, layer: impl ToString, source: io::Error) -> Self {
        Error::Layer {
            op,
            layer: layer.to_string(),
            source,
        }
    }

    /// The errno of a layer error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Layer { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let msg = err.to_string();
        match err {
            Error::NotFound(_) => Status::not_found(msg),
            Error::AlreadyExists(_) => Status::already_exists(msg),
            Error::FailedPrecondition(_) => Status::failed_precondition(msg),
            Error::InvalidArgument(_) => Status::invalid_argument(msg),
            Error::Layer { .. } | Error::Meta(_) | Error::Cut(_) | Error::Internal(_) => {
                Status::internal(msg)
            }
        }
    }
}

macro_rules! meta_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Meta(e.to_string())
            }
        }
    )*};
}

meta_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);
