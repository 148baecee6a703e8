/* SPDX-License-Identifier: MIT */
/*
 * Writeback engine: shadow pages go back to their file with ordinary writes,
 * so the filesystem allocates, checksums, COWs and reports errors as usual.
 *
 * Extents arrive sorted by file offset.  Pieces contiguous in file AND
 * memory become one write; with io_uring, runs contiguous in file but not in
 * memory are gathered into one writev.  Errors are kept per extent so the
 * caller re-marks exactly the pages that did not reach the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>
#include <sys/uio.h>
#include <liburing.h>

#include "internal.h"
#include "safe_mr.h"

static int wb_uring(int fd, struct sm_wb_extent *ext, size_t n, unsigned int flags,
		    bool *synced);
static bool wb_uring_available(void);

/* Set the extent's error unless it already has one (first cause wins). */
static void ext_fail(struct sm_wb_extent *e, int err)
{
	if (!e->err)
		e->err = err;
}

/* pwrite all of [buf, buf+len) at off; 0 or errno, *done = bytes written. */
static int pwrite_full(int fd, const char *buf, size_t len, off_t off, size_t *done)
{
	*done = 0;
	while (*done < len) {
		ssize_t r = pwrite(fd, buf + *done, len - *done, off + (off_t)*done);

		SM_STAT_ADD(write_calls, 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)	/* no progress and no error: do not spin */
			return EIO;
		*done += (size_t)r;
		SM_STAT_ADD(bytes_written_back, (uint64_t)r);
	}
	return 0;
}

/* Extents i..j-1 were one write that stopped after `done` bytes with `err`:
 * the extents wholly inside `done` made it, the others carry `err`. */
static void mark_run(struct sm_wb_extent *ext, size_t i, size_t j, size_t done, int err)
{
	size_t pos = 0;

	for (size_t k = i; k < j; k++) {
		if (pos + ext[k].len > done)
			ext_fail(&ext[k], err);
		pos += ext[k].len;
	}
}

/* End of the run starting at i: extents contiguous in file and memory. */
static size_t run_end(const struct sm_wb_extent *ext, size_t i, size_t n)
{
	size_t j = i + 1;
	size_t len = ext[i].len;

	while (j < n && ext[j - 1].off + (off_t)ext[j - 1].len == ext[j].off &&
	       (const char *)ext[j - 1].buf + ext[j - 1].len == ext[j].buf &&
	       len + ext[j].len <= (size_t)SSIZE_MAX / 2) {
		len += ext[j].len;
		j++;
	}
	return j;
}

/* The pwrite engine: one pwrite loop per run. */
static int wb_pwrite(int fd, struct sm_wb_extent *ext, size_t n)
{
	int first = 0;

	for (size_t i = 0; i < n;) {
		size_t j = run_end(ext, i, n);
		size_t len = 0, done;
		int err;

		for (size_t k = i; k < j; k++)
			len += ext[k].len;
		err = pwrite_full(fd, ext[i].buf, len, ext[i].off, &done);
		if (err) {
			mark_run(ext, i, j, done, err);
			if (!first)
				first = err;
		}
		i = j;
	}
	return first;
}

/*
 * O_DIRECT needs aligned buffers, offsets and lengths.  Shadow pages are
 * aligned, but the last piece of a file that ends inside a page is not: such
 * pieces go through a second, buffered descriptor of the same file.
 */
static bool is_aligned(const struct sm_wb_extent *e)
{
	uintptr_t mask = sm_page_size - 1;

	return !(((uintptr_t)e->buf | (uintptr_t)e->off | e->len) & mask);
}

