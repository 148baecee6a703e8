/* SPDX-License-Identifier: MIT */
/* Chunks and holds: file pages a NIC may write are replaced, at the same
 * address, by pages of an anonymous (memfd) arena holding the file's
 * contents; when no registration covers a page any more the file mapping
 * comes back, exactly as it was.
 *
 * Both swaps run while other threads of the application may be writing
 * the pages.  They go slice by slice (SM_SLICE bytes), with a copy of what
 * the engine read or wrote kept in a scratch buffer, so that a write that
 * lands on the old side of a swap is merged into the new side at byte
 * granularity (merge.c) instead of being overwritten. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shadow.h"
#include "guard.h"
#include "pool.h"

_Atomic size_t sm_nchunks;
struct sm_chunk *sm_chunks;
struct sm_hold *sm_holds;

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct sm_hold *sm_hold_first(void)
{
	return sm_holds;
}

/* ---------------------------------------------------------------- scratch */

static uint8_t *scratch;	/* 2 * SM_SLICE, private to the engine lock */

int sm_scratch(uint8_t **a, uint8_t **b)
{
	if (!scratch) {
		void *p = sm_sys_mmap(NULL, 2 * SM_SLICE, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return errno;
		scratch = p;
	}
	*a = scratch;
	if (b)
		*b = scratch + SM_SLICE;
	return 0;
}

void sm_scratch_free(void)
{
	if (scratch)
		sm_sys_munmap(scratch, 2 * SM_SLICE);
	scratch = NULL;
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

/* Read file pages [first, +n) of c into buf; zero past the end of file. */
static int read_pages(struct sm_chunk *c, size_t first, size_t n, uint8_t *buf, size_t *got)
{
	size_t len = n * sm_page_size;
	ssize_t r = pread_full(c->file->fd, buf, len, c->file_off + (off_t)(first * sm_page_size));

	if (r < 0)
		return errno;
	memset(buf + r, 0, len - (size_t)r);
	if (got)
		*got = (size_t)r;
	return 0;
}

/* ---------------------------------------------------------------- chunks */

void sm_pages_gone(struct sm_chunk *c, size_t first, size_t count)
{
	for (size_t i = first; i < first + count;) {
		size_t j = i;

		while (j < first + count && c->pg[j].state != PG_NONE) {
			c->pg[j].state = PG_NONE;
			j++;
		}
		if (j > i) {
			/* The guardian must not write a punched page (zeros). */
			sm_guard_pages(c, i, j - i);
			c->live -= j - i;
			SM_STAT_SUB(shadow_bytes_now, (j - i) * sm_page_size);
			if (c->live)	/* else sm_chunk_free releases the whole range */
				sm_arena_discard(c->arena_off + (off_t)(i * sm_page_size),
						 (j - i) * sm_page_size);
			i = j;
		} else {
			i++;
		}
	}
}

void sm_keeper_drop(struct sm_chunk *c, size_t first, size_t count)
{
	if (!c->keeper)
		return;
	for (size_t i = first; i < first + count;) {
		size_t j = i;

		while (j < first + count && c->pg[j].kept)
			c->pg[j++].kept = 0;
		if (j > i)
			sm_sys_munmap(c->keeper + i * sm_page_size, (j - i) * sm_page_size);
		i = j > i ? j : i + 1;
	}
}

void sm_chunk_free(struct sm_chunk *c)
{
	size_t len = c->npages * sm_page_size;

	sm_guard_chunk_gone(c);
	sm_chunk_unlink(c);
	sm_keeper_drop(c, 0, c->npages);
	if (c->own_alias)
		sm_sys_munmap(c->alias, len);
	sm_arena_free(c->arena_off, len);
	sm_file_put(c->file);
	free(c);
}

void sm_chunk_maybe_free(struct sm_chunk *c)
{
	if (!c->live && !c->holds)
		sm_chunk_free(c);
}

/* Copy [0, len) of the keeper (our own mapping of the file, not yet used)
 * into the arena at aoff: the kernel copies page cache pages into new
 * shmem pages, which need no zeroing (a shadow page filled by read() is
 * allocated zeroed first: most of the cost of a fill).  Stops where the
 * keeper cannot be read (past the end of file, no PROT_READ): returns the
 * bytes copied. */
static size_t copy_from_keeper(const uint8_t *src, size_t len, off_t aoff)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(sm_arena_fd(), src + done, len - done, aoff + (off_t)done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		done += (size_t)r;
	}
	return done;
}

/* Copy pages [first, +n) of c from the file into the arena: from the
 * keeper where it can be read, the rest read with pread straight into the
 * shadow (through the engine's view: one copy either way). */
static int fill_copy(struct sm_chunk *c, size_t first, size_t n)
{
	uint8_t *sh = sm_page_ptr(c, first);
	size_t len = n * sm_page_size, done = 0;
	off_t aoff = c->arena_off + (off_t)(first * sm_page_size);

	/* Only pages wholly below the end of file: the mapping shows the last
	 * page's bytes past EOF as the page cache holds them (stores through
	 * a mapping land there), a read gives zeros.  Small fills read: the
	 * fstat would cost more than the zeroing saved. */
	if (c->keeper && (c->prot & PROT_READ) && n >= 16) {
		struct stat st;
		off_t off = c->file_off + (off_t)(first * sm_page_size), whole = 0;

		if (fstat(c->file->fd, &st) == 0 && st.st_size > off)
			whole = (st.st_size - off) / (off_t)sm_page_size * (off_t)sm_page_size;
		if (whole > (off_t)len)
			whole = (off_t)len;
		if (whole)
			done = copy_from_keeper(c->keeper + first * sm_page_size, (size_t)whole,
						aoff) / sm_page_size * sm_page_size;
	}
	if (done < len) {
		/* Fresh arena ranges read as zeros (new, or punched when
		 * freed); past the end of file nothing needs writing.  Below
		 * 16 pages the system call costs more than the faults. */
		ssize_t r;

		if (len - done >= 16 * sm_page_size)
			madvise(sh + done, len - done, MADV_POPULATE_WRITE);
		r = pread_full(c->file->fd, sh + done, len - done,
			       c->file_off + (off_t)(first * sm_page_size + done));
		if (r < 0)
			return errno;
		/* Zeros already, unless a punch failed. */
		memset(sh + done + r, 0, len - done - (size_t)r);
	}
	return 0;
}

/* The hashes of pages [first, +n) of c, filled just now.  The hash maps
 * what the copy wrote as it reads: a read fault maps 16 pages
 * (fault-around), cheaper than MADV_POPULATE_READ. */
static void fill_hash(struct sm_chunk *c, size_t first, size_t n)
{
	const uint8_t *sh = sm_page_ptr(c, first);

	for (size_t i = 0; i < n; i++)
		c->pg[first + i].hash = sm_page_hash(sh + i * sm_page_size);
}

/* Swap pages [first, +n) of c in, filled and hashed.  With other threads
 * about, the file is read again after the swap: a page written between the
 * read and the swap has those writes merged into the shadow (bytes the
 * shadow has not changed since take the file's). */
static int fill_swap(struct sm_chunk *c, size_t first, size_t n, bool racy)
{
	uint8_t *f0 = NULL, *f1 = NULL, *sh = sm_page_ptr(c, first);
	size_t len = n * sm_page_size;
	off_t aoff = c->arena_off + (off_t)(first * sm_page_size);
	void *at;
	int err = racy ? sm_scratch(&f0, &f1) : 0;

	if (err)
		return err;
	/* The merge base: what was read, before anyone else can write it. */
	if (racy)
		memcpy(f0, sh, len);
	/* MAP_FIXED replaces the file pages atomically: other threads see the
	 * file or the shadow, never a hole. */
	at = sm_swap_mmap((void *)sm_page_addr(c, first), len, c->prot, sm_arena_fd(), aoff);
	if (at == MAP_FAILED)
		return errno;
	for (size_t i = first; i < first + n; i++)
		c->pg[i].state = PG_MAPPED;
	c->live += n;
	if (!racy || read_pages(c, first, n, f1, NULL)) {
		sm_guard_pages(c, first, n);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const uint8_t *a = f0 + i * sm_page_size, *b = f1 + i * sm_page_size;

		if (memcmp(a, b, sm_page_size)) {
			sm_merge_page(sm_page_ptr(c, first + i), a, b);
			c->pg[first + i].hash = sm_page_hash(b);
		}
	}
	sm_guard_pages(c, first, n);
	return 0;
}

/* Fill the chunk slice by slice (copy, hash, swap).  With the pool and
 * enough slices, the workers hash slice k while this thread copies slice
 * k+1: every slice is hashed after its copy and before its swap, as
 * alone. */
struct fill_job {
	struct sm_chunk *c;
	_Atomic size_t copied;	/* slices whose copy is complete */
};

static size_t slice_pages(const struct sm_chunk *c, size_t k)
{
	size_t first = k * SM_SLICE_PAGES;

	return c->npages - first < SM_SLICE_PAGES ? c->npages - first : SM_SLICE_PAGES;
}

static void fill_hash_item(void *arg, size_t k)
{
	const struct fill_job *j = arg;

	/* Slices never copied (an error stopped the fill) are not read:
	 * reading the arena there would allocate its pages. */
	if (k < atomic_load(&j->copied))
		fill_hash(j->c, k * SM_SLICE_PAGES, slice_pages(j->c, k));
}

#define FILL_POOL_MIN_SLICES 4	/* 4 MiB: as the writeback's (sync.c) */

static int fill_chunk(struct sm_chunk *c, bool racy)
{
	size_t ns = (c->npages + SM_SLICE_PAGES - 1) / SM_SLICE_PAGES;
	struct fill_job fj = { .c = c };
	struct sm_job job;
	int err = 0;

	if (ns < FILL_POOL_MIN_SLICES || !sm_pool_begin(&job, ns, fill_hash_item, &fj, 1)) {
		for (size_t k = 0; k < ns && !err; k++) {
			size_t first = k * SM_SLICE_PAGES, n = slice_pages(c, k);

			err = fill_copy(c, first, n);
			if (!err) {
				fill_hash(c, first, n);
				err = fill_swap(c, first, n, racy);
			}
		}
		return err;
	}
	err = fill_copy(c, 0, slice_pages(c, 0));
	if (!err) {
		atomic_store(&fj.copied, 1);
		sm_pool_allow(&job, 1);
	}
	for (size_t k = 0; k < atomic_load(&fj.copied) && !err; k++) {
		if (k + 1 < ns) {
			int e = fill_copy(c, (k + 1) * SM_SLICE_PAGES, slice_pages(c, k + 1));

			if (!e) {
				atomic_store(&fj.copied, k + 2);
				sm_pool_allow(&job, k + 2);
			} else {
				err = e;	/* slice k still goes in */
			}
		}
		sm_pool_wait(&job, k);
		{
			int e = fill_swap(c, k * SM_SLICE_PAGES, slice_pages(c, k), racy);

			if (e) {
				err = e;
				break;
			}
		}
		if (err)
			break;
	}
	sm_pool_end(&job);
	return err;
}

/* Shadow the VMA piece v of file f (the chunk takes the reference).  On
 * error *out is still set if some pages were swapped in: the caller's
 * abort restores them. */
static int chunk_create(const struct sm_vma *v, struct sm_file *f, struct sm_chunk **out)
{
	size_t len = v->end - v->start, npages = len / sm_page_size;
	bool racy = sm_threads();
	struct sm_chunk *c;
	void *k;
	int err;

	*out = NULL;
	err = f->writable ? sm_guard_required() : 0;
	if (err) {
		sm_file_put(f);
		return err;
	}
	c = calloc(1, sizeof(*c) + npages * sizeof(c->pg[0]));
	if (!c) {
		sm_file_put(f);
		return ENOMEM;
	}
	c->start = v->start;
	c->npages = npages;
	c->file = f;
	c->file_off = (off_t)v->offset;
	c->prot = v->prot;
	err = sm_arena_alloc(len, &c->arena_off);
	if (err)
		goto fail_free;
	/* The engine's own view, for hashing, merging and writeback. */
	c->alias = sm_arena_view(c->arena_off, len);
	if (!c->alias) {
		c->alias = sm_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED,
				       sm_arena_fd(), c->arena_off);
		if (c->alias == MAP_FAILED) {
			err = errno;
			goto fail_arena;
		}
		c->own_alias = true;
	}
	/* The application's own file mapping, kept aside: a second VMA of
	 * the same open file (mremap with old_size 0 on a shared mapping).
	 * Moving it back restores the mapping exactly: same struct file, same
	 * flags, merged with its neighbours. */
	k = sm_sys_mremap((void *)v->start, 0, len, MREMAP_MAYMOVE, NULL);
	if (k != MAP_FAILED) {
		c->keeper = k;
		for (size_t i = 0; i < npages; i++)
			c->pg[i].kept = 1;
	} else {
		sm_debug("no keeper for %#lx: %s", (unsigned long)v->start, strerror(errno));
	}
	sm_guard_chunk_new(c);
	sm_chunk_link(c);
	/* A shrink since the last look must not cut the pages filled now. */
	sm_file_eof(f);
	err = fill_chunk(c, racy);
	if (c->live) {
		SM_STAT_ADD(bytes_shadowed, c->live * sm_page_size);
		SM_STAT_ADD(shadow_bytes_now, c->live * sm_page_size);
	}
	if (err) {
		if (c->live) {
			*out = c;
			return err;
		}
		sm_chunk_free(c);
		return err;
	}
	sm_debug("shadowed %#lx-%#lx (inode %llu offset %lld)", (unsigned long)v->start,
		 (unsigned long)v->end, (unsigned long long)f->ino, (long long)c->file_off);
	sm_flusher_start();
	*out = c;
	return 0;

fail_arena:
	sm_arena_free(c->arena_off, len);
fail_free:
	free(c);
	sm_file_put(f);
	return err;
}

