/* SPDX-License-Identifier: MIT */
/* The registry: where chunks and holds are found (shadow.h).  Every sync
 * point asks it whether an address range or a file is shadowed, so those
 * questions cost O(log n) or O(1) whatever the number of registrations;
 * only walks that must visit everything use the lists of all. */
#include "shadow.h"

struct sm_itree sm_chunk_tree;
size_t sm_norphans;
static struct sm_hmap owners;	/* first hold of each owner, by owner */
_Atomic unsigned int sm_gran[SM_GRAN_SLOTS];

/* Add d to the filter slots of [s, e) (each slot once, however large). */
static void gran_add(uintptr_t s, uintptr_t e, int d)
{
	uintptr_t g = s >> SM_GRAN_SHIFT, ge = (e - 1) >> SM_GRAN_SHIFT;

	if (ge - g >= SM_GRAN_SLOTS) {
		g = 0;
		ge = SM_GRAN_SLOTS - 1;
	}
	for (; g <= ge; g++)
		atomic_fetch_add(&sm_gran[g % SM_GRAN_SLOTS], (unsigned int)d);
}

static inline struct sm_chunk *chunk_of(struct sm_inode *x)
{
	return x ? (struct sm_chunk *)((char *)x - offsetof(struct sm_chunk, node)) : NULL;
}

void sm_chunk_link(struct sm_chunk *c)
{
	struct sm_file *f = c->file;

	c->prev = NULL;
	c->next = sm_chunks;
	if (sm_chunks)
		sm_chunks->prev = c;
	c->f_prev = NULL;
	c->f_next = f->chunks;
	if (f->chunks)
		f->chunks->f_prev = c;
	f->chunks = c;
	c->node.start = c->start;
	c->node.end = c->start + c->npages * sm_page_size;
	sm_itree_insert(&sm_chunk_tree, &c->node);
	gran_add(c->node.start, c->node.end, 1);
	/* Last: a signal handler's lock-free check tests the tree, and the
	 * interposers' lock-free test this count. */
	sm_chunks = c;
	sm_nchunks++;
}

void sm_page_unsynced(struct sm_chunk *c, size_t i)
{
	struct sm_file *f = c->file;

	c->pg[i].unsynced = 1;
	if (c->u_listed)
		return;
	c->u_prev = NULL;
	c->u_next = f->unsynced;
	if (f->unsynced)
		f->unsynced->u_prev = c;
	f->unsynced = c;
	c->u_listed = true;
}

void sm_chunk_unsynced_done(struct sm_chunk *c)
{
	if (!c->u_listed)
		return;
	if (c->u_prev)
		c->u_prev->u_next = c->u_next;
	else
		c->file->unsynced = c->u_next;
	if (c->u_next)
		c->u_next->u_prev = c->u_prev;
	c->u_next = c->u_prev = NULL;
	c->u_listed = false;
}

void sm_chunk_unlink(struct sm_chunk *c)
{
	sm_nchunks--;
	sm_chunk_unsynced_done(c);
	if (c->orphans)
		sm_chunk_set_orphans(c, false);
	sm_itree_remove(&sm_chunk_tree, &c->node);
	gran_add(c->node.start, c->node.end, -1);
	if (c->prev)
		c->prev->next = c->next;
	else
		sm_chunks = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->f_prev)
		c->f_prev->f_next = c->f_next;
	else
		c->file->chunks = c->f_next;
	if (c->f_next)
		c->f_next->f_prev = c->f_prev;
	c->next = c->prev = c->f_next = c->f_prev = NULL;
}

struct sm_chunk *sm_chunk_first_in(uintptr_t s, uintptr_t e)
{
	return chunk_of(sm_itree_first(&sm_chunk_tree, s, e));
}

struct sm_chunk *sm_chunk_next_in(const struct sm_chunk *c, uintptr_t s, uintptr_t e)
{
	return chunk_of(sm_itree_next(&sm_chunk_tree, &c->node, s, e));
}

int sm_chunks_reentered_any(uintptr_t s, uintptr_t e)
{
	return sm_itree_reentered_any(&sm_chunk_tree, s, e);
}

void sm_chunk_set_orphans(struct sm_chunk *c, bool on)
{
	if (c->orphans == on)
		return;
	c->orphans = on;
	if (on)
		sm_norphans++;
	else
		sm_norphans--;
}

/* ---------------------------------------------------------------- holds */

static inline struct sm_hold *hold_of(struct sm_hnode *x)
{
	return x ? (struct sm_hold *)((char *)x - offsetof(struct sm_hold, o_node)) : NULL;
}

struct sm_hold *sm_owner_first(const void *owner)
{
	return hold_of(sm_hmap_first(&owners, (uintptr_t)owner));
}

static void owner_add(struct sm_hold *h)
{
	struct sm_hold *first = sm_owner_first(h->owner);

	h->o_prev = NULL;
	if (!first) {
		h->o_next = NULL;
		sm_hmap_insert(&owners, &h->o_node, (uintptr_t)h->owner);
		return;
	}
	/* Second place: the first hold stays the one in the table. */
	h->o_prev = first;
	h->o_next = first->o_next;
	if (first->o_next)
		first->o_next->o_prev = h;
	first->o_next = h;
}

static void owner_del(struct sm_hold *h)
{
	if (h->o_prev) {
		h->o_prev->o_next = h->o_next;
		if (h->o_next)
			h->o_next->o_prev = h->o_prev;
	} else {
		/* The first: the next one takes its place in the table. */
		sm_hmap_remove(&owners, &h->o_node);
		if (h->o_next) {
			h->o_next->o_prev = NULL;
			sm_hmap_insert(&owners, &h->o_next->o_node, (uintptr_t)h->owner);
		}
	}
	h->o_next = h->o_prev = NULL;
}

void sm_hold_link(struct sm_hold *h)
{
	h->prev = NULL;
	h->next = sm_holds;
	if (sm_holds)
		sm_holds->prev = h;
	sm_holds = h;
	owner_add(h);
}

void sm_hold_unlink(struct sm_hold *h)
{
	owner_del(h);
	if (h->prev)
		h->prev->next = h->next;
	else
		sm_holds = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->next = h->prev = NULL;
}

void sm_hold_owner_set(struct sm_hold *h, const void *owner)
{
	if (h->owner == owner)
		return;
	owner_del(h);
	h->owner = owner;
	owner_add(h);
}

void sm_owner_move(const void *from, const void *to)
{
	struct sm_hold *h;

	while (from != to && (h = sm_owner_first(from)))
		sm_hold_owner_set(h, to);
}

void sm_registry_forget(void)
{
	sm_chunk_tree.root = NULL;
	sm_chunk_tree.n = 0;
	sm_norphans = 0;
	for (unsigned int i = 0; i < SM_GRAN_SLOTS; i++)
		atomic_store(&sm_gran[i], 0);
	sm_hmap_reset(&owners);
}
