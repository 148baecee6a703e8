/* SPDX-License-Identifier: MIT */
/* Block reservation at registration: what ->page_mkwrite does for a mapped
 * write (allocate, or fail with ENOSPC before the write is accepted), done
 * once for the whole range before the NIC can write it.
 *
 * fallocate(FALLOC_FL_KEEP_SIZE) turns holes into unwritten extents; on
 * ext4 and xfs a later write into them needs no new data blocks, so the
 * writeback cannot run out of space.  Copy-on-write filesystems (btrfs)
 * need new space for every rewrite whatever was reserved: nothing is
 * promised there, and ENOSPC is reported by the sync point that writes.
 *
 * What is reserved is never given back, not even by a registration that
 * fails later (issue 16): a punch discards whatever another process
 * write()s into the range between any check of ours and the punch (no lock
 * makes other writers wait), and another registration of the same pages
 * may rely on the blocks.  They stay unwritten extents: read as zeros, the
 * file size unchanged.  So that a full filesystem does not get fuller, holes
 * larger than the free space are refused before anything is allocated; a
 * race with other allocations can still leave part of one (fallocate keeps
 * what it got before ENOSPC). */
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "file.h"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

enum { FIEMAP_BATCH = 32 };

struct holes {
	size_t n, cap;
	struct hole {
		off_t off, len;
	} *h;
	unsigned long long bytes;
};

bool sm_reserve_applies(long fs_magic)
{
	return fs_magic == EXT4_SUPER_MAGIC || fs_magic == XFS_SUPER_MAGIC;
}

static int holes_push(struct holes *hs, off_t off, off_t len)
{
	if (hs->n == hs->cap) {
		size_t cap = hs->cap ? 2 * hs->cap : 8;
		struct hole *h = realloc(hs->h, cap * sizeof(*h));

		if (!h)
			return ENOMEM;
		hs->h = h;
		hs->cap = cap;
	}
	hs->h[hs->n++] = (struct hole){ off, len };
	hs->bytes += (unsigned long long)len;
	return 0;
}

/* The holes of [off, end) that FIEMAP shows (delayed allocations count as
 * blocks: the filesystem reserved them already). */
static int find_holes(int fd, off_t off, off_t end, struct holes *hs)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + FIEMAP_BATCH * sizeof(struct fiemap_extent)];
	} u;
	struct fiemap *fm = &u.fm;
	off_t at = off;

	while (at < end) {
		off_t hole = end;	/* where the next hole ends */
		bool last = false;

		memset(fm, 0, sizeof(*fm));
		fm->fm_start = (uint64_t)at;
		fm->fm_length = (uint64_t)(end - at);
		fm->fm_extent_count = FIEMAP_BATCH;
		if (ioctl(fd, FS_IOC_FIEMAP, fm))
			return errno;
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &fm->fm_extents[i];
			off_t s = (off_t)e->fe_logical, t = s + (off_t)e->fe_length;

			last = e->fe_flags & FIEMAP_EXTENT_LAST;
			if (s > at) {
				hole = s < end ? s : end;
				break;
			}
			if (t > at)
				at = t;
			if (at >= end)
				return 0;
		}
		if (hole == end && !last && fm->fm_mapped_extents == FIEMAP_BATCH)
			continue;	/* more extents: ask again from `at` */
		int err = holes_push(hs, at, hole - at);

		if (err)
			return err;
		at = hole;
	}
	return 0;
}

/* The holes clearly cannot fit: more than the free space this process may
 * use (root may use the root reserve).  Unknown: they may. */
static bool cannot_fit(int fd, unsigned long long bytes)
{
	struct statfs sfs;
	unsigned long long avail;

	if (fstatfs(fd, &sfs) || !sfs.f_bsize)
		return false;
	avail = geteuid() == 0 ? sfs.f_bfree : sfs.f_bavail;
	return bytes / (unsigned long long)sfs.f_bsize > avail;
}

/* Fill the holes; bytes allocated go to *reserved, also those a failed
 * fallocate keeps (ext4 and xfs allocate in steps): what of its hole is no
 * hole any more. */
static int fill_holes(int fd, const struct holes *hs, size_t *reserved)
{
	for (size_t i = 0; i < hs->n; i++) {
		const struct hole *h = &hs->h[i];
		struct holes left = { 0 };
		int err;

		if (!fallocate(fd, FALLOC_FL_KEEP_SIZE, h->off, h->len)) {
			*reserved += (size_t)h->len;
			continue;
		}
		err = errno;
		if (!find_holes(fd, h->off, h->off + h->len, &left) &&
		    left.bytes < (unsigned long long)h->len)
			*reserved += (size_t)((unsigned long long)h->len - left.bytes);
		free(left.h);
		return err;
	}
	return 0;
}

int sm_reserve(int fd, long fs_magic, off_t off, size_t len, size_t *reserved)
{
	struct holes hs = { 0 };
	struct stat st;
	int err;

	if (!sm_cfg.reserve || !sm_reserve_applies(fs_magic) || !len)
		return 0;
	if (fstat(fd, &st))
		return errno;
	/* Writeback never extends the file: nothing past EOF to reserve. */
	if (off >= st.st_size)
		return 0;
	if ((off_t)len > st.st_size - off)
		len = (size_t)(st.st_size - off);
	err = find_holes(fd, off, off + (off_t)len, &hs);
	if (!err && hs.bytes && cannot_fit(fd, hs.bytes))
		err = ENOSPC;
	else if (!err)
		err = fill_holes(fd, &hs, reserved);
	free(hs.h);
	if (!err)
		return 0;
	if (err == ENOSPC || err == EDQUOT || err == ENOMEM) {
		sm_info("reserving %llu bytes of holes in %zu bytes at offset %lld: %s", hs.bytes,
			len, (long long)off, strerror(err));
		return err;
	}
	/* No FIEMAP or no extents (ext2/3 layout), a read-only descriptor, ...:
	 * no promise. */
	sm_debug("no block reservation (%s)", strerror(err));
	return 0;
}

int sm_reserve_fd(int fd, off_t off, size_t len, size_t *reserved)
{
	struct statfs sfs;

	if (!sm_cfg.reserve || fstatfs(fd, &sfs))
		return 0;
	return sm_reserve(fd, (long)sfs.f_type, off, len, reserved);
}

void sm_reserve_kept(size_t reserved)
{
	if (reserved)
		sm_info("a failed registration leaves %zu bytes it reserved allocated "
			"(unwritten extents: they read as zeros, the file size is unchanged)",
			reserved);
}
