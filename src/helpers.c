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
#include <linux/fs_parser.h>
#include <linux/timekeeping.h>
#include <linux/workqueue.h>
#include <linux/cred.h>
#include <linux/iomap.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/writeback.h>
#include <linux/kdev_t.h>
#include <linux/dcache.h>
#include <linux/namei.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <linux/backing-file.h>
#include <linux/fadvise.h>
#include <linux/security.h>
#include <linux/splice.h>
#include <linux/uio.h>
#include <linux/fileattr.h>
#include <linux/sysfs.h>
#include <linux/completion.h>
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

/* Metadata blocks are written whole: a locked folio, stable (not under writeback), without I/O. */
struct folio *lcfs_grab_block_folio(struct address_space *mapping, pgoff_t index)
{
	return __filemap_get_folio(mapping, index, FGP_WRITEBEGIN | FGP_NOFS, GFP_NOFS);
}

void lcfs_folio_lock(struct folio *folio) { folio_lock(folio); }
bool lcfs_folio_test_uptodate(struct folio *folio) { return folio_test_uptodate(folio); }
void lcfs_folio_mark_uptodate(struct folio *folio) { folio_mark_uptodate(folio); }

/*
 * A buffered write's folio at @index, locked, when it is small, uptodate, dirty and not under
 * writeback; NULL otherwise (absent too). Those flags change only under the folio lock (dirty is
 * cleared, and writeback set, by writeback holding it), so they hold until the caller unlocks.
 */
struct folio *lcfs_lock_dirty_folio(struct address_space *mapping, pgoff_t index)
{
	struct folio *folio = filemap_lock_folio(mapping, index);

	if (IS_ERR(folio))
		return NULL;
	if (!folio_test_large(folio) && folio_test_uptodate(folio) && folio_test_dirty(folio) &&
	    !folio_test_writeback(folio))
		return folio;
	folio_unlock(folio);
	folio_put(folio);
	return NULL;
}

/* generic_perform_write()'s copy into a locked folio, with its cache flushes for aliasing. */
size_t lcfs_copy_to_folio(struct folio *folio, size_t offset, size_t bytes, struct iov_iter *from)
{
	size_t copied;

	if (mapping_writably_mapped(folio->mapping))
		flush_dcache_folio(folio);
	copied = copy_folio_from_iter_atomic(folio, offset, bytes, from);
	flush_dcache_folio(folio);
	return copied;
}

void lcfs_init_delayed_work(struct delayed_work *dwork, lcfs_work_fn fn) { INIT_DELAYED_WORK(dwork, fn); }

void lcfs_schedule_delayed_work(struct delayed_work *dwork, unsigned long delay)
{
	mod_delayed_work(system_dfl_wq, dwork, delay);
}

struct delayed_work *lcfs_to_delayed_work(struct work_struct *work) { return to_delayed_work(work); }
unsigned long lcfs_msecs_to_jiffies(unsigned int ms) { return msecs_to_jiffies(ms); }
/* Writeback completion runs in a rescuer-backed queue: reclaim may wait for it. */
struct workqueue_struct *lcfs_alloc_writeback_workqueue(const char *id)
{
	return alloc_workqueue("lcfs-wb/%s", WQ_UNBOUND | WQ_MEM_RECLAIM, 0, id);
}
void lcfs_init_work(struct work_struct *work, lcfs_work_fn fn) { INIT_WORK(work, fn); }
void lcfs_queue_work(struct workqueue_struct *wq, struct work_struct *work) { queue_work(wq, work); }
void lcfs_flush_workqueue(struct workqueue_struct *wq) { flush_workqueue(wq); }
/* Background work (reclaim of removed layers) runs in chunks on the long-running unbound queue. */
void lcfs_queue_background(struct work_struct *work) { queue_work(system_dfl_long_wq, work); }
bool lcfs_cancel_work_sync(struct work_struct *work) { return cancel_work_sync(work); }
bool lcfs_sb_start_intwrite_trylock(struct super_block *sb) { return sb_start_intwrite_trylock(sb); }
void lcfs_sb_end_intwrite(struct super_block *sb) { sb_end_intwrite(sb); }
/* Our completion already runs in a task; the block layer need not defer it first. */
void lcfs_bio_clear_complete_in_task(struct bio *bio) { bio_clear_flag(bio, BIO_COMPLETE_IN_TASK); }
void lcfs_cond_resched(void) { cond_resched(); }