bool sm_still_ours(struct sm_chunk *c, size_t first, size_t count, int *prot)
{
	uintptr_t s = sm_page_addr(c, first), e = sm_page_addr(c, first + count), at = s;
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

int sm_map_file_back(struct sm_chunk *c, size_t first, size_t n, int prot, bool raw)
{
	void *addr = (void *)sm_page_addr(c, first), *at = MAP_FAILED;
	size_t len = n * sm_page_size;
	bool kept = c->keeper != NULL;

	for (size_t i = first; i < first + n && kept; i++)
		kept = c->pg[i].kept;
	if (kept) {
		void *from = c->keeper + first * sm_page_size;

		/* Never through libc with MREMAP_FIXED: sm_swap_notify. */
		at = sm_sys_mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, addr);
		if (at != MAP_FAILED) {
			for (size_t i = first; i < first + n; i++)
				c->pg[i].kept = 0;
			if (prot != c->prot && mprotect(addr, len, prot))
				sm_warn("restored mapping at %p keeps its old protection: %s", addr,
					strerror(errno));
			if (!raw)
				sm_swap_notify(addr, len);
			return 0;
		}
	}
	if (raw)
		at = sm_sys_mmap(addr, len, prot, MAP_SHARED | MAP_FIXED, c->file->fd,
				 c->file_off + (off_t)(first * sm_page_size));
	else
		at = sm_swap_mmap(addr, len, prot, c->file->fd,
				  c->file_off + (off_t)(first * sm_page_size));
	if (at == MAP_FAILED)
		return errno;
	sm_keeper_drop(c, first, n);
	return 0;
}

