/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * LCFS user-kernel interface: ioctls on a regular file or directory of a mounted LCFS filesystem.
 *
 * This header is the one definition of the ABI: lcfs.ko and the userspace tools both generate
 * their Rust bindings from it with bindgen. Every structure has a fixed size (checked at build
 * time on both sides), explicit padding, and reserved space that must be zero on input.
 */
#ifndef _UAPI_LINUX_LCFS_H
#define _UAPI_LINUX_LCFS_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* ioctl type byte; ioctl-number.rst lists no other user of 0xE5. */
#define LCFS_IOCTL_MAGIC 0xE5

/* Length of the label field, including the terminating NUL. */
#define LCFS_LABEL_SIZE 64

/**
 * struct lcfs_fs_info - filesystem-wide information (LCFS_IOC_FS_INFO, output only)
 * @format_version: on-disk format version of the mounted filesystem
 * @block_size: bytes per block
 * @generation: number of the last committed transaction
 * @total_blocks: blocks of the device used by the filesystem
 * @free_blocks: blocks not in use
 * @uuid: filesystem UUID
 * @label: volume label, NUL-terminated
 * @reclaim_queued: tree nodes of removed layers queued for reclaim; 0 once the space of every
 *	removed layer is free
 * @cached_nodes: copies of metadata blocks the mount's node cache holds in memory now (each
 *	4 KiB; the superblock shrinker frees the clean ones under memory pressure)
 * @reserved: zero
 */
struct lcfs_fs_info {
	__u32 format_version;
	__u32 block_size;
	__u64 generation;
	__u64 total_blocks;
	__u64 free_blocks;
	__u8 uuid[16];
	char label[LCFS_LABEL_SIZE];
	__u64 reclaim_queued;
	__u64 cached_nodes;
	__u64 reserved[6];
};

/* Size of a layer name field: up to LCFS_LAYER_NAME_MAX bytes and a terminating NUL. */
#define LCFS_LAYER_NAME_MAX	255
#define LCFS_LAYER_NAME_SIZE	256

/* Layer flags (struct lcfs_layer_info.flags). */
#define LCFS_LAYER_READ_ONLY	(1U << 0)	/* frozen: no change reaches it */

/* struct lcfs_layer_create.flags */
#define LCFS_CREATE_READ_ONLY	(1U << 0)	/* LCFS_IOC_LAYER_CLONE: the clone starts frozen */

/*
 * struct lcfs_layer_info.valid: which figures the kernel filled in. A figure the running kernel
 * does not compute is left zero and its bit clear.
 */
#define LCFS_INFO_OWN_BYTES	(1U << 0)

/**
 * struct lcfs_layer_create - a new layer (LCFS_IOC_LAYER_CREATE, _CLONE, _SNAPSHOT)
 * @source: CLONE: a frozen layer, the new layer's parent; SNAPSHOT: the layer to copy, frozen or
 *	not; CREATE: zero
 * @flags: LCFS_CREATE_* (CLONE only; zero otherwise)
 * @reserved0: zero
 * @id: output: the new layer's id
 * @reserved: zero
 * @name: the new layer's name, NUL-terminated: 1 to LCFS_LAYER_NAME_MAX bytes of UTF-8, no '/',
 *	not "." or ".."
 */
struct lcfs_layer_create {
	__u64 source;
	__u32 flags;
	__u32 reserved0;
	__u64 id;
	__u64 reserved[5];
	char name[LCFS_LAYER_NAME_SIZE];
};

/**
 * struct lcfs_layer_ref - one layer (LCFS_IOC_LAYER_FREEZE, LCFS_IOC_LAYER_REMOVE)
 * @id: the layer's id
 * @reserved: zero
 */
struct lcfs_layer_ref {
	__u64 id;
	__u64 reserved[3];
};

/**
 * struct lcfs_layer_rename - a new name for a layer (LCFS_IOC_LAYER_RENAME)
 * @id: the layer's id
 * @reserved: zero
 * @name: the new name, as in struct lcfs_layer_create
 */
struct lcfs_layer_rename {
	__u64 id;
	__u64 reserved[3];
	char name[LCFS_LAYER_NAME_SIZE];
};

/**
 * struct lcfs_layer_info - a layer's figures (LCFS_IOC_LAYER_INFO; the entries of LCFS_IOC_LAYER_LIST)
 * @id: input to LCFS_IOC_LAYER_INFO: the layer, or zero for the layer named @name, or zero with an
 *	empty @name for the layer of the file the ioctl is issued on; output: the layer's id
 * @parent: the layer it was cloned from, zero for none
 * @flags: LCFS_LAYER_*
 * @children: layers cloned from it
 * @create_sec: creation time, seconds since the epoch
 * @create_nsec: nanoseconds of the creation time
 * @valid: LCFS_INFO_* bits of the figures filled in
 * @inodes: inodes of the layer
 * @bytes: bytes of file data the layer's files reference (apparent size)
 * @own_bytes: bytes of file data the layer's own writes hold, which its parent does not (valid
 *	with LCFS_INFO_OWN_BYTES); a snapshot counts its source's
 * @reserved: zero on input; zero on output
 * @name: the layer's name, NUL-terminated (input to LCFS_IOC_LAYER_INFO when @id is zero)
 */