int lcfs_fs_parse(struct fs_context *fc, const struct fs_parameter_spec *desc,
		  struct fs_parameter *param, struct fs_parse_result *result)
{
	return fs_parse(fc, desc, param, result);
}

void lcfs_now(s64 *sec, long *nsec)
{
	struct timespec64 ts;

	ktime_get_real_ts64(&ts);
	*sec = ts.tv_sec;
	*nsec = ts.tv_nsec;
}

bool lcfs_inode_is_new(struct inode *inode) { return inode_state_read_once(inode) & I_NEW; }

/* finish_open_simple() is static inline: the end of a `tmpfile` operation. */
int lcfs_finish_open_simple(struct file *file)
{
	return finish_open_simple(file, 0);
}

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
unsigned int lcfs_ioc_code(unsigned int nr)
{
	switch (nr) {
	case LCFS_IOC_FS_INFO_NR: return LCFS_IOC_FS_INFO;
	case LCFS_IOC_LAYER_CREATE_NR: return LCFS_IOC_LAYER_CREATE;
	case LCFS_IOC_LAYER_CLONE_NR: return LCFS_IOC_LAYER_CLONE;
	case LCFS_IOC_LAYER_SNAPSHOT_NR: return LCFS_IOC_LAYER_SNAPSHOT;
	case LCFS_IOC_LAYER_FREEZE_NR: return LCFS_IOC_LAYER_FREEZE;
	case LCFS_IOC_LAYER_RENAME_NR: return LCFS_IOC_LAYER_RENAME;
	case LCFS_IOC_LAYER_REMOVE_NR: return LCFS_IOC_LAYER_REMOVE;
	case LCFS_IOC_LAYER_INFO_NR: return LCFS_IOC_LAYER_INFO;
	case LCFS_IOC_LAYER_LIST_NR: return LCFS_IOC_LAYER_LIST;
	case LCFS_IOC_LAYER_DIFF_NR: return LCFS_IOC_LAYER_DIFF;
	default: return 0;
	}
}

/*
 * The generic requests LCFS answers, built by the C macros, for the KUnit check of the Rust
 * values: 0 FS_IOC_SHUTDOWN, 1 FS_IOC_GETFSLABEL, 2 FS_IOC_SETFSLABEL.
 */
unsigned int lcfs_fs_ioc_code(unsigned int which)
{
	switch (which) {
	case 0: return FS_IOC_SHUTDOWN;
	case 1: return FS_IOC_GETFSLABEL;
	case 2: return FS_IOC_SETFSLABEL;
	default: return 0;
	}
}

/*
 * Forgets the cached dentry of `name` under the mount root, positive or negative: the next lookup
 * asks the filesystem. Unhashed, not invalidated: mounts on it and tasks inside stay where they
 * are (a renamed layer's bind mounts keep working).
 */
void lcfs_forget_root_name(struct super_block *sb, const char *name, unsigned int len)
{
	struct qstr q = QSTR_INIT(name, len);
	struct dentry *d = try_lookup_noperm(&q, sb->s_root);

	if (!IS_ERR_OR_NULL(d)) {
		d_drop(d);
		dput(d);
	}
}

/*
 * Starts removing the layer directory `name` under the mount root: prunes the unused dentries
 * below the layer's, locks the root directory (no lookup there can start until
 * lcfs_detach_end), prunes again what came meanwhile, and fails with -EBUSY if anything still
 * uses it (an open file or a working directory in it, a mount on it or inside it). Otherwise
 * unhashes its dentry, so no path walk enters it again, and returns it in *out (NULL when none
 * is cached, so nothing uses it).
 */
int lcfs_detach_begin(struct super_block *sb, const char *name, unsigned int len,
		      struct dentry **out)
{
	struct qstr q = QSTR_INIT(name, len);
	struct dentry *d;
	bool busy;

	*out = NULL;
	/*
	 * Prune before locking the root too, so that lookups of other layers' names do not wait
	 * for the walk of a large subtree; the prune under the lock then finds little.
	 */
	d = try_lookup_noperm(&q, sb->s_root);
	if (!IS_ERR_OR_NULL(d)) {
		shrink_dcache_parent(d);
		dput(d);
	}
	inode_lock_nested(d_inode(sb->s_root), I_MUTEX_PARENT);
	d = try_lookup_noperm(&q, sb->s_root);
	if (IS_ERR(d)) {
		inode_unlock(d_inode(sb->s_root));
		return PTR_ERR(d);
	}
	if (!d)
		return 0;
	shrink_dcache_parent(d);
	spin_lock(&d->d_lock);
	/* Our reference is the only one left unless something uses the layer. */
	busy = d->d_lockref.count > 1 || d_mountpoint(d);
	if (!busy)
		__d_drop(d);
	spin_unlock(&d->d_lock);
	if (busy) {
		dput(d);
		inode_unlock(d_inode(sb->s_root));
		return -EBUSY;
	}
	*out = d;
	return 0;
}

