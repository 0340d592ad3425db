//! The snapshotter's gRPC semantics, errors and crash recovery, on the in-memory layer store.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use containerd_snapshots::tonic::{Code, Status};
use containerd_snapshots::{Info, Kind, Snapshotter};
use lcfs_snapshotter::layers::{Fake, LayerStore, NewLayer};
use lcfs_snapshotter::names::{self, META_LAYER};
use lcfs_snapshotter::snapshotter::{Recovery, META_FILE};
use lcfs_snapshotter::{Error, LcfsSnapshotter};
use rustix::io::Errno;
use tokio_stream::StreamExt;

struct Env {
    dir: tempfile::TempDir,
    store: Arc<Fake>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Fake::new(dir.path()));
        Env { dir, store }
    }

    /// Starts the snapshotter (again) on the same layers and database.
    fn open(&self) -> LcfsSnapshotter<Fake> {
        self.open_with_recovery().0
    }

    fn open_with_recovery(&self) -> (LcfsSnapshotter<Fake>, Recovery) {
        LcfsSnapshotter::open(self.store.clone()).unwrap()
    }

    fn layer(&self, name: &str) -> Option<lcfs_snapshotter::layers::Layer> {
        self.store.info_by_name(name).ok()
    }

    fn layer_names(&self) -> BTreeSet<String> {
        self.store
            .list()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect()
    }
}

