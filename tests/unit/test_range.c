/* SPDX-License-Identifier: MIT */
/* Range holds (safe_mr_range_*): shadow without registering, for other
 * registration paths; sync and release by range or by owner. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

START_TEST(hold_sync_release)
{
	char path[600];
	int fd = tu_file(4 * ps, 101, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *anon = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct safe_mr_range *r = NULL, *ra = NULL;

	ck_assert_int_eq(safe_mr_range_acquire(p + 10, 2 * ps, RW, NULL, &r), 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(safe_mr_range_shadowed(r), 3 * ps);
	tu_assert_shadow_mask(p, 4, 0x7);
	ck_assert_uint_eq(fake_nic_reg_calls(), 0);	/* no registration */
	ck_assert_int_eq(safe_mr_range_acquire(anon, ps, RW, NULL, &ra), 0);
	ck_assert_uint_eq(safe_mr_range_shadowed(ra), 0);
	memcpy(p + 2 * ps, "range", 5);
	ck_assert_int_eq(safe_mr_range_sync(r, 0, 0, 0), 0);
	tu_assert_file(path, 2 * ps, "range", 5);
	memcpy(p + 20, "rel", 3);
	ck_assert_int_eq(safe_mr_range_release(r), 0);
	tu_assert_file(path, 20, "rel", 3);
	tu_assert_shadow_mask(p, 4, 0);
	ck_assert_int_eq(safe_mr_range_release(ra), 0);
}
END_TEST

START_TEST(by_owner)
{
	char path[600];
	int fd = tu_file(4 * ps, 102, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct safe_mr_range *a, *b, *c;
	int owner1, owner2;

	ck_assert_int_eq(safe_mr_range_acquire(p, ps, RW, &owner1, &a), 0);
	ck_assert_int_eq(safe_mr_range_acquire(p + ps, ps, RW, &owner1, &b), 0);
	ck_assert_int_eq(safe_mr_range_acquire(p + 3 * ps, ps, RW, &owner2, &c), 0);
	memcpy(p, "o1a", 3);
	memcpy(p + ps, "o1b", 3);
	memcpy(p + 3 * ps, "o2", 2);
	ck_assert_int_eq(safe_mr_sync_owner(&owner1, 0), 0);
	tu_assert_file(path, 0, "o1a", 3);
	tu_assert_file(path, ps, "o1b", 3);
	tu_assert_file_pattern(path, 3 * ps, 2, 102);
	ck_assert_int_eq(safe_mr_release_owner(&owner1), 0);
	tu_assert_shadow_mask(p, 4, 0x8);
	ck_assert_int_eq(safe_mr_range_release(c), 0);
	tu_assert_file(path, 3 * ps, "o2", 2);
	tu_assert_shadow_mask(p, 4, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("range");
	TCase *tc = tu_tcase("range");

	tcase_add_test(tc, hold_sync_release);
	tcase_add_test(tc, by_owner);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
