/* SPDX-License-Identifier: MIT */
/* Restoring the file mapping: after the last registration of a page, the file mapping is
 * back at the same address with the same protection, and behaves as one. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

START_TEST(mapping_restored)
{
	char path[600], mpath[600], perms[5];
	int fd = tu_file(6 * ps, 51, path, sizeof(path));
	uint8_t *p = tu_map(fd, 6 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p + 2 * ps, 2 * ps, RW);
	char buf[8];

	ck_assert_ptr_nonnull(mr);
	tu_assert_shadow_mask(p, 6, 0xc);
	ck_assert_int_eq(fake_nic_write(mr, 0, "restore", 7), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_shadow_mask(p, 6, 0);
	for (int i = 0; i < 6; i++) {
		ck_assert(tu_maps_at(p + i * ps, mpath, sizeof(mpath), perms));
		ck_assert_str_eq(mpath, path);
		ck_assert_str_eq(perms, "rw-s");
	}
	ck_assert_mem_eq(p + 2 * ps, "restore", 7);
	/* Stores through the restored mapping reach the page cache directly,
	 * and others' writes show through it. */
	memcpy(p + 2 * ps + 100, "direct", 6);
	tu_assert_file(path, 2 * ps + 100, "direct", 6);
	ck_assert_int_eq(pwrite(fd, "peer", 4, 3 * ps), 4);
	ck_assert_mem_eq(p + 3 * ps, "peer", 4);
	ck_assert_int_eq(fake_nic_mr_count(), 0);
	(void)buf;
}
END_TEST

/* A read-only shared mapping keeps PROT_READ (shadowed on kernels that
 * refuse the pin, passed through elsewhere). */
START_TEST(read_only_protection_restored)
{
	char path[600], perms[5];
	int fd = tu_file(2 * ps, 52, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RO);

	ck_assert_ptr_nonnull(mr);
	ck_assert(tu_maps_at(p, NULL, 0, perms));
	ck_assert_str_eq(perms, "r--s");
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert(tu_mapped_from(p, path));
	ck_assert(tu_maps_at(p, NULL, 0, perms));
	ck_assert_str_eq(perms, "r--s");
}
END_TEST

/* Pages of one VMA with different protections (mprotect) keep theirs. */
START_TEST(mixed_protection_restored)
{
	char path[600], perms[5];
	int fd = tu_file(3 * ps, 53, path, sizeof(path));
	uint8_t *p = tu_map(fd, 3 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr;

	ck_assert_int_eq(mprotect(p + 2 * ps, ps, PROT_READ | PROT_WRITE | PROT_EXEC), 0);
	mr = safe_mr_reg_mr(tu_pd, p, 3 * ps, RW);
	ck_assert_ptr_nonnull(mr);
	tu_assert_shadow_mask(p, 3, 0x7);
	ck_assert(tu_maps_at(p + 2 * ps, NULL, 0, perms));
	ck_assert_str_eq(perms, "rwxs");
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert(tu_maps_at(p, NULL, 0, perms));
	ck_assert_str_eq(perms, "rw-s");
	ck_assert(tu_maps_at(p + 2 * ps, NULL, 0, perms));
	ck_assert_str_eq(perms, "rwxs");
	ck_assert(tu_mapped_from(p + 2 * ps, path));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("restore");
	TCase *tc = tu_tcase("restore");

	tcase_add_test(tc, mapping_restored);
	tcase_add_test(tc, read_only_protection_restored);
	tcase_add_test(tc, mixed_protection_restored);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
