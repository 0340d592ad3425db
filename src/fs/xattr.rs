// SPDX-License-Identifier: GPL-2.0

//! Extended attributes: the format core's xattr items behind the VFS layer's
//! [`XattrOperations`]. The mount root's list of layers has none and takes none.

use kernel::prelude::*;

use crate::format::namespace::SetAttr;
use crate::format::tree::Error as CoreError;
use crate::vfs::{AclKind, Inode, Locked, XattrOperations, XattrSet};

use super::commit::{retry_for_space, VolGuard};
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

    fn set_acl(
        inode: Locked<'_, Self>,
        kind: AclKind,
        value: Option<&[u8]>,
        perm: Option<u16>,
    ) -> Result {
        set_acl(inode, kind, value, perm)
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
        .read_layer(info.layer)
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
        let mut vol = sb.info().lock_layer(info.layer);
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
        contents_of_its_own(&inode, &mut vol)?;
    }
    refresh(inode)
}

/// An attribute change gives the file a page cache of its own, as a data change does, and
/// contents of its own for good (a regular file's: `Invalid` for other kinds).
fn contents_of_its_own(inode: &Inode<Lcfs>, vol: &mut VolGuard<'_>) -> Result {
    let info = inode.info();
    super::share::unshare(inode);
    match retry_for_space(inode.super_block(), vol, |vol| {
        vol.renew_data_id(info.layer, info.ino)
    }) {
        Ok(_) | Err(CoreError::Invalid) => Ok(()),
        Err(e) => Err(errno(e)),
    }
}

/// An ACL is an extended attribute like any other (see `crate::vfs::AclKind`); with an access
/// ACL the permission bits change in the same volume-lock hold, so one commit has both.
fn set_acl(
    inode: Locked<'_, Lcfs>,
    kind: AclKind,
    value: Option<&[u8]>,
    perm: Option<u16>,
) -> Result {
    let info = inode.info();
    let sb = inode.super_block();
    if info.layer == 0 {
        return Err(EPERM);
    }
    if sb.read_only() {
        return Err(EROFS);
    }
    let name = kind.xattr_name();
    let now = timestamp();
    let stored = {
        let mut vol = sb.info().lock_layer(info.layer);
        let old_perm = vol.inode(info.layer, info.ino).map_err(errno)?.mode & 0o7777;
        let attr = |mode: u32| SetAttr {
            mode: Some(mode),
            ctime: Some(now),
            ..SetAttr::default()
        };
        retry_for_space(sb, &mut vol, |vol| {
            // Room for both changes before either: neither fails for space half-way.
            vol.admit_with_xattrs(u64::from(perm.is_some()), &[value])?;
            if let Some(p) = perm {
                vol.set_attr(info.layer, info.ino, &attr(u32::from(p)))?;
            }
            let stored = match value {
                Some(v) => vol.set_xattr(info.layer, info.ino, name, v, now),
                None => match vol.remove_xattr(info.layer, info.ino, name, now) {
                    Err(CoreError::NotFound) => Ok(()),
                    r => r,
                },
            };
            if stored.is_err() && perm.is_some() {
                // Both or neither (a failure other than space: memory, a damaged tree): the
                // bits back as they were.
                let _ = vol.set_attr(info.layer, info.ino, &attr(old_perm));
            }
            stored
        })
        .map_err(xattr_errno)?;
        contents_of_its_own(&inode, &mut vol)
    };
    // The cached mode follows the record whatever happened after the store.
    stored.and(refresh(inode))
}

fn list_xattrs(inode: &Inode<Lcfs>, f: &mut dyn FnMut(&[u8]) -> bool) -> Result {
    let info = inode.info();
    if info.layer == 0 {
        return Ok(());
    }
    inode
        .super_block()
        .info()
        .read_layer(info.layer)
        .list_xattrs(info.layer, info.ino, f)
        .map_err(errno)
}
