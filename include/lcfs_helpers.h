/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C side of the Rust <-> C boundary of lcfs.ko: one-line wrappers for static inline functions
 * and macros that Rust cannot call directly. No logic lives here.
 */
#ifndef LCFS_HELPERS_H
#define LCFS_HELPERS_H

#include <linux/types.h>

struct address_space;
struct block_device;
struct dir_context;
struct file;
struct folio;
struct inode;
struct kmem_cache;
struct super_block;

struct folio *lcfs_read_mapping_folio(struct address_space *mapping, pgoff_t index);
loff_t lcfs_folio_pos(struct folio *folio);
size_t lcfs_folio_size(struct folio *folio);
void *lcfs_kmap_local_folio(struct folio *folio, size_t offset);
void lcfs_kunmap_local(const void *addr);
void lcfs_folio_put(struct folio *folio);

struct dentry;
bool lcfs_inode_is_new(struct inode *inode);
const unsigned char *lcfs_dentry_name(const struct dentry *dentry, u32 *len);

struct kmem_cache *lcfs_inode_cache_create(const char *name, unsigned int size,
					   unsigned int align, void (*ctor)(void *));
struct inode *lcfs_alloc_inode_sb(struct super_block *sb, struct kmem_cache *cache);
loff_t lcfs_bdev_nr_bytes(struct block_device *bdev);

void lcfs_i_uid_write(struct inode *inode, uid_t uid);
void lcfs_i_gid_write(struct inode *inode, gid_t gid);
void lcfs_i_size_write(struct inode *inode, loff_t size);
void lcfs_inode_set_atime(struct inode *inode, s64 sec, long nsec);
void lcfs_inode_set_mtime(struct inode *inode, s64 sec, long nsec);
void lcfs_inode_set_ctime(struct inode *inode, s64 sec, long nsec);

bool lcfs_dir_emit_dots(struct file *file, struct dir_context *ctx);
bool lcfs_dir_emit(struct dir_context *ctx, const char *name, int len, u64 ino,
		   unsigned int type);

/* Layout facts checked by the KUnit suite against the module's own bindgen output. */
size_t lcfs_sizeof_fs_context(void);
size_t lcfs_sizeof_kstatfs(void);
size_t lcfs_offsetof_fs_context_ops(void);
unsigned int lcfs_ioc_fs_info(void);

#endif /* LCFS_HELPERS_H */