/* Ends lcfs_detach_begin: a layer that stays gets its dentry back in the hash. */
void lcfs_detach_end(struct super_block *sb, struct dentry *d, bool removed)
{
	if (d) {
		if (!removed)
			d_rehash(d);
		dput(d);
	}
	inode_unlock(d_inode(sb->s_root));
}

/*
 * Writes back the page cache of every cached inode of sb that select(inode, arg) picks and
 * that holds dirty folios or folios under writeback, and waits for that I/O; the walk of
 * drop_pagecache_sb. Only inodes with such folios are offered to select, which runs under the
 * inode list lock and the inode's i_lock, so it must not sleep. Returns the first error; the
 * other inodes are written back all the same.
 */
int lcfs_write_back_inodes(struct super_block *sb, bool (*select)(struct inode *, void *),
			   void *arg)
{
	struct inode *inode, *toput = NULL;
	int err = 0;

	spin_lock(&sb->s_inode_list_lock);
	list_for_each_entry(inode, &sb->s_inodes, i_sb_list) {
		struct address_space *mapping = inode->i_mapping;
		int r;

		spin_lock(&inode->i_lock);
		if ((inode_state_read(inode) & (I_FREEING | I_WILL_FREE | I_NEW)) ||
		    (!mapping_tagged(mapping, PAGECACHE_TAG_DIRTY) &&
		     !mapping_tagged(mapping, PAGECACHE_TAG_WRITEBACK)) ||
		    !select(inode, arg)) {
			spin_unlock(&inode->i_lock);
			continue;
		}
		__iget(inode);
		spin_unlock(&inode->i_lock);
		spin_unlock(&sb->s_inode_list_lock);

		r = filemap_write_and_wait(mapping);
		if (r && !err)
			err = r;
		iput(toput);
		toput = inode;

		cond_resched();
		spin_lock(&sb->s_inode_list_lock);
	}
	spin_unlock(&sb->s_inode_list_lock);
	iput(toput);
	return err;
}

bool lcfs_sb_rdonly(const struct super_block *sb) { return sb_rdonly(sb); }
bool lcfs_sb_frozen(const struct super_block *sb) { return sb->s_writers.frozen == SB_FREEZE_COMPLETE; }
bool lcfs_fc_rdonly(const struct fs_context *fc) { return fc->sb_flags & SB_RDONLY; }

void lcfs_inode_set_cached_link(struct inode *inode, const char *link, int len)
{
	inode_set_cached_link(inode, (char *)link, len);
}

unsigned int lcfs_new_decode_dev(u32 dev) { return new_decode_dev(dev); }
u32 lcfs_new_encode_dev(unsigned int dev) { return new_encode_dev(dev); }

/*
 * The caller's fsuid and fsgid as a new inode in @dir stores them when created through a mount
 * with idmapping @idmap (inode_init_owner's mapping): -1 when the mount maps them to no id.
 */
u32 lcfs_mapped_fsuid(struct mnt_idmap *idmap, const struct inode *dir)
{
	return from_kuid(&init_user_ns, mapped_fsuid(idmap, i_user_ns(dir)));
}

u32 lcfs_mapped_fsgid(struct mnt_idmap *idmap, const struct inode *dir)
{
	return from_kgid(&init_user_ns, mapped_fsgid(idmap, i_user_ns(dir)));
}

/*
 * POSIX ACLs. They are stored as the VFS's own xattr encoding (posix_acl_to_xattr) with ids in
 * the filesystem's namespace, init_user_ns, as btrfs stores them.
 */
static_assert(LCFS_ACL_TYPE_ACCESS == ACL_TYPE_ACCESS);
static_assert(LCFS_ACL_TYPE_DEFAULT == ACL_TYPE_DEFAULT);
static_assert(LCFS_FS_PARAM_NEG_WITH_NO == fs_param_neg_with_no);

void lcfs_sb_set_posixacl(struct super_block *sb, bool on)
{
	unsigned long flags = READ_ONCE(sb->s_flags);

	WRITE_ONCE(sb->s_flags, on ? flags | SB_POSIXACL : flags & ~SB_POSIXACL);
}

