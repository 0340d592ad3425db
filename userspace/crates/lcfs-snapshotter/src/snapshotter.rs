//! The snapshotter: containerd's snapshot model on LCFS layers, with its metadata in a database
//! on the same filesystem (`Documentation/containerd.md`).
//!
//! Each operation is a sequence of steps, each committed before the next starts (a layer ioctl
//! commits the filesystem; a database transaction is fsynced, which commits it too). A crash
//! (daemon killed, power cut) stops the sequence between two steps; [`LcfsSnapshotter::open`]
//! repairs every such state before serving:
//!
//! * Prepare and View: create the layer, then insert the record. A cut leaves a layer no record
//!   names (an orphan), which is removed.
//! * Remove: delete the record, then remove the layer. A cut leaves an orphan.
//! * Commit: record the intent, freeze the layer, rename it, then replace the active record by
//!   the committed one and drop the intent in one transaction. An intent whose layer is not
//!   frozen is rolled back (the snapshot stays active); one whose layer is frozen is carried
//!   out (renamed if needed, records replaced).
//!
//! Requests run concurrently. Each one locks the keys it reads or changes (its key, and the
//! parent or the new name), in sorted order, and runs its steps in `spawn_blocking`; no lock
//! is global and no database transaction spans a layer operation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use containerd_snapshots::api::types::Mount;
use containerd_snapshots::{Info, Snapshotter, Usage};
use rustix::io::Errno;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::filter::{Fields, Filter};
use crate::layers::{is, Layer, LayerStore, NewLayer};
use crate::meta::{Intent, Kind, Meta, Record};
use crate::names;

/// The database file in the metadata layer.
pub const META_FILE: &str = "metadata.redb";

/// Largest key plus value of one label, as containerd checks it.
const LABEL_MAX: usize = 4096;

/// containerd's snapshotter on a [`LayerStore`].
pub struct LcfsSnapshotter<S: LayerStore> {
    inner: Arc<Inner<S>>,
    locks: KeyLocks,
}

struct Inner<S> {
    store: Arc<S>,
    meta: Meta,
    /// Layers the daemon never touches: those found when the database was made, and the
    /// metadata layer.
    foreign: HashSet<u64>,
    /// Names of layers being created whose records are not written yet (Cleanup skips them).
    inflight: Mutex<HashSet<String>>,
    /// Simulated crash points (tests).
    cuts: Mutex<HashSet<&'static str>>,
    /// Points where the next operation waits (tests): it signals the first channel and waits
    /// for the second.
    pauses: Mutex<HashMap<&'static str, Held>>,
}

/// The channels of a pause point, on the operation's side.
type Held = (Sender<()>, Receiver<()>);

/// An operation held at a point (see [`LcfsSnapshotter::pause_at`]).
#[derive(Debug)]
pub struct Pause {
    /// Receives once the operation reached the point.
    pub reached: Receiver<()>,
    /// Lets it go on.
    pub release: Sender<()>,
}

/// What startup recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Commit intents carried out.
    pub commits_finished: usize,
    /// Commit intents rolled back.
    pub commits_rolled_back: usize,
    /// Records dropped because their layer was gone.
    pub records_dropped: usize,
    /// Orphan layers removed.
    pub orphans_removed: usize,
}

impl<S: LayerStore> LcfsSnapshotter<S> {
    /// Opens the snapshotter on `store`: the metadata layer (made if missing) and its database,
    /// then the recovery of whatever an earlier run left half done. Blocks.
    pub fn open(store: Arc<S>) -> Result<(Self, Recovery)> {
        let meta_layer = match store.info_by_name(names::META_LAYER) {
            Ok(l) => l,
            Err(e) if is(&e, Errno::NOENT) => {
                let id = store
                    .create(names::META_LAYER, NewLayer::Empty)
                    .map_err(|e| Error::layer("create", names::META_LAYER, e))?;
                info!(layer = names::META_LAYER, id, "created the metadata layer");
                store
                    .info(id)
                    .map_err(|e| Error::layer("info", names::META_LAYER, e))?
            }
            Err(e) => return Err(Error::layer("info", names::META_LAYER, e)),
        };
        if meta_layer.read_only {
            return Err(Error::Internal(format!(
                "layer {} is read-only",
                names::META_LAYER
            )));
        }
        let meta = Meta::open(&store.root().join(names::META_LAYER).join(META_FILE))?;
        let mut foreign: HashSet<u64> = match meta.foreign()? {
            Some(ids) => ids.into_iter().collect(),
            None => {
                let ids: Vec<u64> = list(&*store)?
                    .iter()
                    .map(|l| l.id)
                    .filter(|&id| id != meta_layer.id)
                    .collect();
                if !ids.is_empty() {
                    info!(?ids, "leaving the layers found at first start alone");
                }
                meta.init_foreign(&ids)?;
                ids.into_iter().collect()
            }
        };
        foreign.insert(meta_layer.id);
        let inner = Arc::new(Inner {
            store,
            meta,
            foreign,
            inflight: Mutex::default(),
            cuts: Mutex::default(),
            pauses: Mutex::default(),
        });
        let recovery = inner.recover()?;
        Ok((
            LcfsSnapshotter {
                inner,
                locks: KeyLocks::default(),
            },
            recovery,
        ))
    }

