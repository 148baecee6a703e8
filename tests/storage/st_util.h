/* SPDX-License-Identifier: MIT */
/* Helpers shared by the storage tests (file-range API, writeback engine). */
#ifndef ST_UTIL_H
#define ST_UTIL_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <infiniband/verbs.h>

#include "safe_mr.h"

#define PS ((size_t)sysconf(_SC_PAGESIZE))
#define RW_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

/* A protection domain on the first (fake) device. */
static inline struct ibv_pd *st_pd(void)
{
	struct ibv_device **l = ibv_get_device_list(NULL);
	struct ibv_context *ctx;
	struct ibv_pd *pd;

	ck_assert_msg(l && l[0], "no verbs device (fake libibverbs not loaded?)");
	ctx = ibv_open_device(l[0]);
	ck_assert_ptr_nonnull(ctx);
	pd = ibv_alloc_pd(ctx);
	ck_assert_ptr_nonnull(pd);
	ibv_free_device_list(l);
	return pd;
}

/* The tests' protection domain: a checked fixture makes and frees it. */
static struct ibv_pd *pd __attribute__((unused));

static inline void st_setup(void)
{
	pd = st_pd();
}

static inline void st_teardown(void)
{
	struct ibv_context *ctx = pd->context;

	ck_assert_int_eq(ibv_dealloc_pd(pd), 0);
	ck_assert_int_eq(ibv_close_device(ctx), 0);
}

/* Byte i of the reference content of generation `gen`. */
static inline char st_byte(size_t i, unsigned int gen)
{
	return (char)((i * 131 + (i >> 12) * 7 + gen * 29 + 1) & 0xff);
}

static inline void st_fill(char *buf, size_t off, size_t len, unsigned int gen)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = st_byte(off + i, gen);
}

/* A new file of `size` bytes of generation-0 content, unlinked already:
 * in $TMPDIR (a real writeback filesystem, not tmpfs, in CI) or dir. */
static inline int st_file_in(const char *dir, size_t size, int extra_flags)
{
	char path[4096];
	char *buf = malloc(size ? size : 1);
	int fd, wfd;

	snprintf(path, sizeof(path), "%s/st_XXXXXX", dir);
	wfd = mkstemp(path);
	ck_assert_int_ge(wfd, 0);
	st_fill(buf, 0, size, 0);
	ck_assert_int_eq(pwrite(wfd, buf, size, 0), (ssize_t)size);
	fd = open(path, O_RDWR | extra_flags);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	close(wfd);
	free(buf);
	return fd;
}

static inline const char *st_dir(void)
{
	const char *d = getenv("ST_DIR");

	return d && *d ? d : "/tmp";
}

static inline int st_file(size_t size)
{
	return st_file_in(st_dir(), size, 0);
}

/* Does the file hold generation `gen` content at [off, off+len)? */
static inline int st_file_is(int fd, size_t off, size_t len, unsigned int gen)
{
	char *buf = malloc(len), *want = malloc(len);
	int same;

	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	st_fill(want, off, len, gen);
	same = !memcmp(buf, want, len);
	free(buf);
	free(want);
	return same;
}

static inline struct safe_mr_stats st_stats(void)
{
	struct safe_mr_stats s;

	ck_assert_int_eq(safe_mr_stats(&s), 0);
	return s;
}

static inline off_t st_size(int fd)
{
	off_t end = lseek(fd, 0, SEEK_END);

	ck_assert_int_ge(end, 0);
	return end;
}

/* Run a Check suite; the exit status is what meson reads. */
static inline int st_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
