/* SPDX-License-Identifier: MIT */
/* safe_mr_file_reg & co: fill, changed-only writeback, sub-range sync,
 * refresh, dereg, argument checks, fork and threads. */
#include <pthread.h>
#include <sys/wait.h>

#include "fake_nic.h"
#include "st_util.h"

#define NP 16

/* The NIC writes generation `gen` content into page p of the region. */
static void nic_page(struct safe_mr_file_region *r, size_t p, unsigned int gen)
{
	char *buf = malloc(PS);

	st_fill(buf, r->offset + p * PS, PS, gen);
	ck_assert_int_eq(fake_nic_write(r->mr, p * PS, buf, PS), 0);
	free(buf);
}

START_TEST(reg_fills_from_file)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 4 * PS, 8 * PS, RW_ACCESS);
	char *want = malloc(8 * PS);

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->fd, fd);
	ck_assert_int_eq(r->offset, 4 * PS);
	ck_assert_uint_eq(r->length, 8 * PS);
	ck_assert_ptr_eq(r->mr->addr, r->addr);
	ck_assert_uint_eq(r->mr->length, 8 * PS);
	ck_assert_uint_eq((uintptr_t)r->addr % PS, 0);
	st_fill(want, 4 * PS, 8 * PS, 0);
	ck_assert(!memcmp(r->addr, want, 8 * PS));
	ck_assert_uint_eq(st_stats().registrations, 1);
	ck_assert_uint_eq(st_stats().bytes_shadowed, 8 * PS);
	ck_assert_uint_eq(st_stats().shadow_bytes_now, 8 * PS);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert_uint_eq(st_stats().shadow_bytes_now, 0);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
	/* nothing changed: nothing written */
	ck_assert_uint_eq(st_stats().bytes_written_back, 0);
	free(want);
}
END_TEST

START_TEST(reg_bad_arguments)
{
	int fd = st_file(NP * PS), p[2];

	errno = 0;
	ck_assert_ptr_null(safe_mr_file_reg(pd, fd, 100, PS, RW_ACCESS));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(safe_mr_file_reg(pd, fd, 0, 0, RW_ACCESS));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(safe_mr_file_reg(pd, fd, -(off_t)PS, PS, RW_ACCESS));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(safe_mr_file_reg(pd, -1, 0, PS, RW_ACCESS));
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(pipe(p), 0);
	errno = 0;
	ck_assert_ptr_null(safe_mr_file_reg(pd, p[0], 0, PS, RW_ACCESS));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
	ck_assert_uint_eq(st_stats().shadow_bytes_now, 0);
}
END_TEST

START_TEST(sync_bad_arguments)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, NP * PS, RW_ACCESS);

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(safe_mr_file_sync(r, NP * PS + 1, 0, 0), EINVAL);
	ck_assert_int_eq(safe_mr_file_sync(r, PS, NP * PS, 0), EINVAL);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0x80), EINVAL);
	ck_assert_int_eq(safe_mr_file_refresh(r, 0, NP * PS + 1), EINVAL);
	ck_assert_int_eq(safe_mr_file_sync(NULL, 0, 0, 0), EINVAL);
	ck_assert_int_eq(safe_mr_file_dereg(NULL), EINVAL);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
}
END_TEST

/* Only pages the NIC changed are written: a page someone else changed in
 * the file with write() meanwhile keeps that data. */
START_TEST(sync_writes_changed_pages_only)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, NP * PS, RW_ACCESS);
	char *other = malloc(PS);
	struct safe_mr_stats s0, s1;

	ck_assert_ptr_nonnull(r);
	nic_page(r, 1, 1);
	nic_page(r, 5, 1);
	st_fill(other, 3 * PS, PS, 7);
	ck_assert_int_eq(pwrite(fd, other, PS, 3 * PS), (ssize_t)PS);
	s0 = st_stats();
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), 0);
	s1 = st_stats();
	ck_assert_uint_eq(s1.bytes_written_back - s0.bytes_written_back, 2 * PS);
	ck_assert_uint_eq(s1.write_calls - s0.write_calls, 2);
	ck_assert_uint_eq(s1.sync_errors, 0);
	ck_assert_uint_ne(s1.writeback_engine, SAFE_MR_WB_NONE);
	ck_assert(st_file_is(fd, 0, PS, 0));
	ck_assert(st_file_is(fd, 1 * PS, PS, 1));
	ck_assert(st_file_is(fd, 2 * PS, PS, 0));
	ck_assert(st_file_is(fd, 3 * PS, PS, 7));
	ck_assert(st_file_is(fd, 5 * PS, PS, 1));
	ck_assert(st_file_is(fd, 6 * PS, (NP - 6) * PS, 0));
	/* written pages are clean now: a second sync writes nothing */
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert_uint_eq(st_stats().bytes_written_back, s1.bytes_written_back);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert(st_file_is(fd, 3 * PS, PS, 7));
	free(other);
}
END_TEST

/* Adjacent changed pages become one write. */
START_TEST(sync_merges_contiguous_pages)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, NP * PS, RW_ACCESS);
	struct safe_mr_stats s0;

	ck_assert_ptr_nonnull(r);
	for (size_t p = 4; p < 12; p++)
		nic_page(r, p, 2);
	s0 = st_stats();
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), 0);
	ck_assert_uint_eq(st_stats().write_calls - s0.write_calls, 1);
	ck_assert_uint_eq(st_stats().bytes_written_back - s0.bytes_written_back, 8 * PS);
	ck_assert(st_file_is(fd, 4 * PS, 8 * PS, 2));
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
}
END_TEST