/* Copy between our memory and a file mapping of our own without touching
 * the mapping with loads and stores: a page past the end of file (another
 * process shrank it) makes the kernel's copy fail with EFAULT where a load
 * raises SIGBUS in the application.  Returns the bytes copied, or -1
 * (errno). */
static ssize_t file_map_copy(struct iovec *local, struct iovec *remote, size_t n, bool write)
{
	ssize_t r;

	do {
		r = write ? process_vm_writev(getpid(), local, n, remote, n, 0)
			  : process_vm_readv(getpid(), local, n, remote, n, 0);
	} while (r < 0 && errno == EINTR);
	return r;
}

/* Without process_vm_readv: a size check (a shrink right after it still
 * raises SIGBUS: README, Limits). */
static bool size_allows(struct sm_chunk *c, size_t i)
{
	struct stat st;

	return fstat(c->file->fd, &st) == 0 &&
	       c->file_off + (off_t)(i * sm_page_size) < st.st_size;
}

/* Is file page fm there (not past the end of file)?  Read through
 * process_vm_readv, which says EFAULT where a load would raise SIGBUS.
 * 0, EFAULT, or another errno (no process_vm_readv: a seccomp filter). */
static int file_page_there(uint8_t *fm, uint8_t *buf)
{
	struct iovec l = { buf, sm_page_size }, r = { fm, sm_page_size };

	errno = 0;
	if (file_map_copy(&l, &r, 1, false) == (ssize_t)sm_page_size)
		return 0;
	return errno ? errno : EFAULT;
}

