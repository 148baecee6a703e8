/* SPDX-License-Identifier: MIT */
/* Another process truncates a shadowed file.
 *
 * 1. At deregistration, stores that reached the shadow after its last
 *    writeback are merged into the file after the file mapping comes back.
 *    If the file shrank meanwhile, those pages are past EOF: touching them
 *    through a file mapping raises SIGBUS.  (The engine once did, in the
 *    application, when the shrink came after its size check.)  Forced
 *    deterministically: the test interposes the libc calls the library
 *    makes there (mremap, fstat64, process_vm_readv: a definition in the
 *    executable wins over libc's) and does the late store and the
 *    truncate at the chosen moment.  (A shrink between the engine's
 *    fault-free read of the page and its compare-and-swap merge, which
 *    keeps racing stores, still raises SIGBUS: README, Limits.)
 * 2. A truncate, seen by a sync point, followed by a regrow: pages the
 *    shadow did not change since must not bring the pre-truncate data back
 *    (a MAP_SHARED mapping sees zeros there); pages changed since are
 *    written.  (A forced rewrite after a failed flush once did bring it
 *    back.) */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "inject.h"
#include "tutil.h"

/* ------------------------------------------------------------ the hooks */

/* Exported (the build hides symbols by default): libsafe_mr.so's calls
 * bind to these. */
#define HOOK __attribute__((visibility("default")))

enum when { AT_NONE, AT_SIZE_CHECK, AT_READ };

static struct {
	void *addr;		/* restore of this address: do the late store */
	size_t late_off;	/* where (from addr) */
	int fd;			/* the test's descriptor of the file */
	ino_t ino;
	off_t to;		/* truncate to this size ... */
	enum when when;		/* ... at this call, once armed */
	bool armed;
	int truncated;		/* how often it happened */
} hk;

static void hook_truncate(enum when now)
{
	if (!hk.armed || (hk.when != now && !(hk.when == AT_SIZE_CHECK && now == AT_READ)))
		return;
	hk.armed = false;
	ck_assert_int_eq(ftruncate(hk.fd, hk.to), 0);
	hk.truncated++;
}

/* The restore moves the file mapping back with the mremap system call
 * (MREMAP_FIXED, through syscall(): lib/sys.c): the shadow is still there
 * until the real call, so the store is "late". */
/* Six arguments are read whatever the caller passed (their registers, and
 * for the sixth the caller's stack): harmless, but AddressSanitizer would
 * call the sixth an underflow. */
