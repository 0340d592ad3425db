// SPDX-License-Identifier: GPL-2.0

//! KUnit tests that run the shared format core inside the kernel: the same tree code the tools
//! use, built with the kernel's flags (overflow checks on) and run under KASAN and lockdep.

use kernel::prelude::kunit_tests;

/// An in-memory device for the suites below.
mod mem {
    use kernel::prelude::*;

    use crate::format::node::NODE_SIZE;
    use crate::format::tree::{BlockStore, Error};
    use crate::format::volume::Device;

    use super::super::store::KBlock;

    /// Blocks in one vmalloc'ed area, with kmalloc'ed block buffers; allocation failures are
    /// errors, not panics.
    pub(super) struct MemDev {
        pub(super) data: KVVec<u8>,
    }

    impl MemDev {
        pub(super) fn new(blocks: usize) -> Result<Self> {
            Ok(Self {
                data: KVVec::from_elem(0u8, blocks * NODE_SIZE, GFP_KERNEL)?,
            })
        }
    }

    impl BlockStore for MemDev {
        type Buf = KBlock;

        fn alloc_buf(&mut self) -> Result<KBlock, Error> {
            KBlock::new()
        }

        fn read(&mut self, blocknr: u64, buf: &mut KBlock) -> Result<(), Error> {
            let start = usize::try_from(blocknr).map_err(|_| Error::Io)? * NODE_SIZE;
            let src = self.data.get(start..start + NODE_SIZE).ok_or(Error::Io)?;
            buf.as_mut().copy_from_slice(src);
            Ok(())
        }

        fn write(&mut self, blocknr: u64, buf: &KBlock) -> Result<(), Error> {
            let start = usize::try_from(blocknr).map_err(|_| Error::Io)? * NODE_SIZE;
            let dst = self
                .data
                .get_mut(start..start + NODE_SIZE)
                .ok_or(Error::Io)?;
            dst.copy_from_slice(buf.as_ref());
            Ok(())
        }

        fn total_blocks(&self) -> u64 {
            (self.data.len() / NODE_SIZE) as u64
        }
    }

    impl Device for MemDev {
        fn flush(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }
}

#[kunit_tests(lcfs_core_tree)]
mod tests {
    use kernel::prelude::*;

    use super::mem::MemDev;
    use crate::format::node::{Key, NODE_SIZE};
    use crate::format::tree::{Allocator, BlockStore, Error, Txn};

    const BLOCKS: usize = 256;

    /// Reference counts in an array; freed blocks are reused only after `commit`.
    struct MemAlloc {
        refs: [u32; BLOCKS],
        freed: [bool; BLOCKS],
    }

    impl MemAlloc {
        fn live(&self) -> usize {
            self.refs.iter().filter(|&&r| r > 0).count()
        }
    }

    impl<S: BlockStore> Allocator<S> for MemAlloc {
        fn alloc(&mut self, _: &mut S) -> Result<u64, Error> {
            // Block 0 is never handed out: it means "empty tree".
            for b in 1..BLOCKS {
                if self.refs[b] == 0 && !self.freed[b] {
                    self.refs[b] = 1;
                    return Ok(b as u64);
                }
            }
            Err(Error::NoSpace)
        }

        fn refcount(&mut self, _: &mut S, blocknr: u64) -> Result<u32, Error> {
            let b = usize::try_from(blocknr).map_err(|_| Error::Invalid)?;
            self.refs.get(b).copied().ok_or(Error::Invalid)
        }

        fn inc_ref(&mut self, _: &mut S, blocknr: u64, len: u64) -> Result<(), Error> {
            if len != 1 {
                return Err(Error::Invalid);
            }
            let b = usize::try_from(blocknr).map_err(|_| Error::Invalid)?;
            let r = self.refs.get_mut(b).ok_or(Error::Invalid)?;
            *r += 1;
            Ok(())
        }

        fn dec_ref(&mut self, _: &mut S, blocknr: u64, len: u64) -> Result<(), Error> {
            if len != 1 {
                return Err(Error::Invalid);
            }
            let b = usize::try_from(blocknr).map_err(|_| Error::Invalid)?;
            let r = self.refs.get_mut(b).ok_or(Error::Invalid)?;
            *r = r.checked_sub(1).ok_or(Error::Invalid)?;
            if *r == 0 {
                self.freed[b] = true;
            }
            Ok(())
        }
    }