    /// Makes every later operation stop (with [`Error::Cut`]) when it reaches `point`, as a
    /// crash there would: for crash tests. Points: `prepare:created`, `view:frozen`,
    /// `commit:intent`, `commit:frozen`, `commit:renamed`, `remove:deleted`.
    pub fn cut_at(&self, point: &'static str) {
        lock(&self.inner.cuts).insert(point);
    }

    /// Makes the next operation that reaches `point` (one of [`LcfsSnapshotter::cut_at`]'s)
    /// wait there until released: for tests of what runs meanwhile.
    pub fn pause_at(&self, point: &'static str) -> Pause {
        let (reached_tx, reached) = channel();
        let (release, release_rx) = channel();
        lock(&self.inner.pauses).insert(point, (reached_tx, release_rx));
        Pause { reached, release }
    }

    /// The mount root.
    pub fn root(&self) -> PathBuf {
        self.inner.store.root().to_owned()
    }

    async fn create_snapshot(
        &self,
        kind: Kind,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        check_key(&key)?;
        let labels = check_labels(labels)?;
        let _guards = self.locks.lock(&[&key], &[&parent]).await;
        let inner = self.inner.clone();
        blocking(move || inner.create_snapshot(kind, &key, &parent, labels)).await
    }
}

impl<S: LayerStore> Inner<S> {
    fn cut(&self, point: &'static str) -> Result<()> {
        let pause = lock(&self.pauses).remove(point);
        if let Some((reached, release)) = pause {
            let _ = reached.send(());
            let _ = release.recv();
        }
        if lock(&self.cuts).contains(point) {
            return Err(Error::Cut(point));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Record> {
        self.meta
            .get(key)?
            .ok_or_else(|| Error::NotFound(format!("snapshot {key}")))
    }

    /// Whether a record or a commit intent names layer `id`.
    fn referenced(&self) -> Result<HashSet<u64>> {
        let mut ids: HashSet<u64> = self.meta.all()?.iter().map(|(_, r)| r.layer_id).collect();
        ids.extend(self.meta.intents()?.iter().map(|(_, i)| i.layer_id));
        Ok(ids)
    }

    /// Gets an unreferenced layer of ours out of the way: removes it, or when it is in use,
    /// renames it to its trash name (Cleanup removes it later).
    fn discard(&self, layer: &Layer) -> Result<bool> {
        match self.store.remove(layer.id) {
            Ok(()) => {
                info!(layer = %layer.name, id = layer.id, "removed an unreferenced layer");
                Ok(true)
            }
            Err(e) if is(&e, Errno::NOENT) => Ok(true),
            Err(e) if is(&e, Errno::BUSY) => {
                let trash = names::trash_name(layer.id);
                warn!(layer = %layer.name, id = layer.id, "unreferenced layer in use: left for Cleanup");
                if layer.name != trash {
                    self.store
                        .rename(layer.id, &trash)
                        .map_err(|e| Error::layer("rename", &layer.name, e))?;
                }
                Ok(false)
            }
            Err(e) => Err(Error::layer("remove", &layer.name, e)),
        }
    }

    /// Frees layer name `name` if an unreferenced layer of ours has it; an error if a
    /// snapshot's or a foreign layer has it.
    fn free_name(&self, name: &str) -> Result<()> {
        let layer = match self.store.info_by_name(name) {
            Ok(l) => l,
            Err(e) if is(&e, Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::layer("info", name, e)),
        };
        if self.foreign.contains(&layer.id)
            || !names::is_ours(name)
            || self.referenced()?.contains(&layer.id)
        {
            return Err(Error::Internal(format!(
                "layer name {name} is taken by layer {}",
                layer.id
            )));
        }
        self.discard(&layer)?;
        Ok(())
    }

    /// Creates layer `name`, first freeing the name of a leftover layer.
    fn create_layer(&self, name: &str, how: NewLayer) -> Result<u64> {
        match self.store.create(name, how) {
            Err(e) if is(&e, Errno::EXIST) => {
                self.free_name(name)?;
                self.store.create(name, how)
            }
            other => other,
        }
        .map_err(|e| Error::layer("create", name, e))
    }

    /// Renames layer `id` to `name`, first freeing the name of a leftover layer.
    fn rename_layer(&self, id: u64, name: &str) -> Result<()> {
        match self.store.rename(id, name) {
            Err(e) if is(&e, Errno::EXIST) => {
                self.free_name(name)?;
                self.store.rename(id, name)
            }
            other => other,
        }
        .map_err(|e| Error::layer("rename", id, e))
    }

    fn create_snapshot(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        if self.meta.get(key)?.is_some() {
            return Err(Error::AlreadyExists(format!("snapshot {key}")));
        }
        let parent_layer = if parent.is_empty() {
            None
        } else {
            let p = self
                .meta
                .get(parent)?
                .ok_or_else(|| Error::NotFound(format!("parent snapshot {parent}")))?;
            if p.kind != Kind::Committed {
                return Err(Error::InvalidArgument(format!(
                    "parent {parent} is not a committed snapshot"
                )));
            }
            Some(p.layer_id)
        };
        let name = names::layer_name(key);
        let _inflight = Inflight::new(&self.inflight, &name);
        let how = match parent_layer {
            Some(parent) => NewLayer::Clone {
                parent,
                read_only: kind == Kind::View,
            },
            None => NewLayer::Empty,
        };
        let id = self.create_layer(&name, how)?;
        self.cut("prepare:created")?;
        if kind == Kind::View && parent_layer.is_none() {
            if let Err(e) = self.store.freeze(id) {
                let _ = self.store.remove(id);
                return Err(Error::layer("freeze", &name, e));
            }
            self.cut("view:frozen")?;
        }
        let now = SystemTime::now();
        let rec = Record {
            kind,
            parent: parent.to_owned(),
            labels,
            created: now,
            updated: now,
            layer_id: id,
            layer_name: name,
        };
        if let Err(e) = self.meta.insert_new(key, &rec) {
            let _ = self.store.remove(id);
            return Err(e);
        }
        info!(key, kind = kind.as_str(), parent, layer = %rec.layer_name, id, "created");
        Ok(mounts(self.store.root(), &rec))
    }

    fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let rec = self.get(key)?;
        if rec.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key} is not active"
            )));
        }
        if self.meta.get(name)?.is_some() {
            return Err(Error::AlreadyExists(format!("snapshot {name}")));
        }
        let intent = Intent {
            name: name.to_owned(),
            labels,
            layer_id: rec.layer_id,
            target: names::layer_name(name),
        };
        self.meta.put_intent(key, &intent)?;
        self.cut("commit:intent")?;
        if let Err(e) = self.store.freeze(rec.layer_id) {
            self.meta.drop_intent(key)?;
            if is(&e, Errno::BUSY) {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key} has files open for writing"
                )));
            }
            return Err(Error::layer("freeze", &rec.layer_name, e));
        }
        self.cut("commit:frozen")?;
        self.finish_commit(key, &rec, &intent)?;
        info!(key, name, layer = %intent.target, id = rec.layer_id, "committed");
        Ok(())
    }

    /// The steps of a Commit after the freeze: rename, then the records.
    fn finish_commit(&self, key: &str, rec: &Record, intent: &Intent) -> Result<()> {
        let layer = self
            .store
            .info(intent.layer_id)
            .map_err(|e| Error::layer("info", intent.layer_id, e))?;
        if layer.name != intent.target {
            self.rename_layer(intent.layer_id, &intent.target)?;
        }
        self.cut("commit:renamed")?;
        let now = SystemTime::now();
        let committed = Record {
            kind: Kind::Committed,
            parent: rec.parent.clone(),
            labels: intent.labels.clone(),
            created: now,
            updated: now,
            layer_id: intent.layer_id,
            layer_name: intent.target.clone(),
        };
        self.meta.finish_commit(key, &intent.name, &committed)
    }

    fn remove(&self, key: &str) -> Result<()> {
        let rec = self.get(key)?;
        if self.meta.has_children(key)? {
            return Err(Error::FailedPrecondition(format!(
                "cannot remove snapshot {key}: it has children"
            )));
        }
        // Clones no record names (left by a crash) go first, so the removal does not fail.
        let layers = list(&*self.store)?;
        for child in layers.iter().filter(|l| l.parent == rec.layer_id) {
            if !self.orphan(child, &self.referenced()?, &lock(&self.inflight)) {
                return Err(Error::FailedPrecondition(format!(
                    "cannot remove snapshot {key}: layer {} is a clone of it",
                    child.name
                )));
            }
            self.discard(child)?;
        }
        self.meta.delete(key)?;
        self.cut("remove:deleted")?;
        match self.store.remove(rec.layer_id) {
            Ok(()) => {}
            Err(e) if is(&e, Errno::NOENT) => {}
            Err(e) => {
                warn!(key, layer = %rec.layer_name, error = %e, "layer not removed: left for Cleanup");
                if let Ok(layer) = self.store.info(rec.layer_id) {
                    if let Err(e) = self.discard(&layer) {
                        warn!(key, error = %e, "layer not moved out of the way");
                    }
                }
            }
        }
        info!(key, layer = %rec.layer_name, "removed");
        Ok(())
    }

    fn update(&self, info: Info, paths: Vec<String>) -> Result<Info> {
        let key = info.name;
        let mut rec = self.get(&key)?;
        if paths.is_empty() {
            rec.labels = info.labels.clone().into_iter().collect();
        }
        for path in &paths {
            if let Some(label) = path.strip_prefix("labels.") {
                match info.labels.get(label) {
                    Some(v) => rec.labels.insert(label.to_owned(), v.clone()),
                    None => rec.labels.remove(label),
                };
            } else if path == "labels" {
                rec.labels = info.labels.clone().into_iter().collect();
            } else {
                return Err(Error::InvalidArgument(format!(
                    "cannot update field {path:?} of snapshot {key}"
                )));
            }
        }
        rec.labels = check_labels(rec.labels.into_iter().collect())?;
        rec.updated = SystemTime::now();
        self.meta.put(&key, &rec)?;
        debug!(key, "updated");
        Ok(to_info(&key, &rec))
    }

    /// Whether `layer` is an orphan: ours, and neither referenced nor being created.
    fn orphan(&self, layer: &Layer, referenced: &HashSet<u64>, inflight: &HashSet<String>) -> bool {
        names::is_ours(&layer.name)
            && !self.foreign.contains(&layer.id)
            && !referenced.contains(&layer.id)
            && !inflight.contains(&layer.name)
    }

    /// Removes the orphan layers (children first); how many.
    fn remove_orphans(&self) -> Result<usize> {
        let mut layers = list(&*self.store)?;
        // Read after the listing: a layer listed is either still being created (in the set) or
        // already recorded (in the records read next).
        let inflight = lock(&self.inflight).clone();
        let referenced = self.referenced()?;
        layers.sort_by_key(|l| std::cmp::Reverse(l.id));
        let mut removed = 0;
        for layer in layers
            .iter()
            .filter(|l| self.orphan(l, &referenced, &inflight))
        {
            match self.discard(layer) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => warn!(layer = %layer.name, error = %e, "orphan layer not removed"),
            }
        }
        Ok(removed)
    }

    /// Repairs what a crash left: commit intents, records of vanished layers, orphans.
    fn recover(&self) -> Result<Recovery> {
        let mut r = Recovery::default();
        for (key, intent) in self.meta.intents()? {
            let Some(rec) = self.meta.get(&key)? else {
                self.meta.drop_intent(&key)?;
                continue;
            };
            match self.store.info(intent.layer_id) {
                Ok(layer) if layer.read_only => {
                    self.finish_commit(&key, &rec, &intent)?;
                    info!(key, name = %intent.name, "finished an interrupted commit");
                    r.commits_finished += 1;
                }
                Ok(_) => {
                    self.meta.drop_intent(&key)?;
                    info!(key, name = %intent.name, "rolled back an interrupted commit");
                    r.commits_rolled_back += 1;
                }
                Err(e) if is(&e, Errno::NOENT) => self.meta.drop_intent(&key)?,
                Err(e) => return Err(Error::layer("info", intent.layer_id, e)),
            }
        }
        let layers: HashMap<u64, Layer> =
            list(&*self.store)?.into_iter().map(|l| (l.id, l)).collect();
        for (key, mut rec) in self.meta.all()? {
            match layers.get(&rec.layer_id) {
                None => {
                    warn!(key, layer = %rec.layer_name, "the layer of a snapshot is gone: dropping it");
                    self.meta.delete(&key)?;
                    r.records_dropped += 1;
                }
                Some(l) if l.name != rec.layer_name => {
                    warn!(key, recorded = %rec.layer_name, actual = %l.name, "layer renamed behind our back");
                    rec.layer_name = l.name.clone();
                    self.meta.put(&key, &rec)?;
                }
                Some(_) => {}
            }
        }
        r.orphans_removed = self.remove_orphans()?;
        Ok(r)
    }
}

