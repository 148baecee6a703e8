/* SPDX-License-Identifier: MIT */
/* A release whose writeback fails after the registration is gone (the MR
 * already deregistered): the data stays in the shadow, and the next sync
 * point that writes it back also finishes the release - the file mapping
 * comes back.  The failure is RLIMIT_FSIZE's EFBIG: no root needed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tutil.h"

START_TEST(release_finished_by_next_sync)
{
	static int owner;
	struct rlimit old, lim;
	struct safe_mr_range *r;
	char path[600];
	int fd = tu_file(4 * ps, 71, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);

	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(safe_mr_range_acquire(p, 4 * ps, RW, &owner, &r), 0);
	ck_assert(tu_shadowed(p + 2 * ps));
	memcpy(p + 2 * ps, "pending", 7);

	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = ps;
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ck_assert_int_eq(safe_mr_release_owner(&owner), EFBIG);
	/* Kept, with its data; no longer the owner's. */
	ck_assert(tu_shadowed(p + 2 * ps));
	ck_assert_mem_eq(p + 2 * ps, "pending", 7);
	tu_assert_file_pattern(path, 2 * ps, 7, 71);
	ck_assert_int_eq(safe_mr_release_owner(&owner), 0);
	ck_assert_int_eq(safe_mr_fsync(fd), -1);
	ck_assert_int_eq(errno, EFBIG);
	ck_assert(tu_shadowed(p + 2 * ps));

	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	ck_assert_int_eq(safe_mr_fsync(fd), 0);
	tu_assert_file(path, 2 * ps, "pending", 7);
	tu_assert_shadow_mask(p, 4, 0);
	ck_assert(tu_mapped_from(p, path));
	ck_assert_mem_eq(p + 2 * ps, "pending", 7);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
	close(fd);
}
END_TEST

/* The same through msync and safe_mr_sync_all. */
START_TEST(release_finished_by_msync)
{
	static int owner;
	struct rlimit old, lim;
	struct safe_mr_range *r;
	char path[600];
	int fd = tu_file(2 * ps, 72, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);

	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(safe_mr_range_acquire(p, 2 * ps, RW, &owner, &r), 0);
	memcpy(p + ps, "viamsync", 8);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = ps;
	setrlimit(RLIMIT_FSIZE, &lim);
	ck_assert_int_eq(safe_mr_release_owner(&owner), EFBIG);
	setrlimit(RLIMIT_FSIZE, &old);
	ck_assert_int_eq(safe_mr_msync(p, 2 * ps, MS_SYNC), 0);
	tu_assert_file(path, ps, "viamsync", 8);
	ck_assert(tu_mapped_from(p + ps, path));
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pending");
	TCase *tc = tu_tcase("pending");

	tcase_add_test(tc, release_finished_by_next_sync);
	tcase_add_test(tc, release_finished_by_msync);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