struct lcfs_layer_info {
	__u64 id;
	__u64 parent;
	__u32 flags;
	__u32 children;
	__s64 create_sec;
	__u32 create_nsec;
	__u32 valid;
	__u64 inodes;
	__u64 bytes;
	__u64 own_bytes;
	__u64 reserved[4];
	char name[LCFS_LAYER_NAME_SIZE];
};

/**
 * struct lcfs_layer_list - a batch of layers in id order (LCFS_IOC_LAYER_LIST)
 * @cursor: input: the lowest layer id to report (zero at the start); output: where the next call
 *	continues, zero when no layer is left
 * @entries: user address of an array of @count struct lcfs_layer_info
 * @count: input: entries the array holds (at most LCFS_LIST_MAX); output: entries filled in
 * @reserved0: zero
 * @reserved: zero
 */
struct lcfs_layer_list {
	__u64 cursor;
	__u64 entries;
	__u32 count;
	__u32 reserved0;
	__u64 reserved[4];
};

/* Largest batch of LCFS_IOC_LAYER_LIST. */
#define LCFS_LIST_MAX 256

/* struct lcfs_diff_entry.change */
#define LCFS_DIFF_ADDED		1	/* the path exists only in the layer */
#define LCFS_DIFF_MODIFIED	2	/* in both, and what it names changed */
#define LCFS_DIFF_DELETED	3	/* only in the base */

/**
 * struct lcfs_diff_entry - one path in the output of LCFS_IOC_LAYER_DIFF, followed by the path
 * @change: LCFS_DIFF_*
 * @type: DT_* type of what the path names (in the base layer, for a deleted path)
 * @path_len: bytes of the path that follows this header (it starts with '/'; no NUL)
 * @reserved: zero
 *
 * Entries start at multiples of 8 bytes in the buffer: the next one after the padding that
 * follows the path.
 */
struct lcfs_diff_entry {
	__u8 change;
	__u8 type;
	__u16 path_len;
	__u32 reserved;
};

/* Smallest buffer LCFS_IOC_LAYER_DIFF takes (one entry with the longest path), and the most it
 * fills in one call. */
#define LCFS_DIFF_BUF_MIN	4112
#define LCFS_DIFF_BUF_MAX	65536

/**
 * struct lcfs_layer_diff - the paths a layer changed (LCFS_IOC_LAYER_DIFF)
 * @id: the layer
 * @base: zero to compare the layer with its parent, or the id of one of its ancestors
 * @cursor: input: where to continue, all zero at the start; output: where the next call
 *	continues, all zero when no change is left (opaque otherwise)
 * @buf: user address of the output buffer: struct lcfs_diff_entry records
 * @buf_size: input: the buffer's size, at least LCFS_DIFF_BUF_MIN (at most LCFS_DIFF_BUF_MAX of
 *	it is filled per call); output: bytes filled
 * @count: output: entries filled
 * @reserved: zero
 */
struct lcfs_layer_diff {
	__u64 id;
	__u64 base;
	__u64 cursor[4];
	__u64 buf;
	__u32 buf_size;
	__u32 count;
	__u64 reserved[4];
};

/*
 * Request numbers. Rust users (lcfs.ko, the lcfs tool) build the ioctl codes from the *_NR values
 * and the structure sizes, as _IOR() does; bindgen cannot expand _IOR() itself.
 */
#define LCFS_IOC_FS_INFO_NR	1
#define LCFS_IOC_FS_INFO	_IOR(LCFS_IOCTL_MAGIC, LCFS_IOC_FS_INFO_NR, struct lcfs_fs_info)
#define LCFS_IOC_LAYER_CREATE_NR	2
#define LCFS_IOC_LAYER_CREATE	_IOWR(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_CREATE_NR, struct lcfs_layer_create)
#define LCFS_IOC_LAYER_CLONE_NR		3
#define LCFS_IOC_LAYER_CLONE	_IOWR(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_CLONE_NR, struct lcfs_layer_create)
#define LCFS_IOC_LAYER_SNAPSHOT_NR	4
#define LCFS_IOC_LAYER_SNAPSHOT	_IOWR(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_SNAPSHOT_NR, struct lcfs_layer_create)
#define LCFS_IOC_LAYER_FREEZE_NR	5
#define LCFS_IOC_LAYER_FREEZE	_IOW(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_FREEZE_NR, struct lcfs_layer_ref)
#define LCFS_IOC_LAYER_RENAME_NR	6
#define LCFS_IOC_LAYER_RENAME	_IOW(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_RENAME_NR, struct lcfs_layer_rename)
#define LCFS_IOC_LAYER_REMOVE_NR	7
#define LCFS_IOC_LAYER_REMOVE	_IOW(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_REMOVE_NR, struct lcfs_layer_ref)
#define LCFS_IOC_LAYER_INFO_NR		8
#define LCFS_IOC_LAYER_INFO	_IOWR(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_INFO_NR, struct lcfs_layer_info)
#define LCFS_IOC_LAYER_LIST_NR		9
#define LCFS_IOC_LAYER_LIST	_IOWR(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_LIST_NR, struct lcfs_layer_list)
#define LCFS_IOC_LAYER_DIFF_NR		10
#define LCFS_IOC_LAYER_DIFF	_IOWR(LCFS_IOCTL_MAGIC, LCFS_IOC_LAYER_DIFF_NR, struct lcfs_layer_diff)

#endif /* _UAPI_LINUX_LCFS_H */
