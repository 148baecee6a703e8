/* SPDX-License-Identifier: MIT */
/* Change detection and writeback of shadow pages, and durability.
 *
 * A NIC's DMA sets no dirty bit: a page is written back when its hash
 * differs from the hash of what the file holds (or it is forced).  Pages
 * written without a flush are "unsynced" until their file's next good
 * flush: if a flush fails, Linux may have dropped those pages from its
 * cache and cleared the error, so all of them are written again. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shadow.h"
#include "guard.h"
#include "pool.h"

struct wb_page {
	struct sm_chunk *c;
	size_t i;
	uint64_t hash;
};

struct wb_batch {
	struct sm_file *file;
	struct sm_wb_extent *ext;
	size_t next, ncap;
	struct wb_page *pages;	/* pages of each extent, in order */
	size_t *ext_first;	/* index in pages of each extent's first page */
	size_t npages, pcap;
};

static int batch_grow(struct wb_batch *b)
{
	if (b->npages == b->pcap) {
		size_t n = b->pcap ? b->pcap * 2 : 64;
		struct wb_page *p = realloc(b->pages, n * sizeof(*p));

		if (!p)
			return ENOMEM;
		b->pages = p;
		b->pcap = n;
	}
	if (b->next == b->ncap) {
		size_t n = b->ncap ? b->ncap * 2 : 16;
		struct sm_wb_extent *e = realloc(b->ext, n * sizeof(*e));
		size_t *f;

		if (!e)
			return ENOMEM;
		b->ext = e;
		f = realloc(b->ext_first, n * sizeof(*f));
		if (!f)
			return ENOMEM;
		b->ext_first = f;
		b->ncap = n;
	}
	return 0;
}

/* Add the changed pages [first, first+count) of chunk c that are in the
 * given states to batch b (same file).  Pages are hashed BEFORE they are
 * written: if the NIC changes one meanwhile, the stored hash is stale and
 * the next sync writes it again - never the reverse.  src: page data to
 * write instead of the shadow (src[0] is page `first`).  hashes: the
 * pages' hashes taken already (hashes[0] is page `first`), or NULL. */
static int batch_add(struct wb_batch *b, struct sm_chunk *c, size_t first, size_t count,
		     off_t eof, unsigned int states, const uint8_t *src, const uint64_t *hashes)
{
	bool open_run = false;

	for (size_t i = first; i < first + count; i++) {
		struct sm_page *pg = &c->pg[i];
		off_t off = c->file_off + (off_t)(i * sm_page_size);
		const uint8_t *data = src ? src + (i - first) * sm_page_size : sm_page_ptr(c, i);
		uint64_t h;
		int err;

		if (!(pg->state & states) || off >= eof) {
			open_run = false;
			continue;
		}
		h = hashes ? hashes[i - first] : sm_page_hash(data);
		if (h == pg->hash && !pg->force) {
			open_run = false;
			continue;
		}
		err = batch_grow(b);
		if (err)
			return err;
		b->pages[b->npages++] = (struct wb_page){ c, i, h };
		size_t len = sm_page_size;
		if (off + (off_t)len > eof)
			len = (size_t)(eof - off);
		if (open_run) {
			b->ext[b->next - 1].len += len;
		} else {
			b->ext_first[b->next] = b->npages - 1;
			b->ext[b->next++] = (struct sm_wb_extent){ data, len, off, 0 };
			open_run = true;
		}
		if (len < sm_page_size)
			open_run = false;
	}
	return 0;
}

/* Every page of f written since its last good flush: flushed now (ok), or
 * possibly dropped by the kernel (!ok): write them again. */
void sm_file_flushed(struct sm_file *f, bool ok)
{
	struct sm_chunk *c, *next;

	for (c = f->unsynced; c; c = next) {
		next = c->u_next;
		sm_chunk_unsynced_done(c);
		for (size_t i = 0; i < c->npages; i++) {
			struct sm_page *pg = &c->pg[i];

			if (!pg->unsynced)
				continue;
			pg->unsynced = 0;
			if (!ok) {
				pg->force = 1;
				sm_guard_pages(c, i, 1);
			}
		}
	}
}

