/* SPDX-License-Identifier: MIT */
/* The writeback engine itself (sm_writeback, linked from the library's
 * objects): merging, writev gathering, IOV_MAX, per-extent errors, O_DIRECT,
 * durability.  Run once per engine: ST_ENGINE=pwrite|io_uring|auto names
 * what SAFE_MR_WRITEBACK asks for, so the expected engine is known. */
#include <limits.h>
#include <liburing.h>
#include <signal.h>
#include <sys/resource.h>

#include "internal.h"
#include "st_util.h"

/* auto: io_uring for O_DIRECT descriptors only (see writeback.c). */
static int expected_engine_for(bool direct)
{
	const char *e = getenv("ST_ENGINE");
	struct io_uring ring;
	bool uring_ok;

	ck_assert_msg(e, "ST_ENGINE not set");
	uring_ok = io_uring_queue_init(4, &ring, 0) == 0;
	if (uring_ok)
		io_uring_queue_exit(&ring);
	if (!strcmp(e, "pwrite"))
		return SAFE_MR_WB_PWRITE;
	/* forced io_uring must really be exercised: fail loudly otherwise */
	ck_assert_msg(uring_ok || strcmp(e, "io_uring"),
		      "io_uring_queue_init fails here: the io_uring engine cannot be tested");
	if (!strcmp(e, "auto") && !direct)
		return SAFE_MR_WB_PWRITE;
	return uring_ok ? SAFE_MR_WB_IO_URING : SAFE_MR_WB_PWRITE;
}

static int expected_engine(void)
{
	return expected_engine_for(false);
}

/* n page-sized extents to file pages [first, first+n), gen `gen`, each from
 * its own buffer page; `scatter`: every other page of the buffer (memory
 * not contiguous), else contiguous memory. */
struct set {
	char *mem;
	struct sm_wb_extent *ext;
	size_t n;
};

static struct set make_set(size_t first, size_t n, unsigned int gen, bool scatter)
{
	struct set s = { .n = n };
	size_t stride = scatter ? 2 : 1;

	s.mem = aligned_alloc(PS, n * stride * PS);
	s.ext = calloc(n, sizeof(*s.ext));
	for (size_t i = 0; i < n; i++) {
		char *b = s.mem + i * stride * PS;

		st_fill(b, (first + i) * PS, PS, gen);
		s.ext[i] = (struct sm_wb_extent){ .buf = b, .len = PS,
						  .off = (off_t)((first + i) * PS) };
	}
	return s;
}

static void free_set(struct set *s)
{
	free(s->mem);
	free(s->ext);
}

START_TEST(contiguous_is_one_write)
{
	int fd = st_file(64 * PS);
	struct set s = make_set(0, 64, 1, false);

	ck_assert_int_eq(sm_writeback(fd, s.ext, s.n, 0), 0);
	ck_assert_uint_eq(st_stats().write_calls, 1);
	ck_assert_uint_eq(st_stats().bytes_written_back, 64 * PS);
	ck_assert_uint_eq(st_stats().writeback_engine, (unsigned)expected_engine());
	ck_assert(st_file_is(fd, 0, 64 * PS, 1));
	free_set(&s);
}
END_TEST

/* Contiguous in the file, not in memory: one writev with io_uring, one
 * pwrite per extent with the fallback. */
START_TEST(gather_into_writev)
{
	int fd = st_file(64 * PS);
	struct set s = make_set(0, 64, 2, true);
	int eng = expected_engine();

	ck_assert_int_eq(sm_writeback(fd, s.ext, s.n, 0), 0);
	ck_assert_uint_eq(st_stats().write_calls, eng == SAFE_MR_WB_IO_URING ? 1 : 64);
	ck_assert(st_file_is(fd, 0, 64 * PS, 2));
	for (size_t i = 0; i < s.n; i++)
		ck_assert_int_eq(s.ext[i].err, 0);
	free_set(&s);
}
END_TEST

START_TEST(iov_max_splits)
{
	size_t n = 3 * IOV_MAX - 5;
	int fd = st_file(n * PS);
	struct set s = make_set(0, n, 3, true);
	int eng = expected_engine();

	ck_assert_int_eq(sm_writeback(fd, s.ext, s.n, SM_WB_DURABLE), 0);
	ck_assert_uint_eq(st_stats().write_calls, eng == SAFE_MR_WB_IO_URING ? 3 : n);
	ck_assert(st_file_is(fd, 0, n * PS, 3));
	free_set(&s);
}
END_TEST

