/* SPDX-License-Identifier: MIT */
/* Minimal writeback: only changed pages are written back, with ordinary writes,
 * never past the file's current end; untouched pages are never rewritten. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

START_TEST(only_changed_pages)
{
	char path[600];
	int fd = tu_file(8 * ps, 21, path, sizeof(path));
	uint8_t *p = tu_map(fd, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 8 * ps, RW);
	struct safe_mr_stats s0, s1;

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 2 * ps + 7, "changed", 7), 0);
	/* Someone else writes an untouched page of the file meanwhile. */
	ck_assert_int_eq(pwrite(fd, "other", 5, 5 * ps + 3), 5);
	s0 = tu_stats();
	ck_assert_int_eq(safe_mr_sync(mr, 0, 0, 0), 0);
	s1 = tu_stats();
	ck_assert_uint_eq(s1.bytes_written_back - s0.bytes_written_back, ps);
	ck_assert_uint_eq(s1.write_calls - s0.write_calls, 1);
	ck_assert_uint_ne(s1.writeback_engine, SAFE_MR_WB_NONE);
	tu_assert_file(path, 2 * ps + 7, "changed", 7);
	tu_assert_file(path, 5 * ps + 3, "other", 5);
	/* Nothing changed since: a second sync writes nothing. */
	ck_assert_int_eq(safe_mr_sync(mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert_uint_eq(tu_stats().bytes_written_back, s1.bytes_written_back);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_uint_eq(tu_stats().bytes_written_back, s1.bytes_written_back);
	tu_assert_file(path, 5 * ps + 3, "other", 5);
	tu_assert_file_pattern(path, 0, 2 * ps + 7, 21);
	tu_assert_file_pattern(path, 6 * ps, 2 * ps, 21);
}
END_TEST

START_TEST(unchanged_region_no_io)
{
	char path[600];
	int fd = tu_file(16 * ps, 22, path, sizeof(path));
	uint8_t *p = tu_map(fd, 16 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct safe_mr_stats s0 = tu_stats();
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 16 * ps, RW);

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_uint_eq(tu_stats().bytes_written_back, s0.bytes_written_back);
	ck_assert_uint_eq(tu_stats().write_calls, s0.write_calls);
}
END_TEST

/* Until a sync point the file keeps its old contents (SAFE_MR_FLUSH_MS off). */
START_TEST(no_writeback_before_sync_point)
{
	char path[600];
	int fd = tu_file(2 * ps, 23, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 0, "new", 3), 0);
	usleep(300 * 1000);
	tu_assert_file_pattern(path, 0, 3, 23);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 0, "new", 3);
}
END_TEST

/* Truncated while registered: writeback stops at the new end of file. */
START_TEST(truncated_while_registered)
{
	char path[600];
	int fd = tu_file(4 * ps, 24, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	off_t newlen = (off_t)(2 * ps + 100);
	uint8_t buf[4 * 4096];

	ck_assert_ptr_nonnull(mr);
	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(fake_nic_write(mr, 0, buf, 4 * ps), 0);
	ck_assert_int_eq(ftruncate(fd, newlen), 0);
	ck_assert_int_eq(safe_mr_sync(mr, 0, 0, 0), 0);
	ck_assert_int_eq(tu_file_size(path), newlen);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_int_eq(tu_file_size(path), newlen);
	tu_assert_file(path, 0, buf, (size_t)newlen);
}
END_TEST

/* Extended while registered: pages that became part of the file are
 * written, up to the new end. */
START_TEST(extended_while_registered)
{
	char path[600];
	int fd = tu_file(ps, 25, path, sizeof(path));
	uint8_t *p = tu_map(fd, 3 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, ps, RW);

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, ps - 4, "tail", 4), 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(2 * ps)), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_int_eq(tu_file_size(path), (off_t)(2 * ps));
	tu_assert_file(path, ps - 4, "tail", 4);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("writeback");
	TCase *tc = tu_tcase("writeback");

	tcase_add_test(tc, only_changed_pages);
	tcase_add_test(tc, unchanged_region_no_io);
	tcase_add_test(tc, no_writeback_before_sync_point);
	tcase_add_test(tc, truncated_while_registered);
	tcase_add_test(tc, extended_while_registered);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