    fn key(i: u64) -> Key {
        Key::new(i * 7 % 1000, (i % 3) as u8, i)
    }

    #[test]
    fn tree_insert_clone_remove_in_kernel() -> Result {
        let mut store = MemDev::new(BLOCKS)?;
        let mut alloc = KBox::new(
            MemAlloc {
                refs: [0; BLOCKS],
                freed: [false; BLOCKS],
            },
            GFP_KERNEL,
        )?;
        let mut txn = Txn {
            store: &mut store,
            alloc: &mut *alloc,
            generation: 1,
            fsid: 1,
            tree: 1,
            leaf_refs: None,
        };
        let mut root = 0;
        for i in 0..400 {
            root = txn.insert(root, &key(i), &[i as u8; 60]).map_err(|_| EIO)?;
        }
        assert_eq!(txn.verify(root, &mut |_, _| {}), Ok(400));
        for i in 0..400 {
            assert_eq!(
                txn.lookup(root, &key(i), |v| v.first().copied()),
                Ok(Some(Some(i as u8)))
            );
        }
        // A clone shares everything; removing from it leaves the original whole.
        txn.generation = 2;
        let clone = txn.clone_tree(root).map_err(|_| EIO)?;
        let mut croot = clone;
        for i in 0..200 {
            croot = txn.remove(croot, &key(i)).map_err(|_| EIO)?.0;
        }
        assert_eq!(txn.verify(croot, &mut |_, _| {}), Ok(200));
        assert_eq!(txn.verify(root, &mut |_, _| {}), Ok(400));
        txn.drop_tree(croot).map_err(|_| EIO)?;
        txn.drop_tree(root).map_err(|_| EIO)?;
        assert_eq!(alloc.live(), 0);
        Ok(())
    }

    #[test]
    fn damaged_node_is_an_error() -> Result {
        let mut store = MemDev::new(BLOCKS)?;
        let mut alloc = KBox::new(
            MemAlloc {
                refs: [0; BLOCKS],
                freed: [false; BLOCKS],
            },
            GFP_KERNEL,
        )?;
        let mut txn = Txn {
            store: &mut store,
            alloc: &mut *alloc,
            generation: 1,
            fsid: 1,
            tree: 1,
            leaf_refs: None,
        };
        let mut root = 0;
        for i in 0..300 {
            root = txn.insert(root, &key(i), &[1; 30]).map_err(|_| EIO)?;
        }
        let at = usize::try_from(root).map_err(|_| EINVAL)? * NODE_SIZE + 200;
        txn.store.data[at] ^= 0x40;
        assert!(txn.verify(root, &mut |_, _| {}).is_err());
        assert!(txn.lookup(root, &key(5), |_| ()).is_err());
        Ok(())
    }
}

#[kunit_tests(lcfs_core_volume)]
mod volume_tests {
    use kernel::prelude::*;

    use super::mem::MemDev;
    use crate::format::node::Key;
    use crate::format::records::{kind, put_inline_data, Timespec};
    use crate::format::superblock::Superblock;
    use crate::format::tree::Error;
    use crate::format::volume::Volume;

    const BLOCKS: usize = 2048;
    const NOW: Timespec = Timespec {
        sec: 1_700_000_000,
        nsec: 0,
    };

    fn inline(n: u8) -> [u8; 34] {
        let mut v = [0u8; 34];
        // 32 data bytes after the 2-byte length.
        let _ = put_inline_data(&mut v, &[n; 32]);
        v
    }

