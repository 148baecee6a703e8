/* SPDX-License-Identifier: MIT */
/* Run with FAKE_VERBS_FAIL_REG=1: the NIC refuses the registration after
 * the shadow is set up; the engine must undo it and return the errno. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

START_TEST(failed_registration_undone)
{
	char path[600], perms[5];
	int fd = tu_file(4 * ps, 71, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr;

	ck_assert_str_eq(getenv("FAKE_VERBS_FAIL_REG"), "1");
	errno = 0;
	mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	ck_assert_ptr_null(mr);
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert_uint_eq(fake_nic_reg_calls(), 1);
	tu_assert_shadow_mask(p, 4, 0);
	ck_assert(tu_mapped_from(p, path));
	ck_assert(tu_maps_at(p, NULL, 0, perms));
	ck_assert_str_eq(perms, "rw-s");
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
	/* Still a plain file mapping. */
	memcpy(p, "plain", 5);
	tu_assert_file(path, 0, "plain", 5);
	tu_assert_file_pattern(path, 5, 4 * ps - 5, 71);
	/* The next registration works. */
	mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("reg_fail");
	TCase *tc = tu_tcase("reg_fail");

	tcase_add_test(tc, failed_registration_undone);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
