/* SPDX-License-Identifier: MIT */
/* safe_mr_file_reg on an O_APPEND descriptor writes back in place, not at
 * the end of the file.  (It once appended: the file grew, offset 0 kept its
 * old data, and the sync returned 0.) */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "tutil.h"

START_TEST(append_descriptor)
{
	char path[600];
	int fd = tu_file(2 * ps, 71, path, sizeof(path)), afd;
	struct safe_mr_file_region *r;

	close(fd);
	afd = open(path, O_RDWR | O_APPEND);
	ck_assert_int_ge(afd, 0);
	r = safe_mr_file_reg(tu_pd, afd, 0, 2 * ps, RW);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(fake_nic_write(r->mr, 0, "head", 4), 0);
	ck_assert_int_eq(fake_nic_write(r->mr, ps + 8, "tail", 4), 0);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert_int_eq(tu_file_size(path), (off_t)(2 * ps));
	tu_assert_file(path, 0, "head", 4);
	tu_assert_file(path, ps + 8, "tail", 4);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert_int_eq(tu_file_size(path), (off_t)(2 * ps));
	/* the caller's descriptor is the caller's: still open, still O_APPEND */
	ck_assert(fcntl(afd, F_GETFL) & O_APPEND);
	close(afd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("file_append");
	TCase *tc = tu_tcase("file_append");

	tcase_add_test(tc, append_descriptor);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
