// SPDX-License-Identifier: GPL-2.0
/*
 * Wrappers for static inline functions and macros used by lcfs.ko's Rust code. Each is a single
 * call; see include/lcfs_helpers.h.
 */
#include <linux/blkdev.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/highmem.h>
#include <linux/pagemap.h>
#include <linux/slab.h>
#include <linux/statfs.h>
#include "lcfs_helpers.h"
#include "uapi/linux/lcfs.h"

struct folio *lcfs_read_mapping_folio(struct address_space *mapping, pgoff_t index)
{
	return read_mapping_folio(mapping, index, NULL);
}

loff_t lcfs_folio_pos(struct folio *folio) { return folio_pos(folio); }
size_t lcfs_folio_size(struct folio *folio) { return folio_size(folio); }
void *lcfs_kmap_local_folio(struct folio *folio, size_t offset) { return kmap_local_folio(folio, offset); }
void lcfs_kunmap_local(const void *addr) { kunmap_local(addr); }
void lcfs_folio_put(struct folio *folio) { folio_put(folio); }

bool lcfs_inode_is_new(struct inode *inode) { return inode_state_read_once(inode) & I_NEW; }

const unsigned char *lcfs_dentry_name(const struct dentry *dentry, u32 *len)
{
	*len = dentry->d_name.len;
	return dentry->d_name.name;
}

struct kmem_cache *lcfs_inode_cache_create(const char *name, unsigned int size,
					   unsigned int align, void (*ctor)(void *))
{
	return kmem_cache_create(name, size, align, SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT, ctor);
}

struct inode *lcfs_alloc_inode_sb(struct super_block *sb, struct kmem_cache *cache)
{
	return alloc_inode_sb(sb, cache, GFP_KERNEL);
}

loff_t lcfs_bdev_nr_bytes(struct block_device *bdev) { return bdev_nr_bytes(bdev); }

void lcfs_i_uid_write(struct inode *inode, uid_t uid) { i_uid_write(inode, uid); }
void lcfs_i_gid_write(struct inode *inode, gid_t gid) { i_gid_write(inode, gid); }
void lcfs_i_size_write(struct inode *inode, loff_t size) { i_size_write(inode, size); }

void lcfs_inode_set_atime(struct inode *inode, s64 sec, long nsec) { inode_set_atime(inode, sec, nsec); }
void lcfs_inode_set_mtime(struct inode *inode, s64 sec, long nsec) { inode_set_mtime(inode, sec, nsec); }
void lcfs_inode_set_ctime(struct inode *inode, s64 sec, long nsec) { inode_set_ctime(inode, sec, nsec); }

bool lcfs_dir_emit_dots(struct file *file, struct dir_context *ctx) { return dir_emit_dots(file, ctx); }

bool lcfs_dir_emit(struct dir_context *ctx, const char *name, int len, u64 ino, unsigned int type)
{
	return dir_emit(ctx, name, len, ino, type);
}

size_t lcfs_sizeof_fs_context(void) { return sizeof(struct fs_context); }
size_t lcfs_sizeof_kstatfs(void) { return sizeof(struct kstatfs); }
size_t lcfs_offsetof_fs_context_ops(void) { return offsetof(struct fs_context, ops); }
unsigned int lcfs_ioc_fs_info(void) { return LCFS_IOC_FS_INFO; }
