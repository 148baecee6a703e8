/* SPDX-License-Identifier: MIT */
/* A fork child's share of its parent's shadows.
 *
 * The child keeps the shadow mappings it inherited: they are the parent's
 * shadow memory (a MAP_SHARED memfd), as a MAP_SHARED file page is shared
 * with a child, so its stores reach the parent's shadow, the NIC and the
 * parent's writebacks, and it sees the NIC's writes.  The parent never
 * lets that memory go (sm_chunk.forked).  The per-page hashes of a file's
 * window are shared memory too (file.c), so the child's own sync points
 * (msync, fsync, munmap, mremap, exit) write back what changed since
 * anyone last wrote the page, exactly as the parent would, and the page is
 * written once, by whoever comes first.  Engine lock held. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "shadow.h"

struct inh {
	struct inh *next;
	uintptr_t start;	/* the child's address of page 0 */
	size_t npages;
	int fd;			/* our copy of the parent's writable descriptor */
	dev_t dev;		/* the file (fstat of fd) */
	ino_t ino;
	off_t file_off;
	struct sm_fpage *fp;	/* shared with the parent */
	dev_t adev;		/* the parent's arena */
	ino_t aino;
	off_t aoff;		/* arena offset of page 0 */
};

static struct inh *inh;
_Atomic size_t sm_ninherited;

void sm_inherit(struct sm_chunk *c, size_t first, size_t n)
{
	struct stat ast, fst;
	struct inh *r;

	if (c->own_fp || !c->file->writable || fstat(sm_arena_fd(), &ast) ||
	    fstat(c->file->fd, &fst))
		return;
	r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->fd = fcntl(c->file->fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0) {
		free(r);
		return;
	}
	r->start = sm_page_addr(c, first);
	r->npages = n;
	r->dev = fst.st_dev;
	r->ino = fst.st_ino;
	r->file_off = c->file_off + (off_t)(first * sm_page_size);
	r->fp = c->fp + first;
	r->adev = ast.st_dev;
	r->aino = ast.st_ino;
	r->aoff = c->arena_off + (off_t)(first * sm_page_size);
	r->next = inh;
	inh = r;
	atomic_fetch_add(&sm_ninherited, 1);
}

static int write_full(int fd, const uint8_t *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t w = pwrite(fd, buf, len, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : EIO;
		buf += w;
		len -= (size_t)w;
		off += w;
	}
	return 0;
}

/* The pages of r in [s, e) that still show the parent's shadow at this
 * address (the child may have moved or replaced them): written where their
 * hash differs from the shared one, never past the end of file. */
static int sync_run(struct inh *r, uintptr_t s, uintptr_t e, bool durable)
{
	uintptr_t rs = r->start, re = r->start + r->npages * sm_page_size;
	struct sm_vma *v;
	struct stat st;
	size_t n;
	bool wrote = false;
	int err;

	s = s > rs ? s : rs;
	e = e < re ? e : re;
	if (s >= e)
		return 0;
	err = sm_vma_list(s, e, &v, &n);
	if (err)
		return err;
	if (fstat(r->fd, &st)) {
		sm_vma_free(v, n);
		return errno;
	}
	for (size_t k = 0; k < n && !err; k++) {
		if (!v[k].shared || v[k].inode != r->aino ||
		    makedev(v[k].dev_major, v[k].dev_minor) != r->adev ||
		    (off_t)v[k].offset != r->aoff + (off_t)(v[k].start - r->start))
			continue;
		for (uintptr_t a = v[k].start; a < v[k].end && !err; a += sm_page_size) {
			size_t i = (a - r->start) / sm_page_size;
			off_t off = r->file_off + (off_t)(i * sm_page_size);
			uint64_t h = sm_page_hash((const uint8_t *)a);
			size_t len = sm_page_size;

			if (off >= st.st_size ||
			    (h == __atomic_load_n(&r->fp[i].hash, __ATOMIC_RELAXED) &&
			     !__atomic_load_n(&r->fp[i].force, __ATOMIC_RELAXED)))
				continue;
			if (off + (off_t)len > st.st_size)
				len = (size_t)(st.st_size - off);
			err = write_full(r->fd, (const uint8_t *)a, len, off);
			if (!err) {
				__atomic_store_n(&r->fp[i].hash, h, __ATOMIC_RELAXED);
				__atomic_store_n(&r->fp[i].force, 0, __ATOMIC_RELAXED);
				wrote = true;
				SM_STAT_ADD(bytes_written_back, len);
			}
		}
	}
	sm_vma_free(v, n);
	if (!err && wrote && durable && sm_sys_fdatasync(r->fd))
		err = errno;
	return err;
}

int sm_inherit_sync_range(uintptr_t s, uintptr_t e, bool durable)
{
	int first = 0;

	for (struct inh *r = inh; r; r = r->next) {
		int err = sync_run(r, s, e, durable);

		if (err && !first)
			first = err;
	}
	return first;
}

int sm_inherit_sync_file(dev_t dev, ino_t ino, bool durable, bool all)
{
	int first = 0;

	for (struct inh *r = inh; r; r = r->next) {
		int err;

		if (!all && (r->dev != dev || r->ino != ino))
			continue;
		err = sync_run(r, 0, UINTPTR_MAX, durable);
		if (err && !first)
			first = err;
	}
	return first;
}

/* Fork child of a fork child: its parent's records are its own too (the
 * memory stays shared), nothing to do.  Unload: close what we hold. */
void sm_inherit_forget(void)
{
	while (inh) {
		struct inh *r = inh;

		inh = r->next;
		close(r->fd);
		free(r);
	}
	atomic_store(&sm_ninherited, 0);
}
