/* SPDX-License-Identifier: MIT */
/*
 * File-range registration for storage daemons: an anonymous buffer filled
 * from fd[offset, offset+length), registered as is.  No file mapping is
 * involved, so no page is ever pinned for a filesystem.  A hash per page,
 * taken whenever the page is known to equal the file, tells what the NIC (or
 * the CPU) changed; only that is written back.
 *
 * Rules (man safe_mr_file_reg.3):
 *  - offset must be page aligned (EINVAL), length > 0;
 *  - the file's end is read (fstat, BLKGETSIZE64) at every sync: writeback
 *    never extends the file.  The page holding EOF is written up to EOF.
 *    Changed pages wholly past EOF are not written and stay pending; sync
 *    returns ENXIO after writing everything else.  Dereg drops them (they
 *    have no place in the file) with a warning.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "file.h"
#include "safe_mr.h"

struct fr_region {
	struct safe_mr_file_region pub;	/* first: the handle callers see */
	pthread_mutex_t lock;
	uint64_t *hash;			/* per page: content known to be in the file */
	uint8_t *pstate;		/* per page: FR_UNSYNCED, FR_FORCE */
	int wfd;			/* the descriptor writes go through */
	size_t npages;
	size_t map_len;
};

#define FR_BATCH 8192	/* pages per sm_writeback call: bounds memory */
/* Written since the last good flush: if a flush fails, the kernel may have
 * dropped it (and cleared the error), so it is written again. */
#define FR_UNSYNCED 1
#define FR_FORCE 2

static struct fr_region *to_fr(struct safe_mr_file_region *r)
{
	return (struct fr_region *)r;
}

/* Size of the file or block device behind fd: the writeback limit. */
static int file_end(int fd, off_t *end)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return errno;
	if (S_ISREG(st.st_mode)) {
		*end = st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;

		if (ioctl(fd, BLKGETSIZE64, &sz) < 0)
			return errno;
		*end = (off_t)sz;
		return 0;
	}
	return EINVAL;
}

/* pread [off, off+len) into buf; bytes past EOF become zero.  len and off
 * are page multiples, so this also works with O_DIRECT. */
static int fill(int fd, char *buf, size_t len, off_t off, size_t *got)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, buf + done, len - done, off + (off_t)done);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	memset(buf + done, 0, len - done);
	*got = done;
	return 0;
}

/* Pages [p0, p1) of the region covering the byte range, after checks. */
static int page_span(const struct fr_region *fr, size_t offset, size_t length, size_t *p0,
		     size_t *p1)
{
	size_t len = fr->pub.length;

	if (offset > len || (length && length > len - offset))
		return EINVAL;
	if (!length)
		length = len - offset;
	*p0 = offset / sm_page_size;
	*p1 = length ? (offset + length + sm_page_size - 1) / sm_page_size : *p0;
	return 0;
}

/* Writeback must land in place: pwrite on an O_APPEND descriptor appends.
 * Such a descriptor is reopened without O_APPEND (the same file, through
 * /proc/self/fd); if that is impossible the registration fails, EINVAL. */
static int own_descriptor(int fd, int *wfd)
{
	char path[64];
	struct stat a, b;
	int fl = fcntl(fd, F_GETFL), nfd;

	if (fl < 0)
		return errno;
	if (!(fl & O_APPEND))
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	nfd = open(path, (fl & ~(O_APPEND | O_CREAT | O_EXCL | O_TRUNC)) | O_CLOEXEC);
	if (nfd < 0)
		return EINVAL;
	if (fstat(fd, &a) || fstat(nfd, &b) || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(nfd);
		return EINVAL;
	}
	*wfd = nfd;
	return 0;
}