fn list<S: LayerStore + ?Sized>(store: &S) -> Result<Vec<Layer>> {
    store.list().map_err(|e| Error::layer("list", "*", e))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("task failed: {e}")))?
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("empty snapshot key".into()));
    }
    Ok(())
}

fn check_labels(labels: HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    for (k, v) in &labels {
        if k.len() + v.len() > LABEL_MAX {
            return Err(Error::InvalidArgument(format!(
                "label {k:?}: key and value longer than {LABEL_MAX} bytes"
            )));
        }
    }
    Ok(labels.into_iter().collect())
}

/// The bind mount of a snapshot's layer directory.
fn mounts(root: &Path, rec: &Record) -> Vec<Mount> {
    let mode = if rec.kind == Kind::Active { "rw" } else { "ro" };
    vec![Mount {
        r#type: "bind".into(),
        source: root.join(&rec.layer_name).to_string_lossy().into_owned(),
        target: String::new(),
        options: vec!["rbind".into(), mode.into()],
    }]
}

fn to_info(key: &str, rec: &Record) -> Info {
    Info {
        kind: match rec.kind {
            Kind::Active => containerd_snapshots::Kind::Active,
            Kind::View => containerd_snapshots::Kind::View,
            Kind::Committed => containerd_snapshots::Kind::Committed,
        },
        name: key.to_owned(),
        parent: rec.parent.clone(),
        labels: rec.labels.clone().into_iter().collect(),
        created_at: rec.created,
        updated_at: rec.updated,
    }
}

