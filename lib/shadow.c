/* SPDX-License-Identifier: MIT */
/* The shadow engine: file pages a NIC may write are replaced, at the same
 * address, by pages of an anonymous (memfd) arena holding the file's
 * contents; changed pages are written back with ordinary writes; when no
 * registration covers a page any more the file mapping comes back. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "shadow.h"

pthread_mutex_t sm_lock = PTHREAD_MUTEX_INITIALIZER;
_Atomic size_t sm_nchunks;

static struct sm_chunk *chunks;
static struct sm_hold *holds;

#define WRITE_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)

struct sm_hold *sm_hold_first(void)
{
	return holds;
}

static inline uint8_t *page_ptr(struct sm_chunk *c, size_t i)
{
	return c->alias + i * sm_page_size;
}

static inline uintptr_t page_addr(const struct sm_chunk *c, size_t i)
{
	return c->start + i * sm_page_size;
}

/* Could another thread of this process write memory right now?  io_uring's
 * kernel workers (iou-wrk-*, iou-sqp-*) are threads of the process but
 * never touch user memory: they do not count. */
static bool other_threads(void)
{
	char path[300], comm[32];
	struct dirent *d;
	DIR *dir;
	int others = 0;
	pid_t self = gettid();

	dir = opendir("/proc/self/task");
	if (!dir)
		return true;	/* cannot tell: assume the worst */
	while ((d = readdir(dir)) && !others) {
		int fd;
		ssize_t r;

		if (d->d_name[0] == '.' || atoi(d->d_name) == self)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", d->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;	/* exited meanwhile */
		r = read(fd, comm, sizeof(comm) - 1);
		close(fd);
		comm[r > 0 ? r : 0] = '\0';
		if (strncmp(comm, "iou-wrk-", 8) && strncmp(comm, "iou-sqp-", 8))
			others++;
	}
	closedir(dir);
	return others > 0;
}

/* ---------------------------------------------------------------- writeback */

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

/* Write back the changed pages [first, first+count) of chunk c that are in
 * the given states, as part of batch b (same file).  Pages are hashed
 * BEFORE they are written: if the NIC changes one meanwhile, the stored
 * hash is stale and the next sync writes it again - never the reverse. */
static int batch_add(struct wb_batch *b, struct sm_chunk *c, size_t first, size_t count,
		     off_t eof, unsigned int states)
{
	bool open_run = false;

	for (size_t i = first; i < first + count; i++) {
		struct sm_page *pg = &c->pg[i];
		off_t off = c->file_off + (off_t)(i * sm_page_size);
		uint64_t h;
		int err;

		if (!(pg->state & states) || off >= eof) {
			open_run = false;
			continue;
		}
		h = sm_page_hash(page_ptr(c, i));
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
			b->ext[b->next++] = (struct sm_wb_extent){ page_ptr(c, i), len, off, 0 };
			open_run = true;
		}
		if (len < sm_page_size)
			open_run = false;
	}
	return 0;
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
			}
		}
	} else if (flags & SM_WB_DURABLE) {
		/* Nothing changed now, but earlier lazy writebacks may still
		 * sit in the page cache. */
		if (sm_sys_fdatasync(b->file->fd))
			err = errno;
	}
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

static off_t file_eof(struct sm_file *f)
{
	struct stat st;

	return fstat(f->fd, &st) ? 0 : st.st_size;
}

/* A selection of pages to write back: one per chunk at most. */
struct wb_sel {
	struct sm_chunk *c;
	size_t first, count;
};

static int cmp_sel(const void *a, const void *b)
{
	const struct wb_sel *x = a, *y = b;

	if (x->c->file != y->c->file)
		return x->c->file < y->c->file ? -1 : 1;
	return x->c->file_off < y->c->file_off ? -1 : x->c->file_off > y->c->file_off;
}

/* Pages hashed, then written, per slice: 256 KiB stays in L2. */
#define WB_SLICE_PAGES 64