/* Issue the batch; pages whose extent was written take their new hash. */
static int batch_flush(struct wb_batch *b, unsigned int flags)
{
	int err = 0;

	if (b->next) {
		err = sm_writeback(b->file->fd, b->ext, b->next, flags);
		for (size_t e = 0; e < b->next; e++) {
			size_t end = e + 1 < b->next ? b->ext_first[e + 1] : b->npages;

			if (b->ext[e].err)
				continue;
			for (size_t p = b->ext_first[e]; p < end; p++) {
				struct sm_page *pg = &b->pages[p].c->pg[b->pages[p].i];

				pg->hash = b->pages[p].hash;
				pg->force = 0;
				sm_guard_pages(b->pages[p].c, b->pages[p].i, 1);
				sm_page_unsynced(b->pages[p].c, b->pages[p].i);
			}
		}
	} else if (flags & SM_WB_DURABLE) {
		/* Nothing changed now, but earlier lazy writebacks may still
		 * sit in the page cache. */
		if (sm_sys_fdatasync(b->file->fd)) {
			err = errno;
			SM_STAT_ADD(sync_errors, 1);
		}
	}
	if (flags & SM_WB_DURABLE)
		sm_file_flushed(b->file, err == 0);
	if (err)
		sm_error("writeback to inode %llu failed: %s", (unsigned long long)b->file->ino,
			 strerror(err));
	b->next = 0;
	b->npages = 0;
	return err;
}

static void batch_free(struct wb_batch *b)
{
	free(b->ext);
	free(b->pages);
	free(b->ext_first);
}

/* The pages of c wholly in [eof, was): forget what they were written or
 * forced with.  Their contents count as what the file holds (so only later
 * changes are written back) and no failed flush can force them again. */
static void chunk_cut(struct sm_chunk *c, off_t eof, off_t was)
{
	off_t ps = (off_t)sm_page_size, lo = eof - c->file_off, hi = was - c->file_off;
	size_t first = lo <= 0 ? 0 : (size_t)((lo + ps - 1) / ps);
	size_t end = hi <= 0 ? 0 : (size_t)((hi + ps - 1) / ps);

	if (end > c->npages)
		end = c->npages;
	for (size_t i = first; i < end; i++) {
		struct sm_page *pg = &c->pg[i];

		if (pg->state == PG_NONE)
			continue;
		pg->hash = sm_page_hash(sm_page_ptr(c, i));
		pg->force = 0;
		pg->unsynced = 0;
		sm_guard_pages(c, i, 1);
	}
}

off_t sm_file_eof(struct sm_file *f)
{
	struct stat st;

	if (fstat(f->fd, &st))
		return -1;
	if (st.st_size < f->eof_seen) {
		sm_info("inode %llu shrank from %lld to %lld bytes: shadow pages past the new end count as written",
			(unsigned long long)f->ino, (long long)f->eof_seen, (long long)st.st_size);
		for (struct sm_chunk *c = f->chunks; c; c = c->f_next)
			chunk_cut(c, st.st_size, f->eof_seen);
	}
	f->eof_seen = st.st_size;
	return st.st_size;
}

static int cmp_sel(const void *a, const void *b)
{
	const struct sm_sel *x = a, *y = b;

	if (x->c->file != y->c->file)
		return x->c->file < y->c->file ? -1 : 1;
	return x->c->file_off < y->c->file_off ? -1 : x->c->file_off > y->c->file_off;
}

/* Pages are hashed per slice of 256 KiB (a worker's item), and written
 * when 1 MiB is hashed: the write copies what the hash has just brought
 * into the cache, and each write's fixed cost (ext4: a journal handle for
 * the time stamps) is paid per MiB.  bench_core (c) on Zen 4 (1 MiB L2),
 * one thread: 1.65x pwrite at 1 MiB and 1.11x at 64 MiB, against 2.0x
 * and 1.41x with a write per 256 KiB. */
#define WB_SLICE_PAGES 64
#define WB_WRITE_PAGES 256
/* Slices the pool's workers may hash ahead of the one being written: what
 * they read is still in the shared cache when the write copies it. */
#define WB_AHEAD 16
/* The pool only for this many slices or more (4 MiB): waking a worker
 * costs a system call, and on a busy machine a worker that is not
 * scheduled at once makes a small sync slower, not faster. */
#define WB_POOL_MIN_SLICES 16

/* One slice of a file's selection: pages [first, +count) of c. */
struct wb_slice {
	struct sm_chunk *c;
	size_t first, count;
	const uint8_t *src;	/* data to write instead of the shadow, or NULL */
	size_t h0;		/* its first page's index in the hashes */
};

struct wb_hash_job {
	const struct wb_slice *s;
	uint64_t *h;
	off_t eof;
	unsigned int states;
};

/* A worker's part (pool.c): the hashes of the pages of slice k that
 * batch_add will look at (same test), nothing else: it reads the pages
 * and the chunk's fixed fields only, never what the caller changes. */
static void hash_slice(void *arg, size_t k)
{
	const struct wb_hash_job *j = arg;
	const struct wb_slice *s = &j->s[k];

	for (size_t i = 0; i < s->count; i++) {
		size_t p = s->first + i;
		off_t off = s->c->file_off + (off_t)(p * sm_page_size);

		if (!(s->c->pg[p].state & j->states) || off >= j->eof)
			continue;
		j->h[s->h0 + i] = sm_page_hash(s->src ? s->src + i * sm_page_size :
							 sm_page_ptr(s->c, p));
	}
}

