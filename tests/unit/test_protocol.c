/* SPDX-License-Identifier: MIT */
/* safe_mr_register/safe_mr_deregister: the one register/deregister protocol
 * of every door, driven with callbacks of the test's own ("a NIC library"):
 * shadows are in place when reg runs, undone when it fails, the read-only
 * EFAULT/EOPNOTSUPP retry shadows even PROT_READ mappings, a failed
 * writeback keeps the registration, and a failed dereg keeps everything. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "inject.h"
#include "tutil.h"

#define NP 4

/* The test's "NIC library": what its registration saw, what it returns. */
struct nic {
	const struct iovec *iov;
	size_t iovcnt;
	int calls;
	int fail_first;		/* errno for the first call(s) whose pages are not all shadowed */
	int fail_always;	/* errno for every call */
	bool saw_shadow[8];	/* per iovec: its first page was shadowed at the last call */
	int handle;		/* the address is the handle */
	int dereg_calls;
	int dereg_err;
};

static int nic_reg(void *arg, void **handle)
{
	struct nic *n = arg;
	bool all = true;

	n->calls++;
	for (size_t i = 0; i < n->iovcnt; i++) {
		n->saw_shadow[i] = tu_shadowed(n->iov[i].iov_base);
		all = all && n->saw_shadow[i];
	}
	if (n->fail_always)
		return n->fail_always;
	if (n->fail_first && !all)
		return n->fail_first;
	*handle = &n->handle;
	return 0;
}

static int nic_dereg(void *arg, void *handle)
{
	struct nic *n = arg;

	ck_assert_ptr_eq(handle, &n->handle);
	n->dereg_calls++;
	return n->dereg_err;
}

START_TEST(writable_shadowed_during_reg_and_written_back)
{
	char path[600];
	int fd = tu_file(NP * ps, 11, path, sizeof(path));
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *anon = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct iovec iov[3] = { { p, 2 * ps }, { anon, ps }, { p + 3 * ps, 0 } };
	struct nic n = { .iov = iov, .iovcnt = 2 };
	size_t shadowed = 1;
	void *h = NULL;

	ck_assert_int_eq(safe_mr_register(iov, 3, RW, nic_reg, &n, &h, &shadowed), 0);
	ck_assert_int_eq(n.calls, 1);
	ck_assert(n.saw_shadow[0]);		/* before the NIC pins it */
	ck_assert(!n.saw_shadow[1]);		/* anonymous: nothing to do */
	ck_assert_ptr_eq(h, &n.handle);
	ck_assert_uint_eq(shadowed, 2 * ps);
	tu_assert_shadow_mask(p, NP, 0x3);
	memcpy(p + ps + 5, "nic", 3);			/* "the NIC writes" */
	ck_assert_int_eq(safe_mr_sync_owner(h, 0), 0);	/* the handle names it */
	tu_assert_file(path, ps + 5, "nic", 3);
	memcpy(p + 7, "late", 4);
	ck_assert_int_eq(safe_mr_deregister(h, nic_dereg, &n), 0);
	ck_assert_int_eq(n.dereg_calls, 1);
	tu_assert_file(path, 7, "late", 4);
	tu_assert_shadow_mask(p, NP, 0);
	munmap(p, NP * ps);
	munmap(anon, ps);
	close(fd);
}
END_TEST

START_TEST(failed_reg_undoes_shadows)
{
	char path[600];
	int fd = tu_file(NP * ps, 12, path, sizeof(path));
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct iovec iov = { p, NP * ps };
	struct nic n = { .iov = &iov, .iovcnt = 1, .fail_always = ENOMEM };
	void *h = (void *)1;

	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, nic_reg, &n, &h, NULL), ENOMEM);
	ck_assert(n.saw_shadow[0]);
	ck_assert_int_eq(n.calls, 1);		/* writable: no retry */
	ck_assert_ptr_null(h);
	tu_assert_shadow_mask(p, NP, 0);
	ck_assert(tu_mapped_from(p, path));
	/* Writable EFAULT is the caller's: no retry either. */
	n.fail_always = EFAULT;
	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, nic_reg, &n, &h, NULL), EFAULT);
	ck_assert_int_eq(n.calls, 2);
	tu_assert_shadow_mask(p, NP, 0);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* A kernel that refuses read-only pins of a PROT_READ shared file mapping
 * (6.1 with FOLL_FORCE; fsdax everywhere): the retry shadows it, even though
 * nothing can write through the mapping. */
static void ro_retry(int refusal)
{
	char path[600];
	int fd = tu_file(NP * ps, 13, path, sizeof(path));
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ, MAP_SHARED, 0);
	struct iovec iov = { p, NP * ps };
	struct nic n = { .iov = &iov, .iovcnt = 1, .fail_first = refusal };
	size_t shadowed = 0;
	void *h = NULL;

	ck_assert_int_eq(safe_mr_register(&iov, 1, RO, nic_reg, &n, &h, &shadowed), 0);
	ck_assert_int_eq(n.calls, 2);
	ck_assert(n.saw_shadow[0]);
	ck_assert_uint_eq(shadowed, NP * ps);
	tu_assert_mem_pattern(p, 0, NP * ps, 13);	/* the file's bytes */
	ck_assert_int_eq(safe_mr_deregister(h, nic_dereg, &n), 0);
	tu_assert_shadow_mask(p, NP, 0);
	ck_assert(tu_mapped_from(p, path));
	tu_assert_file_pattern(path, 0, NP * ps, 13);
	munmap(p, NP * ps);
	close(fd);
}

START_TEST(read_only_efault_retry_shadows_prot_read)
{
	ro_retry(EFAULT);
}
END_TEST

START_TEST(read_only_eopnotsupp_retry)
{
	ro_retry(EOPNOTSUPP);
}
END_TEST