/* Writes that reached the shadow after its snapshot `w` was written back
 * and before the file came back: merge them into the file, through a
 * mapping of our own (the same page cache pages the application now maps),
 * word by word with compare-and-swap against the snapshot, so that stores
 * the application makes to the file meanwhile are kept (sm_merge_page).
 * A page the file lost meanwhile (truncated by someone else) has no place
 * for them: found with a read that cannot fault, they are dropped, and the
 * page counts as written, so that they never land after a regrowth either
 * (writeback never extends the file).  A shrink between that read and the
 * merge (microseconds) still raises SIGBUS: README, Limits. */
static void merge_late(struct sm_chunk *c, size_t first, size_t n, const uint8_t *w)
{
	uint8_t *m = NULL, *cur = NULL, *first_slice;
	size_t len = n * sm_page_size;

	for (size_t i = 0; i < n; i++) {
		struct sm_page *pg = &c->pg[first + i];
		const uint8_t *sh = sm_page_ptr(c, first + i), *base = w + i * sm_page_size;
		uint8_t *fm;
		int err;

		if (!memcmp(sh, base, sm_page_size))
			continue;
		if (!m) {
			m = sm_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, c->file->fd,
					c->file_off + (off_t)(first * sm_page_size));
			if (m == MAP_FAILED) {
				/* Whole pages then: the shadow's version wins. */
				m = NULL;
				pg->force = 1;
				continue;
			}
			/* w is in the first scratch slice; the second is free. */
			sm_scratch(&first_slice, &cur);
		}
		fm = m + i * sm_page_size;
		/* Word by word with compare-and-swap, so that a store the
		 * application makes to the file page meanwhile is never lost;
		 * only once the page is known to be there (a page another
		 * process truncated away would raise SIGBUS). */
		err = file_page_there(fm, cur);
		if (!err || (err != EFAULT && size_allows(c, first + i))) {
			sm_merge_page(fm, base, sh);
			pg->hash = sm_page_hash(fm);
		} else {
			sm_info("late writes to file offset %lld dropped: past the end of file now",
				(long long)(c->file_off + (off_t)((first + i) * sm_page_size)));
			pg->hash = sm_page_hash(sh);
			pg->force = 0;
			continue;
		}
		sm_page_unsynced(c, first + i);
	}
	sm_guard_pages(c, first, n);
	if (m)
		sm_sys_munmap(m, len);
}