static int open_buffered(int fd)
{
	char path[64];
	int flags = fcntl(fd, F_GETFL);
	int nfd;

	if (flags < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* O_WRONLY: the caller's descriptor writes, so the file is writable;
	 * without O_APPEND/O_TRUNC/O_CREAT so nothing else changes. */
	nfd = open(path, O_WRONLY | O_CLOEXEC | (flags & (O_SYNC | O_DSYNC)));
	return nfd;
}

/* Write the unaligned extents of an O_DIRECT descriptor through a buffered
 * one and drop them from the list (moved to the tail, count returned). */
static int write_unaligned(int fd, struct sm_wb_extent *ext, size_t n, size_t *aligned_n,
			   struct sm_wb_extent **tmp_out)
{
	size_t na = 0, nu = 0;
	struct sm_wb_extent *tmp;
	int err = 0, bfd;

	for (size_t i = 0; i < n; i++)
		nu += !is_aligned(&ext[i]);
	*aligned_n = n;
	*tmp_out = NULL;
	if (!nu)
		return 0;
	tmp = malloc(n * sizeof(*tmp));
	if (!tmp)
		return ENOMEM;
	/* aligned first (same order), unaligned after */
	for (size_t i = 0; i < n; i++)
		if (is_aligned(&ext[i]))
			tmp[na++] = ext[i];
	for (size_t i = 0, u = na; i < n; i++)
		if (!is_aligned(&ext[i]))
			tmp[u++] = ext[i];
	bfd = open_buffered(fd);
	if (bfd < 0) {
		err = errno;
		sm_warn("writeback: cannot reopen O_DIRECT fd %d without O_DIRECT: %s",
			fd, strerror(err));
		for (size_t i = na; i < n; i++)
			ext_fail(&tmp[i], err);
	} else {
		err = wb_pwrite(bfd, tmp + na, n - na);
		close(bfd);
	}
	*aligned_n = na;
	*tmp_out = tmp;
	return err;
}

/* Copy the per-extent results of the reordered list back: the reordering
 * was a stable partition (aligned, then unaligned), so replay it. */
static void copy_back(struct sm_wb_extent *ext, size_t n, const struct sm_wb_extent *tmp)
{
	size_t a = 0;

	for (size_t i = 0; i < n; i++) {
		if (is_aligned(&ext[i]))
			ext[i].err = tmp[a++].err;
	}
	for (size_t i = 0, u = a; i < n; i++) {
		if (!is_aligned(&ext[i]))
			ext[i].err = tmp[u++].err;
	}
}

/*
 * io_uring pays where writes wait for a device: O_DIRECT (measured 7x the
 * pwrite loop for scattered 4 KiB, bench_writeback).  Buffered writes are a
 * memcpy into the page cache; io_uring runs them in io-wq or inline at a
 * higher cost per write than pwrite (0.3-0.8x on ext4/xfs/tmpfs), so
 * SAFE_MR_WRITEBACK=auto keeps pwrite for them.  io_uring forces it.
 */
static int pick_engine(int fl)
{
	switch (sm_cfg.writeback) {
	case SM_WB_PREF_PWRITE:
		return SAFE_MR_WB_PWRITE;
	case SM_WB_PREF_URING:
		return wb_uring_available() ? SAFE_MR_WB_IO_URING : SAFE_MR_WB_PWRITE;
	case SM_WB_PREF_AUTO:
	default:
		if (!(fl & O_DIRECT))
			return SAFE_MR_WB_PWRITE;
		return wb_uring_available() ? SAFE_MR_WB_IO_URING : SAFE_MR_WB_PWRITE;
	}
}

static int writeback_within(int fd, struct sm_wb_extent *ext, size_t n, unsigned int flags)
{
	struct sm_wb_extent *list = ext, *tmp = NULL;
	size_t nw = n;
	int first = 0, err, engine, fl;
	bool synced = false;

	sm_init();
	for (size_t i = 0; i < n; i++)
		ext[i].err = 0;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0) {
		first = errno;
		for (size_t i = 0; i < n; i++)
			ext[i].err = first;
		SM_STAT_ADD(sync_errors, 1);
		return first;
	}
	if (fl & O_DIRECT) {
		first = write_unaligned(fd, ext, n, &nw, &tmp);
		if (tmp)
			list = tmp;
		else if (first) {	/* ENOMEM: nothing was written */
			for (size_t i = 0; i < n; i++)
				ext[i].err = first;
			SM_STAT_ADD(sync_errors, 1);
			return first;
		}
	}

	engine = pick_engine(fl);
	if (engine == SAFE_MR_WB_IO_URING) {
		err = wb_uring(fd, list, nw, flags, &synced);
		if (err == ENOSYS) {	/* ring went away (e.g. seccomp after start) */
			engine = SAFE_MR_WB_PWRITE;
			synced = false;
			err = wb_pwrite(fd, list, nw);
		}
	} else {
		err = wb_pwrite(fd, list, nw);
	}
	if (err && !first)
		first = err;
	atomic_store_explicit(&sm_stats.writeback_engine, (uint32_t)engine,
			      memory_order_relaxed);

	if ((flags & SM_WB_DURABLE) && !synced) {
		/* Also after a failed write: what did reach the file must become
		 * durable; a failed fdatasync taints every extent. */
		if (sm_sys_fdatasync(fd) < 0) {
			err = errno;
			for (size_t i = 0; i < n; i++)
				ext_fail(&list[i], err);
			if (!first)
				first = err;
		}
	}
	if (tmp) {
		copy_back(ext, n, tmp);
		free(tmp);
	}
	if (first) {
		SM_STAT_ADD(sync_errors, 1);
		sm_debug("writeback fd %d: %zu extents, error %s", fd, n, strerror(first));
	}
	return first;
}