bool lcfs_inode_posixacl(const struct inode *inode) { return IS_POSIXACL(inode); }

int lcfs_acl_create(struct inode *dir, umode_t *mode, struct posix_acl **default_acl,
		    struct posix_acl **acl)
{
	return posix_acl_create(dir, mode, default_acl, acl);
}

void *lcfs_acl_to_xattr(const struct posix_acl *acl, size_t *size)
{
	return posix_acl_to_xattr(&init_user_ns, acl, size, GFP_KERNEL);
}

struct posix_acl *lcfs_acl_from_xattr(const void *value, size_t size)
{
	return posix_acl_from_xattr(&init_user_ns, value, size);
}

void lcfs_acl_release(struct posix_acl *acl) { posix_acl_release(acl); }
void lcfs_set_cached_acl(struct inode *inode, int type, struct posix_acl *acl)
{
	set_cached_acl(inode, type, acl);
}

void lcfs_forget_cached_acl(struct inode *inode, int type) { forget_cached_acl(inode, type); }

int lcfs_acl_update_mode(struct mnt_idmap *idmap, struct inode *inode, umode_t *mode,
			 struct posix_acl **acl)
{
	return posix_acl_update_mode(idmap, inode, mode, acl);
}

int lcfs_acl_chmod(struct mnt_idmap *idmap, struct dentry *dentry, umode_t mode)
{
	return posix_acl_chmod(idmap, dentry, mode);
}

struct posix_acl *lcfs_acl_err(int err) { return ERR_PTR(err); }
u32 lcfs_i_uid_read(const struct inode *inode) { return i_uid_read(inode); }
u32 lcfs_i_gid_read(const struct inode *inode) { return i_gid_read(inode); }

/* atime, mtime, ctime into sec[0..3] and nsec[0..3]. */
void lcfs_inode_get_times(const struct inode *inode, s64 *sec, long *nsec)
{
	struct timespec64 t[3] = { inode_get_atime(inode), inode_get_mtime(inode),
				   inode_get_ctime(inode) };
	int i;

	for (i = 0; i < 3; i++) {
		sec[i] = t[i].tv_sec;
		nsec[i] = t[i].tv_nsec;
	}
}

void lcfs_iomap_read_folio(struct folio *folio, const struct iomap_ops *ops)
{
	iomap_bio_read_folio(folio, ops);
}

void lcfs_iomap_readahead(struct readahead_control *rac, const struct iomap_ops *ops)
{
	iomap_bio_readahead(rac, ops);
}

int lcfs_iomap_writepages(struct address_space *mapping, struct writeback_control *wbc,
			  const struct iomap_writeback_ops *ops)
{
	struct iomap_writepage_ctx wpc = {
		.inode = mapping->host,
		.wbc = wbc,
		.ops = ops,
	};

	return iomap_writepages(&wpc);
}

void lcfs_inode_lock(struct inode *inode) { inode_lock(inode); }
void lcfs_inode_unlock(struct inode *inode) { inode_unlock(inode); }
ssize_t lcfs_generic_write_sync(struct kiocb *iocb, ssize_t count) { return generic_write_sync(iocb, count); }
struct inode *lcfs_file_inode(const struct file *file) { return file_inode(file); }
bool lcfs_file_writable(const struct file *file) { return file->f_mode & FMODE_WRITE; }
struct file *lcfs_vmf_file(const struct vm_fault *vmf) { return vmf->vma->vm_file; }
void lcfs_sb_start_pagefault(struct super_block *sb) { sb_start_pagefault(sb); }
void lcfs_sb_end_pagefault(struct super_block *sb) { sb_end_pagefault(sb); }
void lcfs_invalidate_lock(struct address_space *mapping) { filemap_invalidate_lock(mapping); }
void lcfs_invalidate_unlock(struct address_space *mapping) { filemap_invalidate_unlock(mapping); }
void lcfs_invalidate_lock_shared(struct address_space *mapping) { filemap_invalidate_lock_shared(mapping); }
void lcfs_invalidate_unlock_shared(struct address_space *mapping) { filemap_invalidate_unlock_shared(mapping); }

loff_t lcfs_i_size_read(const struct inode *inode) { return i_size_read(inode); }
unsigned int lcfs_memalloc_nofs_save(void) { return memalloc_nofs_save(); }
void lcfs_memalloc_nofs_restore(unsigned int flags) { memalloc_nofs_restore(flags); }

void lcfs_set_aops(struct inode *inode, const struct address_space_operations *aops)
{
	inode->i_mapping->a_ops = aops;
}