int sm_restore_run(struct sm_chunk *c, size_t first, size_t count, bool nic_may_write,
		   bool keep)
{
	bool careful = (nic_may_write || sm_threads()) && c->file->writable;
	int prot, err = 0;

	if (!sm_still_ours(c, first, count, &prot)) {
		sm_warn("shadow at %#lx was remapped behind safe_mr's back; detaching it",
			(unsigned long)sm_page_addr(c, first));
		for (size_t i = first; i < first + count; i++)
			c->pg[i].state = PG_DETACHED;
		sm_keeper_drop(c, first, count);
		return 0;
	}
	for (size_t s = first; s < first + count && !err; s += SM_SLICE_PAGES) {
		size_t n = first + count - s < SM_SLICE_PAGES ? first + count - s : SM_SLICE_PAGES;
		struct sm_sel sel = { c, s, n };
		uint8_t *w = NULL;

		if (careful) {
			/* The snapshot that is written is the merge base. */
			err = sm_scratch(&w, NULL);
			if (err)
				break;
			memcpy(w, sm_page_ptr(c, s), n * sm_page_size);
		}
		err = sm_writeback_sel(&sel, 1, 0, PG_MAPPED, w);
		if (err)
			break;
		err = sm_map_file_back(c, s, n, prot, false);
		if (err) {
			sm_error("cannot restore the file mapping at %#lx: %s",
				 (unsigned long)sm_page_addr(c, s), strerror(err));
			break;
		}
		for (size_t i = s; i < s + n; i++)
			c->pg[i].state = PG_DETACHED;
		if (careful)
			merge_late(c, s, n, w);
		if (!keep)
			for (size_t i = s; i < s + n; i++)
				if (!c->pg[i].refs)
					sm_pages_gone(c, i, 1);
	}
	return err;
}

