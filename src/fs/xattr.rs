// SPDX-License-Identifier: GPL-2.0

//! Extended attributes: the format core's xattr items behind the VFS layer's
//! [`XattrOperations`]. The mount root's list of layers has none and takes none.

use kernel::prelude::*;

use crate::format::tree::Error as CoreError;
use crate::vfs::{Inode, Locked, XattrOperations, XattrSet};

use super::commit::retry_for_space;
use super::errno::{errno, xattr_errno};
use super::namespace::refresh;
use super::time::timestamp;
use super::Lcfs;

#[vtable]
impl XattrOperations for Lcfs {
    fn get_xattr(inode: &Inode<Self>, name: &[u8], buf: &mut [u8]) -> Result<usize> {
        get_xattr(inode, name, buf)
    }

    fn set_xattr(
        inode: Locked<'_, Self>,
        name: &[u8],
        value: Option<&[u8]>,
        how: XattrSet,
    ) -> Result {
        set_xattr(inode, name, value, how)
    }

    fn list_xattrs(inode: &Inode<Self>, f: &mut dyn FnMut(&[u8]) -> bool) -> Result {
        list_xattrs(inode, f)
    }
}

fn get_xattr(inode: &Inode<Lcfs>, name: &[u8], buf: &mut [u8]) -> Result<usize> {
    let info = inode.info();
    if info.layer == 0 {
        return Err(ENODATA);
    }
    inode
        .super_block()
        .info()
        .lock()
        .get_xattr(info.layer, info.ino, name, buf)
        .map_err(xattr_errno)
}

fn set_xattr(inode: Locked<'_, Lcfs>, name: &[u8], value: Option<&[u8]>, how: XattrSet) -> Result {
    let info = inode.info();
    let sb = inode.super_block();
    if info.layer == 0 {
        return Err(EPERM);
    }
    if sb.read_only() {
        return Err(EROFS);
    }
    let now = timestamp();
    {
        let mut vol = sb.info().lock();
        let exists = match vol.get_xattr(info.layer, info.ino, name, &mut []) {
            Ok(_) => true,
            Err(CoreError::NotFound) => false,
            Err(e) => return Err(xattr_errno(e)),
        };
        match (how, exists) {
            (XattrSet::Create, true) => return Err(EEXIST),
            (XattrSet::Replace, false) => return Err(ENODATA),
            _ => {}
        }
        retry_for_space(sb, &mut vol, |vol| match value {
            Some(v) => vol.set_xattr(info.layer, info.ino, name, v, now),
            None => vol.remove_xattr(info.layer, info.ino, name, now),
        })
        .map_err(xattr_errno)?;
        // An attribute change gives the file a page cache of its own, as a data change does,
        // and contents of its own for good (a regular file's: `Invalid` for other kinds).
        super::share::unshare(&inode);
        match retry_for_space(sb, &mut vol, |vol| vol.renew_data_id(info.layer, info.ino)) {
            Ok(_) | Err(CoreError::Invalid) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    refresh(inode)
}

fn list_xattrs(inode: &Inode<Lcfs>, f: &mut dyn FnMut(&[u8]) -> bool) -> Result {
    let info = inode.info();
    if info.layer == 0 {
        return Ok(());
    }
    inode
        .super_block()
        .info()
        .lock()
        .list_xattrs(info.layer, info.ino, f)
        .map_err(errno)
}
