/* SPDX-License-Identifier: MIT */
/* The shadow arena's free extents, indexed: by start and by end in hash
 * tables (a freed range merges with its neighbours in O(1)), and in lists
 * by size class (an allocation takes a fitting extent without walking all
 * of them).  With thousands of registrations freed in any order, a plain
 * list made every registration and release O(number of free extents).
 * Called with the engine lock held. */
#include <stdlib.h>

#include "file.h"

#define NCLASS 64

struct fext {
	struct sm_hnode by_start, by_end;
	struct fext *next, *prev;	/* in its class */
	off_t off;
	size_t len;
	unsigned int cls;
};

static struct sm_hmap starts, ends;
static struct fext *classes[NCLASS];

/* Class c holds lengths in [2^c, 2^(c+1)). */
static unsigned int class_of(size_t len)
{
	return (unsigned int)(63 - __builtin_clzll((unsigned long long)len));
}

#define FEXT_OF(x, member) \
	((struct fext *)((char *)(x) - offsetof(struct fext, member)))

static void link_ext(struct fext *e)
{
	e->cls = class_of(e->len);
	e->prev = NULL;
	e->next = classes[e->cls];
	if (e->next)
		e->next->prev = e;
	classes[e->cls] = e;
	sm_hmap_insert(&starts, &e->by_start, (uint64_t)e->off);
	sm_hmap_insert(&ends, &e->by_end, (uint64_t)e->off + e->len);
}

static void unlink_ext(struct fext *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		classes[e->cls] = e->next;
	if (e->next)
		e->next->prev = e->prev;
	sm_hmap_remove(&starts, &e->by_start);
	sm_hmap_remove(&ends, &e->by_end);
}

static struct fext *find(struct sm_hmap *m, uint64_t key, bool by_end)
{
	for (struct sm_hnode *x = sm_hmap_first(m, key); x; x = sm_hmap_next(x)) {
		struct fext *e = by_end ? FEXT_OF(x, by_end) : FEXT_OF(x, by_start);

		if ((by_end ? (uint64_t)e->off + e->len : (uint64_t)e->off) == key)
			return e;
	}
	return NULL;
}

bool sm_afree_take(size_t len, off_t *off)
{
	unsigned int c = class_of(len);
	struct fext *e = NULL;
	int budget = 8;

	/* Its own class may hold shorter extents: look at a few; every extent
	 * of a higher class fits. */
	for (struct fext *x = classes[c]; x && budget--; x = x->next)
		if (x->len >= len) {
			e = x;
			break;
		}
	for (unsigned int k = c + 1; !e && k < NCLASS; k++)
		e = classes[k];
	if (!e)
		return false;
	unlink_ext(e);
	*off = e->off;
	e->off += (off_t)len;
	e->len -= len;
	if (e->len)
		link_ext(e);
	else
		free(e);
	return true;
}

void sm_afree_put(off_t off, size_t len, off_t *end)
{
	struct fext *l = find(&ends, (uint64_t)off, true);
	struct fext *r = find(&starts, (uint64_t)off + len, false);
	struct fext *e;

	if (l) {
		unlink_ext(l);
		off = l->off;
		len += l->len;
	}
	if (r) {
		unlink_ext(r);
		len += r->len;
	}
	e = l ? l : r;
	if (l && r)
		free(r);
	if (off + (off_t)len == *end) {
		*end = off;	/* the bump pointer takes it back */
		free(e);
		return;
	}
	if (!e && !(e = malloc(sizeof(*e))))
		return;	/* leak the range: harmless, punched already */
	e->off = off;
	e->len = len;
	link_ext(e);
}

void sm_afree_reset(void)
{
	for (unsigned int c = 0; c < NCLASS; c++)
		while (classes[c]) {
			struct fext *e = classes[c];

			classes[c] = e->next;
			free(e);
		}
	sm_hmap_reset(&starts);
	sm_hmap_reset(&ends);
}
