// SPDX-License-Identifier: GPL-2.0

//! A filesystem type's directory under `/sys/fs` and each mount's directory in it.
//!
//! The type's directory (`/sys/fs/<NAME>/`) is a `kset` made with the [`Registration`] and
//! unregistered after the type is (no mount is left then). Each mount gets a kobject in that
//! kset, named after its block device (`super_set_sysfs_name_bdev`, which also makes the
//! generic `FS_IOC_GETFSSYSFSPATH` answer `<NAME>/<device>`), with one read-only file per name
//! in [`FileSystem::SYSFS_ATTRS`]; [`FileSystem::sysfs_show`] writes a file's value.
//!
//! Lifetime, as ext4 and erofs handle it: a mount's kobject lives in its per-mount state (the
//! boxed `SbInfo`). At unmount `kobject_del` removes the files and waits for reads in progress,
//! then the mount's reference is put and the unmount waits until the kobject's `release` has
//! run (whoever held the last reference), before the state is freed. So neither the memory nor
//! this module's `release` function can go away under a late reference, and no read runs once
//! the filesystem's state starts going.
//!
//! [`Registration`]: super::Registration
//! [`FileSystem::SYSFS_ATTRS`]: super::FileSystem::SYSFS_ATTRS
//! [`FileSystem::sysfs_show`]: super::FileSystem::sysfs_show

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, Ordering};

use kernel::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

use super::bindings as ext;

/// A filesystem type's directory `/sys/fs/<NAME>/`: a `kset`, unregistered on drop.
///
/// # Invariants
///
/// `0` is a live kset this object made with `kset_create_and_add` and holds the reference of.
pub(super) struct SysfsRoot(NonNull<bindings::kset>);

// SAFETY: the kset is only handed to the kobject core (adding children, unregistering), which
// serialises its own changes; that may happen on any thread.
unsafe impl Send for SysfsRoot {}
// SAFETY: a shared reference only reads the pointer, fixed at creation.
unsafe impl Sync for SysfsRoot {}

impl SysfsRoot {
    /// Makes `/sys/fs/<name>/`.
    pub(super) fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: `fs_kobj` is the kernel's `/sys/fs` kobject, set at boot and never changed; a
        // plain read of the pointer.
        let parent = unsafe { bindings::fs_kobj };
        // SAFETY: `name` is a static NUL-terminated string (the kobject core copies it), no
        // uevent operations, and `parent` is live for as long as the kernel runs.
        let kset =
            unsafe { bindings::kset_create_and_add(name.as_char_ptr(), ptr::null(), parent) };
        // INVARIANT: a new kset (NULL on failure: out of memory, or the name taken).
        NonNull::new(kset).map(Self).ok_or(ENOMEM)
    }

    fn as_ptr(&self) -> *mut bindings::kset {
        self.0.as_ptr()
    }
}

impl Drop for SysfsRoot {
    fn drop(&mut self) {
        // SAFETY: the kset is live and its reference ours (type invariant); no mount's kobject is
        // in it any more (the type was unregistered and every unmount waited for its kobject's
        // release), so unregistering removes an empty directory and drops the last reference.
        unsafe { bindings::kset_unregister(self.as_ptr()) };
    }
}

/// What one attribute file shows: the text [`FileSystem::sysfs_show`] writes, at most a page.
///
/// [`FileSystem::sysfs_show`]: super::FileSystem::sysfs_show
pub(crate) struct SysfsOutput<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl SysfsOutput<'_> {
    /// The bytes written so far.
    fn len(&self) -> usize {
        self.len
    }
}

impl core::fmt::Write for SysfsOutput<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// One attribute file: the C `attribute` and its place in the filesystem's list.
#[repr(C)]
struct Attr {
    attr: Opaque<bindings::attribute>,
    index: usize,
}

