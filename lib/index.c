/* SPDX-License-Identifier: MIT */
/* Interval tree and hash table of the engine's registry (index.h). */
#include <stdbool.h>
#include <stdlib.h>

#include "index.h"

/* A change is bracketed by two increments of seq; the fences keep the
 * compiler from moving the change's stores across them (a signal handler
 * on this thread reads in between, never another CPU). */
static inline void change_begin(_Atomic unsigned int *seq)
{
	atomic_store_explicit(seq, atomic_load_explicit(seq, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
}

static inline void change_end(_Atomic unsigned int *seq)
{
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(seq, atomic_load_explicit(seq, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static inline bool changing(const _Atomic unsigned int *seq)
{
	bool odd = atomic_load_explicit(seq, memory_order_relaxed) & 1;

	atomic_signal_fence(memory_order_seq_cst);
	return odd;
}

/* ---------------------------------------------------------------- tree */

static inline bool key_less(const struct sm_inode *a, const struct sm_inode *b)
{
	return a->start < b->start || (a->start == b->start && (uintptr_t)a < (uintptr_t)b);
}

static inline void fix(struct sm_inode *x)
{
	uintptr_t m = x->end;

	if (x->l && x->l->max > m)
		m = x->l->max;
	if (x->r && x->r->max > m)
		m = x->r->max;
	x->max = m;
}

static struct sm_inode *rot_right(struct sm_inode *t)
{
	struct sm_inode *l = t->l;

	t->l = l->r;
	fix(t);
	l->r = t;
	fix(l);
	return l;
}

static struct sm_inode *rot_left(struct sm_inode *t)
{
	struct sm_inode *r = t->r;

	t->r = r->l;
	fix(t);
	r->l = t;
	fix(r);
	return r;
}

static struct sm_inode *ins(struct sm_inode *t, struct sm_inode *x)
{
	if (!t)
		return x;
	if (key_less(x, t)) {
		t->l = ins(t->l, x);
		if (t->l->prio > t->prio)
			return rot_right(t);
	} else {
		t->r = ins(t->r, x);
		if (t->r->prio > t->prio)
			return rot_left(t);
	}
	fix(t);
	return t;
}

/* All keys of a are below those of b. */
static struct sm_inode *join(struct sm_inode *a, struct sm_inode *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (a->prio > b->prio) {
		a->r = join(a->r, b);
		fix(a);
		return a;
	}
	b->l = join(a, b->l);
	fix(b);
	return b;
}

static struct sm_inode *del(struct sm_inode *t, struct sm_inode *x)
{
	if (!t)
		return NULL;	/* not linked: nothing to do */
	if (t == x)
		return join(t->l, t->r);
	if (key_less(x, t))
		t->l = del(t->l, x);
	else
		t->r = del(t->r, x);
	fix(t);
	return t;
}

void sm_itree_insert(struct sm_itree *t, struct sm_inode *x)
{
	x->l = x->r = NULL;
	x->max = x->end;
	x->prio = sm_mix64((uintptr_t)x);
	change_begin(&t->seq);
	t->root = ins(t->root, x);
	t->n++;
	change_end(&t->seq);
}

void sm_itree_remove(struct sm_itree *t, struct sm_inode *x)
{
	change_begin(&t->seq);
	t->root = del(t->root, x);
	t->n--;
	change_end(&t->seq);
	x->l = x->r = NULL;
}

/* The lowest node overlapping [s, e) whose key is above k's (k NULL: any).
 * Subtrees whose largest end is <= s hold nothing; nodes right of one that
 * starts at or after e neither.  O(log n) expected per answer. */
static struct sm_inode *find(struct sm_inode *t, const struct sm_inode *k, uintptr_t s,
			     uintptr_t e)
{
	while (t && t->max > s) {
		if (!k || key_less(k, t)) {
			struct sm_inode *r = find(t->l, k, s, e);

			if (r)
				return r;
			if (t->start < e && t->end > s)
				return t;
		}
		if (t->start >= e)
			return NULL;
		t = t->r;
	}
	return NULL;
}

struct sm_inode *sm_itree_first(const struct sm_itree *t, uintptr_t s, uintptr_t e)
{
	return s < e ? find(t->root, NULL, s, e) : NULL;
}

struct sm_inode *sm_itree_next(const struct sm_itree *t, const struct sm_inode *x, uintptr_t s,
			       uintptr_t e)
{
	return s < e ? find(t->root, x, s, e) : NULL;
}

int sm_itree_reentered_any(const struct sm_itree *t, uintptr_t s, uintptr_t e)
{
	if (changing(&t->seq))
		return -1;
	return sm_itree_first(t, s, e) != NULL;
}

/* ---------------------------------------------------------------- hash */

static inline struct sm_hnode **buckets(const struct sm_hmap *m, size_t *mask)
{
	if (m->b) {
		*mask = m->mask;
		return m->b;
	}
	*mask = SM_HMAP_SMALL - 1;
	return (struct sm_hnode **)m->small;
}

static inline size_t slot(uint64_t key, size_t mask)
{
	return (size_t)sm_mix64(key) & mask;
}

/* Double the buckets; on allocation failure keep the old ones. */
static void grow(struct sm_hmap *m)
{
	size_t mask, nmask;
	struct sm_hnode **old = buckets(m, &mask), **nb;

	nmask = mask * 2 + 1;
	nb = calloc(nmask + 1, sizeof(*nb));
	if (!nb)
		return;
	for (size_t i = 0; i <= mask; i++) {
		for (struct sm_hnode *x = old[i], *next; x; x = next) {
			struct sm_hnode **p = &nb[slot(x->key, nmask)];

			next = x->next;
			x->next = *p;
			*p = x;
		}
	}
	if (m->b)
		free(m->b);
	else
		for (size_t i = 0; i < SM_HMAP_SMALL; i++)
			m->small[i] = NULL;
	m->b = nb;
	m->mask = nmask;
}

void sm_hmap_insert(struct sm_hmap *m, struct sm_hnode *x, uint64_t key)
{
	size_t mask;
	struct sm_hnode **b;

	change_begin(&m->seq);
	buckets(m, &mask);
	if (m->n > mask)
		grow(m);
	b = buckets(m, &mask);
	x->key = key;
	x->next = b[slot(key, mask)];
	b[slot(key, mask)] = x;
	m->n++;
	change_end(&m->seq);
}

void sm_hmap_remove(struct sm_hmap *m, struct sm_hnode *x)
{
	size_t mask;
	struct sm_hnode **b = buckets(m, &mask);

	change_begin(&m->seq);
	for (struct sm_hnode **p = &b[slot(x->key, mask)]; *p; p = &(*p)->next) {
		if (*p == x) {
			*p = x->next;
			m->n--;
			break;
		}
	}
	change_end(&m->seq);
	x->next = NULL;
}

struct sm_hnode *sm_hmap_first(const struct sm_hmap *m, uint64_t key)
{
	size_t mask;
	struct sm_hnode *x = buckets(m, &mask)[slot(key, mask)];

	while (x && x->key != key)
		x = x->next;
	return x;
}

struct sm_hnode *sm_hmap_next(const struct sm_hnode *x)
{
	uint64_t key = x->key;

	for (x = x->next; x && x->key != key; x = x->next)
		;
	return (struct sm_hnode *)x;
}

struct sm_hnode *sm_hmap_first_reentered(const struct sm_hmap *m, uint64_t key, int *busy)
{
	*busy = changing(&m->seq);
	return *busy ? NULL : sm_hmap_first(m, key);
}

void sm_hmap_reset(struct sm_hmap *m)
{
	change_begin(&m->seq);
	free(m->b);
	m->b = NULL;
	m->mask = 0;
	m->n = 0;
	for (size_t i = 0; i < SM_HMAP_SMALL; i++)
		m->small[i] = NULL;
	change_end(&m->seq);
}
