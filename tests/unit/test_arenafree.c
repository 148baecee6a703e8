/* SPDX-License-Identifier: MIT */
/* The shadow arena's free-extent index (lib/arenafree.c) against a model
 * of the arena's pages: random allocations and frees never hand out a byte
 * twice, a free extent large enough is always found, neighbours merge, and
 * once everything is freed the bump pointer is back at 0 with no extent
 * left.  Built from the library's sources: the index is internal. */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

enum { PAGES = 1 << 14, LIVE = 512 };

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static unsigned char used[PAGES];	/* the model: pages handed out */
static off_t end;			/* the arena's bump pointer, in pages */
static struct { off_t off; size_t len; } live[LIVE];
static size_t nlive;

/* Free extents in the model: pages below end not used. */
static size_t longest_free(void)
{
	size_t best = 0, run = 0;

	for (off_t p = 0; p < end; p++) {
		run = used[p] ? 0 : run + 1;
		if (run > best)
			best = run;
	}
	return best;
}

static void alloc_one(size_t len)
{
	size_t longest = longest_free();
	unsigned int cls = 63 - __builtin_clzll(len);
	off_t off;

	if (!sm_afree_take(len, &off)) {
		/* Every extent of a higher size class fits: one must be found. */
		ck_assert_msg(longest < ((size_t)2 << cls), "missed a free extent of %zu for %zu",
			      longest, len);
		off = end;
		end += (off_t)len;
	}
	ck_assert_int_le(off + (off_t)len, end);
	ck_assert_int_le(end, PAGES);
	for (size_t i = 0; i < len; i++) {
		ck_assert_msg(!used[off + (off_t)i], "page %lld handed out twice",
			      (long long)(off + (off_t)i));
		used[off + (off_t)i] = 1;
	}
	live[nlive].off = off;
	live[nlive++].len = len;
}

static void free_one(size_t k)
{
	off_t off = live[k].off;
	size_t len = live[k].len;

	for (size_t i = 0; i < len; i++)
		used[off + (off_t)i] = 0;
	live[k] = live[--nlive];
	sm_afree_put(off, len, &end);
	/* Nothing free may lie just below the bump pointer: it takes it. */
	ck_assert(end == 0 || used[end - 1]);
}

START_TEST(random_ops)
{
	for (int round = 0; round < 4; round++) {
		for (int op = 0; op < 20000; op++) {
			bool grow = nlive < LIVE && (nlive == 0 || next_rand() % 100 < 52);

			if (grow && end + 64 <= PAGES)
				alloc_one(1 + next_rand() % (next_rand() % 4 ? 4 : 64));
			else if (nlive)
				free_one(next_rand() % nlive);
		}
		while (nlive)
			free_one(next_rand() % nlive);
		/* Everything merged back into the bump pointer. */
		ck_assert_int_eq(end, 0);
		off_t off;
		ck_assert(!sm_afree_take(1, &off));
	}
	sm_afree_reset();
}
END_TEST

START_TEST(exact_reuse)
{
	off_t off;

	/* [0,3) [3,4) [4,10) [10,11): free the middle ones, not adjacent to end. */
	end = 11;
	sm_afree_put(3, 1, &end);
	sm_afree_put(4, 6, &end);	/* merges with [3,4): one extent [3,10) */
	ck_assert_int_eq(end, 11);
	ck_assert(sm_afree_take(7, &off));
	ck_assert_int_eq(off, 3);
	ck_assert(!sm_afree_take(1, &off));
	sm_afree_put(3, 7, &end);
	sm_afree_put(10, 1, &end);	/* reaches end: it all goes back */
	ck_assert_int_eq(end, 3);
	ck_assert(!sm_afree_take(1, &off));
	sm_afree_reset();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("arenafree");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, random_ops);
	tcase_add_test(tc, exact_reuse);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
