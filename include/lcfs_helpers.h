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
struct work_struct;
struct super_block;

struct folio *lcfs_read_mapping_folio(struct address_space *mapping, pgoff_t index);
loff_t lcfs_folio_pos(struct folio *folio);
size_t lcfs_folio_size(struct folio *folio);
void *lcfs_kmap_local_folio(struct folio *folio, size_t offset);
void lcfs_kunmap_local(const void *addr);
void lcfs_folio_put(struct folio *folio);
struct folio *lcfs_lock_dirty_folio(struct address_space *mapping, pgoff_t index);
size_t lcfs_copy_to_folio(struct folio *folio, size_t offset, size_t bytes, struct iov_iter *from);
struct folio *lcfs_grab_block_folio(struct address_space *mapping, pgoff_t index);
void lcfs_folio_lock(struct folio *folio);
bool lcfs_folio_test_uptodate(struct folio *folio);
void lcfs_folio_mark_uptodate(struct folio *folio);

struct delayed_work;
typedef void (*lcfs_work_fn)(struct work_struct *work);
void lcfs_init_delayed_work(struct delayed_work *dwork, lcfs_work_fn fn);
void lcfs_schedule_delayed_work(struct delayed_work *dwork, unsigned long delay);
struct delayed_work *lcfs_to_delayed_work(struct work_struct *work);
unsigned long lcfs_msecs_to_jiffies(unsigned int ms);
struct workqueue_struct;
struct workqueue_struct *lcfs_alloc_writeback_workqueue(const char *id);
void lcfs_init_work(struct work_struct *work, lcfs_work_fn fn);
void lcfs_queue_work(struct workqueue_struct *wq, struct work_struct *work);
void lcfs_queue_background(struct work_struct *work);
bool lcfs_cancel_work_sync(struct work_struct *work);
bool lcfs_sb_start_intwrite_trylock(struct super_block *sb);
void lcfs_sb_end_intwrite(struct super_block *sb);
void lcfs_flush_workqueue(struct workqueue_struct *wq);
struct bio;
void lcfs_bio_clear_complete_in_task(struct bio *bio);
void lcfs_cond_resched(void);

struct fs_context;
struct fs_parameter;
struct fs_parameter_spec;
struct fs_parse_result;
int lcfs_fs_parse(struct fs_context *fc, const struct fs_parameter_spec *desc,
		  struct fs_parameter *param, struct fs_parse_result *result);
void lcfs_now(s64 *sec, long *nsec);
void lcfs_inode_set_cached_link(struct inode *inode, const char *link, int len);
unsigned int lcfs_new_decode_dev(u32 dev);
u32 lcfs_new_encode_dev(unsigned int dev);
struct mnt_idmap;
u32 lcfs_mapped_fsuid(struct mnt_idmap *idmap, const struct inode *dir);
u32 lcfs_mapped_fsgid(struct mnt_idmap *idmap, const struct inode *dir);

struct posix_acl;
/* The inode_operations' ACL types (ACL_TYPE_ACCESS, ACL_TYPE_DEFAULT). */
#define LCFS_ACL_TYPE_ACCESS 0x8000
#define LCFS_ACL_TYPE_DEFAULT 0x4000
/* fs_parameter_spec.flags: "noNAME" is the negation of flag NAME (fs_param_neg_with_no). */
#define LCFS_FS_PARAM_NEG_WITH_NO 0x0002
void lcfs_sb_set_posixacl(struct super_block *sb, bool on);
bool lcfs_inode_posixacl(const struct inode *inode);
int lcfs_acl_create(struct inode *dir, umode_t *mode, struct posix_acl **default_acl,
		    struct posix_acl **acl);
void *lcfs_acl_to_xattr(const struct posix_acl *acl, size_t *size);
struct posix_acl *lcfs_acl_from_xattr(const void *value, size_t size);
void lcfs_acl_release(struct posix_acl *acl);
void lcfs_set_cached_acl(struct inode *inode, int type, struct posix_acl *acl);
void lcfs_forget_cached_acl(struct inode *inode, int type);
int lcfs_acl_update_mode(struct mnt_idmap *idmap, struct inode *inode, umode_t *mode,
			 struct posix_acl **acl);
int lcfs_acl_chmod(struct mnt_idmap *idmap, struct dentry *dentry, umode_t mode);
struct posix_acl *lcfs_acl_err(int err);
u32 lcfs_i_uid_read(const struct inode *inode);
u32 lcfs_i_gid_read(const struct inode *inode);
void lcfs_inode_get_times(const struct inode *inode, s64 *sec, long *nsec);
struct iomap_ops;
struct iomap_writeback_ops;
struct readahead_control;
struct writeback_control;
struct kiocb;
struct vm_fault;
struct vm_operations_struct;
void lcfs_iomap_read_folio(struct folio *folio, const struct iomap_ops *ops);
void lcfs_iomap_readahead(struct readahead_control *rac, const struct iomap_ops *ops);
int lcfs_iomap_writepages(struct address_space *mapping, struct writeback_control *wbc,
			  const struct iomap_writeback_ops *ops);