/// A mount's directory `/sys/fs/<NAME>/<device>/` with its attribute files.
///
/// # Invariants
///
/// `attrs` is never pushed to or reallocated after [`SysfsDir::new`], so its elements keep their
/// addresses, which the registered files point to. While `registered` is set, `kobj` was
/// initialised and added with the kobject type [`SysfsDir::register`] got, this object holds
/// one reference to it, and `released` was initialised and is completed by `release_callback`
/// when the last reference goes. The object does not move while registered (it lives in the
/// boxed per-mount state).
pub(super) struct SysfsDir {
    kobj: Opaque<bindings::kobject>,
    released: Opaque<bindings::completion>,
    attrs: KVec<Attr>,
    registered: AtomicBool,
}

impl SysfsDir {
    /// The directory of a mount, not yet registered, with a file for each of `names`.
    pub(super) fn new(names: &'static [&'static CStr]) -> Result<Self> {
        let mut attrs = KVec::with_capacity(names.len(), GFP_KERNEL)?;
        for (index, name) in names.iter().enumerate() {
            let attr = bindings::attribute {
                name: name.as_char_ptr(),
                // Read-only for everyone, as most of ext4's and btrfs's figures are.
                mode: 0o444,
                ..Default::default()
            };
            attrs.push(
                Attr {
                    attr: Opaque::new(attr),
                    index,
                },
                GFP_KERNEL,
            )?;
        }
        // INVARIANT: not registered; `attrs` is complete and never grows from here on. The
        // kobject starts zeroed, as `kobject_init` requires.
        Ok(Self {
            kobj: Opaque::zeroed(),
            released: Opaque::uninit(),
            attrs,
            registered: AtomicBool::new(false),
        })
    }

    /// Adds the directory as `name` in `root` with its files.
    ///
    /// # Safety
    ///
    /// `self` does not move until [`Self::unregister`] (or drop) ran; `name` is a NUL-terminated
    /// string live for the call; `ktype` is a static kobject type whose `release` is
    /// [`release_callback`] and whose `sysfs_ops` may call back into `self`'s owner until
    /// `unregister` returns. Called at most once.
    pub(super) unsafe fn register(
        &self,
        root: &SysfsRoot,
        name: *const c_char,
        ktype: &'static bindings::kobj_type,
    ) -> Result {
        for a in &self.attrs {
            // SAFETY: a live `attribute` at its final address (type invariant: `attrs` does not
            // grow, and `self` does not move, by the contract); the helper sets its lock class
            // key, which lockdep needs for an attribute not in static memory.
            unsafe { ext::lcfs_sysfs_attr_init(a.attr.get().cast()) };
        }
        // SAFETY: `released` is ours and not in use (not registered yet); initialising it in
        // place, at an address that does not change until the unregistration (contract).
        unsafe { ext::lcfs_init_completion(self.released.get().cast()) };
        let kobj = self.kobj.get();
        // SAFETY: the zeroed kobject is not initialised yet, so nobody else looks at it; its
        // `kset` is set before it is added, as ext4 and erofs do, to put it in `root`.
        unsafe { (*kobj).kset = root.as_ptr() };
        // SAFETY: `kobj` is zeroed but for its kset (see `new`), at a fixed address (contract);
        // `ktype` is static; `name` is a live string, which "%s" copies into the kobject's name.
        let r = unsafe {
            bindings::kobject_init_and_add(kobj, ktype, ptr::null_mut(), c"%s".as_char_ptr(), name)
        };
        if r != 0 {
            // SAFETY: the kobject was initialised by the call, even though adding it failed: the
            // reference it holds must be put, which runs `release_callback` (the ktype's), which
            // completes `released`, initialised above.
            unsafe {
                bindings::kobject_put(kobj);
                bindings::wait_for_completion(self.released.get());
            }
            return Err(Error::from_errno(r));
        }
        // INVARIANT: added, with our reference.
        self.registered.store(true, Ordering::Release);
        for a in &self.attrs {
            // SAFETY: `kobj` is registered (above); the attribute is live and stays at its
            // address until `unregister` removes the directory with every file in it.
            let r = unsafe { bindings::sysfs_create_file_ns(kobj, a.attr.get(), ptr::null()) };
            if r != 0 {
                self.unregister();
                return Err(Error::from_errno(r));
            }
        }
        Ok(())
    }

    /// Removes the directory (waiting for reads of its files in progress) and waits until the
    /// kobject is released; does nothing if it is not registered.
    pub(super) fn unregister(&self) {
        if !self.registered.swap(false, Ordering::AcqRel) {
            return;
        }
        let kobj = self.kobj.get();
        // SAFETY: registered (type invariant, taken back by the swap above, so this runs once):
        // `kobject_del` removes the directory and its files and waits for `show` calls in
        // progress; then this object's reference is put, and the wait ends once `release` ran,
        // after which nothing uses `kobj` or `released` any more (the kobject core reads what it
        // needs after `release` from locals).
        unsafe {
            bindings::kobject_del(kobj);
            bindings::kobject_put(kobj);
            bindings::wait_for_completion(self.released.get());
        }
    }

    /// The directory whose kobject is `kobj`.
    ///
    /// # Safety
    ///
    /// `kobj` is the `kobj` of a live, registered `SysfsDir`, live for `'a`.
    pub(super) unsafe fn from_kobj<'a>(kobj: *mut bindings::kobject) -> &'a Self {
        // SAFETY: `kobj` is the `kobj` field of a live `SysfsDir` (contract), so the containing
        // object is live for `'a`; only shared references to it are made.
        unsafe { &*kernel::container_of!(Opaque::cast_from(kobj), Self, kobj) }
    }
}

