/* SPDX-License-Identifier: MIT */
/* After a failed flush everything written since the last good one counts
 * as lost (Linux may have dropped those pages and cleared the error): the
 * retry writes all of it again.  And errors at sync points that cannot
 * return them (munmap, the release after deregistration) surface at the
 * next sync point of the file.  Failures are real failing system calls
 * (seccomp user notification, inject.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "inject.h"
#include "tutil.h"

#define NP 256		/* pages mapped */
#define NW 200		/* pages the NIC changes: more than one writeback slice */

static void nic_fill(struct ibv_mr *mr, uint8_t v)
{
	uint8_t *buf = malloc(ps);

	for (size_t i = 0; i < NW; i++) {
		memset(buf, v + (int)i, ps);
		ck_assert_int_eq(fake_nic_write(mr, i * ps, buf, ps), 0);
	}
	free(buf);
}

static void assert_file_nic(const char *path, uint8_t v)
{
	uint8_t *want = malloc(ps);

	for (size_t i = 0; i < NW; i++) {
		memset(want, v + (int)i, ps);
		tu_assert_file(path, (off_t)(i * ps), want, ps);
	}
	free(want);
}

static uint64_t written(void)
{
	return tu_stats().bytes_written_back;
}

static void setup_inject(void)
{
	ck_assert_msg(inj_install(), "seccomp user notification: %s", strerror(errno));
}

/* A registered mapping of a new file whose first NW pages the NIC changed;
 * failures injected from now on. */
struct setup {
	char path[600];
	int fd;
	uint8_t *p;
	struct ibv_mr *mr;
};

static void registered(struct setup *t, unsigned int seed)
{
	t->fd = tu_file(NP * ps, seed, t->path, sizeof(t->path));
	t->p = tu_map(t->fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	setup_inject();
	t->mr = safe_mr_reg_mr(tu_pd, t->p, NP * ps, RW);
	ck_assert_ptr_nonnull(t->mr);
	nic_fill(t->mr, (uint8_t)seed);
}

/* The durable sync's final fdatasync fails: all 200 pages, not the last
 * slice only, are written again by the retry. */
START_TEST(durable_retry_rewrites_everything)
{
	struct setup t;
	uint64_t before;

	registered(&t, 1);
	inj_arm(t.fd, INJ_FLUSH, 0, 1, EIO);
	ck_assert_int_eq(safe_mr_sync(t.mr, 0, 0, SAFE_MR_SYNC_DURABLE), EIO);
	inj_disarm();
	before = written();
	ck_assert_int_eq(safe_mr_sync(t.mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert_uint_ge(written() - before, NW * ps);
	ck_assert_int_eq(safe_mr_dereg_mr(t.mr), 0);
	assert_file_nic(t.path, 1);
}
END_TEST

/* msync(MS_ASYNC) wrote the pages to the page cache; the application's
 * fsync fails: the next fsync writes them all again. */
START_TEST(fsync_after_async_writeback)
{
	struct setup t;
	uint64_t before;

	registered(&t, 2);
	before = written();
	ck_assert_int_eq(safe_mr_msync(t.p, NP * ps, MS_ASYNC), 0);
	ck_assert_uint_ge(written() - before, NW * ps);
	inj_arm(t.fd, INJ_FLUSH, 0, 1, EIO);
	ck_assert_int_eq(safe_mr_fsync(t.fd), -1);
	ck_assert_int_eq(errno, EIO);
	inj_disarm();
	before = written();
	ck_assert_int_eq(safe_mr_fsync(t.fd), 0);
	ck_assert_uint_ge(written() - before, NW * ps);
	ck_assert_int_eq(safe_mr_dereg_mr(t.mr), 0);
	assert_file_nic(t.path, 2);
}
END_TEST

/* The same for file-range registrations: a lazy sync, a failed durable
 * one, then the retry writes everything again. */
START_TEST(file_range_retry)
{
	char path[600];
	int fd = tu_file(NP * ps, 5, path, sizeof(path));
	struct safe_mr_file_region *r;
	uint64_t before;

	setup_inject();
	r = safe_mr_file_reg(tu_pd, fd, 0, NP * ps, RW);
	ck_assert_ptr_nonnull(r);
	nic_fill(r->mr, 3);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, 0), 0);
	inj_arm(fd, INJ_FLUSH, 0, 1, EIO);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE), EIO);
	inj_disarm();
	before = written();
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert_uint_ge(written() - before, NW * ps);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	assert_file_nic(path, 3);
}
END_TEST

/* munmap of a registered range whose writeback fails: munmap succeeded
 * (the mapping is gone), so it returns 0; the data stays with the engine
 * and the next sync point of the file reports the error, then writes it. */
START_TEST(munmap_error_surfaces_at_fsync)
{
	struct setup t;

	registered(&t, 4);
	inj_arm(t.fd, INJ_WRITE, 0, 1 << 20, EIO);
	ck_assert_int_eq(safe_mr_munmap(t.p, NP * ps), 0);
	ck_assert_int_eq(safe_mr_fsync(t.fd), -1);
	ck_assert_int_eq(errno, EIO);
	inj_disarm();
	ck_assert_int_eq(safe_mr_fsync(t.fd), 0);
	assert_file_nic(t.path, 4);
	ck_assert_int_eq(safe_mr_dereg_mr(t.mr), 0);
}
END_TEST

/* Deregistration: the durable sync succeeds, the real deregistration
 * succeeds, then the release's flush fails.  The MR is gone, so dereg
 * returns 0; the release is finished by the next sync point of the file,
 * which reports the error while the device fails and succeeds (and puts
 * the file mapping back) once it works. */
START_TEST(release_error_surfaces_at_fsync)
{
	struct setup t;

	registered(&t, 5);
	/* the sync's flush passes, the release's fails, and every one after */
	inj_arm(t.fd, INJ_FLUSH, 1, 1 << 20, EIO);
	ck_assert_int_eq(safe_mr_dereg_mr(t.mr), 0);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
	ck_assert_int_eq(safe_mr_fsync(t.fd), -1);
	ck_assert_int_eq(errno, EIO);
	tu_assert_shadow_mask(t.p, 4, 0xf);	/* still the shadow: not finished */
	inj_disarm();
	ck_assert_int_eq(safe_mr_fsync(t.fd), 0);
	assert_file_nic(t.path, 5);
	tu_assert_shadow_mask(t.p, 4, 0);	/* finished: the file mapping is back */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("flush_retry");
	TCase *tc = tu_tcase("flush_retry");

	tcase_add_test(tc, durable_retry_rewrites_everything);
	tcase_add_test(tc, fsync_after_async_writeback);
	tcase_add_test(tc, file_range_retry);
	tcase_add_test(tc, munmap_error_surfaces_at_fsync);
	tcase_add_test(tc, release_error_surfaces_at_fsync);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