/* Write back a selection: grouped by file, one fdatasync per file. */
static int writeback_sel(struct wb_sel *sel, size_t n, unsigned int flags, unsigned int states)
{
	struct wb_batch b = { 0 };
	int first_err = 0;

	qsort(sel, n, sizeof(*sel), cmp_sel);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		off_t eof;
		int err = 0;

		b.file = sel[i].c->file;
		eof = file_eof(b.file);
		for (; j < n && sel[j].c->file == b.file; j++) {
			/* In slices, so that the write copies pages the hash
			 * has just brought into the cache. */
			for (size_t f = sel[j].first; f < sel[j].first + sel[j].count && !err;
			     f += WB_SLICE_PAGES) {
				size_t cnt = sel[j].first + sel[j].count - f;

				cnt = cnt < WB_SLICE_PAGES ? cnt : WB_SLICE_PAGES;
				err = batch_add(&b, sel[j].c, f, cnt, eof, states);
				if (!err && b.npages >= WB_SLICE_PAGES && b.file->writable) {
					/* a failed slice keeps its pages dirty; go on */
					int e = batch_flush(&b, 0);

					if (e && !first_err)
						first_err = e;
				}
			}
		}
		/* The last slice carries the fdatasync, for all of them. */
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
	struct wb_sel *v;
	size_t n, cap;
};

static int sel_push(struct sel_vec *s, struct sm_chunk *c, size_t first, size_t count)
{
	if (!count)
		return 0;
	if (s->n == s->cap) {
		size_t n = s->cap ? s->cap * 2 : 16;
		struct wb_sel *v = realloc(s->v, n * sizeof(*v));

		if (!v)
			return ENOMEM;
		s->v = v;
		s->cap = n;
	}
	s->v[s->n++] = (struct wb_sel){ c, first, count };
	return 0;
}

static int sync_sel(struct sel_vec *s, unsigned int flags, unsigned int states)
{
	int err = s->n ? writeback_sel(s->v, s->n, flags, states) : 0;

	free(s->v);
	return err;
}

