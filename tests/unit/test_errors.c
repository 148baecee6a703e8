/* SPDX-License-Identifier: MIT */
/* Errors: writeback failures reach the caller and keep the data; bad
 * input gets ibv_reg_mr's errno and changes nothing.  (ENOSPC on a real
 * full filesystem: test_enospc.c.) */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tutil.h"

/* RLIMIT_FSIZE below the changed page: pwrite fails with EFBIG. */
START_TEST(writeback_failure_keeps_data)
{
	char path[600];
	int fd = tu_file(4 * ps, 81, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	struct rlimit old, lim;
	struct safe_mr_stats s0;
	int rc;

	ck_assert_ptr_nonnull(mr);
	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(fake_nic_write(mr, 3 * ps + 1, "precious", 8), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = ps;
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	s0 = tu_stats();

	rc = safe_mr_dereg_mr(mr);
	ck_assert_msg(rc == EFBIG, "dereg with a failing writeback returned %d (%s), want EFBIG", rc,
		      strerror(rc));
	ck_assert_uint_eq(fake_nic_mr_count(), 1);	/* MR stays */
	ck_assert(tu_shadowed(p + 3 * ps));
	ck_assert_mem_eq(p + 3 * ps + 1, "precious", 8);
	ck_assert_uint_gt(tu_stats().sync_errors, s0.sync_errors);
	ck_assert_int_eq(safe_mr_sync(mr, 0, 0, 0), EFBIG);
	errno = 0;
	ck_assert_int_eq(safe_mr_msync(p, 4 * ps, MS_SYNC), -1);
	ck_assert_int_eq(errno, EFBIG);
	errno = 0;
	ck_assert_int_eq(safe_mr_fsync(fd), -1);
	ck_assert_int_eq(errno, EFBIG);
	tu_assert_file_pattern(path, 3 * ps, 16, 81);
	/* The NIC may keep writing; nothing was dropped. */
	ck_assert_int_eq(fake_nic_write(mr, 3 * ps + 9, "!", 1), 0);

	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	ck_assert_int_eq(safe_mr_sync(mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	tu_assert_file(path, 3 * ps + 1, "precious!", 9);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
	ck_assert(tu_mapped_from(p, path));
}
END_TEST

/* Register, expect NULL + errno, and no shadow anywhere. */
static void assert_refused(struct ibv_pd *pd, void *addr, size_t len, int access, int want)
{
	struct safe_mr_stats s0 = tu_stats();
	struct ibv_mr *mr;

	errno = 0;
	mr = safe_mr_reg_mr(pd, addr, len, access);
	ck_assert_msg(mr == NULL, "registration of %p+%zu unexpectedly succeeded", addr, len);
	ck_assert_msg(errno == want, "errno %d (%s), want %d (%s)", errno, strerror(errno), want,
		      strerror(want));
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, s0.shadow_bytes_now);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
}

START_TEST(bad_input)
{
	char path[600], perms[5];
	int fd = tu_file(6 * ps, 82, path, sizeof(path));
	uint8_t *p = tu_map(fd, 6 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *hole = mmap(NULL, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(hole, MAP_FAILED);
	ck_assert_int_eq(munmap(hole, ps), 0);
	assert_refused(NULL, p, ps, RW, EINVAL);
	assert_refused(tu_pd, p, 0, RW, EINVAL);
	assert_refused(tu_pd, hole, ps, RW, EFAULT);
	/* Partly unmapped: a hole in the middle of the file mapping. */
	ck_assert_int_eq(munmap(p + 3 * ps, ps), 0);
	assert_refused(tu_pd, p, 6 * ps, RW, EFAULT);
	tu_assert_shadow_mask(p, 3, 0);
	tu_assert_shadow_mask(p + 4 * ps, 2, 0);
	/* PROT_NONE page inside. */
	ck_assert_int_eq(mprotect(p + ps, ps, PROT_NONE), 0);
	assert_refused(tu_pd, p, 3 * ps, RW, EFAULT);
	assert_refused(tu_pd, p, 3 * ps, RO, EFAULT);
	tu_assert_shadow_mask(p, 3, 0);
	/* Writable access to a read-only page. */
	ck_assert_int_eq(mprotect(p + ps, ps, PROT_READ), 0);
	assert_refused(tu_pd, p, 3 * ps, RW, EFAULT);
	tu_assert_shadow_mask(p, 3, 0);
	ck_assert(tu_maps_at(p, NULL, 0, perms));
	ck_assert_str_eq(perms, "rw-s");
	ck_assert(tu_maps_at(p + ps, NULL, 0, perms));
	ck_assert_str_eq(perms, "r--s");
	ck_assert(tu_mapped_from(p, path));
	/* Nothing broken: the valid part registers. */
	{
		struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p + 4 * ps, 2 * ps, RW);

		ck_assert_ptr_nonnull(mr);
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	}
}
END_TEST

START_TEST(api_bad_arguments)
{
	ck_assert_int_eq(safe_mr_stats(NULL), EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("errors");
	TCase *tc = tu_tcase("errors");

	tcase_add_test(tc, writeback_failure_keeps_data);
	tcase_add_test(tc, bad_input);
	tcase_add_test(tc, api_bad_arguments);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
