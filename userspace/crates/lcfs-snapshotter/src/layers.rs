//! The layer operations the snapshotter needs, behind [`LayerStore`]: [`Lcfs`] issues the LCFS
//! layer ioctls on an open directory of the mount root; [`Fake`] keeps layers in memory (with a
//! directory per layer under a root, so files such as the metadata database can live in one) and
//! answers with the same errors, for tests.
//!
//! Every call may block (the ioctls commit the filesystem): the snapshotter calls them from
//! `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::io::Errno;

/// How a new layer starts: the ABI's own choices (the snapshotter uses `Empty` and `Clone`).
pub use lcfs_uapi::NewLayer;

/// What the snapshotter knows of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// Id (never reused).
    pub id: u64,
    /// Parent's id, 0 for none.
    pub parent: u64,
    /// Name: the directory under the mount root.
    pub name: String,
    /// Frozen.
    pub read_only: bool,
    /// Number of clones of it.
    pub children: u32,
    /// Inodes in its tree.
    pub inodes: u64,
    /// Bytes of file data its own writes hold (`own_bytes`); `bytes` when not reported.
    pub own_bytes: u64,
}

/// The layer operations (see `Documentation/ioctl.md`).
pub trait LayerStore: Send + Sync + 'static {
    /// The mount root: layer `name` is the directory `root/name`.
    fn root(&self) -> &Path;
    /// Creates layer `name`; returns its id. `EEXIST`, `ENOENT` (parent), `EINVAL` (read-write
    /// parent, bad name).
    fn create(&self, name: &str, how: NewLayer) -> io::Result<u64>;
    /// Freezes layer `id` (`EBUSY` while a file of it is open for writing).
    fn freeze(&self, id: u64) -> io::Result<()>;
    /// Renames layer `id` (`EEXIST`).
    fn rename(&self, id: u64, name: &str) -> io::Result<()>;
    /// Removes layer `id` (`ENOTEMPTY` with children, `EBUSY` in use).
    fn remove(&self, id: u64) -> io::Result<()>;
    /// Layer `id` (`ENOENT`).
    fn info(&self, id: u64) -> io::Result<Layer>;
    /// The layer named `name` (`ENOENT`).
    fn info_by_name(&self, name: &str) -> io::Result<Layer>;
    /// Every layer, in id order.
    fn list(&self) -> io::Result<Vec<Layer>>;
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Whether `err` is `errno`.
pub fn is(err: &io::Error, e: Errno) -> bool {
    err.raw_os_error() == Some(e.raw_os_error())
}

/// The layers of a mounted LCFS filesystem.
#[derive(Debug)]
pub struct Lcfs {
    root: PathBuf,
    dir: File,
}

impl Lcfs {
    /// Opens the mount root `root` (`ENOTTY` if it is not LCFS).
    pub fn open(root: &Path) -> io::Result<Lcfs> {
        let dir = File::open(root)?;
        lcfs_uapi::fs_info(&dir)?;
        Ok(Lcfs {
            root: root.to_owned(),
            dir,
        })
    }

    fn convert(info: &lcfs_uapi::LayerInfo) -> Layer {
        Layer {
            id: info.id,
            parent: info.parent,
            name: info.name_string(),
            read_only: info.is_read_only(),
            children: info.children,
            inodes: info.inodes,
            own_bytes: info.own_bytes().unwrap_or(info.bytes),
        }
    }
}

impl LayerStore for Lcfs {
    fn root(&self) -> &Path {
        &self.root
    }

    fn create(&self, name: &str, how: NewLayer) -> io::Result<u64> {
        lcfs_uapi::layer_create(&self.dir, how, name)
    }

    fn freeze(&self, id: u64) -> io::Result<()> {
        lcfs_uapi::layer_freeze(&self.dir, id)
    }

    fn rename(&self, id: u64, name: &str) -> io::Result<()> {
        lcfs_uapi::layer_rename(&self.dir, id, name)
    }

    fn remove(&self, id: u64) -> io::Result<()> {
        lcfs_uapi::layer_remove(&self.dir, id)
    }

    fn info(&self, id: u64) -> io::Result<Layer> {
        if id == 0 {
            return Err(errno(Errno::NOENT));
        }
        lcfs_uapi::layer_info(&self.dir, lcfs_uapi::Which::Id(id)).map(|i| Self::convert(&i))
    }

    fn info_by_name(&self, name: &str) -> io::Result<Layer> {
        lcfs_uapi::layer_info(&self.dir, lcfs_uapi::Which::Name(name)).map(|i| Self::convert(&i))
    }