/* Chunk pages inside [start, end) (application addresses), clipped. */
static bool chunk_clip(struct sm_chunk *c, uintptr_t start, uintptr_t end, size_t *first,
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

/* The chunk pages inside [start, end) (application addresses). */
static int sel_range(struct sel_vec *s, uintptr_t start, uintptr_t end)
{
	size_t first, count;

	for (struct sm_chunk *c = chunks; c; c = c->next)
		if (chunk_clip(c, start, end, &first, &count) && sel_push(s, c, first, count)) {
			free(s->v);
			return ENOMEM;
		}
	return 0;
}

/* Every page of the chunks of file f (NULL: of all chunks). */
static int sel_file(struct sel_vec *s, const struct sm_file *f)
{
	for (struct sm_chunk *c = chunks; c; c = c->next)
		if ((!f || c->file == f) && sel_push(s, c, 0, c->npages)) {
			free(s->v);
			return ENOMEM;
		}
	return 0;
}

int sm_sync_range(uintptr_t start, uintptr_t end, unsigned int flags)
{
	struct sel_vec s = { 0 };

	return sel_range(&s, start, end) ?: sync_sel(&s, flags, PG_MAPPED);
}

int sm_sync_file(struct sm_file *f, unsigned int flags)
{
	struct sel_vec s = { 0 };

	return sel_file(&s, f) ?: sync_sel(&s, flags, PG_MAPPED | PG_DETACHED);
}

int sm_sync_everything(unsigned int flags)
{
	struct sel_vec s = { 0 };

	return sel_file(&s, NULL) ?: sync_sel(&s, flags, PG_MAPPED | PG_DETACHED);
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
		uintptr_t gs = page_addr(g->c, g->first);
		uintptr_t ge = page_addr(g->c, g->first + g->count);
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

	for (struct sm_hold *h = holds; h; h = h->next) {
		if (h->owner != owner)
			continue;
		int err = sm_hold_sync_locked(h, off, len, flags);

		if (err && !first)
			first = err;
	}
	return first;
}

/* ---------------------------------------------------------------- chunks */

static void chunk_free(struct sm_chunk *c)
{
	size_t len = c->npages * sm_page_size;

	for (struct sm_chunk **p = &chunks; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	sm_nchunks--;
	sm_sys_munmap(c->alias, len);
	sm_arena_free(c->arena_off, len);
	sm_file_put(c->file);
	free(c);
}

static void chunk_maybe_free(struct sm_chunk *c)
{
	if (!c->live && !c->holds)
		chunk_free(c);
}

/* Pages [first, first+count) of c are finished with: free their memory
 * (one hole punched per run, not per page). */
static void pages_gone(struct sm_chunk *c, size_t first, size_t count)
{
	for (size_t i = first; i < first + count;) {
		size_t j = i;

		while (j < first + count && c->pg[j].state != PG_NONE) {
			c->pg[j].state = PG_NONE;
			j++;
		}
		if (j > i) {
			c->live -= j - i;
			SM_STAT_SUB(shadow_bytes_now, (j - i) * sm_page_size);
			if (c->live)	/* else chunk_free releases the whole range */
				sm_arena_discard(c->arena_off + (off_t)(i * sm_page_size),
						 (j - i) * sm_page_size);
			i = j;
		} else {
			i++;
		}
	}
}

static void page_gone(struct sm_chunk *c, size_t i)
{
	pages_gone(c, i, 1);
}

/* A bounce buffer for filling and verifying shadows (engine lock held):
 * small enough to stay in cache while its pages are hashed. */
#define SCRATCH_BYTES (1u << 20)
static uint8_t *scratch;

static int scratch_get(void)
{
	if (!scratch) {
		void *p = sm_sys_mmap(NULL, SCRATCH_BYTES, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return errno;
		scratch = p;
	}
	return 0;
}

static ssize_t pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (uint8_t *)buf + done, len - done, off + (off_t)done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* Fill the chunk's arena range from the file and hash every page.  Read
 * from the file, not the mapping (pages past EOF would SIGBUS; there the
 * shadow stays zero, as a read shows), and write the arena with pwrite:
 * shmem pages allocated by write, not by a page fault each, cost about
 * what a pread into anonymous memory does. */
static int chunk_fill(struct sm_chunk *c, size_t len)
{
	int err = scratch_get();

	if (err)
		return err;
	for (size_t done = 0; done < len;) {
		size_t want = len - done < SCRATCH_BYTES ? len - done : SCRATCH_BYTES;
		ssize_t r = pread_full(c->file->fd, scratch, want, c->file_off + (off_t)done);
		size_t w = 0;

		if (r < 0)
			return errno;
		memset(scratch + r, 0, want - (size_t)r);
		for (size_t o = 0; o < want; o += sm_page_size)
			c->pg[(done + o) / sm_page_size].hash = sm_page_hash(scratch + o);
		while (w < (size_t)r) {
			ssize_t n = pwrite(sm_arena_fd(), scratch + w, (size_t)r - w,
					   c->arena_off + (off_t)(done + w));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n < 0 ? errno : EIO;
			w += (size_t)n;
		}
		done += want;
		if ((size_t)r < want) {
			/* End of file: the rest of the arena range is zero. */
			uint64_t zero = sm_page_hash(memset(scratch, 0, sm_page_size));

			for (size_t o = done; o < len; o += sm_page_size)
				c->pg[o / sm_page_size].hash = zero;
			break;
		}
	}
	return 0;
}

static void flusher_start(void);

/* Pull in file changes that raced with the fill: another thread may have
 * written through the file mapping after we read it and before the swap.
 * Pages the shadow has not changed since the fill take the file's data. */
static void chunk_verify(struct sm_chunk *c, size_t len)
{
	if (scratch_get())
		return;
	for (size_t done = 0; done < len; done += SCRATCH_BYTES) {
		size_t want = len - done < SCRATCH_BYTES ? len - done : SCRATCH_BYTES;
		ssize_t r = pread_full(c->file->fd, scratch, want, c->file_off + (off_t)done);

		if (r < 0)
			break;
		memset(scratch + r, 0, want - (size_t)r);
		for (size_t o = 0; o < want; o += sm_page_size) {
			size_t i = (done + o) / sm_page_size;
			uint64_t hf = sm_page_hash(scratch + o);

			if (hf != c->pg[i].hash && sm_page_hash(page_ptr(c, i)) == c->pg[i].hash) {
				memcpy(page_ptr(c, i), scratch + o, sm_page_size);
				c->pg[i].hash = hf;
			}
		}
	}
}

/* Shadow the VMA piece v of file f: fill, hash, swap in place. */
static int chunk_create(const struct sm_vma *v, struct sm_file *f, struct sm_chunk **out)
{
	size_t len = v->end - v->start, npages = len / sm_page_size;
	struct sm_chunk *c;
	void *at;
	int err;

	c = calloc(1, sizeof(*c) + npages * sizeof(c->pg[0]));
	if (!c)
		return ENOMEM;
	c->start = v->start;
	c->npages = npages;
	c->file = f;
	c->file_off = (off_t)v->offset;
	c->prot = v->prot;
	err = sm_arena_alloc(len, &c->arena_off);
	if (err)
		goto fail_free;
	err = chunk_fill(c, len);
	if (err)
		goto fail_arena;
	/* The engine's own view, for hashing and writeback.  The pages exist
	 * now: populating only maps them, in one go rather than a fault each
	 * at the first sync. */
	c->alias = sm_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			       sm_arena_fd(), c->arena_off);
	if (c->alias == MAP_FAILED) {
		err = errno;
		goto fail_arena;
	}
	/* The swap: MAP_FIXED replaces the file pages atomically, so other
	 * threads see the file or the shadow, never a hole. */
	at = sm_swap_mmap((void *)v->start, len, v->prot, sm_arena_fd(), c->arena_off);
	if (at == MAP_FAILED) {
		err = errno;
		goto fail_alias;
	}
	if (other_threads())
		chunk_verify(c, len);
	for (size_t i = 0; i < npages; i++)
		c->pg[i].state = PG_MAPPED;
	c->live = npages;
	c->next = chunks;
	chunks = c;
	sm_nchunks++;
	SM_STAT_ADD(bytes_shadowed, len);
	SM_STAT_ADD(shadow_bytes_now, len);
	sm_debug("shadowed %#lx-%#lx (inode %llu offset %lld)", (unsigned long)v->start,
		 (unsigned long)v->end, (unsigned long long)f->ino, (long long)c->file_off);
	flusher_start();
	*out = c;
	return 0;

fail_alias:
	sm_sys_munmap(c->alias, len);
fail_arena:
	sm_arena_free(c->arena_off, len);
fail_free:
	free(c);
	return err;
}

/* Is [addr, addr+len) still our arena at the chunk's offsets?  If the
 * application remapped it behind our back we must not map over it. */
static bool still_ours(struct sm_chunk *c, size_t first, size_t count, int *prot)
{
	uintptr_t s = page_addr(c, first), e = page_addr(c, first + count), at = s;
	struct sm_vma *v;
	size_t n;
	bool ok = true;

	if (sm_vma_list(s, e, &v, &n))
		return false;
	*prot = n ? v[0].prot : c->prot;
	for (size_t k = 0; k < n && ok; k++) {
		ok = v[k].start == at && sm_arena_is(&v[k]) && v[k].prot == *prot &&
		     (off_t)v[k].offset == c->arena_off + (off_t)(v[k].start - c->start);
		at = v[k].end;
	}
	sm_vma_free(v, n);
	return ok && at == e;
}

/* Put the file mapping back over pages [first, first+count) of c, which
 * are written back already.  A write that slipped in between the writeback
 * and the swap is still in the arena: written now. */
static int restore_run(struct sm_chunk *c, size_t first, size_t count, bool keep_registered)
{
	size_t len = count * sm_page_size;
	int prot, err = 0;
	void *at;

	if (!still_ours(c, first, count, &prot)) {
		sm_warn("shadow at %#lx was remapped behind safe_mr's back; detaching it",
			(unsigned long)page_addr(c, first));
		for (size_t i = first; i < first + count; i++)
			c->pg[i].state = PG_DETACHED;
		return 0;
	}
	at = sm_swap_mmap((void *)page_addr(c, first), len, prot, c->file->fd,
			  c->file_off + (off_t)(first * sm_page_size));
	if (at == MAP_FAILED) {
		err = errno;
		sm_error("cannot restore the file mapping at %#lx: %s",
			 (unsigned long)page_addr(c, first), strerror(err));
		return err;
	}
	for (size_t i = first; i < first + count; i++)
		c->pg[i].state = PG_DETACHED;
	/* Late writes: another thread of ours between the writeback and the
	 * swap, or the NIC if the pages are still registered. */
	if (keep_registered || other_threads()) {
		err = writeback_sel(&(struct wb_sel){ c, first, count }, 1, 0, PG_DETACHED);
		if (err) {
			sm_error("a write that raced with the restore is kept in the shadow: %s",
				 strerror(err));
			return 0;	/* data stays (detached), retried at the next sync */
		}
	}
	if (!keep_registered) {
		for (size_t i = first; i < first + count;) {
			size_t j = i;

			while (j < first + count && !c->pg[j].refs)
				j++;
			pages_gone(c, i, j - i);
			i = j + 1;
		}
	}
	return 0;
}

/* Restore all mapped pages of c without references, in runs. */
static void restore_unreferenced(struct sm_chunk *c)
{
	for (size_t i = 0; i < c->npages;) {
		size_t j = i;

		while (j < c->npages && c->pg[j].state == PG_MAPPED && !c->pg[j].refs)
			j++;
		if (j > i) {
			restore_run(c, i, j - i, false);
			i = j;
		} else {
			if (c->pg[i].state == PG_DETACHED && !c->pg[i].refs) {
				/* written back by the caller: gone unless still dirty */
				if (c->pg[i].hash == sm_page_hash(page_ptr(c, i)) && !c->pg[i].force)
					page_gone(c, i);
			}
			i++;
		}
	}
}

/* ---------------------------------------------------------------- holds */

static int hold_push(struct sm_hold *h, struct sm_chunk *c, size_t first, size_t count)
{
	if (h->nseg && h->seg[h->nseg - 1].c == c &&
	    h->seg[h->nseg - 1].first + h->seg[h->nseg - 1].count == first) {
		h->seg[h->nseg - 1].count += count;
	} else {
		if (h->nseg == h->cap) {
			size_t n = h->cap ? h->cap * 2 : 4;
			struct sm_seg *s = realloc(h->seg, n * sizeof(*s));

			if (!s)
				return ENOMEM;
			h->seg = s;
			h->cap = n;
		}
		h->seg[h->nseg++] = (struct sm_seg){ c, first, count };
		c->holds++;
	}
	for (size_t i = first; i < first + count; i++)
		c->pg[i].refs++;
	h->shadowed += count * sm_page_size;
	return 0;
}

/* Drop the hold's references; restore what nobody else covers. */
static void hold_drop(struct sm_hold *h)
{
	for (size_t k = 0; k < h->nseg; k++) {
		struct sm_seg *g = &h->seg[k];

		for (size_t i = g->first; i < g->first + g->count; i++)
			g->c->pg[i].refs--;
	}
	for (size_t k = 0; k < h->nseg; k++) {
		struct sm_chunk *c = h->seg[k].c;

		restore_unreferenced(c);
		c->holds--;
		chunk_maybe_free(c);
	}
	free(h->seg);
	free(h);
}

static void hold_unlink(struct sm_hold *h)
{
	for (struct sm_hold **p = &holds; *p; p = &(*p)->next) {
		if (*p == h) {
			*p = h->next;
			return;
		}
	}
}

/* Chunk pages still marked mapped inside [start, end) although the VMA
 * there is not ours any more (the application unmapped it with the raw
 * libc call): they are not at that address, whatever we thought. */
static void detach_stale(uintptr_t start, uintptr_t end)
{
	size_t first, count;

	for (struct sm_chunk *c = chunks; c; c = c->next)
		if (chunk_clip(c, start, end, &first, &count))
			for (size_t i = first; i < first + count; i++)
				if (c->pg[i].state == PG_MAPPED)
					c->pg[i].state = PG_DETACHED;
}

/* Our own shadow pages inside VMA piece v: reference the mapped runs. */
static int hold_existing(struct sm_hold *h, const struct sm_vma *v)
{
	size_t first, count;

	for (struct sm_chunk *c = chunks; c; c = c->next) {
		if (!chunk_clip(c, v->start, v->end, &first, &count))
			continue;
		for (size_t i = first; i < first + count;) {
			size_t j = i;
			int err;

			while (j < first + count && c->pg[j].state == PG_MAPPED)
				j++;
			if (j > i && (err = hold_push(h, c, i, j - i)))
				return err;
			i = j > i ? j : i + 1;
		}
	}
	return 0;
}

/* Add the pages of VMA piece v to hold h: the ones we shadow already get a
 * reference, the others are shadowed now. */
static int acquire_vma(struct sm_hold *h, const struct sm_vma *v, bool write, bool force)
{
	enum sm_backing kind;
	struct sm_file *f;
	struct sm_chunk *c = NULL;
	bool need;
	int err;

	if (!v->shared || !v->has_file)
		return 0;
	/* A writable mapping gets a writable descriptor whatever the access:
	 * the CPU may write the shadow too, and that must reach the file. */
	err = sm_file_classify(v, (v->prot & PROT_WRITE) != 0, &kind, &f);
	if (err)
		return err;
	if (kind == SM_BACK_ARENA)
		return hold_existing(h, v);
	if (kind != SM_BACK_FILE)
		return 0;
	/* A writable pin of a read-only mapping fails in the kernel with
	 * EFAULT whatever we do: leave it to the kernel.  fsdax files are
	 * shadowed whatever the access: the kernel refuses any long-term pin. */
	need = write ? (v->prot & PROT_WRITE) != 0 : (force || f->dax);
	if (!need) {
		sm_file_put(f);
		return 0;
	}
	if (sm_nchunks)
		detach_stale(v->start, v->end);
	err = chunk_create(v, f, &c);
	if (err) {
		sm_file_put(f);
		return err;
	}
	return hold_push(h, c, 0, c->npages);
}

int sm_hold_acquire(void *addr, size_t len, unsigned int access, bool force_all,
		    const void *owner, struct sm_hold **out)
{
	uintptr_t a = (uintptr_t)addr, s, e;
	bool write = access & WRITE_ACCESS;
	bool drop_empty = access & SM_ACQUIRE_DROP_EMPTY;
	struct sm_vma *v = NULL;
	struct sm_hold *h;
	size_t n = 0;
	int err;

	sm_init();
	*out = NULL;
	if (!len || a + len < a || sm_page_up(a + len) < a + len)
		return EINVAL;
	s = sm_page_down(a);
	e = sm_page_up(a + len);
	h = calloc(1, sizeof(*h));
	if (!h)
		return ENOMEM;
	h->owner = owner;
	h->addr = a;
	h->len = len;

	pthread_mutex_lock(&sm_lock);
	err = sm_vma_list(s, e, &v, &n);
	if (err)
		goto out;
	/* What the kernel would refuse, we refuse first, changing nothing. */
	for (size_t k = 0; k < n; k++)
		if (v[k].start != (k ? v[k - 1].end : s) || !(v[k].prot & (PROT_READ | PROT_WRITE)))
			err = EFAULT;
	if (!n || v[n - 1].end != e)
		err = EFAULT;
	for (size_t k = 0; k < n && !err; k++)
		err = acquire_vma(h, &v[k], write, force_all);
	if (err) {
		hold_drop(h);	/* restores what we shadowed: unchanged, no I/O */
		h = NULL;
		goto out;
	}
	if (!h->nseg && drop_empty) {
		free(h);
		h = NULL;
		goto out;
	}
	if (h->shadowed)
		SM_STAT_ADD(shadowed, 1);
	h->next = holds;
	holds = h;
	*out = h;
out:
	pthread_mutex_unlock(&sm_lock);
	sm_vma_free(v, n);
	if (err && h)
		free(h);
	return err;
}

static size_t npending;

void sm_hold_defer(struct sm_hold *h)
{
	pthread_mutex_lock(&sm_lock);
	h->owner = NULL;	/* the owner (an MR) is freed: never match it */
	if (!h->pending)
		npending++;
	h->pending = true;
	pthread_mutex_unlock(&sm_lock);
}

void sm_hold_reap(void)
{
	struct sm_hold *h, *next;

	if (!npending)
		return;
	for (h = holds; h; h = next) {
		next = h->next;
		if (h->pending && sm_hold_sync_locked(h, 0, 0, SM_WB_DURABLE) == 0) {
			npending--;
			hold_unlink(h);
			hold_drop(h);
		}
	}
}

int sm_hold_release(struct sm_hold *h)
{
	int err;

	pthread_mutex_lock(&sm_lock);
	err = sm_hold_sync_locked(h, 0, 0, SM_WB_DURABLE);
	if (!err) {
		hold_unlink(h);
		hold_drop(h);
	}
	pthread_mutex_unlock(&sm_lock);
	return err;
}

void sm_hold_abort(struct sm_hold *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&sm_lock);
	hold_unlink(h);
	hold_drop(h);
	pthread_mutex_unlock(&sm_lock);
}

int sm_hold_sync(struct sm_hold *h, size_t off, size_t len, unsigned int flags)
{
	int err;

	pthread_mutex_lock(&sm_lock);
	err = sm_hold_sync_locked(h, off, len, flags);
	pthread_mutex_unlock(&sm_lock);
	return err;
}

size_t sm_hold_shadowed(const struct sm_hold *h)
{
	return h ? h->shadowed : 0;
}

void sm_hold_set_owner(struct sm_hold *h, const void *owner)
{
	pthread_mutex_lock(&sm_lock);
	h->owner = owner;
	pthread_mutex_unlock(&sm_lock);
}

/* ------------------------------------------------------- munmap / mremap */

/* The application unmaps (restore_file=false) or moves (restore_file=true)
 * [start, end).  Shadowed pages in it are written back first.  Pages no
 * registration holds are finished with; pages still registered stay pinned
 * by the NIC and are kept "detached" in the arena, written back at the next
 * sync point of their file or MR.  Before a move the file mapping is put
 * back, so the application moves what it mapped. */
int sm_unmap_range(uintptr_t start, uintptr_t end, bool restore_file)
{
	struct sel_vec s = { 0 };
	int err;

	if (sel_range(&s, start, end))
		return ENOMEM;
	if (!s.n)
		return 0;
	err = writeback_sel(s.v, s.n, 0, PG_MAPPED);
	for (size_t k = 0; k < s.n; k++) {
		struct sm_chunk *c = s.v[k].c;
		size_t i = s.v[k].first, stop = i + s.v[k].count;

		while (i < stop) {
			size_t j = i;

			while (j < stop && c->pg[j].state == PG_MAPPED)
				j++;
			if (j == i) {
				i++;
				continue;
			}
			if (restore_file) {
				if (restore_run(c, i, j - i, true))
					for (size_t p = i; p < j; p++)
						c->pg[p].state = PG_DETACHED;
			} else {
				for (size_t p = i; p < j; p++)
					c->pg[p].state = PG_DETACHED;
			}
			for (size_t p = i; p < j; p++)
				if (!c->pg[p].refs && !err)
					page_gone(c, p);
			i = j;
		}
	}
	for (size_t k = 0; k < s.n; k++) {
		/* a chunk may appear once only in s; free the empty ones */
		struct sm_chunk *c = s.v[k].c;

		if (!c->live && !c->holds) {
			s.v[k].c = NULL;
			chunk_free(c);
		}
	}
	free(s.v);
	return err;
}

/* ---------------------------------------------------------------- flusher */

static pthread_t flusher;
static bool flusher_running;

static void *flusher_main(void *arg)
{
	struct timespec ts = { .tv_sec = sm_cfg.flush_ms / 1000,
			       .tv_nsec = (long)(sm_cfg.flush_ms % 1000) * 1000000L };

	(void)arg;
	for (;;) {
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&sm_lock);
		if (chunks)
			sm_sync_everything(0);
		pthread_mutex_unlock(&sm_lock);
	}
	return NULL;
}

