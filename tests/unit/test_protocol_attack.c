/* SPDX-License-Identifier: MIT */
/* Review of 834a9af (safe_mr_register/safe_mr_deregister): defects found by
 * attacking the protocol.  Each test fails on 834a9af.
 *
 *  handle_reuse_during_dereg: safe_mr_deregister releases "the holds of
 *    handle" AFTER dereg freed the handle; a registration on another thread
 *    that gets the same address back (malloc reuses the freed ibv_mr / 1.0
 *    MR) between dereg and the release loses its shadows while its NIC
 *    still pins them.  Simulated deterministically: the "other thread"
 *    runs inside dereg, after the free.
 *  msync_inside_callback / exit_inside_callback: the callbacks run with
 *    sm_api_depth raised, so every sync point they reach is treated as a
 *    signal handler that interrupted safe_mr: msync of another
 *    registration's pages returns EDEADLK and writes nothing, and exit()
 *    from a callback drops every shadowed change.
 *  stats_shadowed_once: safe_mr_stats' `shadowed` ("of them, needed a
 *    shadow") counts holds, not registrations: one registration of three
 *    file-backed iovecs counts 3 (more than `registrations`), and a
 *    read-only retry after a shadowed first attempt counts twice.
 *  access_internal_bits: the engine's private acquire flags live in the
 *    access word (SM_ACQUIRE_NOTHING = 1u << 30, SM_ACQUIRE_DROP_EMPTY =
 *    1u << 31); a caller's access with bit 30 set is registered writable
 *    over the file's own pages, nothing shadowed.
 *  shadowed_bytes_overlap: *shadowed ("the number of bytes that were
 *    shadowed") sums the holds, so iovecs that overlap count their common
 *    pages once per iovec: 3 shadowed pages reported as 5. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

#define NP 4

/* ------------------------------------------------ handle reuse */

struct reuse {
	void *obj;		/* the "ibv_mr" of registration A, freed by dereg */
	uint8_t *pb;		/* registration B's buffer */
	size_t lenb;
	void *hb;		/* B's handle */
	int regb_err;
};

static int reg_a(void *arg, void **handle)
{
	struct reuse *r = arg;

	*handle = r->obj;
	return 0;
}

/* B's registration gets the freed object's address back, as malloc does. */
static int reg_b(void *arg, void **handle)
{
	struct reuse *r = arg;

	*handle = r->obj;
	return 0;
}

static int dereg_a(void *arg, void *handle)
{
	struct reuse *r = arg;
	struct iovec iov = { r->pb, r->lenb };

	ck_assert_ptr_eq(handle, r->obj);
	/* The NIC library frees its MR; "another thread" registers now. */
	r->regb_err = safe_mr_register(&iov, 1, RW, reg_b, r, &r->hb, NULL);
	return 0;
}

static int dereg_plain(void *arg, void *handle)
{
	(void)arg;
	(void)handle;
	return 0;
}

