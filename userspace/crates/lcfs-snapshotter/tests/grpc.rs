//! The daemon's gRPC service through a real tonic client on a unix socket.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_snapshots::api::snapshots::v1::snapshots_client::SnapshotsClient;
use containerd_snapshots::api::snapshots::v1::{
    CommitSnapshotRequest, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UsageRequest, ViewSnapshotRequest,
};
use containerd_snapshots::tonic::transport::{Endpoint, Uri};
use containerd_snapshots::tonic::Code;
use lcfs_snapshotter::layers::{Fake, LayerStore};
use lcfs_snapshotter::{serve, LcfsSnapshotter};
use tokio::net::{UnixListener, UnixStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mnt");
    std::fs::create_dir(&root).unwrap();
    let store = Arc::new(Fake::new(&root));
    let (snapshotter, _) = LcfsSnapshotter::open(store.clone()).unwrap();
    let socket = dir.path().join("snap.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(snapshotter, listener, async {
        let _ = stopped.await;
    }));

    let path = socket.clone();
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            UnixStream::connect(path.clone())
        }))
        .await
        .unwrap();
    let mut client = SnapshotsClient::new(channel);
    let sn = || "lcfs".to_string();

    let mounts = client
        .prepare(PrepareSnapshotRequest {
            snapshotter: sn(),
            key: "default/1/extract".into(),
            parent: String::new(),
            labels: HashMap::from([("a".into(), "b".into())]),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].r#type, "bind");
    assert_eq!(
        mounts[0].source,
        root.join("default%2F1%2Fextract").to_str().unwrap()
    );
    assert_eq!(mounts[0].options, ["rbind", "rw"]);
    let again = client
        .mounts(MountsRequest {
            snapshotter: sn(),
            key: "default/1/extract".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(again, mounts);

    client
        .commit(CommitSnapshotRequest {
            snapshotter: sn(),
            name: "default/2/sha256:ab".into(),
            key: "default/1/extract".into(),
            labels: HashMap::new(),
        })
        .await
        .unwrap();
    let info = client
        .stat(StatSnapshotRequest {
            snapshotter: sn(),
            key: "default/2/sha256:ab".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.kind, 3); // KIND_COMMITTED
    assert!(
        store
            .info_by_name("default%2F2%2Fsha256:ab")
            .unwrap()
            .read_only
    );

    let view = client
        .view(ViewSnapshotRequest {
            snapshotter: sn(),
            key: "v".into(),
            parent: "default/2/sha256:ab".into(),
            labels: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(view[0].options, ["rbind", "ro"]);

    store.set_usage("default%2F2%2Fsha256:ab", 7, 4096);
    let usage = client
        .usage(UsageRequest {
            snapshotter: sn(),
            key: "default/2/sha256:ab".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((usage.size, usage.inodes), (4096, 7));

    let mut stream = client
        .list(ListSnapshotsRequest {
            snapshotter: sn(),
            filters: vec!["kind==view".into(), "name==default/2/sha256:ab".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut names = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        names.extend(msg.info.into_iter().map(|i| i.name));
    }
    assert_eq!(names, ["default/2/sha256:ab", "v"]);

    // Errors arrive as the status codes containerd maps back to its errdefs.
    let err = client
        .stat(StatSnapshotRequest {
            snapshotter: sn(),
            key: "default/1/extract".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .remove(RemoveSnapshotRequest {
            snapshotter: sn(),
            key: "default/2/sha256:ab".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = client
        .list(ListSnapshotsRequest {
            snapshotter: sn(),
            filters: vec!["name==".into()],
        })
        .await;
    // The stream reports the error either at once or as its first message.
    let code = match err {
        Err(e) => e.code(),
        Ok(resp) => resp.into_inner().message().await.unwrap_err().code(),
    };
    assert_eq!(code, Code::InvalidArgument);
    let err = client
        .prepare(PrepareSnapshotRequest {
            snapshotter: sn(),
            key: "v".into(),
            parent: String::new(),
            labels: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    client
        .remove(RemoveSnapshotRequest {
            snapshotter: sn(),
            key: "v".into(),
        })
        .await
        .unwrap();
    assert!(store.info_by_name("v").is_err());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