impl Drop for SysfsDir {
    fn drop(&mut self) {
        // A mount that failed after registering: taken out here (process context: the state is
        // dropped by unmount or a failed mount, never from an RCU callback).
        self.unregister();
    }
}

/// `release` of a mount's kobject: its last reference is gone.
///
/// # Safety
///
/// Called only by the kobject core, for the `kobj` of a `SysfsDir` registered with a ktype
/// whose `release` this is.
pub(super) unsafe extern "C" fn release_callback(kobj: *mut bindings::kobject) {
    // SAFETY: `kobj` is the kobject of a registered `SysfsDir` (contract), which waits for this
    // completion before it goes away (`unregister`), so it is live for the call.
    let dir = unsafe { SysfsDir::from_kobj(kobj) };
    // SAFETY: `released` was initialised at registration (type invariant); completing it lets
    // the waiting unregistration go on: `dir` is not used after this.
    unsafe { bindings::complete(dir.released.get()) };
}

/// The index in [`FileSystem::SYSFS_ATTRS`] of the attribute file `attr` and an output over
/// `buf`, for a `show` call.
///
/// # Safety
///
/// `attr` is the `attribute` of an `Attr` of a registered `SysfsDir`, live for the call; `buf`
/// is the page sysfs hands `show` (`PAGE_SIZE` bytes, ours to write for the call, for `'a`).
///
/// [`FileSystem::SYSFS_ATTRS`]: super::FileSystem::SYSFS_ATTRS
pub(super) unsafe fn show_args<'a>(
    attr: *mut bindings::attribute,
    buf: *mut c_char,
) -> (usize, SysfsOutput<'a>) {
    // SAFETY: `attr` is the `attr` field of a live `Attr` (contract); only its `index` is read.
    let a = unsafe { &*kernel::container_of!(Opaque::cast_from(attr), Attr, attr) };
    // SAFETY: `buf` is sysfs's page for this call, `PAGE_SIZE` writable bytes used by nobody
    // else until `show` returns (contract); `c_char` and `u8` have the same size and alignment.
    let page =
        unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE) };
    (a.index, SysfsOutput { buf: page, len: 0 })
}

/// The value `show` returns for `out` after the filesystem wrote it: its length, or the error.
pub(super) fn show_result(r: Result, out: &SysfsOutput<'_>) -> isize {
    match r {
        Ok(()) => isize::try_from(out.len()).unwrap_or(0),
        // CAST: an errno, in `ssize_t`'s range.
        Err(e) => e.to_errno() as isize,
    }
}
