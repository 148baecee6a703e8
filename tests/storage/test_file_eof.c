/* SPDX-License-Identifier: MIT */
/* File-range EOF rules: writeback never extends the file; the page holding
 * EOF is written up to EOF; changed pages wholly past EOF are kept pending
 * (sync returns ENXIO) until the file grows; dereg drops them. */
#include "fake_nic.h"
#include "st_util.h"

static void nic_page(struct safe_mr_file_region *r, size_t p, unsigned int gen)
{
	char *buf = malloc(PS);

	st_fill(buf, r->offset + p * PS, PS, gen);
	ck_assert_int_eq(fake_nic_write(r->mr, p * PS, buf, PS), 0);
	free(buf);
}

/* Region longer than the file: the buffer past EOF reads as zeros. */
START_TEST(region_past_eof_is_zero)
{
	int fd = st_file(PS + 100);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, 4 * PS, RW_ACCESS);
	char *zero = calloc(1, 3 * PS);

	ck_assert_ptr_nonnull(r);
	ck_assert(!memcmp((char *)r->addr + PS + 100, zero, 3 * PS - 100));
	ck_assert_uint_eq(st_stats().bytes_shadowed, PS + 100);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert_int_eq(st_size(fd), PS + 100);
	free(zero);
}
END_TEST

START_TEST(sync_never_extends)
{
	int fd = st_file(PS + 100);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, 4 * PS, RW_ACCESS);

	ck_assert_ptr_nonnull(r);
	nic_page(r, 0, 1);
	nic_page(r, 1, 1);	/* holds EOF */
	nic_page(r, 3, 1);	/* wholly past EOF */
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE), ENXIO);
	ck_assert_int_eq(st_size(fd), PS + 100);
	ck_assert(st_file_is(fd, 0, PS + 100, 1));
	ck_assert_uint_eq(st_stats().bytes_written_back, PS + 100);
	/* a sub-range that avoids the pending page succeeds */
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 2 * PS, 0), 0);
	/* still pending, still reported */
	ck_assert_int_eq(safe_mr_file_sync(r, 3 * PS, PS, 0), ENXIO);
	ck_assert_int_eq(st_size(fd), PS + 100);
	/* the file grows: the pending page is written */
	ck_assert_int_eq(ftruncate(fd, 4 * PS), 0);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), 0);
	ck_assert(st_file_is(fd, 3 * PS, PS, 1));
	ck_assert_uint_eq(st_stats().bytes_written_back, 2 * PS + 100);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert_int_eq(st_size(fd), 4 * PS);
}
END_TEST

START_TEST(truncate_while_registered)
{
	int fd = st_file(8 * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, 8 * PS, RW_ACCESS);

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(ftruncate(fd, 2 * PS + 10), 0);
	for (size_t p = 1; p < 8; p++)
		nic_page(r, p, 2);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), ENXIO);
	ck_assert_int_eq(st_size(fd), 2 * PS + 10);
	ck_assert(st_file_is(fd, PS, PS + 10, 2));
	ck_assert(st_file_is(fd, 0, PS, 0));
	ck_assert_uint_eq(st_stats().sync_errors, 0);
	/* dereg drops the pages past EOF and does not extend the file */
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert_int_eq(st_size(fd), 2 * PS + 10);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
}
END_TEST

/* Refresh past EOF: pages nobody changed follow the file (zeros). */
START_TEST(refresh_after_truncate)
{
	int fd = st_file(4 * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, 4 * PS, RW_ACCESS);
	char *zero = calloc(1, 2 * PS);

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(ftruncate(fd, 2 * PS), 0);
	ck_assert_int_eq(safe_mr_file_refresh(r, 0, 0), 0);
	ck_assert(!memcmp((char *)r->addr + 2 * PS, zero, 2 * PS));
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), 0);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert_int_eq(st_size(fd), 2 * PS);
	free(zero);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("file_eof");
	TCase *tc = tcase_create("eof");

	tcase_add_checked_fixture(tc, st_setup, st_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, region_past_eof_is_zero);
	tcase_add_test(tc, sync_never_extends);
	tcase_add_test(tc, truncate_while_registered);
	tcase_add_test(tc, refresh_after_truncate);
	suite_add_tcase(s, tc);
	return st_run(s);
}
