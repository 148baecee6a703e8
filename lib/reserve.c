/* SPDX-License-Identifier: MIT */
/* Block reservation at registration: what ->page_mkwrite does for a mapped
 * write (allocate, or fail with ENOSPC before the write is accepted), done
 * once for the whole range before the NIC can write it.
 *
 * fallocate(FALLOC_FL_KEEP_SIZE) turns holes into unwritten extents; on
 * ext4 and xfs a later write into them needs no new data blocks, so the
 * writeback cannot run out of space.  Copy-on-write filesystems (btrfs)
 * need new space for every rewrite whatever was reserved: nothing is
 * promised there, and ENOSPC is reported by the sync point that writes. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "file.h"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

bool sm_reserve_applies(long fs_magic)
{
	return fs_magic == EXT4_SUPER_MAGIC || fs_magic == XFS_SUPER_MAGIC;
}

int sm_reserve(int fd, long fs_magic, off_t off, size_t len)
{
	struct stat st;

	if (!sm_cfg.reserve || !sm_reserve_applies(fs_magic) || !len)
		return 0;
	if (fstat(fd, &st))
		return errno;
	/* Writeback never extends the file: nothing past EOF to reserve. */
	if (off >= st.st_size)
		return 0;
	if ((off_t)len > st.st_size - off)
		len = (size_t)(st.st_size - off);
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, off, (off_t)len) == 0)
		return 0;
	if (errno == ENOSPC || errno == EDQUOT) {
		sm_info("reserving %zu bytes at offset %lld: %s", len, (long long)off,
			strerror(errno));
		return errno;
	}
	/* No extents (ext2/3 layout), a read-only descriptor, ...: no promise. */
	sm_debug("no block reservation (%s)", strerror(errno));
	return 0;
}

int sm_reserve_fd(int fd, off_t off, size_t len)
{
	struct statfs sfs;

	if (!sm_cfg.reserve || fstatfs(fd, &sfs))
		return 0;
	return sm_reserve(fd, (long)sfs.f_type, off, len);
}