void lcfs_inode_set_blocks(struct inode *inode, u64 blocks)
{
	spin_lock(&inode->i_lock);
	inode->i_blocks = blocks;
	spin_unlock(&inode->i_lock);
}

/*
 * Content inodes (page-cache sharing) live in the inode hash beside layer inodes: their i_ino
 * is data_id + 1 (below 2^40, where layer inodes of layer 0 use only 1) and i_private holds the
 * id of the frozen layer their blocks are read from (never 0, while every layer inode's
 * i_private is NULL), so no lookup of one kind can find the other.
 */
struct lcfs_content_key {
	unsigned long ino;
	unsigned long layer;
};

static int lcfs_content_test(struct inode *inode, void *data)
{
	const struct lcfs_content_key *k = data;

	return inode->i_ino == k->ino && (unsigned long)inode->i_private == k->layer;
}

static int lcfs_content_set(struct inode *inode, void *data)
{
	const struct lcfs_content_key *k = data;

	inode->i_ino = k->ino;
	inode->i_private = (void *)k->layer;
	return 0;
}

struct inode *lcfs_iget_content(struct super_block *sb, unsigned long ino, unsigned long layer)
{
	struct lcfs_content_key k = { .ino = ino, .layer = layer };

	return iget5_locked(sb, ino, lcfs_content_test, lcfs_content_set, &k);
}

/*
 * Opens content inode @content for reading on behalf of @file, a read-only open of a layer
 * inode: a backing file on a disconnected alias of @content on @file's mount, which reports
 * @file's path (/proc/PID/maps). Takes its own references.
 */
struct file *lcfs_content_open(struct file *file, struct inode *content)
{
	struct path path = { .mnt = file->f_path.mnt };
	struct file *sf;

	ihold(content);
	path.dentry = d_obtain_alias(content);
	if (IS_ERR(path.dentry))
		return ERR_CAST(path.dentry);
	sf = backing_file_open(file, O_RDONLY | O_LARGEFILE | O_NOATIME, &path, file->f_cred);
	dput(path.dentry);
	return sf;
}

/* A read of @iocb's file served from its content file @sf's page cache (as erofs does). */
ssize_t lcfs_content_read_iter(struct kiocb *iocb, struct iov_iter *to, struct file *sf)
{
	struct kiocb k;
	ssize_t ret;

	if (!iov_iter_count(to))
		return 0;
	kiocb_clone(&k, iocb, sf);
	ret = filemap_read(&k, to, 0);
	iocb->ki_pos = k.ki_pos;
	file_accessed(iocb->ki_filp);
	return ret;
}

ssize_t lcfs_content_splice_read(struct file *file, struct file *sf, loff_t *ppos,
				 struct pipe_inode_info *pipe, size_t len, unsigned int flags)
{
	ssize_t ret = filemap_splice_read(sf, ppos, pipe, len, flags);

	file_accessed(file);
	return ret;
}

/* Maps content file @sf where @file was asked for: faults read @sf's page cache. */
int lcfs_content_mmap(struct file *file, struct vm_area_struct *vma, struct file *sf)
{
	int err;

	if (vma_is_shared_maywrite(vma))
		return -EINVAL;
	vma_set_file(vma, sf);
	err = security_mmap_backing_file(vma, sf, file);
	if (err)
		return err;
	return generic_file_readonly_mmap(file, vma);
}

/*
 * Advice on @file, whose reads go through content file @sf: to @sf, except dropping cached
 * pages, which other layers' files share (one tenant must not evict another's cache).
 */
int lcfs_content_fadvise(struct file *sf, loff_t offset, loff_t len, int advice)
{
	if (advice == POSIX_FADV_DONTNEED || advice == POSIX_FADV_NOREUSE)
		return 0;
	return vfs_fadvise(sf, offset, len, advice);
}

int lcfs_file_mmap(struct file *file, struct vm_area_struct *vma,
		   const struct vm_operations_struct *ops)
{
	file_accessed(file);
	vma->vm_ops = ops;
	return 0;
}

void *lcfs_file_private(const struct file *file) { return file->private_data; }
void lcfs_file_set_private(struct file *file, void *data) { file->private_data = data; }
bool lcfs_file_truncating(const struct file *file) { return file->f_flags & O_TRUNC; }
void lcfs_fput(struct file *file) { fput(file); }
long lcfs_err_ptr(const void *ptr) { return IS_ERR(ptr) ? PTR_ERR(ptr) : 0; }

