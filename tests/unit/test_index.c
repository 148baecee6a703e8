/* SPDX-License-Identifier: MIT */
/* The registry's indexes (lib/index.c) against naive models: random
 * inserts, removals and lookups of an interval tree over heavily
 * overlapping intervals, and of a hash table with colliding and repeated
 * keys; the tree's invariants and balance.  Built from lib/index.c
 * directly: the index is internal to libsafe_mr. */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static size_t below(size_t n)
{
	return (size_t)(next_rand() % n);
}

/* ---- tree ---- */

struct item {
	struct sm_inode node;
	bool linked;
};

/* Checks order, heap property and max; returns the node count. */
static size_t check_sub(const struct sm_inode *t, const struct sm_inode *lo,
			const struct sm_inode *hi, int depth, int *maxdepth)
{
	uintptr_t m;
	size_t n;

	if (!t)
		return 0;
	if (depth > *maxdepth)
		*maxdepth = depth;
	ck_assert(t->start < t->end);
	if (lo)
		ck_assert(lo->start < t->start || (lo->start == t->start && lo < t));
	if (hi)
		ck_assert(t->start < hi->start || (t->start == hi->start && t < hi));
	if (t->l)
		ck_assert(t->l->prio <= t->prio);
	if (t->r)
		ck_assert(t->r->prio <= t->prio);
	n = 1 + check_sub(t->l, lo, t, depth + 1, maxdepth) +
	    check_sub(t->r, t, hi, depth + 1, maxdepth);
	m = t->end;
	if (t->l && t->l->max > m)
		m = t->l->max;
	if (t->r && t->r->max > m)
		m = t->r->max;
	ck_assert_uint_eq(t->max, m);
	return n;
}

static int check_tree(const struct sm_itree *t)
{
	int depth = 0;

	ck_assert_uint_eq(check_sub(t->root, NULL, NULL, 1, &depth), t->n);
	ck_assert_uint_eq(atomic_load(&t->seq) & 1, 0);
	return depth;
}

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = *(const struct item *const *)a, *y = *(const struct item *const *)b;

	if (x->node.start != y->node.start)
		return x->node.start < y->node.start ? -1 : 1;
	return (x > y) - (x < y);
}

/* Every overlap of [s, e), in order, from the tree and from the model. */
static void check_query(const struct sm_itree *t, struct item *items, size_t n, uintptr_t s,
			uintptr_t e, const struct item **want)
{
	size_t nw = 0, k = 0;

	for (size_t i = 0; i < n; i++)
		if (items[i].linked && items[i].node.start < e && items[i].node.end > s)
			want[nw++] = &items[i];
	qsort(want, nw, sizeof(*want), cmp_item);
	for (struct sm_inode *x = sm_itree_first(t, s, e); x; x = sm_itree_next(t, x, s, e)) {
		ck_assert_uint_lt(k, nw);
		ck_assert_ptr_eq(x, &want[k]->node);
		k++;
	}
	ck_assert_uint_eq(k, nw);
	ck_assert_int_eq(sm_itree_reentered_any(t, s, e), nw > 0);
}

START_TEST(tree_matches_model)
{
	enum { N = 600, OPS = 30000 };
	struct item *items = calloc(N, sizeof(*items));
	const struct item **want = malloc(N * sizeof(*want));
	struct sm_itree t = { 0 };
	size_t linked = 0;

	for (int op = 0; op < OPS; op++) {
		size_t i = below(N);
		struct item *it = &items[i];
		unsigned int what = (unsigned int)below(10);

		if (what < 4) {
			if (!it->linked) {
				/* a small space: overlaps, nesting, equal starts */
				it->node.start = below(2000);
				it->node.end = it->node.start + 1 + below(op % 3 ? 40 : 400);
				sm_itree_insert(&t, &it->node);
				it->linked = true;
				linked++;
			}
		} else if (what < 7) {
			if (it->linked) {
				sm_itree_remove(&t, &it->node);
				it->linked = false;
				linked--;
			}
		} else {
			uintptr_t s = below(2500), e = s + 1 + below(what == 9 ? 600 : 20);

			check_query(&t, items, N, s, e, want);
		}
		ck_assert_uint_eq(t.n, linked);
		if (op % 997 == 0)
			check_tree(&t);
	}
	check_tree(&t);
	/* Empty and inverted ranges find nothing. */
	ck_assert_ptr_null(sm_itree_first(&t, 100, 100));
	ck_assert_ptr_null(sm_itree_first(&t, 200, 100));
	for (size_t i = 0; i < N; i++)
		if (items[i].linked)
			sm_itree_remove(&t, &items[i].node);
	ck_assert_ptr_null(t.root);
	ck_assert_uint_eq(t.n, 0);
	free(want);
	free(items);
}
END_TEST

/* Addresses in increasing order (how mmap hands them out) keep the tree
 * shallow, and a lookup touches O(log n) nodes. */