/* The slices of sel[i..end) (one file), or NULL (no memory: go serial). */
static struct wb_slice *make_slices(const struct sm_sel *sel, size_t i, size_t end,
				    const uint8_t *src, size_t *ns_out, size_t *np_out)
{
	size_t ns = 0, np = 0, k = 0;
	struct wb_slice *s;

	for (size_t j = i; j < end; j++) {
		ns += (sel[j].count + WB_SLICE_PAGES - 1) / WB_SLICE_PAGES;
		np += sel[j].count;
	}
	s = malloc(ns * sizeof(*s));
	if (!s)
		return NULL;
	for (size_t j = i, h0 = 0; j < end; j++)
		for (size_t f = sel[j].first; f < sel[j].first + sel[j].count; f += WB_SLICE_PAGES) {
			size_t cnt = sel[j].first + sel[j].count - f;

			cnt = cnt < WB_SLICE_PAGES ? cnt : WB_SLICE_PAGES;
			s[k++] = (struct wb_slice){ sel[j].c, f, cnt,
						    src ? src + (f - sel[j].first) * sm_page_size :
							  NULL,
						    h0 };
			h0 += cnt;
		}
	*ns_out = ns;
	*np_out = np;
	return s;
}

/* The pages of one file: hashed (ahead, by the pool's workers where there
 * are some and more than one slice), then written slice by slice, so that
 * the write copies pages the hash has just brought into the cache.  Each
 * slice is written only after its own pages were hashed. */
static int writeback_file(struct wb_batch *b, struct sm_sel *sel, size_t i, size_t end,
			  off_t eof, unsigned int states, const uint8_t *src, int *first_err)
{
	struct wb_hash_job hj = { NULL, NULL, eof, states };
	struct sm_job job;
	bool pooled = false;
	size_t ns = 0, np = 0;
	struct wb_slice *s = NULL;
	int err = 0;

	for (size_t j = i; j < end; j++) {
		np += sel[j].count;
		ns += (sel[j].count + WB_SLICE_PAGES - 1) / WB_SLICE_PAGES;
	}
	/* Slices of half the size or more on average: many small chunks (a
	 * page each) would make an item per page. */
	if (sm_pool_size() > 1 && np >= WB_POOL_MIN_SLICES * WB_SLICE_PAGES &&
	    ns * (WB_SLICE_PAGES / 2) <= np) {
		s = make_slices(sel, i, end, src, &ns, &np);
		hj.s = s;
		hj.h = s ? malloc(np * sizeof(*hj.h)) : NULL;
		pooled = hj.h && sm_pool_begin(&job, ns, hash_slice, &hj, WB_AHEAD / 2);
		if (pooled)
			sm_pool_allow(&job, WB_AHEAD);
	}
	if (pooled) {
		for (size_t k = 0; k < ns && !err; k++) {
			sm_pool_wait(&job, k);
			sm_pool_allow(&job, k + 1 + WB_AHEAD);
			err = batch_add(b, s[k].c, s[k].first, s[k].count, eof, states, s[k].src,
					hj.h + s[k].h0);
			if (!err && b->npages >= WB_WRITE_PAGES && b->file->writable) {
				int e = batch_flush(b, 0);

				if (e && !*first_err)
					*first_err = e;
			}
		}
		sm_pool_end(&job);
	} else {
		for (size_t j = i; j < end; j++) {
			for (size_t f = sel[j].first; f < sel[j].first + sel[j].count && !err;
			     f += WB_SLICE_PAGES) {
				size_t cnt = sel[j].first + sel[j].count - f;

				cnt = cnt < WB_SLICE_PAGES ? cnt : WB_SLICE_PAGES;
				err = batch_add(b, sel[j].c, f, cnt, eof, states,
						src ? src + (f - sel[j].first) * sm_page_size : NULL,
						NULL);
				if (!err && b->npages >= WB_WRITE_PAGES && b->file->writable) {
					/* A failed slice keeps its pages dirty; go on.
					 * Written slices are unsynced until the final
					 * flush, which redoes them if it fails. */
					int e = batch_flush(b, 0);

					if (e && !*first_err)
						*first_err = e;
				}
			}
		}
	}
	free(hj.h);
	free(s);
	return err;
}

