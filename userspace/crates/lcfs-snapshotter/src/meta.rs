//! The metadata database: one redb file in the metadata layer of the filesystem (see
//! `Documentation/containerd.md` for why there).
//!
//! Tables (keys are snapshot keys, values JSON):
//!
//! * `snapshots`: every snapshot, [`Record`].
//! * `commit_intents`: Commits between their first and last step, [`Intent`], keyed by the
//!   active snapshot's key.
//! * `state`: `foreign`, the ids of the layers that existed when the database was made (the
//!   daemon never touches them).
//!
//! Every write transaction is committed with redb's `Durability::Immediate`: its data is
//! fsynced, which on LCFS is a commit of the whole filesystem, before the call returns.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const INTENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("commit_intents");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// A snapshot's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Read-write, from Prepare.
    Active,
    /// Read-only, from View.
    View,
    /// Frozen, from Commit.
    Committed,
}

impl Kind {
    /// The name containerd's filters use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }
}

/// One snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Kind.
    pub kind: Kind,
    /// Parent's key; empty for none.
    pub parent: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Created.
    pub created: SystemTime,
    /// Last updated.
    pub updated: SystemTime,
    /// The layer's id.
    pub layer_id: u64,
    /// The layer's name.
    pub layer_name: String,
}

/// A Commit in progress: the active snapshot's layer becomes committed snapshot `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The committed snapshot's key.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The layer (the active snapshot's).
    pub layer_id: u64,
    /// The layer's name once committed.
    pub target: String,
}

/// The metadata database.
#[derive(Debug)]
pub struct Meta {
    db: Database,
}

fn decode<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}

impl Meta {
    /// Opens (or creates) the database file `path`, with its tables.
    pub fn open(path: &Path) -> Result<Meta> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(SNAPSHOTS)?;
        tx.open_table(INTENTS)?;
        tx.open_table(STATE)?;
        tx.commit()?;
        Ok(Meta { db })
    }

    /// Snapshot `key`.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SNAPSHOTS)?;
        t.get(key)?.map(|v| decode(v.value())).transpose()
    }

    /// Every snapshot, in key order.
    pub fn all(&self) -> Result<Vec<(String, Record)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_owned(), decode(v.value())?));
        }
        Ok(out)
    }

    /// Whether a snapshot has `key` as its parent.
    pub fn has_children(&self, key: &str) -> Result<bool> {
        Ok(self.all()?.iter().any(|(_, r)| r.parent == key))
    }

    /// Inserts snapshot `key`; `AlreadyExists` if a snapshot has the key.
    pub fn insert_new(&self, key: &str, rec: &Record) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(SNAPSHOTS)?;
            if t.get(key)?.is_some() {
                return Err(Error::AlreadyExists(key.to_owned()));
            }
            t.insert(key, serde_json::to_vec(rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces snapshot `key`'s record.
    pub fn put(&self, key: &str, rec: &Record) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(SNAPSHOTS)?
            .insert(key, serde_json::to_vec(rec)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes snapshot `key`, and the commit intent an earlier failed Commit of it may have
    /// left; whether the snapshot was there.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let tx = self.db.begin_write()?;
        let was = tx.open_table(SNAPSHOTS)?.remove(key)?.is_some();
        tx.open_table(INTENTS)?.remove(key)?;
        tx.commit()?;
        Ok(was)
    }

    /// Records the intent to commit active snapshot `key`.
    pub fn put_intent(&self, key: &str, intent: &Intent) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(INTENTS)?
            .insert(key, serde_json::to_vec(intent)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets the intent of `key` (the commit was rolled back).
    pub fn drop_intent(&self, key: &str) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(INTENTS)?.remove(key)?;
        tx.commit()?;
        Ok(())
    }

    /// Every pending commit intent.
    pub fn intents(&self) -> Result<Vec<(String, Intent)>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(INTENTS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_owned(), decode(v.value())?));
        }
        Ok(out)
    }

    /// The last step of a Commit, in one transaction: active snapshot `key` and its intent go,
    /// committed snapshot `name` comes.
    pub fn finish_commit(&self, key: &str, name: &str, rec: &Record) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(SNAPSHOTS)?;
            t.remove(key)?;
            t.insert(name, serde_json::to_vec(rec)?.as_slice())?;
            tx.open_table(INTENTS)?.remove(key)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The foreign layers' ids, `None` before [`Meta::init_foreign`].
    pub fn foreign(&self) -> Result<Option<Vec<u64>>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(STATE)?;
        t.get("foreign")?.map(|v| decode(v.value())).transpose()
    }

    /// Records the layers found when the database was made, which the daemon leaves alone.
    pub fn init_foreign(&self, ids: &[u64]) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(STATE)?
            .insert("foreign", serde_json::to_vec(ids)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Meta {
        fn intents_example(&self) -> Intent {
            Intent {
                name: "n".into(),
                labels: BTreeMap::new(),
                layer_id: 9,
                target: "n".into(),
            }
        }
    }

    fn rec(parent: &str, id: u64) -> Record {
        Record {
            kind: Kind::Committed,
            parent: parent.into(),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::now(),
            layer_id: id,
            layer_name: format!("l{id}"),
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let m = Meta::open(&path).unwrap();
            m.insert_new("a", &rec("", 1)).unwrap();
            assert!(matches!(
                m.insert_new("a", &rec("", 2)),
                Err(Error::AlreadyExists(_))
            ));
            m.insert_new("b", &rec("a", 2)).unwrap();
            m.put_intent(
                "b",
                &Intent {
                    name: "c".into(),
                    labels: BTreeMap::new(),
                    layer_id: 2,
                    target: "c".into(),
                },
            )
            .unwrap();
            m.init_foreign(&[7, 8]).unwrap();
        }
        let m = Meta::open(&path).unwrap();
        assert_eq!(
            m.get("a").unwrap(),
            Some(rec("", 1)).map(|r| Record {
                updated: m.get("a").unwrap().unwrap().updated,
                ..r
            })
        );
        assert!(m.has_children("a").unwrap());
        assert!(!m.has_children("b").unwrap());
        assert_eq!(m.intents().unwrap().len(), 1);
        assert_eq!(m.foreign().unwrap(), Some(vec![7, 8]));
        m.finish_commit("b", "c", &rec("a", 2)).unwrap();
        let keys: Vec<String> = m.all().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "c"]);
        assert!(m.intents().unwrap().is_empty());
        m.put_intent("a", &m.intents_example()).unwrap();
        assert!(m.delete("a").unwrap());
        assert!(
            m.intents().unwrap().is_empty(),
            "delete drops the intent too"
        );
        assert!(!m.delete("a").unwrap());
        assert_eq!(m.get("a").unwrap(), None);
    }
}