/// A snapshot as containerd's filters see it.
struct Item<'a>(&'a str, &'a Record);

impl Fields for Item<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let Item(key, rec) = self;
        match path.first()?.as_str() {
            "name" => Some((*key).to_owned()),
            "parent" => Some(rec.parent.clone()),
            "kind" => Some(rec.kind.as_str().to_owned()),
            "labels" => rec.labels.get(&path[1..].join(".")).cloned(),
            _ => None,
        }
    }
}

/// Registers a layer name as being created while alive.
struct Inflight<'a> {
    set: &'a Mutex<HashSet<String>>,
    name: String,
}

impl<'a> Inflight<'a> {
    fn new(set: &'a Mutex<HashSet<String>>, name: &str) -> Self {
        lock(set).insert(name.to_owned());
        Inflight {
            set,
            name: name.to_owned(),
        }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.name);
    }
}

/// One async read-write lock per key in use: a request holds its own keys exclusively and the
/// parent it reads shared, so that containers starting from one image prepare at once while a
/// Remove or Commit of that parent waits for them.
#[derive(Default)]
struct KeyLocks {
    map: Mutex<HashMap<String, Weak<RwLock<()>>>>,
}

/// Held key locks; released when dropped.
#[derive(Default)]
struct KeyGuards {
    _shared: Vec<OwnedRwLockReadGuard<()>>,
    _exclusive: Vec<OwnedRwLockWriteGuard<()>>,
}