START_TEST(read_only_other_error_no_retry)
{
	char path[600];
	int fd = tu_file(NP * ps, 14, path, sizeof(path));
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ, MAP_SHARED, 0);
	struct iovec iov = { p, NP * ps };
	struct nic n = { .iov = &iov, .iovcnt = 1, .fail_always = EACCES };
	void *h;

	ck_assert_int_eq(safe_mr_register(&iov, 1, RO, nic_reg, &n, &h, NULL), EACCES);
	ck_assert_int_eq(n.calls, 1);
	tu_assert_shadow_mask(p, NP, 0);
	/* Refused twice: the second error is returned, nothing stays shadowed. */
	n.fail_always = EFAULT;
	ck_assert_int_eq(safe_mr_register(&iov, 1, RO, nic_reg, &n, &h, NULL), EFAULT);
	ck_assert_int_eq(n.calls, 3);
	ck_assert(n.saw_shadow[0]);		/* the retry was shadowed */
	tu_assert_shadow_mask(p, NP, 0);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* The writeback before the deregistration fails: dereg is not called, the
 * data stays; the retry after the fault is gone writes it and deregisters. */
START_TEST(failed_writeback_keeps_registration)
{
	char path[600];
	int fd = tu_file(NP * ps, 15, path, sizeof(path));
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct iovec iov = { p, NP * ps };
	struct nic n = { .iov = &iov, .iovcnt = 1 };
	void *h;

	ck_assert_msg(inj_install(), "seccomp user notification: %s", strerror(errno));
	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, nic_reg, &n, &h, NULL), 0);
	memcpy(p + 2 * ps, "kept", 4);
	inj_arm(fd, INJ_FLUSH, 0, 1, EIO);
	ck_assert_int_eq(safe_mr_deregister(h, nic_dereg, &n), EIO);
	inj_disarm();
	ck_assert_int_eq(n.dereg_calls, 0);
	tu_assert_shadow_mask(p, NP, 0xf);
	ck_assert_int_eq(safe_mr_deregister(h, nic_dereg, &n), 0);
	ck_assert_int_eq(n.dereg_calls, 1);
	tu_assert_file(path, 2 * ps, "kept", 4);
	tu_assert_shadow_mask(p, NP, 0);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* dereg fails: its error comes back as it is and the registration stays
 * whole (still shadowed, still synced by its handle). */
START_TEST(failed_dereg_keeps_everything)
{
	char path[600];
	int fd = tu_file(NP * ps, 16, path, sizeof(path));
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct iovec iov = { p, NP * ps };
	struct nic n = { .iov = &iov, .iovcnt = 1, .dereg_err = EBUSY };
	void *h;

	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, nic_reg, &n, &h, NULL), 0);
	ck_assert_int_eq(safe_mr_deregister(h, nic_dereg, &n), EBUSY);
	tu_assert_shadow_mask(p, NP, 0xf);
	memcpy(p, "still", 5);
	ck_assert_int_eq(safe_mr_sync_owner(h, SAFE_MR_SYNC_DURABLE), 0);
	tu_assert_file(path, 0, "still", 5);
	n.dereg_err = 0;
	ck_assert_int_eq(safe_mr_deregister(h, nic_dereg, &n), 0);
	ck_assert_int_eq(n.dereg_calls, 2);
	tu_assert_shadow_mask(p, NP, 0);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

static int reg_negative(void *arg, void **handle)
{
	(void)arg;
	(void)handle;
	return -1;
}

START_TEST(bad_input)
{
	char path[600];
	int fd = tu_file(NP * ps, 17, path, sizeof(path));
	uint8_t *p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct iovec iov = { p, NP * ps };
	struct nic n = { .iov = &iov, .iovcnt = 1 };
	size_t shadowed = 99;
	void *h;

	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, NULL, &n, &h, &shadowed), EINVAL);
	ck_assert_uint_eq(shadowed, 0);
	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, nic_reg, &n, NULL, NULL), EINVAL);
	ck_assert_int_eq(safe_mr_register(NULL, 1, RW, nic_reg, &n, &h, NULL), EINVAL);
	ck_assert_int_eq(n.calls, 0);
	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, reg_negative, NULL, &h, NULL), EINVAL);
	tu_assert_shadow_mask(p, NP, 0);
	ck_assert_int_eq(safe_mr_deregister(NULL, nic_dereg, &n), EINVAL);
	ck_assert_int_eq(safe_mr_deregister(&n.handle, NULL, &n), EINVAL);
	/* A range that is not mapped: EFAULT, reg never called. */
	iov.iov_base = p + NP * ps;
	munmap(p, NP * ps);
	iov.iov_base = p;
	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, nic_reg, &n, &h, NULL), EFAULT);
	ck_assert_int_eq(n.calls, 0);
	/* No buffers: just the call (device memory, dma-bufs). */
	ck_assert_int_eq(safe_mr_register(NULL, 0, RW, nic_reg, &n, &h, NULL), 0);
	ck_assert_int_eq(n.calls, 1);
	ck_assert_int_eq(safe_mr_deregister(h, nic_dereg, &n), 0);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("protocol");
	TCase *tc = tu_tcase("protocol");

	tcase_add_test(tc, writable_shadowed_during_reg_and_written_back);
	tcase_add_test(tc, failed_reg_undoes_shadows);
	tcase_add_test(tc, read_only_efault_retry_shadows_prot_read);
	tcase_add_test(tc, read_only_eopnotsupp_retry);
	tcase_add_test(tc, read_only_other_error_no_retry);
	tcase_add_test(tc, failed_writeback_keeps_registration);
	tcase_add_test(tc, failed_dereg_keeps_everything);
	tcase_add_test(tc, bad_input);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