int sm_reshadow_run(struct sm_chunk *c, size_t first, size_t count)
{
	size_t len = count * sm_page_size;
	uint8_t *buf = NULL;
	void *at;
	int err = sm_scratch(&buf, NULL);

	if (err)
		return err;
	/* No keeper for these pages any more: a later restore maps our own
	 * descriptor (this is the undo of a failed mremap: rare). */
	at = sm_swap_mmap((void *)sm_page_addr(c, first), len, c->prot, sm_arena_fd(),
			  c->arena_off + (off_t)(first * sm_page_size));
	if (at == MAP_FAILED)
		return errno;
	for (size_t i = first; i < first + count; i++) {
		struct sm_page *pg = &c->pg[i];

		pg->state = PG_MAPPED;
		/* A write to the file mapping while it was back: take it if
		 * the shadow kept the page as written. */
		if (read_pages(c, i, 1, buf, NULL) == 0 && sm_page_hash(buf) != pg->hash &&
		    sm_page_hash(sm_page_ptr(c, i)) == pg->hash) {
			memcpy(sm_page_ptr(c, i), buf, sm_page_size);
			pg->hash = sm_page_hash(buf);
		}
	}
	sm_guard_pages(c, first, count);
	return 0;
}

bool sm_page_finished(struct sm_chunk *c, size_t i)
{
	struct sm_page *pg = &c->pg[i];
	off_t off = c->file_off + (off_t)(i * sm_page_size), eof;

	if (!pg->force && pg->hash == sm_page_hash(sm_page_ptr(c, i)))
		return true;	/* written back */
	/* Changed, but wholly past the end of the file: it has no place
	 * there, and with nobody holding it nothing will ever write it on
	 * purpose.  Kept, it would land over whatever a later write puts
	 * there once the file grows again. */
	eof = sm_file_eof(c->file);
	if (eof >= 0 && off >= eof) {
		sm_info("dropping a changed page at file offset %lld, past the end of file",
			(long long)off);
		return true;
	}
	return false;
}

/* Restore all mapped pages of c without references, in runs. */
static int restore_unreferenced(struct sm_chunk *c)
{
	int first_err = 0;

	sm_chunk_set_orphans(c, false);
	for (size_t i = 0; i < c->npages;) {
		size_t j = i;

		while (j < c->npages && c->pg[j].state == PG_MAPPED && !c->pg[j].refs)
			j++;
		if (j > i) {
			int err = sm_restore_run(c, i, j - i, false, false);

			if (err) {
				sm_chunk_set_orphans(c, true);
				if (!first_err)
					first_err = err;
			}
			i = j;
		} else {
			if (c->pg[i].state == PG_DETACHED && !c->pg[i].refs &&
			    sm_page_finished(c, i))
				sm_pages_gone(c, i, 1);
			i++;
		}
	}
	return first_err;
}