START_TEST(handle_reuse_during_dereg)
{
	char pa_path[600], pb_path[600];
	int fa = tu_file(NP * ps, 21, pa_path, sizeof(pa_path));
	int fb = tu_file(NP * ps, 22, pb_path, sizeof(pb_path));
	uint8_t *pa = tu_map(fa, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *pb = tu_map(fb, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct iovec iova = { pa, NP * ps };
	struct reuse r = { .obj = &r, .pb = pb, .lenb = NP * ps };
	void *ha = NULL;

	ck_assert_int_eq(safe_mr_register(&iova, 1, RW, reg_a, &r, &ha, NULL), 0);
	tu_assert_shadow_mask(pa, NP, 0xf);
	ck_assert_int_eq(safe_mr_deregister(ha, dereg_a, &r), 0);
	ck_assert_int_eq(r.regb_err, 0);
	ck_assert_ptr_eq(r.hb, r.obj);
	tu_assert_shadow_mask(pa, NP, 0);
	/* B is registered: the NIC pins B's shadow, so B must still be
	 * shadowed (else the NIC writes pages the file never sees). */
	tu_assert_shadow_mask(pb, NP, 0xf);
	memcpy(pb + ps, "nicB", 4);	/* "B's NIC writes" */
	ck_assert_int_eq(safe_mr_deregister(r.hb, dereg_plain, NULL), 0);
	tu_assert_file(pb_path, ps, "nicB", 4);
	munmap(pa, NP * ps);
	munmap(pb, NP * ps);
	close(fa);
	close(fb);
}
END_TEST

/* ------------------------------------ sync points inside callbacks */

struct other {
	uint8_t *p;
	size_t len;
	int msync_ret, msync_errno;
	int handle;
};

static int reg_msync(void *arg, void **handle)
{
	struct other *o = arg;

	/* A wrapper that flushes the application's file before it pins
	 * another buffer: an ordinary msync of another registration. */
	errno = 0;
	o->msync_ret = safe_mr_msync(o->p, o->len, MS_SYNC);
	o->msync_errno = errno;
	*handle = &o->handle;
	return 0;
}

static int reg_keep(void *arg, void **handle)
{
	*handle = arg;
	return 0;
}

START_TEST(msync_inside_callback)
{
	char path[600];
	int fd = tu_file(NP * ps, 23, path, sizeof(path));
	int fd2 = tu_file(NP * ps, 24, NULL, 0);
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *q = tu_map(fd2, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct iovec iov = { p, NP * ps }, iovq = { q, NP * ps };
	struct other o = { .p = p, .len = NP * ps };
	int keep;
	void *h, *hq;

	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, reg_keep, &keep, &h, NULL), 0);
	memcpy(p + 2 * ps, "cpu!", 4);
	ck_assert_int_eq(safe_mr_register(&iovq, 1, RW, reg_msync, &o, &hq, NULL), 0);
	ck_assert_msg(o.msync_ret == 0, "msync inside reg: %d (%s)", o.msync_ret,
		      strerror(o.msync_errno));
	tu_assert_file(path, 2 * ps, "cpu!", 4);
	ck_assert_int_eq(safe_mr_deregister(hq, dereg_plain, NULL), 0);
	ck_assert_int_eq(safe_mr_deregister(h, dereg_plain, NULL), 0);
	munmap(p, NP * ps);
	munmap(q, NP * ps);
	close(fd);
	close(fd2);
}
END_TEST

static int reg_exit(void *arg, void **handle)
{
	(void)arg;
	(void)handle;
	/* The NIC library gives up: exit is a sync point (safe_mr.h). */
	exit(0);
}

START_TEST(exit_inside_callback)
{
	char path[600];
	int fd = tu_file(NP * ps, 25, path, sizeof(path));
	int fd2 = tu_file(NP * ps, 26, NULL, 0);
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint8_t *p = mmap(NULL, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		uint8_t *q = mmap(NULL, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
		struct iovec iov = { p, NP * ps }, iovq = { q, NP * ps };
		int keep;
		void *h, *hq;

		if (p == MAP_FAILED || q == MAP_FAILED ||
		    safe_mr_register(&iov, 1, RW, reg_keep, &keep, &h, NULL) || !tu_shadowed(p))
			_exit(3);
		memcpy(p + ps, "exit", 4);	/* shadowed: written at exit */
		safe_mr_register(&iovq, 1, RW, reg_exit, NULL, &hq, NULL);
		_exit(4);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	tu_assert_file(path, ps, "exit", 4);
	close(fd);
	close(fd2);
}
END_TEST

/* ------------------------------------------------------- statistics */

static int reg_efault_first(void *arg, void **handle)
{
	int *calls = arg;

	if ((*calls)++ == 0)
		return EFAULT;	/* a NIC that pins everything writable */
	*handle = arg;
	return 0;
}

START_TEST(stats_shadowed_once)
{
	int fd = tu_file(NP * ps, 27, NULL, 0);
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	/* Three iovecs, three VMAs' worth of holds: pages 0, 2, 3. */
	struct iovec iov[3] = { { p, ps }, { p + 2 * ps, ps }, { p + 3 * ps, ps } };
	struct safe_mr_stats a = tu_stats(), b;
	int keep, calls = 0;
	void *h;

	ck_assert_int_eq(safe_mr_register(iov, 3, RW, reg_keep, &keep, &h, NULL), 0);
	tu_assert_shadow_mask(p, NP, 0xd);
	b = tu_stats();
	ck_assert_uint_eq(b.registrations - a.registrations, 1);
	ck_assert_uint_eq(b.shadowed - a.shadowed, 1);
	ck_assert_int_eq(safe_mr_deregister(h, dereg_plain, NULL), 0);

	/* Read-only over a writable mapping: shadowed at the first attempt
	 * too; refused once, registered at the retry: one registration. */
	a = tu_stats();
	ck_assert_int_eq(safe_mr_register(iov, 1, RO, reg_efault_first, &calls, &h, NULL), 0);
	ck_assert_int_eq(calls, 2);
	b = tu_stats();
	ck_assert_uint_eq(b.registrations - a.registrations, 1);
	ck_assert_uint_eq(b.shadowed - a.shadowed, 1);
	ck_assert_int_eq(safe_mr_deregister(h, dereg_plain, NULL), 0);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* ------------------------------------------ access bits of the engine */

START_TEST(access_internal_bits)
{
	int fd = tu_file(NP * ps, 28, NULL, 0);
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct iovec iov = { p, NP * ps };
	int keep;
	void *h;
	int r = safe_mr_register(&iov, 1, RW | (1u << 30), reg_keep, &keep, &h, NULL);

	/* Refused, or shadowed like any writable registration. */
	ck_assert_msg(r == EINVAL || tu_shadowed(p),
		      "access | 1 << 30: registered (%d) over the file's pages", r);
	if (!r)
		ck_assert_int_eq(safe_mr_deregister(h, dereg_plain, NULL), 0);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* ------------------------------------------ overlapping iovecs */

START_TEST(shadowed_bytes_overlap)
{
	char path[600];
	int fd = tu_file(NP * ps, 29, path, sizeof(path));
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct iovec iov[3] = { { p, 2 * ps }, { p + ps, 2 * ps }, { p + 100, ps } };
	size_t shadowed = 0;
	int keep;
	void *h;

	ck_assert_int_eq(safe_mr_register(iov, 3, RW, reg_keep, &keep, &h, &shadowed), 0);
	tu_assert_shadow_mask(p, NP, 0x7);
	ck_assert_uint_eq(shadowed, 3 * ps);
	memcpy(p + 2 * ps + 1, "ovl", 3);
	ck_assert_int_eq(safe_mr_deregister(h, dereg_plain, NULL), 0);
	tu_assert_shadow_mask(p, NP, 0);
	tu_assert_file(path, 2 * ps + 1, "ovl", 3);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("protocol_attack");
	TCase *tc = tu_tcase("protocol_attack");

	tcase_add_test(tc, handle_reuse_during_dereg);
	tcase_add_test(tc, msync_inside_callback);
	tcase_add_test(tc, exit_inside_callback);
	tcase_add_test(tc, stats_shadowed_once);
	tcase_add_test(tc, access_internal_bits);
	tcase_add_test(tc, shadowed_bytes_overlap);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
