/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input of lcfs.ko's own bindgen run (see Kbuild): the VFS and block APIs that the kernel crate's
 * `bindings` leaves opaque or out, plus the module's C helpers and its uapi header.
 */
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/fs_parser.h>
#include <linux/iomap.h>
#include <linux/falloc.h>
#include <linux/pagemap.h>
#include <linux/statfs.h>
#include <linux/blkdev.h>
#include <linux/filelock.h>
#include <linux/fileattr.h>
#include "lcfs_helpers.h"
#include "uapi/linux/lcfs.h"

/* kiocb flags the write path tests itself (their definitions are too involved for bindgen). */
enum {
	LCFS_IOCB_APPEND = IOCB_APPEND,
	LCFS_IOCB_DIRECT = IOCB_DIRECT,
	LCFS_IOCB_NOWAIT = IOCB_NOWAIT,
	LCFS_IOCB_DONTCACHE = IOCB_DONTCACHE,
};