static void flusher_start(void)
{
	pthread_attr_t attr;

	if (flusher_running || !sm_cfg.flush_ms)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&flusher, &attr, flusher_main, NULL) == 0)
		flusher_running = true;
	else
		sm_warn("cannot start the SAFE_MR_FLUSH_MS thread");
	pthread_attr_destroy(&attr);
}

/* ---------------------------------------------------------------- fork */

static void fork_prepare(void)
{
	pthread_mutex_lock(&sm_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&sm_lock);
}

/* The child shares the shadows (MAP_SHARED), but the parent owns them: it
 * writes them back and restores them.  The child starts with an empty
 * registry and an arena of its own. */
static void fork_child(void)
{
	chunks = NULL;
	holds = NULL;
	sm_nchunks = 0;
	flusher_running = false;
	sm_file_reset();
	sm_arena_reset();
	sm_vma_reset();
	pthread_mutex_unlock(&sm_lock);
}

__attribute__((constructor)) static void shadow_ctor(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int sm_needs_shadow(void *addr, size_t len, unsigned int access)
{
	uintptr_t a = (uintptr_t)addr, s, e;
	bool write = access & WRITE_ACCESS;
	struct sm_vma *v = NULL;
	size_t n = 0;
	int err, need = 0;

	if (!len || a + len < a || sm_page_up(a + len) < a + len) {
		errno = EINVAL;
		return -1;
	}
	s = sm_page_down(a);
	e = sm_page_up(a + len);
	pthread_mutex_lock(&sm_lock);
	err = sm_vma_list(s, e, &v, &n);
	for (size_t k = 0; k < n && !err && !need; k++) {
		enum sm_backing kind;
		struct sm_file *f;

		if (!v[k].shared || !v[k].has_file)
			continue;
		err = sm_file_classify(&v[k], false, &kind, &f);
		if (!err && kind == SM_BACK_FILE) {
			need = write ? (v[k].prot & PROT_WRITE) != 0 : f->dax;
			sm_file_put(f);
		}
	}
	pthread_mutex_unlock(&sm_lock);
	sm_vma_free(v, n);
	if (err) {
		errno = err;
		return -1;
	}
	return need;
}
