// SPDX-License-Identifier: GPL-2.0 OR MIT

//! Reclaim of removed layers: the reclaim queue and the bounded steps that empty it.
//!
//! Removing a layer takes its record and name out of the layer tree and puts the root of its
//! tree on the reclaim queue, in O(1) whatever the layer's size. The queue is a stack of
//! [`ReclaimRecord`]s kept in the layer tree, keyed `(RECLAIM_QUEUE, RECLAIM, place)`; each
//! entry holds one reference to a node of a removed tree and how far dropping its children
//! got. A step ([`Volume::reclaim`]) takes the top entry and drops one node
//! ([`super::tree::Txn::drop_step`]): a shared node loses the entry's reference, a leaf
//! releases the data it references and is freed, an exclusive internal node pushes its next
//! child on top of itself, and is freed once its last child is done. The stack is never
//! deeper than the trees being dropped plus one entry per removed layer.
//!
//! Every step is a complete change of the running transaction, so a commit can fall between
//! any two, and a crash resumes from the last commit's queue. The committed queue is part of
//! the filesystem's references: fsck counts each entry's node, and the children of a node from
//! its progress on.

use super::node::{key_after, Key};
use super::records::{kind, ReclaimRecord, RECLAIM_QUEUE, RECLAIM_RECORD_SIZE};
use super::refmap::MapAccess;
use super::tree::{DropStep, Error};
use super::volume::{tree_kind, Device, Volume};
use super::FormatError;

/// Key of place `place` in the reclaim queue.
fn queue_key(place: u64) -> Key {
    Key::new(RECLAIM_QUEUE, kind::RECLAIM, place)
}

impl<S: Device, M: MapAccess<S>> Volume<S, M> {
    /// Entries in the reclaim queue: 0 once every removed layer's space is free (after the
    /// next commit). The first call after opening counts them (the queue is short: a few
    /// entries per removed layer).
    pub fn reclaim_queued(&mut self) -> Result<u64, Error> {
        self.whole()?;
        match self.reclaim_queued {
            Some(n) => Ok(n),
            None => {
                self.flush_layer()?;
                let n = self.count_reclaim_queue()?;
                self.reclaim_queued = Some(n);
                Ok(n)
            }
        }
    }

    /// Counts one entry more (`add`) or less; part of a change.
    fn count_queued(&mut self, add: bool) -> Result<(), Error> {
        let n = self.reclaim_queued()?;
        let n = if add {
            n.checked_add(1)
        } else {
            n.checked_sub(1)
        };
        self.reclaim_queued =
            Some(n.ok_or(Error::Corrupt(FormatError::BadField("reclaim queue count")))?);
        Ok(())
    }

    fn count_reclaim_queue(&mut self) -> Result<u64, Error> {
        let root = self.sb.layer_root;
        let total = self.sb.total_blocks;
        let mut from = queue_key(0);
        let mut n = 0u64;
        loop {
            let got = self.txn(tree_kind::LAYERS).next(root, &from, |k, v| {
                (k.id == RECLAIM_QUEUE && k.kind == kind::RECLAIM)
                    .then(|| ReclaimRecord::decode(v, total).map(|_| *k))
            })?;
            let Some(Some(k)) = got else {
                return Ok(n);
            };
            let k = k?;
            n = n.checked_add(1).ok_or(Error::Invalid)?;
            match key_after(&k) {
                Some(after) => from = after,
                None => return Ok(n),
            }
        }
    }

    /// The top entry of the queue and its place.
    fn reclaim_top(&mut self) -> Result<Option<(u64, ReclaimRecord)>, Error> {
        self.flush_layer()?;
        let root = self.sb.layer_root;
        let total = self.sb.total_blocks;
        let got = self
            .txn(tree_kind::LAYERS)
            .prev(root, &queue_key(u64::MAX), |k, v| {
                (k.id == RECLAIM_QUEUE && k.kind == kind::RECLAIM)
                    .then(|| ReclaimRecord::decode(v, total).map(|r| (k.offset, r)))
            })?;
        Ok(got.flatten().transpose()?)
    }

    /// Puts `rec` at `place` of the queue (replacing what is there); part of a change.
    fn reclaim_put(&mut self, place: u64, rec: &ReclaimRecord) -> Result<bool, Error> {
        let mut buf = [0u8; RECLAIM_RECORD_SIZE];
        rec.encode(&mut buf)?;
        let root = self.sb.layer_root;
        let (root, replaced) =
            self.txn(tree_kind::LAYERS)
                .insert_replacing(root, &queue_key(place), &buf)?;
        self.sb.layer_root = root;
        Ok(replaced)
    }

    /// Pushes the tree under `root` (a reference the caller hands over) onto the queue; part of
    /// a change that admitted one layer-tree update.
    pub(super) fn reclaim_push_tree(&mut self, root: u64) -> Result<(), Error> {
        self.whole()?;
        if root == 0 {
            return Ok(());
        }
        // Counted before the entry goes in (the first count after opening walks the queue).
        self.reclaim_queued()?;
        let place = match self.reclaim_top()? {
            Some((top, _)) => top.checked_add(1).ok_or(Error::NoSpace)?,
            None => 0,
        };
        let rec = ReclaimRecord {
            block: root,
            level: None,
            next: 0,
        };
        if self.reclaim_put(place, &rec)? {
            return Err(Error::Corrupt(FormatError::BadField("reclaim queue")));
        }
        self.count_queued(true)
    }

    /// Drops at most `steps` nodes of removed layers' trees; returns the entries left in the
    /// queue. The space freed is free after the next commit (as any freed block is). Fails
    /// with `NoSpace`, having changed nothing more, when even the metadata reserve cannot take
    /// the queue's next update: a commit frees what earlier steps released.
    pub fn reclaim(&mut self, steps: u32) -> Result<u64, Error> {
        self.whole()?;
        self.live()?;
        for _ in 0..steps {
            if self.reclaim_queued()? == 0 {
                break;
            }
            // A step replaces one entry and may add one: two layer-tree updates, from the
            // reserve (reclaim is what gives space back).
            self.admit(2, false)?;
            let Some((place, rec)) = self.reclaim_top()? else {
                return Err(Error::Corrupt(FormatError::BadField("reclaim queue count")));
            };
            self.mutate(|v| {
                match v
                    .txn(tree_kind::FS)
                    .drop_step(rec.block, rec.level, rec.next)?
                {
                    DropStep::Done => {
                        let root = v.sb.layer_root;
                        v.sb.layer_root = v
                            .txn(tree_kind::LAYERS)
                            .remove_present(root, &queue_key(place))?;
                        v.count_queued(false)?;
                    }
                    DropStep::Descend { child, level, next } => {
                        let parent = ReclaimRecord {
                            block: rec.block,
                            level: Some(level.checked_add(1).ok_or(Error::Invalid)?),
                            next,
                        };
                        v.reclaim_put(place, &parent)?;
                        let child = ReclaimRecord {
                            block: child,
                            level: Some(level),
                            next: 0,
                        };
                        let above = place.checked_add(1).ok_or(Error::NoSpace)?;
                        if v.reclaim_put(above, &child)? {
                            return Err(Error::Corrupt(FormatError::BadField("reclaim queue")));
                        }
                        v.count_queued(true)?;
                    }
                }
                Ok(())
            })?;
        }
        self.reclaim_queued()
    }
}
