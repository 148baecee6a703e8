/* SPDX-License-Identifier: MIT */
/* munmap and mremap of shadowed ranges.
 *
 * Nothing changes unless the real call succeeds: munmap is made first and
 * the pages are let go after it; mremap needs the file mapping back before
 * the call (the application moves what it mapped), so a failed mremap
 * swaps the shadow in again. */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "shadow.h"

struct run {
	struct sm_chunk *c;
	size_t first, count;
	bool registered;	/* some page is still held: the NIC may write */
};

struct runs {
	struct run *v;
	size_t n, cap;
};

/* Runs of pages in `state` inside [start, end). */
static int collect(struct runs *r, uintptr_t start, uintptr_t end, uint8_t state)
{
	size_t first, count;

	for (struct sm_chunk *c = sm_chunk_first_in(start, end); c;
	     c = sm_chunk_next_in(c, start, end)) {
		if (!sm_chunk_clip(c, start, end, &first, &count))
			continue;
		for (size_t i = first; i < first + count;) {
			size_t j = i;
			bool reg = false;

			while (j < first + count && c->pg[j].state == state)
				reg |= c->pg[j++].refs != 0;
			if (j == i) {
				i++;
				continue;
			}
			if (r->n == r->cap) {
				size_t ncap = r->cap ? r->cap * 2 : 8;
				struct run *v = realloc(r->v, ncap * sizeof(*v));

				if (!v)
					return ENOMEM;
				r->v = v;
				r->cap = ncap;
			}
			r->v[r->n++] = (struct run){ c, i, j - i, reg };
			i = j;
		}
	}
	return 0;
}

/* Pages of the runs are detached: those nobody holds go once written. */
static void let_go(struct runs *r)
{
	for (size_t k = 0; k < r->n; k++) {
		struct sm_chunk *c = r->v[k].c;

		for (size_t i = r->v[k].first; i < r->v[k].first + r->v[k].count; i++) {
			struct sm_page *pg = &c->pg[i];

			if (pg->refs || pg->state != PG_DETACHED)
				continue;
			if (sm_page_finished(c, i))
				sm_pages_gone(c, i, 1);
			else
				sm_chunk_set_orphans(c, true);	/* not written: kept for the next sync */
		}
	}
	/* A chunk appears in several runs: free the empty ones once. */
	for (size_t k = 0; k < r->n; k++) {
		struct sm_chunk *c = r->v[k].c;
		bool seen = false;

		for (size_t m = k + 1; m < r->n && !seen; m++)
			seen = r->v[m].c == c;
		if (!seen)
			sm_chunk_maybe_free(c);
	}
}

int sm_unmapped_range(uintptr_t start, uintptr_t end)
{
	struct runs r = { 0 };
	struct sm_sel *sel;
	int err = collect(&r, start, end, PG_MAPPED);

	if (err || !r.n) {
		free(r.v);
		return err;
	}
	sel = malloc(r.n * sizeof(*sel));
	for (size_t k = 0; k < r.n; k++) {
		struct run *x = &r.v[k];

		for (size_t i = x->first; i < x->first + x->count; i++)
			x->c->pg[i].state = PG_DETACHED;
		sm_keeper_drop(x->c, x->first, x->count);
		if (sel)
			sel[k] = (struct sm_sel){ x->c, x->first, x->count };
	}
	/* The NIC may go on writing held pages: written at their next sync
	 * point.  The others are written now (to the page cache, as the
	 * kernel would have them after munmap of a dirty mapping). */
	err = sel ? sm_writeback_sel(sel, r.n, 0, PG_DETACHED, NULL) : ENOMEM;
	free(sel);
	let_go(&r);
	free(r.v);
	return err;
}

void *sm_mremap_range(void *old, size_t old_size, size_t new_size, int flags, void *new_addr,
		      void *(*real)(void *, size_t, size_t, int, void *))
{
	uintptr_t a = (uintptr_t)old;
	struct runs r = { 0 };
	size_t k;
	void *ret;
	int err;

	/* Calls the kernel refuses whatever the mapping: no need to touch it. */
	if ((a & (sm_page_size - 1)) || !new_size ||
	    (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)) ||
	    ((flags & MREMAP_FIXED) && !(flags & MREMAP_MAYMOVE)))
		return real(old, old_size, new_size, flags, new_addr);
	err = collect(&r, a, sm_page_up(a + old_size), PG_MAPPED);
	if (err || !r.n) {
		free(r.v);
		if (err) {
			errno = err;
			return MAP_FAILED;
		}
		return real(old, old_size, new_size, flags, new_addr);
	}
	/* An in-place growth into mapped memory fails with ENOMEM: say so
	 * before restoring anything. */
	if (!(flags & MREMAP_MAYMOVE) && new_size > old_size) {
		struct sm_vma *v;
		size_t n;

		if (sm_vma_list(sm_page_up(a + old_size), sm_page_up(a + new_size), &v, &n) == 0) {
			sm_vma_free(v, n);
			if (n) {
				free(r.v);
				errno = ENOMEM;
				return MAP_FAILED;
			}
		}
	}
	/* The file mapping comes back, written back first; held pages stay
	 * in the arena, detached, for the NIC. */
	for (k = 0; k < r.n && !err; k++)
		err = sm_restore_run(r.v[k].c, r.v[k].first, r.v[k].count, r.v[k].registered,
				     true);
	if (err) {
		/* The run that failed is still shadowed (from the failing
		 * slice on); put the earlier ones back too. */
		for (size_t u = 0; u < k; u++)
			for (size_t i = r.v[u].first; i < r.v[u].first + r.v[u].count; i++)
				if (r.v[u].c->pg[i].state == PG_DETACHED)
					sm_reshadow_run(r.v[u].c, i, 1);
		free(r.v);
		errno = err;
		return MAP_FAILED;
	}
	ret = real(old, old_size, new_size, flags, new_addr);
	if (ret == MAP_FAILED) {
		int e = errno;

		for (k = 0; k < r.n; k++)
			if (sm_reshadow_run(r.v[k].c, r.v[k].first, r.v[k].count))
				sm_error("mremap failed and the shadow at %#lx could not be put back",
					 (unsigned long)sm_page_addr(r.v[k].c, r.v[k].first));
		free(r.v);
		errno = e;
		return MAP_FAILED;
	}
	let_go(&r);
	free(r.v);
	return ret;
}