    fn list(&self) -> io::Result<Vec<Layer>> {
        Ok(lcfs_uapi::layer_list(&self.dir)?
            .iter()
            .map(Self::convert)
            .collect())
    }
}

/// One layer of the [`Fake`].
#[derive(Clone, Debug, Default)]
struct FakeLayer {
    name: String,
    parent: u64,
    read_only: bool,
    /// Files open for writing: freeze answers `EBUSY`.
    writers: u32,
    /// In use (open file, working directory, mount): remove answers `EBUSY`.
    busy: bool,
    inodes: u64,
    own_bytes: u64,
}

#[derive(Debug, Default)]
struct FakeState {
    next_id: u64,
    layers: BTreeMap<u64, FakeLayer>,
    /// Injected failures: the next call of the operation fails with the errno.
    fail: Vec<(&'static str, Errno)>,
    /// Operations done, for tests that check what was (not) called.
    calls: Vec<String>,
}

/// An in-memory layer store with LCFS's semantics and errors, and a real directory per layer
/// under its root (renamed and removed with the layer).
#[derive(Debug)]
pub struct Fake {
    root: PathBuf,
    state: Mutex<FakeState>,
}

impl Fake {
    /// A store with no layers, keeping the layers' directories under `root`.
    pub fn new(root: &Path) -> Fake {
        Fake {
            root: root.to_owned(),
            state: Mutex::new(FakeState {
                next_id: 1,
                ..FakeState::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_layer(&self, name: &str, f: impl FnOnce(&mut FakeLayer)) {
        let mut st = self.state();
        let layer = st
            .layers
            .values_mut()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no fake layer {name}"));
        f(layer);
    }

    /// Sets the number of files of layer `name` open for writing.
    pub fn set_writers(&self, name: &str, writers: u32) {
        self.with_layer(name, |l| l.writers = writers);
    }

    /// Marks layer `name` in use (remove answers `EBUSY`).
    pub fn set_busy(&self, name: &str, busy: bool) {
        self.with_layer(name, |l| l.busy = busy);
    }

    /// Sets the usage figures of layer `name`.
    pub fn set_usage(&self, name: &str, inodes: u64, own_bytes: u64) {
        self.with_layer(name, |l| {
            l.inodes = inodes;
            l.own_bytes = own_bytes;
        });
    }

    /// Makes the next call of `op` ("create", "freeze", "rename", "remove") fail with `e`.
    pub fn fail_next(&self, op: &'static str, e: Errno) {
        self.state().fail.push((op, e));
    }

    /// The operations done so far ("create NAME", "freeze ID", ...), and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state().calls)
    }

    fn check_fail(st: &mut FakeState, op: &'static str) -> io::Result<()> {
        if let Some(i) = st.fail.iter().position(|(o, _)| *o == op) {
            let (_, e) = st.fail.remove(i);
            return Err(errno(e));
        }
        Ok(())
    }

    fn check_name(st: &FakeState, name: &str) -> io::Result<()> {
        if !crate::names::is_legal(name) {
            return Err(errno(Errno::INVAL));
        }
        if st.layers.values().any(|l| l.name == name) {
            return Err(errno(Errno::EXIST));
        }
        Ok(())
    }

    fn get(st: &FakeState, id: u64) -> io::Result<&FakeLayer> {
        st.layers.get(&id).ok_or_else(|| errno(Errno::NOENT))
    }

    fn describe(st: &FakeState, id: u64, l: &FakeLayer) -> Layer {
        Layer {
            id,
            parent: l.parent,
            name: l.name.clone(),
            read_only: l.read_only,
            children: u32::try_from(st.layers.values().filter(|c| c.parent == id).count())
                .unwrap_or(u32::MAX),
            inodes: l.inodes,
            own_bytes: l.own_bytes,
        }
    }
}

impl LayerStore for Fake {
    fn root(&self) -> &Path {
        &self.root
    }

    fn create(&self, name: &str, how: NewLayer) -> io::Result<u64> {
        let mut st = self.state();
        Self::check_fail(&mut st, "create")?;
        Self::check_name(&st, name)?;
        let (parent, read_only, inodes) = match how {
            NewLayer::Empty => (0, false, 1),
            NewLayer::Clone { parent, read_only } => {
                let p = Self::get(&st, parent)?;
                if !p.read_only {
                    return Err(errno(Errno::INVAL));
                }
                (parent, read_only, p.inodes)
            }
            // The snapshotter never snapshots a layer; the fake does not model it.
            NewLayer::Snapshot { .. } => return Err(errno(Errno::OPNOTSUPP)),
        };
        std::fs::create_dir(self.root.join(name))?;
        let id = st.next_id;
        st.next_id += 1;
        st.layers.insert(
            id,
            FakeLayer {
                name: name.to_owned(),
                parent,
                read_only,
                inodes,
                ..FakeLayer::default()
            },
        );
        st.calls.push(format!("create {name}"));
        Ok(id)
    }

    fn freeze(&self, id: u64) -> io::Result<()> {
        let mut st = self.state();
        Self::check_fail(&mut st, "freeze")?;
        let l = Self::get(&st, id)?;
        if l.writers > 0 {
            return Err(errno(Errno::BUSY));
        }
        if let Some(l) = st.layers.get_mut(&id) {
            l.read_only = true;
        }
        st.calls.push(format!("freeze {id}"));
        Ok(())
    }

    fn rename(&self, id: u64, name: &str) -> io::Result<()> {
        let mut st = self.state();
        Self::check_fail(&mut st, "rename")?;
        let old = Self::get(&st, id)?.name.clone();
        if old == name {
            return Ok(());
        }
        Self::check_name(&st, name)?;
        std::fs::rename(self.root.join(&old), self.root.join(name))?;
        if let Some(l) = st.layers.get_mut(&id) {
            l.name = name.to_owned();
        }
        st.calls.push(format!("rename {id} {name}"));
        Ok(())
    }

    fn remove(&self, id: u64) -> io::Result<()> {
        let mut st = self.state();
        Self::check_fail(&mut st, "remove")?;
        let l = Self::get(&st, id)?;
        if st.layers.values().any(|c| c.parent == id) {
            return Err(errno(Errno::NOTEMPTY));
        }
        if l.busy {
            return Err(errno(Errno::BUSY));
        }
        std::fs::remove_dir_all(self.root.join(&l.name))?;
        st.layers.remove(&id);
        st.calls.push(format!("remove {id}"));
        Ok(())
    }

    fn info(&self, id: u64) -> io::Result<Layer> {
        let st = self.state();
        let l = Self::get(&st, id)?;
        Ok(Self::describe(&st, id, l))
    }

    fn info_by_name(&self, name: &str) -> io::Result<Layer> {
        let st = self.state();
        let (id, l) = st
            .layers
            .iter()
            .find(|(_, l)| l.name == name)
            .ok_or_else(|| errno(Errno::NOENT))?;
        Ok(Self::describe(&st, *id, l))
    }

    fn list(&self) -> io::Result<Vec<Layer>> {
        let st = self.state();
        Ok(st
            .layers
            .iter()
            .map(|(id, l)| Self::describe(&st, *id, l))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_has_lcfs_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fake::new(dir.path());
        let a = f.create("a", NewLayer::Empty).unwrap();
        assert!(dir.path().join("a").is_dir());
        let e = f.create("a", NewLayer::Empty).unwrap_err();
        assert!(is(&e, Errno::EXIST));
        for bad in ["", ".", "..", "x/y"] {
            assert!(is(
                &f.create(bad, NewLayer::Empty).unwrap_err(),
                Errno::INVAL
            ));
        }
        // Clones need a frozen parent.
        let clone = NewLayer::Clone {
            parent: a,
            read_only: false,
        };
        assert!(is(&f.create("b", clone).unwrap_err(), Errno::INVAL));
        f.set_writers("a", 1);
        assert!(is(&f.freeze(a).unwrap_err(), Errno::BUSY));
        f.set_writers("a", 0);
        f.freeze(a).unwrap();
        let b = f.create("b", clone).unwrap();
        assert_eq!(f.info(b).unwrap().parent, a);
        assert_eq!(f.info(a).unwrap().children, 1);
        assert!(is(&f.remove(a).unwrap_err(), Errno::NOTEMPTY));
        f.set_busy("b", true);
        assert!(is(&f.remove(b).unwrap_err(), Errno::BUSY));
        f.set_busy("b", false);
        f.rename(b, "c").unwrap();
        assert!(dir.path().join("c").is_dir() && !dir.path().join("b").exists());
        assert!(is(&f.rename(b, "a").unwrap_err(), Errno::EXIST));
        f.remove(b).unwrap();
        f.remove(a).unwrap();
        assert!(is(&f.info(a).unwrap_err(), Errno::NOENT));
        assert!(f.list().unwrap().is_empty());
        // Ids are not reused.
        assert_eq!(f.create("a", NewLayer::Empty).unwrap(), 3);
    }

    #[test]
    fn lcfs_refuses_a_directory_that_is_not_lcfs() {
        let dir = tempfile::tempdir().unwrap();
        let err = Lcfs::open(dir.path()).unwrap_err();
        assert!(lcfs_uapi::is_not_lcfs(&err), "{err}");
    }
}