void sm_restore_orphans(void)
{
	struct sm_chunk *c, *next;

	if (!sm_norphans)
		return;
	for (c = sm_chunks; c; c = next) {
		next = c->next;
		if (c->orphans) {
			restore_unreferenced(c);
			sm_chunk_maybe_free(c);
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

/* Drop the hold's references; restore what nobody else covers.  A restore
 * that fails leaves the pages shadowed (data kept), retried later. */
static int hold_drop(struct sm_hold *h)
{
	int first_err = 0;

	for (size_t k = 0; k < h->nseg; k++) {
		struct sm_seg *g = &h->seg[k];

		for (size_t i = g->first; i < g->first + g->count; i++)
			g->c->pg[i].refs--;
	}
	for (size_t k = 0; k < h->nseg; k++) {
		struct sm_chunk *c = h->seg[k].c;
		int err = restore_unreferenced(c);

		if (err && !first_err)
			first_err = err;
		c->holds--;
		sm_chunk_maybe_free(c);
	}
	free(h->seg);
	free(h);
	return first_err;
}

static void hold_unlink(struct sm_hold *h)
{
	sm_hold_unlink(h);
}

/* Chunk pages still marked mapped inside [start, end) although the VMA
 * there is not ours any more (the application unmapped it with the raw
 * system call): they are not at that address, whatever we thought. */
static void detach_stale(uintptr_t start, uintptr_t end)
{
	size_t first, count;

	for (struct sm_chunk *c = sm_chunk_first_in(start, end); c;
	     c = sm_chunk_next_in(c, start, end))
		if (sm_chunk_clip(c, start, end, &first, &count))
			for (size_t i = first; i < first + count; i++)
				if (c->pg[i].state == PG_MAPPED) {
					c->pg[i].state = PG_DETACHED;
					sm_keeper_drop(c, i, 1);
				}
}

/* Our own shadow pages inside VMA piece v: reference the mapped runs. */
static int hold_existing(struct sm_hold *h, const struct sm_vma *v)
{
	size_t first, count;

	for (struct sm_chunk *c = sm_chunk_first_in(v->start, v->end); c;
	     c = sm_chunk_next_in(c, v->start, v->end)) {
		if (!sm_chunk_clip(c, v->start, v->end, &first, &count))
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
	 * EFAULT whatever we do: leave it to the kernel.  A read-only pin of a
	 * writable mapping is shadowed too: a writable registration of the
	 * same pages later would shadow them, and the NIC would then read
	 * pages the CPU no longer sees.  fsdax files are shadowed whatever the
	 * access: the kernel refuses any long-term pin. */
	if (write)
		need = (v->prot & PROT_WRITE) != 0;
	else
		need = (v->prot & PROT_WRITE) || force || f->dax;
	if (!need) {
		sm_file_put(f);
		return 0;
	}
	/* The NIC will write without ->page_mkwrite: reserve the blocks now,
	 * so that ENOSPC is a failed registration, not a failed writeback
	 * after the peer was told the write was done. */
	if (v->prot & PROT_WRITE) {
		err = sm_reserve(f->fd, f->fs_magic, (off_t)v->offset, v->end - v->start,
				 &h->reserved);
		if (err) {
			sm_file_put(f);
			return err;
		}
	}
	if (sm_nchunks)
		detach_stale(v->start, v->end);
	err = chunk_create(v, f, &c);
	if (c) {
		int e = hold_push(h, c, 0, c->npages);

		err = err ? err : e;
	}
	return err;
}

int sm_hold_acquire(void *addr, size_t len, unsigned int access, bool force_all,
		    const void *owner, struct sm_hold **out)
{
	uintptr_t a = (uintptr_t)addr, s, e;
	bool write = access & SM_WRITE_ACCESS;
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

	sm_lock_take();
	err = sm_vma_list(s, e, &v, &n);
	if (err)
		goto out;
	/* What the kernel would refuse, we refuse first, changing nothing. */
	for (size_t k = 0; k < n; k++)
		if (v[k].start != (k ? v[k - 1].end : s) || !(v[k].prot & (PROT_READ | PROT_WRITE)))
			err = EFAULT;
	if (!n || v[n - 1].end != e)
		err = EFAULT;
	for (size_t k = 0; k < n && !err && !(access & SM_ACQUIRE_NOTHING); k++)
		err = acquire_vma(h, &v[k], write, force_all);
	if (err) {
		/* Blocks reserved stay: giving them back could discard what
		 * others wrote there since (reserve.c). */
		sm_reserve_kept(h->reserved);
		/* Restores what we shadowed, merging what threads wrote meanwhile. */
		hold_drop(h);
		h = NULL;
		goto out;
	}
	if (!h->nseg && drop_empty) {
		free(h);
		h = NULL;
		goto out;
	}
	/* The protocol's holds (DROP_EMPTY) are counted once per
	 * registration, by the protocol. */
	if (h->shadowed && !drop_empty)
		SM_STAT_ADD(shadowed, 1);
	sm_hold_link(h);
	*out = h;
out:
	sm_lock_drop();
	sm_vma_free(v, n);
	if (err && h)
		free(h);
	return err;
}

size_t sm_npending;

void sm_hold_defer(struct sm_hold *h)
{
	sm_lock_take();
	sm_hold_owner_set(h, NULL);	/* the owner (an MR) is freed: never match it */
	if (!h->pending)
		sm_npending++;
	h->pending = true;
	sm_lock_drop();
}

void sm_hold_reap(void)
{
	struct sm_hold *h, *next;

	if (sm_npending) {
		for (h = sm_holds; h; h = next) {
			next = h->next;
			if (h->pending && sm_hold_sync_locked(h, 0, 0, SM_WB_DURABLE) == 0) {
				sm_npending--;
				hold_unlink(h);
				hold_drop(h);
			}
		}
	}
	sm_restore_orphans();
}

int sm_hold_release(struct sm_hold *h)
{
	int err;

	sm_lock_take();
	err = sm_hold_sync_locked(h, 0, 0, SM_WB_DURABLE);
	if (!err) {
		hold_unlink(h);
		/* The data is durable; a late write that cannot be written
		 * while restoring stays shadowed, written by the next sync
		 * point of the file (which reports the error if it fails). */
		if (hold_drop(h))
			sm_error("release: a late write is kept in the shadow for the next sync");
	}
	sm_lock_drop();
	return err;
}

void sm_hold_abort(struct sm_hold *h)
{
	if (!h)
		return;
	sm_lock_take();
	/* No NIC registration; the blocks it reserved stay (reserve.c). */
	sm_reserve_kept(h->reserved);
	hold_unlink(h);
	hold_drop(h);
	sm_lock_drop();
}

int sm_hold_sync(struct sm_hold *h, size_t off, size_t len, unsigned int flags)
{
	int err;

	sm_lock_take();
	err = sm_hold_sync_locked(h, off, len, flags);
	sm_lock_drop();
	return err;
}

size_t sm_hold_shadowed(const struct sm_hold *h)
{
	return h ? h->shadowed : 0;
}

void sm_hold_set_owner(struct sm_hold *h, const void *owner)
{
	sm_lock_take();
	sm_hold_owner_set(h, owner);
	sm_lock_drop();
}

int sm_needs_shadow(void *addr, size_t len, unsigned int access)
{
	uintptr_t a = (uintptr_t)addr, s, e;
	bool write = access & SM_WRITE_ACCESS;
	struct sm_vma *v = NULL;
	size_t n = 0;
	int err, need = 0;

	if (!len || a + len < a || sm_page_up(a + len) < a + len) {
		errno = EINVAL;
		return -1;
	}
	s = sm_page_down(a);
	e = sm_page_up(a + len);
	sm_lock_take();
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
	sm_lock_drop();
	sm_vma_free(v, n);
	if (err) {
		errno = err;
		return -1;
	}
	return need;
}