HOOK __attribute__((no_sanitize_address)) long syscall(long nr, ...)
{
	static long (*next)(long, ...);
	long a[6];
	va_list ap;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (!next)
		next = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	if (nr == SYS_mremap && (a[3] & MREMAP_FIXED) && hk.addr && (void *)a[4] == hk.addr) {
		hk.addr = NULL;
		memcpy((uint8_t *)a[4] + hk.late_off, "late", 4);
		hk.armed = true;
	}
	return next(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* The size check right after it: the file shrinks just after the answer. */
HOOK int fstat64(int fd, struct stat64 *st)
{
	int r = (int)syscall(SYS_fstat, fd, st);

	if (r == 0 && st->st_ino == hk.ino)
		hook_truncate(AT_SIZE_CHECK);
	return r;
}

HOOK ssize_t process_vm_readv(pid_t pid, const struct iovec *l, unsigned long ln,
			 const struct iovec *r, unsigned long rn, unsigned long flags)
{
	hook_truncate(AT_READ);
	return syscall(SYS_process_vm_readv, pid, l, ln, r, rn, flags);
}


/* ------------------------------------------------- 1: merge after restore */

/* The merge runs only where other threads may be writing: have one. */
static void *idle(void *arg)
{
	char c;

	return (void *)(intptr_t)read(*(int *)arg, &c, 1);
}

struct other_thread {
	int pipe[2];
	pthread_t t;
};

static void other_thread_start(struct other_thread *o)
{
	ck_assert_int_eq(pipe(o->pipe), 0);
	ck_assert_int_eq(pthread_create(&o->t, NULL, idle, &o->pipe[0]), 0);
}

static void other_thread_stop(struct other_thread *o)
{
	close(o->pipe[1]);
	pthread_join(o->t, NULL);
	close(o->pipe[0]);
}

static void late_merge_shrink(enum when when)
{
	char path[600];
	int fd = tu_file(4 * ps, 11, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	struct other_thread o;
	struct stat st;

	ck_assert_ptr_nonnull(mr);
	ck_assert(tu_shadowed(p + 3 * ps));
	other_thread_start(&o);
	ck_assert_int_eq(fake_nic_write(mr, 8, "head", 4), 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	hk = (typeof(hk)){ .addr = p, .late_off = 3 * ps + 100, .fd = fd, .ino = st.st_ino,
			   .to = (off_t)ps, .when = when };
	/* pages 1-3 are past EOF when the late store to page 3 is merged */
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	hk.ino = 0;
	ck_assert_int_eq(hk.truncated, 1);
	ck_assert_int_eq(tu_file_size(path), (off_t)ps);	/* never extended */
	tu_assert_file(path, 8, "head", 4);
	ck_assert(tu_mapped_from(p, path));
	ck_assert_mem_eq(p + 8, "head", 4);
	other_thread_stop(&o);
	close(fd);
}

START_TEST(shrink_after_size_check)
{
	late_merge_shrink(AT_SIZE_CHECK);
}
END_TEST


/* A late store within EOF is still merged (the shrink cuts other pages). */
START_TEST(late_store_within_eof_kept)
{
	char path[600];
	int fd = tu_file(4 * ps, 12, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	struct other_thread o;
	struct stat st;

	ck_assert_ptr_nonnull(mr);
	other_thread_start(&o);
	ck_assert_int_eq(fstat(fd, &st), 0);
	hk = (typeof(hk)){ .addr = p, .late_off = ps + 50, .fd = fd, .ino = st.st_ino,
			   .to = (off_t)(2 * ps), .when = AT_SIZE_CHECK };
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	hk.ino = 0;
	ck_assert_int_eq(hk.truncated, 1);
	ck_assert_int_eq(tu_file_size(path), (off_t)(2 * ps));
	tu_assert_file(path, ps + 50, "late", 4);
	tu_assert_file_pattern(path, ps + 54, 16, 12);
	other_thread_stop(&o);
	close(fd);
}
END_TEST

/* ------------------------------------------- 2: truncate, then regrow */

/* A file of 4 pages, registered; the NIC writes "old!" into every page and
 * it is written back (durably unless `fail_flush`: then the flush fails
 * and every page counts as lost: forced). */
struct reg {
	char path[600];
	int fd, other;		/* other: another descriptor, as another process */
	uint8_t *p;
	struct ibv_mr *mr;
};

static void reg_written(struct reg *r, unsigned int seed, bool fail_flush)
{
	r->fd = tu_file(4 * ps, seed, r->path, sizeof(r->path));
	r->other = open(r->path, O_RDWR);
	ck_assert_int_ge(r->other, 0);
	r->p = tu_map(r->fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	if (fail_flush)
		ck_assert_msg(inj_install(), "seccomp user notification: %s", strerror(errno));
	r->mr = safe_mr_reg_mr(tu_pd, r->p, 4 * ps, RW);
	ck_assert_ptr_nonnull(r->mr);
	for (size_t i = 0; i < 4; i++)
		ck_assert_int_eq(fake_nic_write(r->mr, i * ps + 16, "old!", 4), 0);
	if (fail_flush) {
		inj_arm(r->fd, INJ_FLUSH, 0, 1, EIO);
		ck_assert_int_eq(safe_mr_sync(r->mr, 0, 0, SAFE_MR_SYNC_DURABLE), EIO);
		inj_disarm();
	} else {
		ck_assert_int_eq(safe_mr_sync(r->mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	}
	tu_assert_file(r->path, 3 * ps + 16, "old!", 4);
}

static void assert_zeros(const char *path, off_t off, size_t len)
{
	uint8_t *z = calloc(1, len);

	tu_assert_file(path, off, z, len);
	free(z);
}

static void reg_done(struct reg *r)
{
	ck_assert_int_eq(safe_mr_dereg_mr(r->mr), 0);
	close(r->other);
	close(r->fd);
}

/* Written and clean: nothing comes back at any sync point. */
START_TEST(regrow_clean_pages_stay_zero)
{
	struct reg r;

	reg_written(&r, 21, false);
	ck_assert_int_eq(ftruncate(r.other, (off_t)ps), 0);
	ck_assert_int_eq(ftruncate(r.other, (off_t)(4 * ps)), 0);
	ck_assert_int_eq(safe_mr_msync(r.p, 4 * ps, MS_SYNC), 0);
	ck_assert_int_eq(safe_mr_fsync(r.fd), 0);
	ck_assert_int_eq(safe_mr_sync(r.mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	assert_zeros(r.path, (off_t)ps, 3 * ps);
	reg_done(&r);
	assert_zeros(r.path, (off_t)ps, 3 * ps);
	tu_assert_file(r.path, 16, "old!", 4);
}
END_TEST

/* The flush failed: pages 0-3 are forced.  A sync point sees the file
 * shrunk to one page; after the regrow pages 1-3 must stay zero, and page
 * 0 (within EOF throughout) is still rewritten. */
START_TEST(regrow_forced_pages_stay_zero)
{
	struct reg r;

	reg_written(&r, 22, true);
	ck_assert_int_eq(ftruncate(r.other, (off_t)ps), 0);
	ck_assert_int_eq(safe_mr_sync(r.mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert_int_eq(ftruncate(r.other, (off_t)(4 * ps)), 0);
	ck_assert_int_eq(safe_mr_sync(r.mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	assert_zeros(r.path, (off_t)ps, 3 * ps);
	tu_assert_file(r.path, 16, "old!", 4);
	reg_done(&r);
	assert_zeros(r.path, (off_t)ps, 3 * ps);
}
END_TEST

/* The same when the sync point that sees the shrink is the application's
 * fsync (on the other descriptor), and the regrow's sync is msync. */
START_TEST(regrow_forced_fsync_msync)
{
	struct reg r;

	reg_written(&r, 23, true);
	ck_assert_int_eq(ftruncate(r.other, (off_t)(2 * ps)), 0);
	ck_assert_int_eq(safe_mr_fsync(r.other), 0);
	ck_assert_int_eq(ftruncate(r.other, (off_t)(4 * ps)), 0);
	ck_assert_int_eq(safe_mr_msync(r.p, 4 * ps, MS_SYNC), 0);
	assert_zeros(r.path, (off_t)(2 * ps), 2 * ps);
	tu_assert_file(r.path, ps + 16, "old!", 4);
	reg_done(&r);
	assert_zeros(r.path, (off_t)(2 * ps), 2 * ps);
}
END_TEST

/* Changed but not yet written when the file shrank: cut with the file (as
 * truncate drops a dirty page cache page), not written after the regrow. */
START_TEST(regrow_unwritten_change_cut)
{
	struct reg r;

	reg_written(&r, 24, false);
	ck_assert_int_eq(fake_nic_write(r.mr, 2 * ps + 32, "cut!", 4), 0);
	ck_assert_int_eq(ftruncate(r.other, (off_t)ps), 0);
	ck_assert_int_eq(safe_mr_sync(r.mr, 0, 0, 0), 0);
	ck_assert_int_eq(ftruncate(r.other, (off_t)(4 * ps)), 0);
	ck_assert_int_eq(safe_mr_sync(r.mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	assert_zeros(r.path, (off_t)ps, 3 * ps);
	reg_done(&r);
	assert_zeros(r.path, (off_t)ps, 3 * ps);
}
END_TEST

/* Changed after the shrink was seen: written once the file is long enough
 * again (the whole page: page granularity), the others stay zero. */
START_TEST(regrow_change_after_shrink_written)
{
	struct reg r;

	reg_written(&r, 25, true);
	ck_assert_int_eq(ftruncate(r.other, (off_t)ps), 0);
	ck_assert_int_eq(safe_mr_sync(r.mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert_int_eq(fake_nic_write(r.mr, 2 * ps + 32, "new!", 4), 0);
	ck_assert_int_eq(ftruncate(r.other, (off_t)(4 * ps)), 0);
	ck_assert_int_eq(safe_mr_sync(r.mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	tu_assert_file(r.path, 2 * ps + 32, "new!", 4);
	tu_assert_file(r.path, 2 * ps + 16, "old!", 4);	/* the shadow's page */
	assert_zeros(r.path, (off_t)ps, ps);
	assert_zeros(r.path, (off_t)(3 * ps), ps);
	reg_done(&r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("truncate");
	TCase *tc = tu_tcase("late_merge");

	tcase_add_test(tc, shrink_after_size_check);
	tcase_add_test(tc, late_store_within_eof_kept);
	suite_add_tcase(s, tc);
	tc = tu_tcase("regrow");
	tcase_add_test(tc, regrow_clean_pages_stay_zero);
	tcase_add_test(tc, regrow_forced_pages_stay_zero);
	tcase_add_test(tc, regrow_forced_fsync_msync);
	tcase_add_test(tc, regrow_unwritten_change_cut);
	tcase_add_test(tc, regrow_change_after_shrink_written);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
