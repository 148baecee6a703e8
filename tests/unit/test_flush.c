/* SPDX-License-Identifier: MIT */
/* SAFE_MR_FLUSH_MS (run with 50): changed pages reach the file without any
 * sync call, within a bounded time. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tutil.h"

static bool file_has(const char *path, off_t off, const char *want, size_t len)
{
	char buf[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool ok = fd >= 0 && pread(fd, buf, len, off) == (ssize_t)len && !memcmp(buf, want, len);

	if (fd >= 0)
		close(fd);
	return ok;
}

START_TEST(periodic_flush)
{
	char path[600];
	const char *ms = getenv("SAFE_MR_FLUSH_MS");
	int fd = tu_file(4 * ps, 41, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	struct timespec t0, t1;
	double waited = 0;

	ck_assert_msg(ms && atoi(ms) > 0, "run with SAFE_MR_FLUSH_MS set");
	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 2 * ps + 3, "flushed", 7), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!file_has(path, 2 * ps + 3, "flushed", 7) && waited < 5.0) {
		usleep(10 * 1000);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	}
	ck_assert_msg(file_has(path, 2 * ps + 3, "flushed", 7),
		      "SAFE_MR_FLUSH_MS=%s: data not in the file after %.1f s", ms, waited);
	ck_assert(tu_shadowed(p));
	/* And again: the flusher keeps running. */
	ck_assert_int_eq(fake_nic_write(mr, 3, "second", 6), 0);
	for (int i = 0; i < 500 && !file_has(path, 3, "second", 6); i++)
		usleep(10 * 1000);
	ck_assert(file_has(path, 3, "second", 6));
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("flush");
	TCase *tc = tu_tcase("flush");

	tcase_add_test(tc, periodic_flush);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
