/* SPDX-License-Identifier: MIT */
/* Read-only and writable registrations of the same file pages (MPI
 * registration caches make such overlaps) see the memory the CPU sees, in
 * either order and after either is deregistered.  (Read-only ones once
 * pinned the file pages while a writable one swapped a shadow in: the NIC
 * then read pages the CPU no longer saw.) */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

static void nic_reads(struct ibv_mr *mr, size_t off, const char *want)
{
	char buf[16] = { 0 };

	ck_assert_int_eq(fake_nic_read(mr, off, buf, strlen(want)), 0);
	ck_assert_str_eq(buf, want);
}

static void run(bool ro_first, bool drop_rw_first)
{
	char path[600];
	int fd = tu_file(4 * ps, 41, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *ro, *rw;

	if (ro_first) {
		ro = safe_mr_reg_mr(tu_pd, p, 4 * ps, RO);
		rw = safe_mr_reg_mr(tu_pd, p + ps, 2 * ps, RW);
	} else {
		rw = safe_mr_reg_mr(tu_pd, p + ps, 2 * ps, RW);
		ro = safe_mr_reg_mr(tu_pd, p, 4 * ps, RO);
	}
	ck_assert_ptr_nonnull(ro);
	ck_assert_ptr_nonnull(rw);
	ck_assert_int_eq(fake_nic_write(rw, 0, "viarw", 5), 0);
	nic_reads(ro, ps, "viarw");
	memcpy(p + 3 * ps, "cpu3", 4);
	nic_reads(ro, 3 * ps, "cpu3");
	if (drop_rw_first) {
		ck_assert_int_eq(safe_mr_dereg_mr(rw), 0);
		memcpy(p + ps, "after", 5);
		nic_reads(ro, ps, "after");
		ck_assert_int_eq(safe_mr_dereg_mr(ro), 0);
		tu_assert_file(path, ps, "after", 5);
	} else {
		ck_assert_int_eq(safe_mr_dereg_mr(ro), 0);
		memcpy(p + 2 * ps, "cpu2", 4);
		char buf[8];
		ck_assert_int_eq(fake_nic_read(rw, ps, buf, 4), 0);
		ck_assert_mem_eq(buf, "cpu2", 4);
		ck_assert_int_eq(safe_mr_dereg_mr(rw), 0);
		tu_assert_file(path, 2 * ps, "cpu2", 4);
	}
	tu_assert_file(path, 3 * ps, "cpu3", 4);
	tu_assert_shadow_mask(p, 4, 0);
	close(fd);
}

START_TEST(ro_then_rw)
{
	run(true, true);
	run(true, false);
}
END_TEST

START_TEST(rw_then_ro)
{
	run(false, true);
	run(false, false);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ro_overlap");
	TCase *tc = tu_tcase("ro_overlap");

	tcase_add_test(tc, ro_then_rw);
	tcase_add_test(tc, rw_then_ro);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
