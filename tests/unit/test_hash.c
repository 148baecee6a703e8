/* SPDX-License-Identifier: MIT */
/* The page hash that decides what is written back: the vector and the
 * portable implementations agree, and the changes a NIC can make to a page
 * (one bit, one word, reordered stripes or blocks) change the hash.  Built
 * from lib/hash.c directly: the function is internal to libsafe_mr. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

size_t sm_page_size = 4096;

static uint64_t rng = 0x123456789abcdefULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(uint8_t *p)
{
	for (size_t i = 0; i < sm_page_size; i += 8) {
		uint64_t v = next();

		memcpy(p + i, &v, 8);
	}
}

START_TEST(implementations_agree)
{
	uint8_t *p = aligned_alloc(64, sm_page_size);

	for (int n = 0; n < 2000; n++) {
		fill(p);
		if (n % 7 == 0)
			memset(p, 0, sm_page_size);
		ck_assert_uint_eq(sm_page_hash(p), sm_page_hash_portable(p));
	}
	free(p);
}
END_TEST

START_TEST(every_bit_flip_changes_hash)
{
	uint8_t *p = aligned_alloc(64, sm_page_size);

	for (int round = 0; round < 4; round++) {
		if (round)
			fill(p);
		else
			memset(p, 0, sm_page_size);
		uint64_t h = sm_page_hash(p);

		for (size_t bit = 0; bit < sm_page_size * 8; bit++) {
			p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			ck_assert_uint_ne(sm_page_hash(p), h);
			p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		ck_assert_uint_eq(sm_page_hash(p), h);
	}
	free(p);
}
END_TEST

START_TEST(reordering_changes_hash)
{
	uint8_t *p = aligned_alloc(64, sm_page_size), tmp[1024];

	fill(p);
	uint64_t h = sm_page_hash(p);
	/* two 64-byte stripes inside one 1 KiB block */
	memcpy(tmp, p + 64, 64);
	memcpy(p + 64, p + 192, 64);
	memcpy(p + 192, tmp, 64);
	ck_assert_uint_ne(sm_page_hash(p), h);
	memcpy(p + 192, p + 64, 64);
	memcpy(p + 64, tmp, 64);
	ck_assert_uint_eq(sm_page_hash(p), h);
	/* two whole blocks */
	memcpy(tmp, p, 1024);
	memcpy(p, p + 2048, 1024);
	memcpy(p + 2048, tmp, 1024);
	ck_assert_uint_ne(sm_page_hash(p), h);
	/* the same word moved to another lane of the same stripe */
	fill(p);
	h = sm_page_hash(p);
	memcpy(tmp, p + 8, 8);
	memcpy(p + 8, p + 16, 8);
	memcpy(p + 16, tmp, 8);
	ck_assert_uint_ne(sm_page_hash(p), h);
	free(p);
}
END_TEST

START_TEST(no_collisions_among_random_pages)
{
	enum { N = 20000 };
	uint8_t *p = aligned_alloc(64, sm_page_size);
	uint64_t *h = malloc(N * sizeof(*h));

	for (int n = 0; n < N; n++) {
		fill(p);
		h[n] = sm_page_hash(p);
		for (int k = 0; k < n; k += 97)	/* a sample: the full check is O(N^2) */
			ck_assert_uint_ne(h[k], h[n]);
	}
	free(h);
	free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hash");
	TCase *tc = tcase_create("hash");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, implementations_agree);
	tcase_add_test(tc, every_bit_flip_changes_hash);
	tcase_add_test(tc, reordering_changes_hash);
	tcase_add_test(tc, no_collisions_among_random_pages);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