/* ---- io_uring engine ----
 * One ring per thread, created on first use: no lock on the hot path.  A
 * fork child must not touch the parent's ring (its SQ memory is shared), so
 * rings remember the fork generation they were made in. */
#define WB_QD 256	/* SQEs per wave */
#define WB_MAX_RETRY 64	/* resubmissions without progress before EIO */

struct wb_ring {
	struct io_uring ring;
	unsigned int gen;
};

static pthread_once_t ring_once = PTHREAD_ONCE_INIT;
static pthread_key_t ring_key;
static __thread struct wb_ring *tl_ring;
static _Atomic unsigned int fork_gen;
/* 0: not tried, 1: works, -1: io_uring is unavailable in this process */
static _Atomic int uring_state;

static void ring_free(void *p)
{
	struct wb_ring *r = p;

	if (r) {
		io_uring_queue_exit(&r->ring);
		free(r);
	}
}

static void ring_atfork_child(void)
{
	atomic_fetch_add(&fork_gen, 1);
}

static void ring_setup_once(void)
{
	pthread_key_create(&ring_key, ring_free);
	pthread_atfork(NULL, NULL, ring_atfork_child);
}

static void ring_drop(void)
{
	struct wb_ring *r = tl_ring;

	tl_ring = NULL;
	pthread_setspecific(ring_key, NULL);
	ring_free(r);
}

/* Unload: this thread's ring, and the key (whose destructor is our code).
 * Rings of other threads stay until they exit (unreachable now). */
static _Atomic bool rings_gone;	/* unloaded: no ring, no key, ever again */

void sm_wb_unload(void)
{
	static pthread_once_t never = PTHREAD_ONCE_INIT;

	if (memcmp(&ring_once, &never, sizeof(never)) == 0 || atomic_exchange(&rings_gone, true))
		return;
	ring_drop();
	pthread_key_delete(ring_key);
}

static struct io_uring *ring_get(void)
{
	unsigned int gen = atomic_load(&fork_gen);
	struct wb_ring *r;
	int ret;

	/* After the unload's teardown (at exit other threads may still write
	 * back): pwrite, and never the deleted key (it may be another's now). */
	if (atomic_load(&rings_gone))
		return NULL;
	pthread_once(&ring_once, ring_setup_once);
	if (tl_ring && tl_ring->gen == gen)
		return &tl_ring->ring;
	if (tl_ring)	/* inherited through fork: unmap our copy only */
		ring_drop();
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	ret = io_uring_queue_init(WB_QD + 1, &r->ring, 0);
	if (ret < 0) {
		free(r);
		if (ret == -ENOSYS || ret == -EPERM || ret == -EACCES || ret == -EOPNOTSUPP ||
		    ret == -EINVAL) {
			int was = atomic_exchange(&uring_state, -1);

			if (was != -1) {
				if (sm_cfg.writeback == SM_WB_PREF_URING)
					sm_warn("io_uring unavailable (%s), SAFE_MR_WRITEBACK=io_uring "
						"cannot be honoured: writeback uses pwrite",
						strerror(-ret));
				else
					sm_info("io_uring unavailable (%s): writeback uses pwrite",
						strerror(-ret));
			}
		} else {
			sm_debug("io_uring_queue_init: %s, pwrite this time", strerror(-ret));
		}
		errno = -ret;
		return NULL;
	}
	r->gen = gen;
	tl_ring = r;
	pthread_setspecific(ring_key, r);
	if (atomic_exchange(&uring_state, 1) == 0)
		sm_info("writeback engine: io_uring");
	return &r->ring;
}

static bool wb_uring_available(void)
{
	if (atomic_load(&uring_state) < 0)
		return false;
	return ring_get() != NULL;
}

/* One write: runs contiguous in file, up to IOV_MAX iovecs. */
struct wb_chunk {
	struct iovec *iov;	/* first iovec not fully written */
	unsigned int niov;
	off_t off;		/* file offset of iov[0].iov_base */
	size_t left, done;
	size_t first, last;	/* extents [first, last) */
	unsigned int retries;	/* resubmissions without progress */
	int err;
	bool pending;
};