START_TEST(sync_subrange)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, NP * PS, RW_ACCESS);

	ck_assert_ptr_nonnull(r);
	nic_page(r, 2, 3);
	nic_page(r, 8, 3);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 4 * PS, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert(st_file_is(fd, 2 * PS, PS, 3));
	ck_assert(st_file_is(fd, 8 * PS, PS, 0));
	/* a byte range selects every page it touches */
	ck_assert_int_eq(safe_mr_file_sync(r, 8 * PS + 100, 1, 0), 0);
	ck_assert(st_file_is(fd, 8 * PS, PS, 3));
	ck_assert_uint_eq(st_stats().bytes_written_back, 2 * PS);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
}
END_TEST

START_TEST(dereg_writes_back)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 2 * PS, 4 * PS, RW_ACCESS);

	ck_assert_ptr_nonnull(r);
	nic_page(r, 0, 4);
	nic_page(r, 3, 4);
	ck_assert_uint_eq(fake_nic_mr_count(), 1);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
	ck_assert(st_file_is(fd, 2 * PS, PS, 4));
	ck_assert(st_file_is(fd, 3 * PS, 2 * PS, 0));
	ck_assert(st_file_is(fd, 5 * PS, PS, 4));
	ck_assert_int_eq(st_size(fd), NP * PS);
}
END_TEST

/* CPU stores count like NIC writes. */
START_TEST(cpu_writes_are_written_back)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, NP * PS, RW_ACCESS);

	ck_assert_ptr_nonnull(r);
	st_fill((char *)r->addr + 7 * PS, 7 * PS, PS, 5);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), 0);
	ck_assert(st_file_is(fd, 7 * PS, PS, 5));
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
}
END_TEST

START_TEST(refresh_reloads_unchanged_pages)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, NP * PS, RW_ACCESS);
	char *buf = malloc(PS), *want = malloc(PS);

	ck_assert_ptr_nonnull(r);
	/* someone else writes pages 0, 2 and 9 of the file */
	for (size_t p = 0; p < NP; p += 1) {
		if (p != 0 && p != 2 && p != 9)
			continue;
		st_fill(buf, p * PS, PS, 6);
		ck_assert_int_eq(pwrite(fd, buf, PS, (off_t)(p * PS)), (ssize_t)PS);
	}
	nic_page(r, 2, 1);	/* ... while the NIC changed page 2 */
	ck_assert_int_eq(safe_mr_file_refresh(r, 0, 4 * PS), 0);
	st_fill(want, 0, PS, 6);
	ck_assert(!memcmp(r->addr, want, PS));
	st_fill(want, 2 * PS, PS, 1);
	ck_assert(!memcmp((char *)r->addr + 2 * PS, want, PS));
	/* page 9 is outside the refreshed range */
	st_fill(want, 9 * PS, PS, 0);
	ck_assert(!memcmp((char *)r->addr + 9 * PS, want, PS));
	/* the refreshed page is clean: sync writes only page 2 */
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), 0);
	ck_assert_uint_eq(st_stats().bytes_written_back, PS);
	ck_assert(st_file_is(fd, 0, PS, 6));
	ck_assert(st_file_is(fd, 2 * PS, PS, 1));
	ck_assert(st_file_is(fd, 9 * PS, PS, 6));
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	free(buf);
	free(want);
}
END_TEST

/* A fork child shares the buffer (MAP_SHARED): its stores reach the
 * parent's registration and its writeback. */
START_TEST(fork_child_shares_buffer)
{
	int fd = st_file(NP * PS), status;
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, NP * PS, RW_ACCESS);
	pid_t pid;

	ck_assert_ptr_nonnull(r);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		st_fill((char *)r->addr + 3 * PS, 3 * PS, PS, 9);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), 0);
	ck_assert(st_file_is(fd, 3 * PS, PS, 9));
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
}
END_TEST

struct thr_arg {
	struct safe_mr_file_region *r;
	size_t first;
};

static void *sync_thread(void *p)
{
	struct thr_arg *a = p;

	for (unsigned int gen = 1; gen <= 20; gen++) {
		for (size_t k = 0; k < 4; k++)
			nic_page(a->r, a->first + k, gen);
		if (safe_mr_file_sync(a->r, a->first * PS, 4 * PS, gen % 2 ? 0 : SAFE_MR_SYNC_DURABLE))
			return (void *)1;
	}
	return NULL;
}

START_TEST(threads_sync_concurrently)
{
	int fd = st_file(NP * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, NP * PS, RW_ACCESS);
	pthread_t t[4];
	struct thr_arg a[4];

	ck_assert_ptr_nonnull(r);
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thr_arg){ r, (size_t)i * 4 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, sync_thread, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *ret;

		ck_assert_int_eq(pthread_join(t[i], &ret), 0);
		ck_assert_ptr_null(ret);
	}
	ck_assert(st_file_is(fd, 0, NP * PS, 20));
	ck_assert_uint_eq(st_stats().bytes_written_back, 20 * NP * PS);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("file_range");
	TCase *tc = tcase_create("api");

	tcase_add_checked_fixture(tc, st_setup, st_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, reg_fills_from_file);
	tcase_add_test(tc, reg_bad_arguments);
	tcase_add_test(tc, sync_bad_arguments);
	tcase_add_test(tc, sync_writes_changed_pages_only);
	tcase_add_test(tc, sync_merges_contiguous_pages);
	tcase_add_test(tc, sync_subrange);
	tcase_add_test(tc, dereg_writes_back);
	tcase_add_test(tc, cpu_writes_are_written_back);
	tcase_add_test(tc, refresh_reloads_unchanged_pages);
	tcase_add_test(tc, fork_child_shares_buffer);
	tcase_add_test(tc, threads_sync_concurrently);
	suite_add_tcase(s, tc);
	return st_run(s);
}