void lcfs_inode_lock(struct inode *inode);
void lcfs_inode_unlock(struct inode *inode);
ssize_t lcfs_generic_write_sync(struct kiocb *iocb, ssize_t count);
struct inode *lcfs_file_inode(const struct file *file);
bool lcfs_file_writable(const struct file *file);
struct file *lcfs_vmf_file(const struct vm_fault *vmf);
void lcfs_sb_start_pagefault(struct super_block *sb);
void lcfs_sb_end_pagefault(struct super_block *sb);
void lcfs_invalidate_lock(struct address_space *mapping);
void lcfs_invalidate_unlock(struct address_space *mapping);
void lcfs_invalidate_lock_shared(struct address_space *mapping);
void lcfs_invalidate_unlock_shared(struct address_space *mapping);
loff_t lcfs_i_size_read(const struct inode *inode);
unsigned int lcfs_memalloc_nofs_save(void);
void lcfs_memalloc_nofs_restore(unsigned int flags);
void lcfs_set_aops(struct inode *inode, const struct address_space_operations *aops);
void lcfs_inode_set_blocks(struct inode *inode, u64 blocks);
bool lcfs_sb_rdonly(const struct super_block *sb);
bool lcfs_sb_frozen(const struct super_block *sb);
bool lcfs_fc_rdonly(const struct fs_context *fc);

struct dentry;
bool lcfs_inode_is_new(struct inode *inode);
const unsigned char *lcfs_dentry_name(const struct dentry *dentry, u32 *len);
int lcfs_finish_open_simple(struct file *file);

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
unsigned int lcfs_ioc_code(unsigned int nr);
unsigned int lcfs_fs_ioc_code(unsigned int which);
struct dentry;
void lcfs_forget_root_name(struct super_block *sb, const char *name, unsigned int len);
int lcfs_detach_begin(struct super_block *sb, const char *name, unsigned int len,
		      struct dentry **out);
void lcfs_detach_end(struct super_block *sb, struct dentry *d, bool removed);
int lcfs_write_back_inodes(struct super_block *sb, bool (*select)(struct inode *, void *),
			   void *arg);

struct kiocb;
struct iov_iter;
struct pipe_inode_info;
struct vm_area_struct;
struct vm_operations_struct;
struct inode *lcfs_iget_content(struct super_block *sb, unsigned long ino, unsigned long layer);
struct file *lcfs_content_open(struct file *file, struct inode *content);
ssize_t lcfs_content_read_iter(struct kiocb *iocb, struct iov_iter *to, struct file *sf);
ssize_t lcfs_content_splice_read(struct file *file, struct file *sf, loff_t *ppos,
				 struct pipe_inode_info *pipe, size_t len, unsigned int flags);
int lcfs_content_mmap(struct file *file, struct vm_area_struct *vma, struct file *sf);
int lcfs_content_fadvise(struct file *sf, loff_t offset, loff_t len, int advice);
int lcfs_file_mmap(struct file *file, struct vm_area_struct *vma,
		   const struct vm_operations_struct *ops);
void *lcfs_file_private(const struct file *file);
void lcfs_file_set_private(struct file *file, void *data);
bool lcfs_file_truncating(const struct file *file);
void lcfs_fput(struct file *file);
long lcfs_err_ptr(const void *ptr);

struct iomap_ops;
struct iomap_dio_ops;
struct kstat;
bool lcfs_iocb_direct(const struct kiocb *iocb);
bool lcfs_iocb_append(const struct kiocb *iocb);
size_t lcfs_iov_iter_count(const struct iov_iter *iter);
ssize_t lcfs_dio_rw(struct kiocb *iocb, struct iov_iter *iter, const struct iomap_ops *ops,
		    const struct iomap_dio_ops *dops, unsigned int dio_flags);
ssize_t lcfs_buffered_read_iter(struct kiocb *iocb, struct iov_iter *to);
ssize_t lcfs_direct_write_fallback(struct kiocb *iocb, struct iov_iter *iter,
				   ssize_t direct_written, ssize_t buffered_written);
void lcfs_file_set_can_odirect(struct file *file);
void lcfs_file_accessed(struct file *file);
void lcfs_lock_two(struct inode *a, struct inode *b);
void lcfs_unlock_two(struct inode *a, struct inode *b);
void lcfs_invalidate_lock_two(struct inode *a, struct inode *b);
void lcfs_invalidate_unlock_two(struct inode *a, struct inode *b);
void lcfs_inode_lock_shared(struct inode *inode);
void lcfs_inode_unlock_shared(struct inode *inode);
unsigned int lcfs_dio_read_align(struct block_device *bdev);
void lcfs_fill_dio_align(struct kstat *stat, const struct inode *inode, u32 request_mask,
			 u32 write_align);

/* File attributes (chattr) and the mount's directory under /sys/fs. */
struct file_kattr;
struct attribute;
struct completion;
bool lcfs_fileattr_has_fsx(const struct file_kattr *fa);
size_t lcfs_sizeof_file_kattr(void);
void lcfs_sysfs_attr_init(struct attribute *attr);
void lcfs_init_completion(struct completion *x);
void lcfs_super_set_sysfs_name_bdev(struct super_block *sb);

#endif /* LCFS_HELPERS_H */