/* Many separate writes: more than one io_uring wave. */
START_TEST(scattered_many_waves)
{
	size_t n = 1500;
	int fd = st_file(2 * n * PS);
	struct set s = make_set(0, n, 4, false);

	for (size_t i = 0; i < n; i++)	/* every other file page */
		s.ext[i].off = (off_t)(2 * i * PS);
	for (size_t i = 0; i < n; i++)
		st_fill((char *)s.ext[i].buf, 2 * i * PS, PS, 4);
	ck_assert_int_eq(sm_writeback(fd, s.ext, s.n, SM_WB_DURABLE), 0);
	ck_assert_uint_eq(st_stats().write_calls, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert(st_file_is(fd, 2 * i * PS, PS, 4));
		ck_assert(st_file_is(fd, (2 * i + 1) * PS, PS, 0));
	}
	free_set(&s);
}
END_TEST

/* RLIMIT_FSIZE makes writes past a limit fail with EFBIG: the extents
 * below it are written and clean, those above carry the error, including
 * inside one merged write (a short write, then EFBIG). */
START_TEST(errors_per_extent)
{
	struct rlimit rl = { 20 * PS + 100, RLIM_INFINITY };
	int fd = st_file(0);
	struct set a = make_set(0, 16, 5, false);	/* one merged run */
	struct set b = make_set(16, 16, 5, true);	/* one gathered chunk */

	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	ck_assert_int_eq(sm_writeback(fd, a.ext, a.n, 0), 0);
	for (size_t i = 0; i < b.n; i++)
		b.ext[i].err = -1;	/* the engine resets it */
	ck_assert_int_eq(sm_writeback(fd, b.ext, b.n, SM_WB_DURABLE), EFBIG);
	for (size_t i = 0; i < b.n; i++)
		ck_assert_int_eq(b.ext[i].err, 16 + i < 20 ? 0 : EFBIG);
	ck_assert(st_file_is(fd, 0, 20 * PS, 5));
	ck_assert_int_eq(st_size(fd), 20 * PS + 100);
	ck_assert_uint_eq(st_stats().sync_errors, 1);
	free_set(&a);
	free_set(&b);
}
END_TEST

START_TEST(bad_fd_fails_every_extent)
{
	struct set s = make_set(0, 8, 1, true);
	int fd = st_file(8 * PS), rfd;
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rfd = open(path, O_RDONLY);
	ck_assert_int_ge(rfd, 0);
	ck_assert_int_eq(sm_writeback(rfd, s.ext, s.n, 0), EBADF);
	for (size_t i = 0; i < s.n; i++)
		ck_assert_int_eq(s.ext[i].err, EBADF);
	ck_assert(st_file_is(fd, 0, 8 * PS, 0));
	ck_assert_uint_eq(st_stats().sync_errors, 1);
	ck_assert_uint_eq(st_stats().bytes_written_back, 0);
	free_set(&s);
}
END_TEST

/* O_DIRECT: aligned pieces go direct, a tail shorter than a page through a
 * buffered descriptor of the same file. */
START_TEST(o_direct_with_tail)
{
	int fd = st_file_in(st_dir(), 10 * PS + 123, O_DIRECT), bfd;
	struct set s = make_set(0, 11, 6, true);
	char path[64];

	ck_assert_int_ne(fcntl(fd, F_GETFL) & O_DIRECT, 0);
	s.ext[10].len = 123;
	ck_assert_int_eq(sm_writeback(fd, s.ext, s.n, SM_WB_DURABLE), 0);
	for (size_t i = 0; i < s.n; i++)
		ck_assert_int_eq(s.ext[i].err, 0);
	ck_assert_int_eq(st_size(fd), 10 * PS + 123);
	/* check through a buffered descriptor: pread into unaligned memory */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	bfd = open(path, O_RDONLY);
	ck_assert_int_ge(bfd, 0);
	ck_assert(st_file_is(bfd, 0, 10 * PS + 123, 6));
	ck_assert_int_ne(fcntl(fd, F_GETFL) & O_DIRECT, 0);
	ck_assert_uint_eq(st_stats().writeback_engine, (unsigned)expected_engine_for(true));
	free_set(&s);
}
END_TEST

START_TEST(durable_with_nothing_to_write)
{
	int fd = st_file(PS);

	ck_assert_int_eq(sm_writeback(fd, NULL, 0, SM_WB_DURABLE), 0);
	ck_assert_uint_eq(st_stats().write_calls, 0);
	ck_assert_int_eq(sm_writeback(-1, NULL, 0, SM_WB_DURABLE), EBADF);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("writeback");
	TCase *tc = tcase_create("engine");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, contiguous_is_one_write);
	tcase_add_test(tc, gather_into_writev);
	tcase_add_test(tc, iov_max_splits);
	tcase_add_test(tc, scattered_many_waves);
	tcase_add_test(tc, errors_per_extent);
	tcase_add_test(tc, bad_fd_fails_every_extent);
	tcase_add_test(tc, o_direct_with_tail);
	tcase_add_test(tc, durable_with_nothing_to_write);
	suite_add_tcase(s, tc);
	return st_run(s);
}