int sm_writeback_sel(struct sm_sel *sel, size_t n, unsigned int flags, unsigned int states,
		     const uint8_t *src)
{
	struct wb_batch b = { 0 };
	int first_err = 0;

	if (n > 1)
		qsort(sel, n, sizeof(*sel), cmp_sel);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		off_t eof;
		int err;

		b.file = sel[i].c->file;
		eof = sm_file_eof(b.file);
		while (j < n && sel[j].c->file == b.file)
			j++;
		err = writeback_file(&b, sel, i, j, eof, states, src, &first_err);
		if (!err && b.file->writable)
			err = batch_flush(&b, flags);
		else if (!err && b.next)
			err = EBADF;	/* a read-only shadow changed?  cannot write it */
		b.next = b.npages = 0;
		if (err && !first_err)
			first_err = err;
		i = j;
	}
	batch_free(&b);
	return first_err;
}

struct sel_vec {
	struct sm_sel *v;
	size_t n, cap;
};

static int sel_push(struct sel_vec *s, struct sm_chunk *c, size_t first, size_t count)
{
	if (!count)
		return 0;
	if (s->n == s->cap) {
		size_t n = s->cap ? s->cap * 2 : 16;
		struct sm_sel *v = realloc(s->v, n * sizeof(*v));

		if (!v)
			return ENOMEM;
		s->v = v;
		s->cap = n;
	}
	s->v[s->n++] = (struct sm_sel){ c, first, count };
	return 0;
}

static int sync_sel(struct sel_vec *s, unsigned int flags, unsigned int states)
{
	int err = s->n ? sm_writeback_sel(s->v, s->n, flags, states, NULL) : 0;

	free(s->v);
	return err;
}

bool sm_chunk_clip(struct sm_chunk *c, uintptr_t start, uintptr_t end, size_t *first,
		   size_t *count)
{
	uintptr_t cs = c->start, ce = c->start + c->npages * sm_page_size;
	uintptr_t s = start > cs ? start : cs, e = end < ce ? end : ce;

	if (s >= e)
		return false;
	*first = (s - cs) / sm_page_size;
	*count = (sm_page_up(e) - sm_page_down(s)) / sm_page_size;
	if (*first + *count > c->npages)
		*count = c->npages - *first;
	return true;
}

int sm_sync_range(uintptr_t start, uintptr_t end, unsigned int flags)
{
	struct sel_vec s = { 0 };
	size_t first, count;

	for (struct sm_chunk *c = sm_chunk_first_in(start, end); c;
	     c = sm_chunk_next_in(c, start, end))
		if (sm_chunk_clip(c, start, end, &first, &count) && sel_push(&s, c, first, count)) {
			free(s.v);
			return ENOMEM;
		}
	return sync_sel(&s, flags, PG_MAPPED);
}

/* Every page of the chunks of file f (NULL: of all chunks). */
static int sync_files(const struct sm_file *f, unsigned int flags)
{
	struct sel_vec s = { 0 };

	for (struct sm_chunk *c = f ? f->chunks : sm_chunks; c; c = f ? c->f_next : c->next)
		if (sel_push(&s, c, 0, c->npages)) {
			free(s.v);
			return ENOMEM;
		}
	return sync_sel(&s, flags, PG_MAPPED | PG_DETACHED);
}

int sm_sync_file(struct sm_file *f, unsigned int flags)
{
	return sync_files(f, flags);
}

int sm_sync_everything(unsigned int flags)
{
	return sync_files(NULL, flags);
}

int sm_hold_sync_locked(struct sm_hold *h, size_t off, size_t len, unsigned int flags)
{
	uintptr_t start = h->addr + off, end;
	struct sel_vec s = { 0 };

	if (off > h->len)
		return EINVAL;
	if (!len || len > h->len - off)
		len = h->len - off;
	end = start + len;
	for (size_t k = 0; k < h->nseg; k++) {
		struct sm_seg *g = &h->seg[k];
		uintptr_t gs = sm_page_addr(g->c, g->first);
		uintptr_t ge = sm_page_addr(g->c, g->first + g->count);
		uintptr_t s0 = start > gs ? start : gs, e0 = end < ge ? end : ge;

		if (s0 >= e0)
			continue;
		size_t first = (sm_page_down(s0) - g->c->start) / sm_page_size;
		size_t last = (sm_page_up(e0) - g->c->start) / sm_page_size;
		if (sel_push(&s, g->c, first, last - first)) {
			free(s.v);
			return ENOMEM;
		}
	}
	return sync_sel(&s, flags, PG_MAPPED | PG_DETACHED);
}

/* Sync [off, off+len) of every hold of `owner` (len 0: to the end). */
int sm_sync_owner_locked(const void *owner, size_t off, size_t len, unsigned int flags)
{
	int first = 0;

	for (struct sm_hold *h = sm_owner_first(owner); h; h = h->o_next) {
		int err = sm_hold_sync_locked(h, off, len, flags);

		if (err && !first)
			first = err;
	}
	return first;
}