    /// Format, fill a layer, freeze it, clone it, change the clone, diff, commit, reopen, remove
    /// both layers: the same volume code as mkfs and fsck, on the kernel's allocator and flags.
    #[test]
    fn layers_clone_diff_remove_in_kernel() -> Result {
        let dev = MemDev::new(BLOCKS)?;
        let sb = Superblock::new(BLOCKS as u64, [7; 16], 1_700_000_000);
        let mut vol = Volume::format(dev, sb, Some(b"base"), NOW).map_err(|_| EIO)?;
        let free0 = vol.superblock().free_blocks;
        // Enough items for a two-level tree (a leaf holds about 70 of them).
        for i in 0..160u64 {
            vol.insert(1, &Key::new(i + 2, kind::INLINE, 0), &inline(i as u8))
                .map_err(|_| EIO)?;
        }
        vol.freeze_layer(1).map_err(|_| EIO)?;
        let child = vol.create_layer(b"child", Some(1), NOW).map_err(|_| EIO)?;
        vol.commit(NOW).map_err(|_| EIO)?;
        let before = vol.superblock().free_blocks;
        vol.insert(child, &Key::new(7, kind::INLINE, 0), &inline(99))
            .map_err(|_| EIO)?;
        assert!(vol
            .remove(child, &Key::new(100, kind::INLINE, 0))
            .map_err(|_| EIO)?);
        let mut changes = 0;
        vol.diff(child, Key::MIN, &mut |_| {
            changes += 1;
            Ok(true)
        })
        .map_err(|_| EIO)?;
        assert_eq!(changes, 2);
        vol.commit(NOW).map_err(|_| EIO)?;
        // Only the changed paths were copied.
        assert!(before - vol.superblock().free_blocks < 16);
        assert_eq!(vol.remove_layer(1), Err(Error::Busy));
        let (mut vol, other) = Volume::open(vol.into_store()).map_err(|_| EIO)?;
        assert!(other.is_none());
        assert_eq!(
            vol.lookup(child, &Key::new(7, kind::INLINE, 0), |v| v.len()),
            Ok(Some(34))
        );
        vol.remove_layer(child).map_err(|_| EIO)?;
        vol.remove_layer(1).map_err(|_| EIO)?;
        // Removal queues the trees; reclaim frees them.
        assert!(vol.reclaim_queued().map_err(|_| EIO)? > 0);
        assert_eq!(vol.reclaim(u32::MAX), Ok(0));
        vol.commit(NOW).map_err(|_| EIO)?;
        // Everything but the first layer's root tree node and the layer tree came back.
        assert_eq!(vol.superblock().free_blocks, free0 + 2);
        Ok(())
    }

    /// Names, links and a path-level diff in a clone.
    #[test]
    fn namespace_and_path_diff_in_kernel() -> Result {
        use crate::format::namespace::{NewInode, PathChange};
        use crate::format::records::mode;
        use crate::format::ROOT_INO;

        let dev = MemDev::new(BLOCKS)?;
        let sb = Superblock::new(BLOCKS as u64, [8; 16], 1_700_000_000);
        let mut vol = Volume::format(dev, sb, Some(b"base"), NOW).map_err(|_| EIO)?;
        let dir = NewInode {
            mode: mode::S_IFDIR | 0o755,
            ..NewInode::default()
        };
        let file = NewInode {
            mode: mode::S_IFREG | 0o644,
            ..NewInode::default()
        };
        let etc = vol
            .create(1, ROOT_INO, b"etc", &dir, NOW)
            .map_err(|_| EIO)?;
        let f = vol.create(1, etc, b"hosts", &file, NOW).map_err(|_| EIO)?;
        vol.write_inline(1, f, b"127.0.0.1 localhost\n", NOW)
            .map_err(|_| EIO)?;
        vol.freeze_layer(1).map_err(|_| EIO)?;
        let c = vol.create_layer(b"c", Some(1), NOW).map_err(|_| EIO)?;
        let later = Timespec {
            sec: NOW.sec + 1,
            nsec: 0,
        };
        vol.write_inline(c, f, b"::1 localhost\n", later)
            .map_err(|_| EIO)?;
        vol.create(c, etc, b"resolv.conf", &file, later)
            .map_err(|_| EIO)?;
        let (mut added, mut modified, mut other) = (0, 0, 0);
        vol.diff_paths(c, &mut |change, path| {
            match (change, path) {
                (PathChange::Added, b"/etc/resolv.conf") => added += 1,
                (PathChange::Modified, b"/etc/hosts" | b"/etc") => modified += 1,
                _ => other += 1,
            }
            true
        })
        .map_err(|_| EIO)?;
        assert_eq!((added, modified, other), (1, 2, 0));
        assert_eq!(vol.unlink(c, ROOT_INO, b"etc", later), Err(Error::NotEmpty));
        Ok(())
    }
}
