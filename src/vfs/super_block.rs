// SPDX-License-Identifier: GPL-2.0

//! Superblock handles.

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

use super::bindings as ext;
use super::inode::{Iget, Inode, NewInode};
use super::registration::{ARef, FileSystem};

/// Reads a block of `sb`'s device; shared by [`NewSuperBlock`] and [`SuperBlock`].
///
/// # Safety
///
/// `sb` must be a live block-device superblock.
unsafe fn read_block<R>(
    sb: *mut bindings::super_block,
    block: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    // SAFETY: a block-device superblock has an open `s_bdev` for its whole life.
    let mapping = unsafe { (*(*sb).s_bdev).bd_mapping };
    // SAFETY: `mapping` belongs to the open device.
    unsafe { super::block::with_block(mapping, block, f) }
}

/// The device name of `sb` (`s_id`), for log messages.
///
/// # Safety
///
/// `sb` must be live for `'a`.
unsafe fn id<'a>(sb: *mut bindings::super_block) -> &'a str {
    // SAFETY: `s_id` is a NUL-terminated `char[32]` set before `fill_super` and never changed.
    let raw = unsafe { &(*sb).s_id };
    // SAFETY: `c_char` and `u8` have the same size and alignment.
    let bytes = unsafe { core::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len()) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes
        .get(..len)
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or("?")
}

/// A superblock being filled: not yet visible, and without its per-mount state.
///
/// # Invariants
///
/// `sb` is a live, locked block-device superblock inside `fill_super`.
pub(crate) struct NewSuperBlock<'a, T: FileSystem> {
    sb: NonNull<bindings::super_block>,
    _p: PhantomData<(&'a (), T)>,
}

impl<'a, T: FileSystem> NewSuperBlock<'a, T> {
    /// # Safety
    ///
    /// `sb` must be a new block-device superblock in `fill_super`, live for `'a`.
    pub(super) unsafe fn from_raw(sb: *mut bindings::super_block) -> Self {
        // INVARIANT: per the contract.
        Self {
            // SAFETY: the VFS never passes a null superblock.
            sb: unsafe { NonNull::new_unchecked(sb) },
            _p: PhantomData,
        }
    }

    /// Device name, for log messages.
    pub(crate) fn id(&self) -> &str {
        // SAFETY: live by the type invariant.
        unsafe { id(self.sb.as_ptr()) }
    }

    /// Size of the device in bytes.
    pub(crate) fn device_bytes(&self) -> u64 {
        // SAFETY: the device is open (type invariant).
        let bytes = unsafe { ext::lcfs_bdev_nr_bytes((*self.sb.as_ptr()).s_bdev.cast()) };
        u64::try_from(bytes).unwrap_or(0)
    }

    /// Reads block `block` and calls `f` with its bytes.
    pub(crate) fn read_block<R>(&self, block: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        // SAFETY: live block-device superblock (type invariant).
        unsafe { read_block(self.sb.as_ptr(), block, f) }
    }

    /// Sets the UUID reported to userspace (`FS_IOC_GETFSUUID`, `/proc/self/mountinfo` tools).
    pub(crate) fn set_uuid(&self, uuid: &[u8; 16]) {
        // SAFETY: the superblock is private to this mount until `fill_super` returns.
        unsafe {
            let sb = self.sb.as_ptr();
            (*sb).s_uuid.b = *uuid;
            (*sb).s_uuid_len = 16;
        }
    }
}

/// A mounted superblock of filesystem `T`.
///
/// # Invariants
///
/// The superblock is live and its `s_fs_info` points to a `T::Info`.
#[repr(transparent)]
pub(crate) struct SuperBlock<T: FileSystem>(Opaque<bindings::super_block>, PhantomData<T>);

impl<T: FileSystem> SuperBlock<T> {
    /// # Safety
    ///
    /// `sb` must be a superblock of `T` whose `s_fs_info` holds a `T::Info`, live for `'a`.
    pub(super) unsafe fn from_raw<'a>(sb: *mut bindings::super_block) -> &'a Self {
        // SAFETY: `Self` is a transparent wrapper of `super_block`; validity per the contract.
        unsafe { &*sb.cast::<Self>() }
    }

    pub(super) fn as_ptr(&self) -> *mut bindings::super_block {
        self.0.get()
    }

    /// The per-mount state.
    pub(crate) fn info(&self) -> &T::Info {
        // SAFETY: `s_fs_info` holds a `T::Info` for the life of the superblock (type invariant).
        unsafe { &*(*self.as_ptr()).s_fs_info.cast::<T::Info>() }
    }

    /// Finds inode `ino` in the inode cache, or allocates a new one to be initialised.
    pub(crate) fn iget(&self, ino: u64) -> Result<Iget<T>> {
        // SAFETY: the superblock is live; `iget_locked` returns a referenced inode or null.
        let inode = unsafe { bindings::iget_locked(self.as_ptr(), ino) };
        let inode = NonNull::new(inode).ok_or(ENOMEM)?;
        // SAFETY: `inode` is referenced.
        if unsafe { ext::lcfs_inode_is_new(inode.as_ptr().cast()) } {
            // SAFETY: a new inode is locked (I_NEW) and ours to initialise.
            Ok(Iget::New(unsafe { NewInode::from_raw(inode) }))
        } else {
            // SAFETY: `iget_locked` returned a reference to a fully initialised inode of `T`.
            Ok(Iget::Cached(unsafe { ARef::from_raw(inode.cast::<Inode<T>>()) }))
        }
    }
}
