/* SPDX-License-Identifier: MIT */
/* Sync points: every sync point writes the changed pages to the file:
 * dereg, msync, fsync/fdatasync on another descriptor, munmap,
 * safe_mr_sync (sub-ranges, durable or not), safe_mr_sync_all, exit. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

struct fx {
	char path[600];
	int fd;
	uint8_t *p;
	struct ibv_mr *mr;
};

static void fx_open(struct fx *f, size_t pages, unsigned int seed)
{
	f->fd = tu_file(pages * ps, seed, f->path, sizeof(f->path));
	f->p = tu_map(f->fd, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	f->mr = safe_mr_reg_mr(tu_pd, f->p, pages * ps, RW);
	ck_assert_msg(f->mr != NULL, "registration failed: %s", strerror(errno));
	ck_assert(tu_shadowed(f->p));
}

START_TEST(dereg)
{
	struct fx f;

	fx_open(&f, 2, 31);
	ck_assert_int_eq(fake_nic_write(f.mr, 5, "dereg", 5), 0);
	tu_assert_file_pattern(f.path, 5, 5, 31);
	ck_assert_int_eq(safe_mr_dereg_mr(f.mr), 0);
	tu_assert_file(f.path, 5, "dereg", 5);
}
END_TEST

START_TEST(msync_sync)
{
	struct fx f;

	fx_open(&f, 4, 32);
	ck_assert_int_eq(fake_nic_write(f.mr, ps + 1, "msync", 5), 0);
	ck_assert_int_eq(fake_nic_write(f.mr, 3 * ps + 1, "later", 5), 0);
	/* msync of an overlapping sub-range: that page reaches the file. */
	ck_assert_int_eq(safe_mr_msync(f.p + ps, ps, MS_SYNC), 0);
	tu_assert_file(f.path, ps + 1, "msync", 5);
	ck_assert(tu_shadowed(f.p + ps));	/* still registered: still shadowed */
	ck_assert_int_eq(safe_mr_msync(f.p, 4 * ps, MS_SYNC), 0);
	tu_assert_file(f.path, 3 * ps + 1, "later", 5);
	ck_assert_int_eq(fake_nic_write(f.mr, 1, "again", 5), 0);
	ck_assert_int_eq(safe_mr_msync(f.p, 4 * ps, MS_ASYNC), 0);
	ck_assert_int_eq(safe_mr_msync(f.p, 4 * ps, MS_SYNC), 0);
	tu_assert_file(f.path, 1, "again", 5);
	ck_assert_int_eq(safe_mr_dereg_mr(f.mr), 0);
}
END_TEST

static void fsync_other_fd(bool data_only)
{
	struct fx f;
	int fd2;

	fx_open(&f, 2, data_only ? 33 : 34);
	fd2 = open(f.path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd2, 0);
	ck_assert_int_eq(fake_nic_write(f.mr, 7, "fsync", 5), 0);
	ck_assert_int_eq(data_only ? safe_mr_fdatasync(fd2) : safe_mr_fsync(fd2), 0);
	tu_assert_file(f.path, 7, "fsync", 5);
	ck_assert(tu_shadowed(f.p));
	ck_assert_int_eq(safe_mr_dereg_mr(f.mr), 0);
	close(fd2);
}

START_TEST(fsync_other_descriptor)
{
	fsync_other_fd(false);
}
END_TEST

START_TEST(fdatasync_other_descriptor)
{
	fsync_other_fd(true);
}
END_TEST

/* fsync of an unrelated file leaves the shadow's data where it is. */
START_TEST(fsync_unrelated_file)
{
	struct fx f;
	int other = tu_file(ps, 35, NULL, 0);

	fx_open(&f, 1, 36);
	ck_assert_int_eq(fake_nic_write(f.mr, 0, "keep", 4), 0);
	ck_assert_int_eq(safe_mr_fsync(other), 0);
	tu_assert_file_pattern(f.path, 0, 4, 36);
	ck_assert_int_eq(safe_mr_dereg_mr(f.mr), 0);
	tu_assert_file(f.path, 0, "keep", 4);
}
END_TEST

START_TEST(munmap_shadowed)
{
	struct fx f;
	char buf[6];

	fx_open(&f, 4, 37);
	memcpy(f.p + 2 * ps, "cpu", 3);
	ck_assert_int_eq(fake_nic_write(f.mr, 3 * ps, "nic", 3), 0);
	ck_assert_int_eq(safe_mr_munmap(f.p + 2 * ps, 2 * ps), 0);
	tu_assert_file(f.path, 2 * ps, "cpu", 3);
	tu_assert_file(f.path, 3 * ps, "nic", 3);
	ck_assert(!tu_maps_at(f.p + 2 * ps, NULL, 0, NULL));
	/* The NIC still holds the pages until dereg; the rest still works. */
	ck_assert_int_eq(fake_nic_write(f.mr, 0, "head", 4), 0);
	ck_assert_int_eq(fake_nic_read(f.mr, 0, buf, 4), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(f.mr), 0);
	tu_assert_file(f.path, 0, "head", 4);
	ck_assert_int_eq(safe_mr_munmap(f.p, 2 * ps), 0);
}
END_TEST

START_TEST(explicit_sync)
{
	struct fx f;

	fx_open(&f, 4, 38);
	ck_assert_int_eq(fake_nic_write(f.mr, ps, "one", 3), 0);
	ck_assert_int_eq(fake_nic_write(f.mr, 3 * ps, "two", 3), 0);
	/* A sub-range: only page 1. */
	ck_assert_int_eq(safe_mr_sync(f.mr, ps, ps, 0), 0);
	tu_assert_file(f.path, ps, "one", 3);
	tu_assert_file_pattern(f.path, 3 * ps, 3, 38);
	ck_assert_int_eq(safe_mr_sync(f.mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	tu_assert_file(f.path, 3 * ps, "two", 3);
	ck_assert_int_eq(fake_nic_write(f.mr, 0, "all", 3), 0);
	ck_assert_int_eq(safe_mr_sync_all(0), 0);
	tu_assert_file(f.path, 0, "all", 3);
	ck_assert(tu_shadowed(f.p));
	ck_assert_int_eq(safe_mr_sync(f.mr, 5 * ps, ps, 0), EINVAL);
	ck_assert_int_eq(safe_mr_dereg_mr(f.mr), 0);
}
END_TEST

/* A process that exits without deregistering: the data reaches the file. */
START_TEST(process_exit)
{
	char path[600];
	int fd = tu_file(2 * ps, 39, path, sizeof(path));
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint8_t *p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		struct ibv_mr *mr = p == MAP_FAILED ? NULL : safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);

		if (!mr || !tu_shadowed(p) || fake_nic_write(mr, ps + 9, "atexit", 6))
			_exit(2);
		exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed to register (%#x)", st);
	tu_assert_file(path, ps + 9, "atexit", 6);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sync_points");
	TCase *tc = tu_tcase("sync_points");

	tcase_add_test(tc, dereg);
	tcase_add_test(tc, msync_sync);
	tcase_add_test(tc, fsync_other_descriptor);
	tcase_add_test(tc, fdatasync_other_descriptor);
	tcase_add_test(tc, fsync_unrelated_file);
	tcase_add_test(tc, munmap_shadowed);
	tcase_add_test(tc, explicit_sync);
	tcase_add_test(tc, process_exit);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