START_TEST(tree_stays_balanced)
{
	enum { N = 100000 };
	struct item *items = calloc(N, sizeof(*items));
	struct sm_itree t = { 0 };
	int depth;

	for (size_t i = 0; i < N; i++) {
		items[i].node.start = 0x10000 + i * 0x20000;
		items[i].node.end = items[i].node.start + 0x10000;
		sm_itree_insert(&t, &items[i].node);
	}
	depth = check_tree(&t);
	ck_assert_int_lt(depth, 64);	/* a treap of 1e5: ~40 expected worst */
	/* Gaps between the intervals hold nothing; each interval itself. */
	for (size_t i = 0; i < N; i += 101) {
		uintptr_t s = items[i].node.start;

		ck_assert_ptr_null(sm_itree_first(&t, s + 0x10000, s + 0x20000));
		ck_assert_ptr_eq(sm_itree_first(&t, s + 0xfff, s + 0x1000), &items[i].node);
		ck_assert_ptr_null(sm_itree_next(&t, &items[i].node, s, s + 0x20000));
	}
	for (size_t i = 0; i < N; i += 2)
		sm_itree_remove(&t, &items[i].node);
	depth = check_tree(&t);
	ck_assert_int_lt(depth, 64);
	ck_assert_uint_eq(t.n, N / 2);
	free(items);
}
END_TEST

/* A reader in a signal handler sees "cannot tell" while a change is under
 * way (sequence odd), the real answer otherwise. */
START_TEST(reentered_reader_sees_changes)
{
	struct item a = { .node = { .start = 10, .end = 20 } };
	struct sm_itree t = { 0 };
	struct sm_hmap m = { 0 };
	struct sm_hnode h;
	int busy;

	ck_assert_int_eq(sm_itree_reentered_any(&t, 0, 100), 0);
	sm_itree_insert(&t, &a.node);
	ck_assert_int_eq(sm_itree_reentered_any(&t, 0, 100), 1);
	ck_assert_int_eq(sm_itree_reentered_any(&t, 20, 100), 0);
	atomic_fetch_add(&t.seq, 1);	/* as if interrupted inside a change */
	ck_assert_int_eq(sm_itree_reentered_any(&t, 20, 100), -1);
	atomic_fetch_add(&t.seq, 1);
	sm_hmap_insert(&m, &h, 7);
	ck_assert_ptr_eq(sm_hmap_first_reentered(&m, 7, &busy), &h);
	ck_assert_int_eq(busy, 0);
	atomic_fetch_add(&m.seq, 1);
	ck_assert_ptr_null(sm_hmap_first_reentered(&m, 7, &busy));
	ck_assert_int_eq(busy, 1);
	atomic_fetch_add(&m.seq, 1);
	sm_hmap_reset(&m);
}
END_TEST

/* ---- hash table ---- */

struct hitem {
	struct sm_hnode node;
	uint64_t key;
	bool linked;
};

START_TEST(hmap_matches_model)
{
	enum { N = 1500, OPS = 60000, KEYS = 300 };
	struct hitem *items = calloc(N, sizeof(*items));
	struct sm_hmap m = { 0 };
	size_t linked = 0;
	bool grown = false;

	for (int op = 0; op < OPS; op++) {
		size_t i = below(N);
		struct hitem *it = &items[i];
		unsigned int what = (unsigned int)below(10);

		if (what < 4 && !it->linked) {
			/* few keys: repeats; key 0 (a NULL owner) too */
			it->key = below(KEYS) * (op & 1 ? 1 : 0x100000001ull);
			sm_hmap_insert(&m, &it->node, it->key);
			it->linked = true;
			linked++;
		} else if (what < 7 && it->linked) {
			sm_hmap_remove(&m, &it->node);
			it->linked = false;
			linked--;
		} else if (what >= 7) {
			uint64_t key = it->key;
			size_t want = 0, got = 0;

			for (size_t j = 0; j < N; j++)
				want += items[j].linked && items[j].key == key;
			for (struct sm_hnode *x = sm_hmap_first(&m, key); x; x = sm_hmap_next(x)) {
				struct hitem *h = (struct hitem *)x;

				ck_assert(h->linked);
				ck_assert_uint_eq(h->key, key);
				got++;
			}
			ck_assert_uint_eq(got, want);
		}
		ck_assert_uint_eq(m.n, linked);
		grown |= m.b != NULL;
	}
	ck_assert(grown);
	ck_assert_uint_ge(m.mask + 1, m.n);	/* load at most 1 after growth */
	sm_hmap_reset(&m);
	ck_assert_uint_eq(m.n, 0);
	ck_assert_ptr_null(sm_hmap_first(&m, items[0].key));
	free(items);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("index");
	TCase *tc = tcase_create("index");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, tree_matches_model);
	tcase_add_test(tc, tree_stays_balanced);
	tcase_add_test(tc, reentered_reader_sees_changes);
	tcase_add_test(tc, hmap_matches_model);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