SM_EXPORT struct safe_mr_file_region *safe_mr_file_reg(struct ibv_pd *pd, int fd, off_t offset,
						       size_t length, unsigned int access)
{
	const struct sm_verbs *v;
	size_t reserved = 0;
	struct fr_region *fr;
	off_t end;
	size_t got;
	int err;

	sm_init();
	if (!pd || !length || offset < 0 || (offset & (off_t)(sm_page_size - 1)) ||
	    length > (size_t)PTRDIFF_MAX - sm_page_size) {
		errno = EINVAL;
		return NULL;
	}
	err = file_end(fd, &end);
	if (err) {
		errno = err;
		return NULL;
	}
	v = sm_real_verbs();
	if (!v)
		return NULL;
	fr = calloc(1, sizeof(*fr));
	if (!fr)
		return NULL;
	/* Writes will come: blocks reserved now (SAFE_MR_RESERVE). */
	if (access & (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) {
		err = sm_reserve_fd(fd, offset, length, &reserved);
		if (err) {
			sm_reserve_kept(reserved);
			free(fr);
			errno = err;
			return NULL;
		}
	}
	fr->wfd = fd;
	err = own_descriptor(fd, &fr->wfd);
	if (err) {
		sm_reserve_kept(reserved);
		free(fr);
		errno = err;
		return NULL;
	}
	fr->map_len = sm_page_up(length);
	fr->npages = fr->map_len / sm_page_size;
	fr->hash = malloc(fr->npages * sizeof(*fr->hash));
	fr->pstate = calloc(fr->npages, 1);
	/* MAP_SHARED: a fork child sees the same buffer, not a COW copy */
	fr->pub.addr = sm_sys_mmap(NULL, fr->map_len, PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!fr->hash || !fr->pstate || fr->pub.addr == MAP_FAILED) {
		err = fr->pub.addr == MAP_FAILED ? errno : ENOMEM;
		goto fail;
	}
	err = fill(fd, fr->pub.addr, fr->map_len, offset, &got);
	if (err)
		goto fail;
	for (size_t i = 0; i < fr->npages; i++)
		fr->hash[i] = sm_page_hash((char *)fr->pub.addr + i * sm_page_size);

	fr->pub.mr = v->reg_mr_iova2(pd, fr->pub.addr, length, (uintptr_t)fr->pub.addr, access);
	if (!fr->pub.mr) {
		err = errno ? errno : EINVAL;
		goto fail;
	}
	fr->pub.length = length;
	fr->pub.fd = fd;
	fr->pub.offset = offset;
	pthread_mutex_init(&fr->lock, NULL);
	SM_STAT_ADD(registrations, 1);
	SM_STAT_ADD(shadowed, 1);
	SM_STAT_ADD(bytes_shadowed, got);
	SM_STAT_ADD(shadow_bytes_now, fr->map_len);
	sm_debug("file_reg fd %d [%lld, +%zu) at %p", fd, (long long)offset, length, fr->pub.addr);
	return &fr->pub;

fail:
	SM_STAT_ADD(registrations, 1);
	SM_STAT_ADD(reg_failed, 1);
	sm_reserve_kept(reserved);	/* they stay: reserve.c says why */
	if (fr->pub.addr && fr->pub.addr != MAP_FAILED)
		sm_sys_munmap(fr->pub.addr, fr->map_len);
	if (fr->wfd != fd)
		close(fr->wfd);
	free(fr->hash);
	free(fr->pstate);
	free(fr);
	errno = err;
	return NULL;
}

/* A flush of the whole file succeeded (ok) or failed: pages written since
 * the last good one are durable, or must be written again. */
static void flushed(struct fr_region *fr, bool ok)
{
	for (size_t p = 0; p < fr->npages; p++)
		if (fr->pstate[p] & FR_UNSYNCED)
			fr->pstate[p] = ok ? 0 : FR_FORCE;
}

/* Write back changed pages [p0, p1); lock held.  *past_eof counts changed
 * pages that lie wholly past EOF (not written). */
static int sync_locked(struct fr_region *fr, size_t p0, size_t p1, unsigned int flags,
		       size_t *past_eof)
{
	struct sm_wb_extent *ext;
	uint64_t *nh;
	size_t *pg;
	off_t end;
	int first = 0, err;

	*past_eof = 0;
	err = file_end(fr->pub.fd, &end);
	if (err)
		return err;
	ext = malloc(FR_BATCH * sizeof(*ext));
	nh = malloc(FR_BATCH * sizeof(*nh));
	pg = malloc(FR_BATCH * sizeof(*pg));
	if (!ext || !nh || !pg) {
		free(ext);
		free(nh);
		free(pg);
		return ENOMEM;
	}
	for (size_t p = p0;;) {	/* at least once: a durable sync of nothing still syncs */
		size_t n = 0;
		unsigned int wbf;

		for (; p < p1 && n < FR_BATCH; p++) {
			const char *page = (char *)fr->pub.addr + p * sm_page_size;
			off_t foff = fr->pub.offset + (off_t)(p * sm_page_size);
			size_t len = sm_page_size;
			uint64_t h = sm_page_hash(page);	/* before the write */

			if (h == fr->hash[p] && !(fr->pstate[p] & FR_FORCE))
				continue;
			if (foff >= end) {
				(*past_eof)++;
				continue;
			}
			if (p * sm_page_size + len > fr->pub.length)
				len = fr->pub.length - p * sm_page_size;
			if ((off_t)len > end - foff)
				len = (size_t)(end - foff);
			ext[n] = (struct sm_wb_extent){ .buf = page, .len = len, .off = foff };
			nh[n] = h;
			pg[n++] = p;
		}
		/* one fdatasync, after the last batch, covers all of them */
		wbf = (p >= p1 && (flags & SAFE_MR_SYNC_DURABLE)) ? SM_WB_DURABLE : 0;
		if (n || wbf) {
			err = sm_writeback(fr->wfd, ext, n, wbf);
			if (err && !first)
				first = err;
			for (size_t i = 0; i < n; i++)
				if (!ext[i].err) {
					fr->hash[pg[i]] = nh[i];
					fr->pstate[pg[i]] = FR_UNSYNCED;
				}
			if (wbf)
				flushed(fr, err == 0);
		}
		if (p >= p1)
			break;
	}
	free(ext);
	free(nh);
	free(pg);
	return first;
}

SM_EXPORT int safe_mr_file_sync(struct safe_mr_file_region *region, size_t offset, size_t length,
				unsigned int flags)
{
	struct fr_region *fr = to_fr(region);
	size_t p0, p1, past;
	int err;

	if (!region || (flags & ~SAFE_MR_SYNC_DURABLE))
		return EINVAL;
	err = page_span(fr, offset, length, &p0, &p1);
	if (err)
		return err;
	pthread_mutex_lock(&fr->lock);
	err = sync_locked(fr, p0, p1, flags, &past);
	pthread_mutex_unlock(&fr->lock);
	if (!err && past) {
		sm_info("file_sync fd %d: %zu changed pages past EOF kept pending",
			fr->pub.fd, past);
		err = ENXIO;
	}
	return err;
}

SM_EXPORT int safe_mr_file_refresh(struct safe_mr_file_region *region, size_t offset,
				   size_t length)
{
	struct fr_region *fr = to_fr(region);
	size_t p0, p1;
	int err;

	if (!region)
		return EINVAL;
	err = page_span(fr, offset, length, &p0, &p1);
	if (err)
		return err;
	pthread_mutex_lock(&fr->lock);
	for (size_t p = p0; p < p1 && !err;) {
		size_t q, got;
		char *buf;

		if (sm_page_hash((char *)fr->pub.addr + p * sm_page_size) != fr->hash[p] ||
		    (fr->pstate[p] & FR_FORCE)) {
			p++;	/* changed: the only copy of that data, keep it */
			continue;
		}
		/* a run of unchanged pages: one pread */
		for (q = p + 1; q < p1; q++)
			if (sm_page_hash((char *)fr->pub.addr + q * sm_page_size) != fr->hash[q] ||
			    (fr->pstate[q] & FR_FORCE))
				break;
		buf = (char *)fr->pub.addr + p * sm_page_size;
		err = fill(fr->pub.fd, buf, (q - p) * sm_page_size,
			   fr->pub.offset + (off_t)(p * sm_page_size), &got);
		if (!err) {
			SM_STAT_ADD(bytes_shadowed, got);
			for (size_t i = p; i < q; i++)
				fr->hash[i] = sm_page_hash((char *)fr->pub.addr + i * sm_page_size);
		}
		p = q;
	}
	pthread_mutex_unlock(&fr->lock);
	return err;
}

SM_EXPORT int safe_mr_file_dereg(struct safe_mr_file_region *region)
{
	struct fr_region *fr = to_fr(region);
	const struct sm_verbs *v;
	size_t past;
	int err;

	if (!region)
		return EINVAL;
	v = sm_real_verbs();
	if (!v)
		return errno ? errno : ENOSYS;
	pthread_mutex_lock(&fr->lock);
	err = sync_locked(fr, 0, fr->npages, SAFE_MR_SYNC_DURABLE, &past);
	if (!err && past)
		sm_warn("file_dereg fd %d: dropping %zu changed pages past EOF (file was "
			"truncated while registered)", fr->pub.fd, past);
	if (!err)
		err = v->dereg_mr(fr->pub.mr);
	pthread_mutex_unlock(&fr->lock);
	if (err)
		return err;
	pthread_mutex_destroy(&fr->lock);
	sm_sys_munmap(fr->pub.addr, fr->map_len);
	SM_STAT_SUB(shadow_bytes_now, fr->map_len);
	if (fr->wfd != fr->pub.fd)
		close(fr->wfd);
	free(fr->hash);
	free(fr->pstate);
	free(fr);
	return 0;
}