/* Direct I/O (iomap) */
bool lcfs_iocb_direct(const struct kiocb *iocb) { return iocb->ki_flags & IOCB_DIRECT; }
bool lcfs_iocb_append(const struct kiocb *iocb) { return iocb->ki_flags & IOCB_APPEND; }
size_t lcfs_iov_iter_count(const struct iov_iter *iter) { return iov_iter_count(iter); }

/*
 * A direct read or write through iomap, waiting for completion even for an asynchronous iocb
 * when @dio_flags asks (IOMAP_DIO_FORCE_WAIT). A write's O_SYNC/O_DSYNC flags are masked for the
 * call: iomap would otherwise fsync from inside, under the caller's i_rwsem; LCFS syncs once its
 * locks are dropped, as for buffered writes.
 */
ssize_t lcfs_dio_rw(struct kiocb *iocb, struct iov_iter *iter, const struct iomap_ops *ops,
		    const struct iomap_dio_ops *dops, unsigned int dio_flags)
{
	int sync = iov_iter_rw(iter) == WRITE ? iocb->ki_flags & (IOCB_DSYNC | IOCB_SYNC) : 0;
	ssize_t ret;

	iocb->ki_flags &= ~sync;
	ret = iomap_dio_rw(iocb, iter, ops, dops, dio_flags, NULL, 0);
	iocb->ki_flags |= sync;
	return ret;
}

/* A read of an O_DIRECT file through the page cache (a request direct I/O cannot serve). */
ssize_t lcfs_buffered_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	if (!iov_iter_count(to))
		return 0;
	return filemap_read(iocb, to, 0);
}

ssize_t lcfs_direct_write_fallback(struct kiocb *iocb, struct iov_iter *iter,
				   ssize_t direct_written, ssize_t buffered_written)
{
	return direct_write_fallback(iocb, iter, direct_written, buffered_written);
}

void lcfs_file_set_can_odirect(struct file *file) { file->f_mode |= FMODE_CAN_ODIRECT; }
void lcfs_file_accessed(struct file *file) { file_accessed(file); }

/* The two regular files of a remap: i_rwsem, then invalidate_lock, as xfs and btrfs take them. */
void lcfs_lock_two(struct inode *a, struct inode *b) { lock_two_nondirectories(a, b); }
void lcfs_unlock_two(struct inode *a, struct inode *b) { unlock_two_nondirectories(a, b); }

void lcfs_invalidate_lock_two(struct inode *a, struct inode *b)
{
	filemap_invalidate_lock_two(a->i_mapping, b->i_mapping);
}

void lcfs_invalidate_unlock_two(struct inode *a, struct inode *b)
{
	filemap_invalidate_unlock_two(a->i_mapping, b->i_mapping);
}
void lcfs_inode_lock_shared(struct inode *inode) { inode_lock_shared(inode); }
void lcfs_inode_unlock_shared(struct inode *inode) { inode_unlock_shared(inode); }
unsigned int lcfs_dio_read_align(struct block_device *bdev) { return bdev_logical_block_size(bdev); }

/*
 * statx's direct I/O alignment of regular file @inode: memory as the device needs it, offsets
 * and lengths of reads in device sectors, of writes in @write_align bytes (filesystem blocks).
 */
void lcfs_fill_dio_align(struct kstat *stat, const struct inode *inode, u32 request_mask,
			 u32 write_align)
{
	struct block_device *bdev = inode->i_sb->s_bdev;

	if (!S_ISREG(inode->i_mode) || !(request_mask & (STATX_DIOALIGN | STATX_DIO_READ_ALIGN)))
		return;
	stat->result_mask |= STATX_DIOALIGN | STATX_DIO_READ_ALIGN;
	stat->dio_mem_align = bdev_dma_alignment(bdev) + 1;
	stat->dio_offset_align = write_align;
	stat->dio_read_offset_align = bdev_logical_block_size(bdev);
}

bool lcfs_fileattr_has_fsx(const struct file_kattr *fa) { return fileattr_has_fsx(fa); }
size_t lcfs_sizeof_file_kattr(void) { return sizeof(struct file_kattr); }
/* One lock class for every attribute of every mount, as the macro in a loop gives. */
void lcfs_sysfs_attr_init(struct attribute *attr) { sysfs_attr_init(attr); }
void lcfs_init_completion(struct completion *x) { init_completion(x); }
void lcfs_super_set_sysfs_name_bdev(struct super_block *sb) { super_set_sysfs_name_bdev(sb); }
