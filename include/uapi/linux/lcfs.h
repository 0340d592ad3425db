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
	__u64 reserved[8];
};

/*
 * Request numbers. Rust users (lcfs.ko, the lcfs tool) build the ioctl codes from the *_NR values
 * and the structure sizes, as _IOR() does; bindgen cannot expand _IOR() itself.
 */
#define LCFS_IOC_FS_INFO_NR	1
#define LCFS_IOC_FS_INFO	_IOR(LCFS_IOCTL_MAGIC, LCFS_IOC_FS_INFO_NR, struct lcfs_fs_info)

#endif /* _UAPI_LINUX_LCFS_H */