static void chunk_advance(struct wb_chunk *c, size_t res)
{
	c->done += res;
	c->left -= res;
	c->off += (off_t)res;
	while (res) {
		size_t take = res < c->iov->iov_len ? res : c->iov->iov_len;

		c->iov->iov_base = (char *)c->iov->iov_base + take;
		c->iov->iov_len -= take;
		res -= take;
		if (!c->iov->iov_len) {
			c->iov++;
			c->niov--;
		}
	}
}

/* Split the extents into chunks; returns the number of chunks. */
static size_t build_chunks(struct sm_wb_extent *ext, size_t n, struct iovec *iov,
			   struct wb_chunk *ch)
{
	size_t nc = 0, ni = 0;
	unsigned int iov_max = IOV_MAX;

	for (size_t i = 0; i < n;) {
		struct wb_chunk *c = &ch[nc++];

		*c = (struct wb_chunk){ .iov = &iov[ni], .off = ext[i].off, .first = i,
					.pending = true };
		/* add runs while they continue the file range */
		do {
			size_t j = run_end(ext, i, n), len = 0;

			for (size_t k = i; k < j; k++)
				len += ext[k].len;
			iov[ni++] = (struct iovec){ (void *)ext[i].buf, len };
			c->niov++;
			c->left += len;
			i = j;
		} while (i < n && c->niov < iov_max && c->left < (1u << 30) &&
			 ext[i - 1].off + (off_t)ext[i - 1].len == ext[i].off);
		c->last = i;
	}
	return nc;
}

/* A ring-level failure: reap what is in flight and drop the ring. */
static int ring_broken(struct io_uring *ring, unsigned int inflight, int err)
{
	struct io_uring_cqe *cqe;

	while (inflight) {
		if (io_uring_wait_cqe(ring, &cqe) < 0)
			break;	/* cannot reap: the ring's memory must not be reused */
		io_uring_cqe_seen(ring, cqe);
		inflight--;
	}
	sm_warn("io_uring writeback failed (%s): falling back to pwrite", strerror(err));
	ring_drop();
	return ENOSYS;
}

#define WB_FSYNC_TAG UINT64_MAX

/*
 * Waves of up to WB_QD writes, each waited for completely.  When DURABLE and
 * a wave holds all remaining work, its writes are linked to an fdatasync, so
 * a commit is one submission; a chain broken by a short or failed write
 * cancels the fsync and the leftovers go in the next wave.  *synced tells
 * whether the fdatasync ran here (successfully or with an error recorded).
 */