fn code(e: Error) -> Code {
    Status::from(e).code()
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn list(s: &LcfsSnapshotter<Fake>, filters: &[&str]) -> Result<Vec<Info>, Error> {
    let filters = filters.iter().map(|f| f.to_string()).collect();
    let stream = s.list(String::new(), filters).await?;
    stream.collect::<Result<Vec<_>, _>>().await
}

async fn keys(s: &LcfsSnapshotter<Fake>) -> Vec<String> {
    list(s, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect()
}

/// Every snapshot listed has its layer, under the recorded name, with the right mode; every
/// layer of ours belongs to a snapshot.
async fn check_consistent(env: &Env, s: &LcfsSnapshotter<Fake>) {
    let infos = list(s, &[]).await.unwrap();
    let mut expected = BTreeSet::from([META_LAYER.to_string()]);
    for info in &infos {
        let name = names::layer_name(&info.name);
        let layer = env
            .layer(&name)
            .unwrap_or_else(|| panic!("{}: no layer {name}", info.name));
        assert_eq!(layer.read_only, info.kind != Kind::Active, "{}", info.name);
        assert!(env.dir.path().join(&name).is_dir());
        expected.insert(name);
    }
    assert_eq!(env.layer_names(), expected);
}

async fn prepare(s: &LcfsSnapshotter<Fake>, key: &str, parent: &str) -> Result<(), Error> {
    s.prepare(key.into(), parent.into(), HashMap::new())
        .await
        .map(|_| ())
}

async fn commit(s: &LcfsSnapshotter<Fake>, name: &str, key: &str) -> Result<(), Error> {
    s.commit(name.into(), key.into(), HashMap::new()).await
}

#[tokio::test]
async fn prepare_commit_view_and_their_mounts() {
    let env = Env::new();
    let s = env.open();
    assert!(env.dir.path().join(META_LAYER).join(META_FILE).is_file());
    let key = "default/1/extract-1 sha256:aa";
    let m = s
        .prepare(key.into(), String::new(), labels(&[("l", "1")]))
        .await
        .unwrap();
    let layer = names::layer_name(key);
    assert_eq!(layer, "default%2F1%2Fextract-1 sha256:aa");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].r#type, "bind");
    assert_eq!(m[0].source, env.dir.path().join(&layer).to_str().unwrap());
    assert_eq!(m[0].options, ["rbind", "rw"]);
    assert_eq!(s.mounts(key.into()).await.unwrap(), m);
    let info = s.stat(key.into()).await.unwrap();
    assert_eq!((info.kind, info.parent.as_str()), (Kind::Active, ""));
    assert_eq!(info.labels, labels(&[("l", "1")]));
    let id = env.layer(&layer).unwrap().id;

    s.commit(
        "default/2/sha256:aa".into(),
        key.into(),
        labels(&[("c", "2")]),
    )
    .await
    .unwrap();
    assert_eq!(code(s.stat(key.into()).await.unwrap_err()), Code::NotFound);
    let info = s.stat("default/2/sha256:aa".into()).await.unwrap();
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(info.labels, labels(&[("c", "2")]));
    // The same layer, frozen in place and renamed: nothing copied.
    let committed = env.layer("default%2F2%2Fsha256:aa").unwrap();
    assert_eq!(committed.id, id);
    assert!(committed.read_only);
    assert!(env.layer(&layer).is_none());

    // A child is a read-write clone; a view a read-only one.
    let m = s
        .prepare("child".into(), "default/2/sha256:aa".into(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(m[0].options, ["rbind", "rw"]);
    let child = env.layer("child").unwrap();
    assert_eq!((child.parent, child.read_only), (id, false));
    assert_eq!(
        s.stat("child".into()).await.unwrap().parent,
        "default/2/sha256:aa"
    );
    let m = s
        .view("view".into(), "default/2/sha256:aa".into(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(m[0].options, ["rbind", "ro"]);
    assert_eq!(m[0].source, env.dir.path().join("view").to_str().unwrap());
    let view = env.layer("view").unwrap();
    assert_eq!((view.parent, view.read_only), (id, true));
    assert_eq!(s.stat("view".into()).await.unwrap().kind, Kind::View);
    // A view without parent: an empty read-only layer.
    s.view("empty-view".into(), String::new(), HashMap::new())
        .await
        .unwrap();
    let ev = env.layer("empty-view").unwrap();
    assert_eq!((ev.parent, ev.read_only), (0, true));
    check_consistent(&env, &s).await;
}

#[tokio::test]
async fn errors_have_containerds_codes() {
    let env = Env::new();
    let s = env.open();
    prepare(&s, "a", "").await.unwrap();
    assert_eq!(
        code(prepare(&s, "a", "").await.unwrap_err()),
        Code::AlreadyExists
    );
    assert_eq!(
        code(
            s.view("a".into(), String::new(), HashMap::new())
                .await
                .unwrap_err()
        ),
        Code::AlreadyExists
    );
    assert_eq!(
        code(prepare(&s, "b", "nope").await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(prepare(&s, "b", "a").await.unwrap_err()),
        Code::InvalidArgument
    );
    assert_eq!(
        code(prepare(&s, "", "").await.unwrap_err()),
        Code::InvalidArgument
    );
    let long = HashMap::from([("k".to_string(), "v".repeat(4096))]);
    assert_eq!(
        code(
            s.prepare("b".into(), String::new(), long.clone())
                .await
                .unwrap_err()
        ),
        Code::InvalidArgument
    );
    assert!(env.layer("b").is_none(), "refused requests create no layer");

    assert_eq!(
        code(commit(&s, "c", "nope").await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(commit(&s, "", "a").await.unwrap_err()),
        Code::InvalidArgument
    );
    s.view("v".into(), String::new(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(
        code(commit(&s, "c", "v").await.unwrap_err()),
        Code::FailedPrecondition
    );
    commit(&s, "c", "a").await.unwrap();
    assert_eq!(
        code(commit(&s, "c", "c").await.unwrap_err()),
        Code::FailedPrecondition
    );
    prepare(&s, "a2", "c").await.unwrap();
    assert_eq!(
        code(commit(&s, "c", "a2").await.unwrap_err()),
        Code::AlreadyExists
    );
    assert_eq!(
        code(commit(&s, "v", "a2").await.unwrap_err()),
        Code::AlreadyExists
    );
    assert!(
        !env.layer("a2").unwrap().read_only,
        "a refused commit freezes nothing"
    );

    // A file open for writing: the freeze fails, the snapshot stays active and usable.
    env.store.set_writers("a2", 1);
    assert_eq!(
        code(commit(&s, "c2", "a2").await.unwrap_err()),
        Code::FailedPrecondition
    );
    assert_eq!(s.stat("a2".into()).await.unwrap().kind, Kind::Active);
    assert_eq!(code(s.stat("c2".into()).await.unwrap_err()), Code::NotFound);
    env.store.set_writers("a2", 0);
    commit(&s, "c2", "a2").await.unwrap();

    assert_eq!(
        code(s.remove("nope".into()).await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(s.remove("c".into()).await.unwrap_err()),
        Code::FailedPrecondition
    );
    assert!(env.layer("c").is_some());
    assert_eq!(
        code(s.stat("nope".into()).await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(s.usage("nope".into()).await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(s.mounts("nope".into()).await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(
        code(s.mounts("c".into()).await.unwrap_err()),
        Code::FailedPrecondition
    );
    let info = Info {
        name: "nope".into(),
        ..Info::default()
    };
    assert_eq!(
        code(s.update(info, None).await.unwrap_err()),
        Code::NotFound
    );
    let info = Info {
        name: "c".into(),
        ..Info::default()
    };
    assert_eq!(
        code(
            s.update(info, Some(vec!["parent".into()]))
                .await
                .unwrap_err()
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(list(&s, &["name=="]).await.unwrap_err()),
        Code::InvalidArgument
    );
    assert_eq!(
        code(list(&s, &["name~=("]).await.unwrap_err()),
        Code::InvalidArgument
    );
    // A layer failure is internal.
    env.store.fail_next("create", Errno::NOSPC);
    assert_eq!(
        code(prepare(&s, "x", "").await.unwrap_err()),
        Code::Internal
    );
    assert_eq!(code(s.stat("x".into()).await.unwrap_err()), Code::NotFound);
    check_consistent(&env, &s).await;
}

#[tokio::test]
async fn update_labels_as_containerd_does() {
    let env = Env::new();
    let s = env.open();
    s.prepare("a".into(), String::new(), labels(&[("x", "1"), ("y", "2")]))
        .await
        .unwrap();
    let before = s.stat("a".into()).await.unwrap();
    let update = |l: &[(&str, &str)]| Info {
        name: "a".into(),
        kind: Kind::Committed,
        parent: "ignored".into(),
        labels: labels(l),
        ..Info::default()
    };
    // Named labels: set the given ones, delete the missing ones, keep the rest.
    let got = s
        .update(
            update(&[("x", "10"), ("z", "3")]),
            Some(vec!["labels.x".into(), "labels.y".into()]),
        )
        .await
        .unwrap();
    assert_eq!(got.labels, labels(&[("x", "10")]));
    assert_eq!((got.kind, got.parent.as_str()), (Kind::Active, ""));
    assert_eq!(got.created_at, before.created_at);
    assert!(got.updated_at > before.updated_at);
    // "labels", and no paths at all, replace them all.
    let got = s
        .update(update(&[("p", "1")]), Some(vec!["labels".into()]))
        .await
        .unwrap();
    assert_eq!(got.labels, labels(&[("p", "1")]));
    let got = s.update(update(&[("q", "1")]), None).await.unwrap();
    assert_eq!(got.labels, labels(&[("q", "1")]));
    let got = s.update(update(&[]), Some(vec![])).await.unwrap();
    assert!(got.labels.is_empty());
    assert_eq!(s.stat("a".into()).await.unwrap().labels, got.labels);
    let too_long = update(&[("k", &"v".repeat(5000))]);
    assert_eq!(
        code(s.update(too_long, None).await.unwrap_err()),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn usage_comes_from_the_layer_counters() {
    let env = Env::new();
    let s = env.open();
    prepare(&s, "a", "").await.unwrap();
    env.store.set_usage("a", 42, 1 << 20);
    let u = s.usage("a".into()).await.unwrap();
    assert_eq!((u.inodes, u.size), (42, 1 << 20));
    commit(&s, "c", "a").await.unwrap();
    let u = s.usage("c".into()).await.unwrap();
    assert_eq!((u.inodes, u.size), (42, 1 << 20));
}

#[tokio::test]
async fn walk_filters() {
    let env = Env::new();
    let s = env.open();
    s.prepare(
        "base-a".into(),
        String::new(),
        labels(&[("containerd.io/gc.root", "x")]),
    )
    .await
    .unwrap();
    s.commit("base".into(), "base-a".into(), labels(&[("a.b", "c")]))
        .await
        .unwrap();
    prepare(&s, "child", "base").await.unwrap();
    s.view("view".into(), "base".into(), labels(&[("v", "1")]))
        .await
        .unwrap();
    let names = |infos: Vec<Info>| infos.into_iter().map(|i| i.name).collect::<Vec<_>>();
    assert_eq!(keys(&s).await, ["base", "child", "view"]);
    assert_eq!(
        names(list(&s, &["kind==committed"]).await.unwrap()),
        ["base"]
    );
    assert_eq!(
        names(list(&s, &["parent==base"]).await.unwrap()),
        ["child", "view"]
    );
    assert_eq!(names(list(&s, &["parent!=base"]).await.unwrap()), ["base"]);
    assert_eq!(
        names(list(&s, &["kind==active", "kind==view"]).await.unwrap()),
        ["child", "view"]
    );
    assert_eq!(
        names(list(&s, &["kind==view,labels.v==1"]).await.unwrap()),
        ["view"]
    );
    assert_eq!(
        names(list(&s, &["labels.\"a.b\"==c"]).await.unwrap()),
        ["base"]
    );
    assert_eq!(names(list(&s, &["labels.v"]).await.unwrap()), ["view"]);
    assert_eq!(
        names(list(&s, &["name~=^(c|v)"]).await.unwrap()),
        ["child", "view"]
    );
    // The labels of the active snapshot went with it: the committed one has its own.
    assert!(list(&s, &["labels.\"containerd.io/gc.root\""])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn remove_and_cleanup() {
    let env = Env::new();
    // A layer that was there before the first start is foreign: never touched.
    env.store.create("default", NewLayer::Empty).unwrap();
    env.store.create(".mine", NewLayer::Empty).unwrap();
    let s = env.open();
    prepare(&s, "a", "").await.unwrap();
    commit(&s, "c", "a").await.unwrap();
    prepare(&s, "b", "c").await.unwrap();
    s.remove("b".into()).await.unwrap();
    assert!(env.layer("b").is_none());
    assert!(!env.dir.path().join("b").exists());
    s.remove("c".into()).await.unwrap();
    assert!(env.layer("c").is_none());

    // A snapshot whose layer is in use: the record goes, the layer is moved aside for Cleanup
    // and the key can be used again at once.
    prepare(&s, "busy", "").await.unwrap();
    env.store.set_busy("busy", true);
    let id = env.layer("busy").unwrap().id;
    s.remove("busy".into()).await.unwrap();
    assert_eq!(
        code(s.stat("busy".into()).await.unwrap_err()),
        Code::NotFound
    );
    let trash = names::trash_name(id);
    assert!(env.layer(&trash).is_some());
    prepare(&s, "busy", "").await.unwrap();
    s.clear().await.unwrap();
    assert!(env.layer(&trash).is_some(), "still busy");
    env.store.set_busy(&trash, false);

    // Orphans (layers of ours that no snapshot names) go; foreign, dotted and the metadata
    // layer stay.
    let orphan = env.store.create("orphan", NewLayer::Empty).unwrap();
    env.store.freeze(orphan).unwrap();
    env.store
        .create(
            "orphan-child",
            NewLayer::Clone {
                parent: orphan,
                read_only: false,
            },
        )
        .unwrap();
    env.store.create(".later", NewLayer::Empty).unwrap();
    s.clear().await.unwrap();
    assert_eq!(
        env.layer_names(),
        BTreeSet::from([META_LAYER, "default", ".mine", ".later", "busy"].map(String::from))
    );
    assert_eq!(keys(&s).await, ["busy"]);
}

/// Runs `op` with a crash at `point`, restarts, and returns the new instance.
async fn crash_and_restart<F, Fut>(
    env: &Env,
    point: &'static str,
    op: F,
) -> (LcfsSnapshotter<Fake>, Recovery)
where
    F: FnOnce(LcfsSnapshotter<Fake>) -> Fut,
    Fut: std::future::Future<Output = (LcfsSnapshotter<Fake>, Result<(), Error>)>,
{
    let s = env.open();
    s.cut_at(point);
    let (s, result) = op(s).await;
    assert!(
        matches!(result, Err(Error::Cut(p)) if p == point),
        "{result:?}"
    );
    drop(s);
    let (s, recovery) = env.open_with_recovery();
    check_consistent(env, &s).await;
    (s, recovery)
}

#[tokio::test]
async fn crash_in_prepare_or_view_leaves_no_snapshot() {
    let env = Env::new();
    {
        let s = env.open();
        prepare(&s, "a", "").await.unwrap();
        commit(&s, "c", "a").await.unwrap();
    }
    for (point, view) in [
        ("prepare:created", false),
        ("prepare:created", true),
        ("view:frozen", true),
    ] {
        let (s, r) = crash_and_restart(&env, point, |s| async move {
            let res = if view {
                s.view(
                    "k".into(),
                    if point == "view:frozen" {
                        String::new()
                    } else {
                        "c".into()
                    },
                    HashMap::new(),
                )
                .await
            } else {
                s.prepare("k".into(), "c".into(), HashMap::new()).await
            };
            (s, res.map(|_| ()))
        })
        .await;
        assert_eq!(r.orphans_removed, 1, "{point}");
        assert_eq!(keys(&s).await, ["c"]);
        prepare(&s, "k", "c").await.unwrap();
        s.remove("k".into()).await.unwrap();
    }
}

#[tokio::test]
async fn crash_in_commit_rolls_back_or_forward() {
    let env = Env::new();
    // Before the freeze: rolled back, the snapshot is still active and writable.
    let (s, r) = crash_and_restart(&env, "commit:intent", |s| async move {
        prepare(&s, "a", "").await.unwrap();
        let res = commit(&s, "c", "a").await;
        (s, res)
    })
    .await;
    assert_eq!(r.commits_rolled_back, 1);
    assert_eq!(keys(&s).await, ["a"]);
    assert_eq!(s.stat("a".into()).await.unwrap().kind, Kind::Active);
    assert!(!env.layer("a").unwrap().read_only);
    drop(s);
    // After the freeze, or after the rename: finished.
    for point in ["commit:frozen", "commit:renamed"] {
        let (s, r) = crash_and_restart(&env, point, |s| async move {
            let res = s
                .commit("c".into(), "a".into(), labels(&[("l", point)]))
                .await;
            (s, res)
        })
        .await;
        assert_eq!(r.commits_finished, 1, "{point}");
        assert_eq!(keys(&s).await, ["c"]);
        let info = s.stat("c".into()).await.unwrap();
        assert_eq!(info.kind, Kind::Committed);
        assert_eq!(info.labels, labels(&[("l", point)]));
        assert!(env.layer("c").unwrap().read_only);
        // Again from the start for the next point.
        s.remove("c".into()).await.unwrap();
        prepare(&s, "a", "").await.unwrap();
    }
    // A second restart changes nothing more: recovery is idempotent.
    let (s, r) = env.open_with_recovery();
    assert_eq!(r, Recovery::default());
    assert_eq!(keys(&s).await, ["a"]);
}

#[tokio::test]
async fn crash_in_remove_leaves_it_removed() {
    let env = Env::new();
    let (s, r) = crash_and_restart(&env, "remove:deleted", |s| async move {
        prepare(&s, "a", "").await.unwrap();
        prepare(&s, "b", "").await.unwrap();
        let res = s.remove("a".into()).await;
        (s, res)
    })
    .await;
    assert_eq!(r.orphans_removed, 1);
    assert_eq!(keys(&s).await, ["b"]);
    assert!(env.layer("a").is_none());
}

#[tokio::test]
async fn crash_leftover_in_use_does_not_block_the_key() {
    let env = Env::new();
    let s = env.open();
    s.cut_at("prepare:created");
    assert!(prepare(&s, "k", "").await.is_err());
    drop(s);
    // The orphan is in use at restart: moved aside, the name is free.
    env.store.set_busy("k", true);
    let (s, r) = env.open_with_recovery();
    assert_eq!(r.orphans_removed, 0);
    assert!(env.layer("k").is_none());
    prepare(&s, "k", "").await.unwrap();
    assert_eq!(keys(&s).await, ["k"]);
}

#[tokio::test]
async fn a_leftover_layer_with_the_name_is_replaced() {
    // A layer of ours with the name a new snapshot needs, made after the start (so not
    // foreign) and not recorded: created before a crash that recovery has not seen yet.
    let env = Env::new();
    let s = env.open();
    env.store.create("k", NewLayer::Empty).unwrap();
    env.store.create("c", NewLayer::Empty).unwrap();
    prepare(&s, "k", "").await.unwrap();
    prepare(&s, "a", "").await.unwrap();
    commit(&s, "c", "a").await.unwrap();
    check_consistent(&env, &s).await;
}

#[tokio::test]
async fn restart_lists_what_exists() {
    let env = Env::new();
    let before = {
        let s = env.open();
        for i in 0..5 {
            prepare(&s, &format!("a{i}"), "").await.unwrap();
            if i % 2 == 0 {
                commit(&s, &format!("c{i}"), &format!("a{i}"))
                    .await
                    .unwrap();
            }
        }
        s.view("v".into(), "c0".into(), HashMap::new())
            .await
            .unwrap();
        s.remove("a1".into()).await.unwrap();
        list(&s, &[]).await.unwrap()
    };
    let (s, r) = env.open_with_recovery();
    assert_eq!(r, Recovery::default());
    let after = list(&s, &[]).await.unwrap();
    let summary = |v: &[Info]| {
        v.iter()
            .map(|i| (i.name.clone(), i.parent.clone(), i.created_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&after), summary(&before));
    assert_eq!(keys(&s).await, ["a3", "c0", "c2", "c4", "v"]);
    check_consistent(&env, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests() {
    let env = Env::new();
    let s = Arc::new(env.open());
    prepare(&s, "base-a", "").await.unwrap();
    commit(&s, "base", "base-a").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("default/{i}/extract");
            prepare(&s, &key, "base").await.unwrap();
            commit(&s, &format!("layer-{i}"), &key).await.unwrap();
            if i % 3 == 0 {
                s.remove(format!("layer-{i}")).await.unwrap();
            }
            s.clear().await.unwrap();
        }));
    }
    // The same key from many tasks: one wins, the others get AlreadyExists.
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            match prepare(&s, "same", "base").await {
                Ok(()) => {}
                Err(e) => assert_eq!(code(e), Code::AlreadyExists),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let k = keys(&s).await;
    assert_eq!(k.len(), 1 + 16 + 1, "{k:?}");
    assert_eq!(
        code(s.remove("base".into()).await.unwrap_err()),
        Code::FailedPrecondition
    );
    check_consistent(&env, &s).await;
}

#[tokio::test]
async fn long_keys_get_hashed_layer_names() {
    let env = Env::new();
    let s = env.open();
    let key = format!("default/1/{}", "x".repeat(300));
    let m = s
        .prepare(key.clone(), String::new(), HashMap::new())
        .await
        .unwrap();
    let name = names::hash_name(&key);
    assert!(Path::new(&m[0].source).ends_with(&name));
    commit(&s, &format!("{key}-c"), &key).await.unwrap();
    assert!(env.layer(&names::hash_name(&format!("{key}-c"))).is_some());
    check_consistent(&env, &s).await;
}

#[tokio::test]
async fn a_commit_that_failed_after_the_freeze_is_finished_at_restart() {
    let env = Env::new();
    {
        let s = env.open();
        prepare(&s, "a", "").await.unwrap();
        env.store.fail_next("rename", Errno::IO);
        assert_eq!(
            code(commit(&s, "c", "a").await.unwrap_err()),
            Code::Internal
        );
        assert!(env.layer("a").unwrap().read_only);
    }
    let (s, r) = env.open_with_recovery();
    assert_eq!(r.commits_finished, 1);
    assert_eq!(keys(&s).await, ["c"]);
    check_consistent(&env, &s).await;
    // Removing a snapshot whose commit failed drops the intent with it.
    prepare(&s, "b", "").await.unwrap();
    env.store.fail_next("rename", Errno::IO);
    assert!(commit(&s, "d", "b").await.is_err());
    s.remove("b".into()).await.unwrap();
    drop(s);
    let (s, r) = env.open_with_recovery();
    assert_eq!(r, Recovery::default());
    assert_eq!(keys(&s).await, ["c"]);
    check_consistent(&env, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_spares_a_layer_being_prepared() {
    let env = Env::new();
    let s = Arc::new(env.open());
    let pause = s.pause_at("prepare:created");
    let s2 = s.clone();
    let task = tokio::spawn(async move { prepare(&s2, "k", "").await });
    let reached = pause.reached;
    tokio::task::spawn_blocking(move || reached.recv().unwrap())
        .await
        .unwrap();
    // The layer exists, its record not yet: Cleanup must leave it.
    assert!(env.layer("k").is_some());
    s.clear().await.unwrap();
    assert!(
        env.layer("k").is_some(),
        "Cleanup removed a layer being prepared"
    );
    pause.release.send(()).unwrap();
    task.await.unwrap().unwrap();
    s.clear().await.unwrap();
    assert_eq!(keys(&s).await, ["k"]);
    check_consistent(&env, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_one_key_wait_for_each_other_but_not_for_others() {
    let env = Env::new();
    let s = Arc::new(env.open());
    prepare(&s, "a", "").await.unwrap();
    let pause = s.pause_at("commit:frozen");
    let s2 = s.clone();
    let task = tokio::spawn(async move { commit(&s2, "c", "a").await });
    let reached = pause.reached;
    tokio::task::spawn_blocking(move || reached.recv().unwrap())
        .await
        .unwrap();
    // Another key goes on while the commit is held.
    prepare(&s, "other", "").await.unwrap();
    // The same key waits: its Remove has not run when the commit is let go.
    let s3 = s.clone();
    let remove = tokio::spawn(async move { s3.remove("a".into()).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!remove.is_finished());
    pause.release.send(()).unwrap();
    task.await.unwrap().unwrap();
    // The commit finished first, so the key is gone by the time Remove runs.
    assert_eq!(code(remove.await.unwrap().unwrap_err()), Code::NotFound);
    assert_eq!(keys(&s).await, ["c", "other"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepares_from_one_parent_run_at_once_and_its_remove_waits() {
    let env = Env::new();
    let s = Arc::new(env.open());
    prepare(&s, "a", "").await.unwrap();
    commit(&s, "base", "a").await.unwrap();
    let pause = s.pause_at("prepare:created");
    let s2 = s.clone();
    let first = tokio::spawn(async move { prepare(&s2, "c1", "base").await });
    let reached = pause.reached;
    tokio::task::spawn_blocking(move || reached.recv().unwrap())
        .await
        .unwrap();
    // The parent is only read: a second child is prepared while the first is held.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        prepare(&s, "c2", "base"),
    )
    .await
    .expect("a Prepare from the same parent waited for another")
    .unwrap();
    // Removing the parent waits for the Prepare that reads it.
    let s3 = s.clone();
    let remove = tokio::spawn(async move { s3.remove("base".into()).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!remove.is_finished());
    pause.release.send(()).unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(
        code(remove.await.unwrap().unwrap_err()),
        Code::FailedPrecondition
    );
    assert_eq!(keys(&s).await, ["base", "c1", "c2"]);
    check_consistent(&env, &s).await;
}
