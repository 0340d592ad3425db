// SPDX-License-Identifier: GPL-2.0

//! A kernel `rw_semaphore` around data: many readers with `&T`, or one writer with `&mut T`
//! (the kernel crate has mutexes and spinlocks, but no reader-writer sleeping lock).

use core::cell::UnsafeCell;
use core::marker::PhantomPinned;

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::LockClassKey;
use kernel::types::{NotThreadSafe, Opaque};

/// Data behind a kernel `rw_semaphore`, with lockdep tracking under its own class.
///
/// # Invariants
///
/// `sem` is initialised (by [`RwSem::new`]) before any other use, and `data` is only reached
/// through a guard: shared (`&T`) while the semaphore is held for reading, exclusive (`&mut T`)
/// while it is held for writing.
#[pin_data]
pub(crate) struct RwSem<T> {
    #[pin]
    sem: Opaque<bindings::rw_semaphore>,
    #[pin]
    _pin: PhantomPinned,
    data: UnsafeCell<T>,
}

// SAFETY: the semaphore hands `&T` to several threads at once only while it is read-held, which
// needs `T: Sync`, and `&mut T` to one at a time, which needs `T: Send` to move across threads.
unsafe impl<T: Send + Sync> Sync for RwSem<T> {}
// SAFETY: the semaphore itself may move between threads while nobody holds it (it is pinned, so
// it does not move in memory); the data goes with it.
unsafe impl<T: Send> Send for RwSem<T> {}

/// A new [`RwSem`] named after its place in the source, with a lockdep class of its own.
macro_rules! new_rwsem {
    ($inner:expr, $name:literal $(,)?) => {
        $crate::vfs::RwSem::new($inner, kernel::c_str!($name), kernel::static_lock_class!())
    };
}
pub(crate) use new_rwsem;

impl<T> RwSem<T> {
    /// An initialiser of the semaphore around `data`; use [`new_rwsem!`].
    pub(crate) fn new(
        data: T,
        name: &'static CStr,
        key: Pin<&'static LockClassKey>,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for the call and `name` and `key` are static, so they
            // outlive the semaphore as lockdep requires.
            sem <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_rwsem(slot, name.as_char_ptr(), key.as_ptr())
            }),
            _pin: PhantomPinned,
            data: UnsafeCell::new(data),
        })
    }

    /// Takes the semaphore for reading: `&T`, shared with other readers. Sleeps.
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        // SAFETY: `sem` is initialised (type invariant) and pinned inside `self`, alive for the
        // call.
        unsafe { bindings::down_read(self.sem.get()) };
        // INVARIANT: just taken for reading.
        ReadGuard {
            sem: self,
            _not_send: NotThreadSafe,
        }
    }

    /// Takes the semaphore for writing: `&mut T`, alone. Sleeps.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        // SAFETY: as in `read`.
        unsafe { bindings::down_write(self.sem.get()) };
        // INVARIANT: just taken for writing.
        WriteGuard {
            sem: self,
            _not_send: NotThreadSafe,
        }
    }
}

/// `sem` read-held by the current task.
///
/// # Invariants
///
/// The current task holds `sem` for reading, and releases it on drop.
pub(crate) struct ReadGuard<'a, T> {
    sem: &'a RwSem<T>,
    // A rw_semaphore is released by the task that took it.
    _not_send: NotThreadSafe,
}

impl<T> core::ops::Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: read-held (type invariant): no writer has `&mut T` meanwhile.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: taken for reading by this task (type invariant).
        unsafe { bindings::up_read(self.sem.sem.get()) };
    }
}

/// `sem` write-held by the current task.
///
/// # Invariants
///
/// The current task holds `sem` for writing, and releases it on drop.
pub(crate) struct WriteGuard<'a, T> {
    sem: &'a RwSem<T>,
    // A rw_semaphore is released by the task that took it.
    _not_send: NotThreadSafe,
}

impl<T> core::ops::Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: write-held (type invariant): nobody else reaches the data meanwhile.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> core::ops::DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: write-held (type invariant), and `&mut self` makes this the only reference
        // through the guard.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: taken for writing by this task (type invariant).
        unsafe { bindings::up_write(self.sem.sem.get()) };
    }
}
