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
 * A failed registration changes nothing: only the holes FIEMAP shows are
 * filled (one fallocate each), and each is logged, so that a failure (of
 * this reservation, a later one or the rest of the registration) punches
 * them again.  fallocate leaves what it allocated before it ran out of
 * space: ext4 and xfs allocate in steps.  A log entry points at the
 * caller's descriptor (sm_file.fd may be renewed, never closed, while a
 * chunk uses the file), so the log costs no descriptor. */
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

bool sm_reserve_applies(long fs_magic)
{
	return fs_magic == EXT4_SUPER_MAGIC || fs_magic == XFS_SUPER_MAGIC;
}

static int log_push(struct sm_resv *log, const int *fdp, off_t off, off_t len)
{
	if (log->n == log->cap) {
		size_t cap = log->cap ? 2 * log->cap : 8;
		struct sm_resv_gap *g = realloc(log->gap, cap * sizeof(*g));

		if (!g)
			return ENOMEM;
		log->gap = g;
		log->cap = cap;
	}
	log->gap[log->n++] = (struct sm_resv_gap){ fdp, off, len };
	return 0;
}

/* Give back what a logged gap holds now: its unwritten extents (what our
 * fallocate made).  Written first, so that what someone wrote there
 * meanwhile is a written extent and stays. */
static void gap_release(const struct sm_resv_gap *g)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + FIEMAP_BATCH * sizeof(struct fiemap_extent)];
	} u;
	struct fiemap *fm = &u.fm;
	off_t end = g->off + g->len, at = g->off;
	int fd = *g->fdp;

	sync_file_range(fd, g->off, g->len, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
			SYNC_FILE_RANGE_WAIT_AFTER);
	while (at < end) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = (uint64_t)at;
		fm->fm_length = (uint64_t)(end - at);
		fm->fm_extent_count = FIEMAP_BATCH;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) || !fm->fm_mapped_extents)
			return;
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &fm->fm_extents[i];
			off_t s = (off_t)e->fe_logical, t = s + (off_t)e->fe_length;

			s = s > at ? s : at;
			t = t < end ? t : end;
			if (s < t && (e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) &&
			    !(e->fe_flags & FIEMAP_EXTENT_DELALLOC) &&
			    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s, t - s))
				sm_info("releasing reserved blocks at offset %lld: %s",
					(long long)s, strerror(errno));
			at = t > at ? t : at;
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				return;
		}
	}
}

void sm_reserve_undo(struct sm_resv *log, size_t mark)
{
	while (log->n > mark)
		gap_release(&log->gap[--log->n]);
}

void sm_reserve_done(struct sm_resv *log)
{
	free(log->gap);
	*log = (struct sm_resv){ 0 };
}

/* Fill every hole of [off, end) that FIEMAP shows (delayed allocations
 * count as blocks: the filesystem reserved them already).  Each hole is
 * logged before its fallocate: a partial allocation is released too. */
static int fill_holes(const int *fdp, off_t off, off_t end, struct sm_resv *log)
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
		if (ioctl(*fdp, FS_IOC_FIEMAP, fm))
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
		int err = log_push(log, fdp, at, hole - at);

		if (err)
			return err;
		if (fallocate(*fdp, FALLOC_FL_KEEP_SIZE, at, hole - at))
			return errno;
		at = hole;
	}
	return 0;
}

int sm_reserve(const int *fdp, long fs_magic, off_t off, size_t len, struct sm_resv *log)
{
	struct stat st;
	size_t mark = log->n;
	int err;

	if (!sm_cfg.reserve || !sm_reserve_applies(fs_magic) || !len)
		return 0;
	if (fstat(*fdp, &st))
		return errno;
	/* Writeback never extends the file: nothing past EOF to reserve. */
	if (off >= st.st_size)
		return 0;
	if ((off_t)len > st.st_size - off)
		len = (size_t)(st.st_size - off);
	err = fill_holes(fdp, off, off + (off_t)len, log);
	if (!err)
		return 0;
	if (err == ENOSPC || err == EDQUOT || err == ENOMEM) {
		sm_info("reserving %zu bytes at offset %lld: %s", len, (long long)off,
			strerror(err));
		sm_reserve_undo(log, mark);	/* this call's part; the rest is the caller's */
		return err;
	}
	/* No FIEMAP or no extents (ext2/3 layout), a read-only descriptor, ...:
	 * no promise; what this call filled stays logged. */
	sm_debug("no block reservation (%s)", strerror(err));
	return 0;
}

int sm_reserve_fd(const int *fdp, off_t off, size_t len, struct sm_resv *log)
{
	struct statfs sfs;

	if (!sm_cfg.reserve || fstatfs(*fdp, &sfs))
		return 0;
	return sm_reserve(fdp, (long)sfs.f_type, off, len, log);
}