impl KeyLocks {
    /// Locks `exclusive` and `shared` (empty keys skipped; a key in both is taken exclusively),
    /// in sorted key order so that requests cannot deadlock.
    async fn lock(&self, exclusive: &[&str], shared: &[&str]) -> KeyGuards {
        let mut keys: Vec<(&str, bool)> = exclusive
            .iter()
            .map(|k| (*k, true))
            .chain(shared.iter().map(|k| (*k, false)))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        // Exclusive first among equal keys, so that dedup keeps it.
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
        keys.dedup_by(|later, first| later.0 == first.0);
        let locks: Vec<_> = {
            let mut map = lock(&self.map);
            if map.len() >= 256 {
                map.retain(|_, m| m.strong_count() > 0);
            }
            keys.iter()
                .map(|(k, exclusive)| {
                    let m = match map.get(*k).and_then(Weak::upgrade) {
                        Some(m) => m,
                        None => {
                            let m = Arc::new(RwLock::new(()));
                            map.insert((*k).to_owned(), Arc::downgrade(&m));
                            m
                        }
                    };
                    (m, *exclusive)
                })
                .collect()
        };
        let mut guards = KeyGuards::default();
        for (m, exclusive) in locks {
            if exclusive {
                guards._exclusive.push(m.write_owned().await);
            } else {
                guards._shared.push(m.read_owned().await);
            }
        }
        guards
    }
}

