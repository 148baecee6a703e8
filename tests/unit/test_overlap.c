/* SPDX-License-Identifier: MIT */
/* Overlapping registrations: overlapping and nested registrations are counted per page;
 * ibv_rereg_mr moves or changes a registration. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

START_TEST(nested)
{
	char path[600];
	int fd = tu_file(8 * ps, 61, path, sizeof(path));
	uint8_t *p = tu_map(fd, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *outer = safe_mr_reg_mr(tu_pd, p, 8 * ps, RW);
	struct ibv_mr *inner = safe_mr_reg_mr(tu_pd, p + 2 * ps, 2 * ps, RW);

	ck_assert_ptr_nonnull(outer);
	ck_assert_ptr_nonnull(inner);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 8 * ps);
	ck_assert_int_eq(fake_nic_write(outer, 6 * ps, "outer", 5), 0);
	ck_assert_int_eq(fake_nic_write(inner, 0, "inner", 5), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(outer), 0);
	tu_assert_shadow_mask(p, 8, 0x0c);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 2 * ps);
	tu_assert_file(path, 6 * ps, "outer", 5);
	/* The inner MR still DMAs into the pages it pinned. */
	ck_assert_int_eq(fake_nic_write(inner, ps, "still", 5), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(inner), 0);
	tu_assert_shadow_mask(p, 8, 0);
	tu_assert_file(path, 2 * ps, "inner", 5);
	tu_assert_file(path, 3 * ps, "still", 5);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
}
END_TEST

START_TEST(overlapping)
{
	char path[600];
	int fd = tu_file(6 * ps, 62, path, sizeof(path));
	uint8_t *p = tu_map(fd, 6 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *a = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	struct ibv_mr *b = safe_mr_reg_mr(tu_pd, p + 2 * ps + 10, 4 * ps - 10, RW);
	struct ibv_mr *c = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);	/* same range twice */

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(fake_nic_write(a, 3 * ps, "a", 1), 0);
	ck_assert_int_eq(fake_nic_read(b, ps - 10, &(char){0}, 1), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(a), 0);
	tu_assert_shadow_mask(p, 6, 0x3f);
	ck_assert_int_eq(safe_mr_dereg_mr(c), 0);
	tu_assert_shadow_mask(p, 6, 0x3c);
	ck_assert_int_eq(fake_nic_write(b, 4 * ps - 11, "b", 1), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(b), 0);
	tu_assert_shadow_mask(p, 6, 0);
	tu_assert_file(path, 3 * ps, "a", 1);
	tu_assert_file(path, 6 * ps - 1, "b", 1);
}
END_TEST

/* CHANGE_TRANSLATION to other pages of the file: old pages restored and
 * written, new ones shadowed. The API may refuse rereg with an errno;
 * then the MR must be left intact. */
START_TEST(rereg_translation)
{
	char path[600];
	int fd = tu_file(8 * ps, 63, path, sizeof(path));
	uint8_t *p = tu_map(fd, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);
	int rc;

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 0, "old", 3), 0);
	errno = 0;
	rc = safe_mr_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, p + 4 * ps, 2 * ps, 0);
	if (rc != 0) {
		ck_assert_msg(errno != 0, "rereg refused (%d) without errno", rc);
		ck_assert_ptr_eq(mr->addr, p);
		tu_assert_shadow_mask(p, 8, 0x3);
		ck_assert_int_eq(fake_nic_write(mr, 1, "ld", 2), 0);
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
		ck_abort_msg("safe_mr_rereg_mr(CHANGE_TRANSLATION) refused: rc %d errno %s", rc,
			     strerror(errno));
	}
	ck_assert_ptr_eq(mr->addr, p + 4 * ps);
	tu_assert_shadow_mask(p, 8, 0x30);
	tu_assert_file(path, 0, "old", 3);
	ck_assert_int_eq(fake_nic_write(mr, ps, "new", 3), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 5 * ps, "new", 3);
	tu_assert_shadow_mask(p, 8, 0);
}
END_TEST

/* CHANGE_ACCESS read-only -> writable: the pages must now be shadowed
 * (on 6.5 the fake refuses a writable pin of the file itself). */
START_TEST(rereg_access)
{
	char path[600];
	int fd = tu_file(2 * ps, 64, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RO);
	int rc;

	ck_assert_ptr_nonnull(mr);
	/* read-only, but of a writable shared mapping: shadowed (a later
	 * writable registration must not leave it pinning other pages) */
	tu_assert_shadow_mask(p, 2, 0x3);
	errno = 0;
	rc = safe_mr_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0, RW);
	ck_assert_msg(rc == 0, "safe_mr_rereg_mr(CHANGE_ACCESS RO->RW) failed: rc %d errno %s", rc,
		      strerror(errno));
	tu_assert_shadow_mask(p, 2, 0x3);
	ck_assert_int_eq(fake_nic_write(mr, 0, "rw", 2), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 0, "rw", 2);
	tu_assert_shadow_mask(p, 2, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("overlap");
	TCase *tc = tu_tcase("overlap");

	tcase_add_test(tc, nested);
	tcase_add_test(tc, overlapping);
	tcase_add_test(tc, rereg_translation);
	tcase_add_test(tc, rereg_access);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