static int wb_uring(int fd, struct sm_wb_extent *ext, size_t n, unsigned int flags,
		    bool *synced)
{
	struct io_uring *ring = ring_get();
	struct wb_chunk *ch;
	struct iovec *iov;
	size_t nc, npend, start = 0;
	int first = 0, fsync_err = 0;
	bool fsync_ok = false;

	*synced = false;
	if (!ring)
		return ENOSYS;
	if (!n)
		return 0;
	iov = malloc(n * sizeof(*iov));
	ch = malloc(n * sizeof(*ch));
	if (!iov || !ch) {
		free(iov);
		free(ch);
		return ENOSYS;	/* pwrite needs no memory */
	}
	nc = build_chunks(ext, n, iov, ch);
	npend = nc;

	while (npend) {
		bool link = (flags & SM_WB_DURABLE) && !fsync_err && npend <= WB_QD;
		unsigned int nsub = 0, inflight, got = 0;
		int ret;

		/* queue up to WB_QD pending chunks, scanning from `start` */
		for (size_t i = start; i < nc && nsub < WB_QD; i++) {
			struct wb_chunk *c = &ch[i];
			struct io_uring_sqe *sqe;

			if (!c->pending)
				continue;
			sqe = io_uring_get_sqe(ring);
			if (!sqe)
				break;
			io_uring_prep_writev(sqe, fd, c->iov, c->niov, (uint64_t)c->off);
			io_uring_sqe_set_data64(sqe, i);
			if (link)
				sqe->flags |= IOSQE_IO_LINK;
			c->pending = false;
			npend--;
			nsub++;
		}
		if (link) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			/* ring has WB_QD + 1 entries, so there is room */
			io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
			io_uring_sqe_set_data64(sqe, WB_FSYNC_TAG);
			nsub++;
		}
		SM_STAT_ADD(write_calls, link ? nsub - 1 : nsub);

		inflight = 0;
		while (inflight < nsub) {
			ret = io_uring_submit_and_wait(ring, nsub - inflight);
			if (ret < 0) {
				if (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY)
					continue;
				free(iov);
				free(ch);
				return ring_broken(ring, inflight, -ret);
			}
			inflight += (unsigned int)ret;
		}

		while (got < nsub) {
			struct io_uring_cqe *cqe;
			uint64_t tag;
			struct wb_chunk *c;

			ret = io_uring_wait_cqe(ring, &cqe);
			if (ret < 0) {
				if (ret == -EINTR || ret == -EAGAIN)
					continue;
				free(iov);
				free(ch);
				return ring_broken(ring, nsub - got, -ret);
			}
			tag = io_uring_cqe_get_data64(cqe);
			ret = cqe->res;
			io_uring_cqe_seen(ring, cqe);
			got++;
			if (tag == WB_FSYNC_TAG) {
				if (ret == 0)
					fsync_ok = true;
				else if (ret != -ECANCELED && ret != -EINTR && ret != -EAGAIN)
					fsync_err = -ret;
				continue;
			}
			c = &ch[tag];
			if (ret > 0) {
				SM_STAT_ADD(bytes_written_back, (uint64_t)ret);
				chunk_advance(c, (size_t)ret);
				c->retries = 0;
			} else if (ret == 0 || ret == -EINTR || ret == -EAGAIN) {
				if (++c->retries > WB_MAX_RETRY)
					c->err = EIO;
			} else if (ret != -ECANCELED) {
				c->err = -ret;
			}
			if (!c->err && c->left) {
				c->pending = true;
				npend++;
				if (tag < start)
					start = tag;
			}
		}
		/* chunks before `start` are settled: skip them next wave */
		while (start < nc && !ch[start].pending)
			start++;
	}

	for (size_t i = 0; i < nc; i++) {
		if (ch[i].err) {
			mark_run(ext, ch[i].first, ch[i].last, ch[i].done, ch[i].err);
			if (!first)
				first = ch[i].err;
		}
	}
	free(iov);
	free(ch);

	if (fsync_err) {	/* a failed fdatasync taints every extent */
		for (size_t i = 0; i < n; i++)
			ext_fail(&ext[i], fsync_err);
		if (!first)
			first = fsync_err;
		*synced = true;
	} else if (fsync_ok) {	/* the chain held all remaining writes */
		*synced = true;
	}
	return first;
}

/* Nothing is written at or past RLIMIT_FSIZE: a write there would get
 * SIGXFSZ, whose default action ends the application (a store through a
 * plain mapping is not limited).  An extent that reaches past the limit is
 * written up to it (as a plain short write would) and fails with EFBIG, as
 * do those wholly past it; they stay for the next sync point. */
int sm_writeback(int fd, struct sm_wb_extent *ext, size_t n, unsigned int flags)
{
	off_t lim = sm_fsize_limit();
	struct sm_wb_extent *ok;
	size_t m = 0, past = 0;
	int err;

	for (size_t i = 0; i < n; i++) {
		m += ext[i].off < lim;
		past += ext[i].off + (off_t)ext[i].len > lim;
	}
	if (!past)
		return writeback_within(fd, ext, n, flags);
	ok = malloc((m ? m : 1) * sizeof(*ok));
	if (!ok) {
		for (size_t i = 0; i < n; i++)
			ext[i].err = ENOMEM;
		SM_STAT_ADD(sync_errors, 1);
		return ENOMEM;
	}
	for (size_t i = 0, k = 0; i < n; i++) {
		if (ext[i].off >= lim)
			continue;
		ok[k] = ext[i];
		if (ext[i].off + (off_t)ext[i].len > lim)
			ok[k].len = (size_t)(lim - ext[i].off);
		k++;
	}
	err = m ? writeback_within(fd, ok, m, flags) : 0;
	for (size_t i = 0, k = 0; i < n; i++) {
		int e = ext[i].off < lim ? ok[k++].err : 0;

		ext[i].err = e ? e : ext[i].off + (off_t)ext[i].len > lim ? EFBIG : 0;
	}
	free(ok);
	if (!err)
		SM_STAT_ADD(sync_errors, 1);
	sm_error("writeback: %zu extent(s) reach past the file size limit (RLIMIT_FSIZE, %lld "
		 "bytes): not written there, kept for the next sync point", past, (long long)lim);
	return err ? err : EFBIG;
}