#[containerd_snapshots::tonic::async_trait]
impl<S: LayerStore> Snapshotter for LcfsSnapshotter<S> {
    type Error = Error;

    async fn stat(&self, key: String) -> Result<Info> {
        let inner = self.inner.clone();
        blocking(move || inner.get(&key).map(|rec| to_info(&key, &rec))).await
    }

    async fn update(&self, info: Info, fieldpaths: Option<Vec<String>>) -> Result<Info> {
        let _guards = self.locks.lock(&[&info.name], &[]).await;
        let inner = self.inner.clone();
        blocking(move || inner.update(info, fieldpaths.unwrap_or_default())).await
    }

    async fn usage(&self, key: String) -> Result<Usage> {
        let inner = self.inner.clone();
        blocking(move || {
            let rec = inner.get(&key)?;
            let layer = inner
                .store
                .info(rec.layer_id)
                .map_err(|e| Error::layer("info", &rec.layer_name, e))?;
            Ok(Usage {
                inodes: i64::try_from(layer.inodes).unwrap_or(i64::MAX),
                size: i64::try_from(layer.own_bytes).unwrap_or(i64::MAX),
            })
        })
        .await
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>> {
        let inner = self.inner.clone();
        blocking(move || {
            let rec = inner.get(&key)?;
            if rec.kind == Kind::Committed {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key} is committed: no mounts"
                )));
            }
            Ok(mounts(inner.store.root(), &rec))
        })
        .await
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create_snapshot(Kind::Active, key, parent, labels)
            .await
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create_snapshot(Kind::View, key, parent, labels).await
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        check_key(&name)?;
        let labels = check_labels(labels)?;
        let _guards = self.locks.lock(&[&name, &key], &[]).await;
        let inner = self.inner.clone();
        blocking(move || inner.commit(&name, &key, labels)).await
    }

    async fn remove(&self, key: String) -> Result<()> {
        let _guards = self.locks.lock(&[&key], &[]).await;
        let inner = self.inner.clone();
        blocking(move || inner.remove(&key)).await
    }

    async fn clear(&self) -> Result<()> {
        let inner = self.inner.clone();
        let removed = blocking(move || inner.remove_orphans()).await?;
        info!(removed, "cleanup");
        Ok(())
    }

    type InfoStream = tokio_stream::Iter<std::vec::IntoIter<Result<Info>>>;

    async fn list(&self, _snapshotter: String, filters: Vec<String>) -> Result<Self::InfoStream> {
        let filter =
            Filter::parse_all(&filters).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let inner = self.inner.clone();
        let all = blocking(move || inner.meta.all()).await?;
        let infos: Vec<Result<Info>> = all
            .iter()
            .filter(|(k, r)| filter.matches(&Item(k, r)))
            .map(|(k, r)| Ok(to_info(k, r)))
            .collect();
        Ok(tokio_stream::iter(infos))
    }
}
