/* SPDX-License-Identifier: MIT */
/* Self-test of the libibverbs double: the kernel rules it emulates, the
 * NIC's check of the pinned backing, the ODP and failure switches. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include <infiniband/verbs.h>
#include "fake_nic.h"

static size_t ps;
static int kernel = 65;
static bool odp;
static unsigned long fail_reg;
static struct ibv_context *ctx;
static struct ibv_pd *pd;
static char dir[512];

static void setup(void)
{
	struct ibv_device **l = ibv_get_device_list(NULL);
	const char *base = getenv("TEST_TMPDIR");
	struct statfs sfs;

	ck_assert_ptr_nonnull(l);
	ck_assert_ptr_nonnull(l[0]);
	ctx = ibv_open_device(l[0]);
	ibv_free_device_list(l);
	ck_assert_ptr_nonnull(ctx);
	pd = ibv_alloc_pd(ctx);
	ck_assert_ptr_nonnull(pd);
	snprintf(dir, sizeof(dir), "%s/fvXXXXXX", base ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(statfs(dir, &sfs), 0);
	ck_assert_msg(sfs.f_type != TMPFS_MAGIC, "%s is tmpfs: need a writeback filesystem", dir);
}

static void teardown(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static int mkfile(const char *base, size_t len)
{
	char p[600];
	int fd;

	snprintf(p, sizeof(p), "%s/f%d", base, rand());
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
	unlink(p);
	return fd;
}

static void *map_file(int fd, size_t len, int prot, int flags)
{
	void *p = mmap(NULL, len, prot, flags, fd, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

static int reg_errno(void *addr, size_t len, int access)
{
	struct ibv_mr *mr;

	errno = 0;
	mr = ibv_reg_mr(pd, addr, len, access);
	if (mr) {
		ck_assert_int_eq(ibv_dereg_mr(mr), 0);
		return 0;
	}
	ck_assert_int_ne(errno, 0);
	return errno;
}

#define RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE)

START_TEST(device_and_odp_caps)
{
	struct ibv_device_attr_ex a;
	uint32_t rc = IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_WRITE |
		      IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_ATOMIC;

	ck_assert_ptr_nonnull(verbs_get_ctx_op(ctx, query_device_ex));
	ck_assert_int_eq(ibv_query_device_ex(ctx, NULL, &a), 0);
	ck_assert_uint_eq(a.orig_attr.phys_port_cnt, 1);
	if (odp) {
		ck_assert(a.odp_caps.general_caps & IBV_ODP_SUPPORT);
		ck_assert_uint_eq(a.odp_caps.per_transport_caps.rc_odp_caps & rc, rc);
	} else {
		ck_assert_uint_eq(a.odp_caps.general_caps, 0);
		ck_assert_uint_eq(a.odp_caps.per_transport_caps.rc_odp_caps, 0);
	}
}
END_TEST

START_TEST(anon_register_and_dma)
{
	char *p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fake_nic_reg last;
	struct ibv_mr *mr;
	char buf[8];

	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_int_eq(fake_nic_last_reg(&last), ENOENT);
	mr = ibv_reg_mr(pd, p + 10, 3 * ps, RW);
	ck_assert_ptr_nonnull(mr);
	ck_assert_ptr_eq(mr->addr, p + 10);
	ck_assert_uint_eq(mr->length, 3 * ps);
	ck_assert_ptr_eq(mr->pd, pd);
	ck_assert_uint_ne(mr->lkey, 0);
	ck_assert_uint_eq(fake_nic_mr_count(), 1);
	ck_assert_uint_eq(fake_nic_reg_calls(), 1);
	ck_assert_int_eq(fake_nic_last_reg(&last), 0);
	ck_assert_ptr_eq(last.addr, p + 10);
	ck_assert_uint_eq(last.length, 3 * ps);
	ck_assert_uint_eq(last.access, RW);
	ck_assert_ptr_eq(last.mr, mr);
	ck_assert_int_eq(fake_nic_write(mr, 3 * ps - 5, "hello", 5), 0);
	ck_assert_mem_eq(p + 10 + 3 * ps - 5, "hello", 5);
	ck_assert_int_eq(fake_nic_write(mr, 3 * ps - 4, "hello", 5), EINVAL);
	ck_assert_int_eq(fake_nic_read(mr, 3 * ps - 5, buf, 5), 0);
	ck_assert_mem_eq(buf, "hello", 5);
	ck_assert_int_eq(ibv_dealloc_pd(pd), EBUSY);
	ck_assert_int_eq(ibv_dereg_mr(mr), 0);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
	ck_assert_int_eq(fake_nic_write(mr, 0, "x", 1), ENOENT);
	munmap(p, 4 * ps);
}
END_TEST

START_TEST(read_only_mr_refuses_nic_write)
{
	char *p = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *mr;

	mr = ibv_reg_mr(pd, p, ps, IBV_ACCESS_REMOTE_READ);
	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 0, "x", 1), EACCES);
	ck_assert_int_eq(ibv_dereg_mr(mr), 0);
}
END_TEST

START_TEST(bad_input)
{
	char *p = mmap(NULL, 3 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_int_eq(reg_errno(p, 0, RW), EINVAL);
	errno = 0;
	ck_assert_ptr_null(ibv_reg_mr_iova2(NULL, p, ps, 0, RW));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(mprotect(p + ps, ps, PROT_NONE), 0);
	ck_assert_int_eq(reg_errno(p, 3 * ps, RW), EFAULT);
	ck_assert_int_eq(reg_errno(p + ps, 1, IBV_ACCESS_REMOTE_READ), EFAULT);
	ck_assert_int_eq(mprotect(p + ps, ps, PROT_READ), 0);
	ck_assert_int_eq(reg_errno(p, 3 * ps, RW), EFAULT);
	ck_assert_int_eq(reg_errno(p, 3 * ps, IBV_ACCESS_REMOTE_READ), 0);
	ck_assert_int_eq(munmap(p + ps, ps), 0);
	ck_assert_int_eq(reg_errno(p, 3 * ps, IBV_ACCESS_REMOTE_READ), EFAULT);
	ck_assert_int_eq(reg_errno(p + 2 * ps, ps, RW), 0);
	ck_assert_int_eq(reg_errno(p, 1, RW | IBV_ACCESS_ON_DEMAND), odp ? 0 : EINVAL);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
}
END_TEST

START_TEST(shared_file_by_kernel)
{
	int fd = mkfile(dir, 4 * ps);
	void *rw = map_file(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED);
	void *ro = map_file(fd, 4 * ps, PROT_READ, MAP_SHARED);
	void *pr = map_file(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE);

	ck_assert_int_eq(reg_errno(rw, 4 * ps, RW), kernel >= 65 ? EFAULT : 0);
	ck_assert_int_eq(reg_errno(rw, 4 * ps, IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_LOCAL_WRITE),
			 kernel >= 65 ? EFAULT : 0);
	ck_assert_int_eq(reg_errno(rw, 4 * ps, IBV_ACCESS_REMOTE_READ), 0);
	ck_assert_int_eq(reg_errno(ro, 4 * ps, IBV_ACCESS_REMOTE_READ), kernel == 61 ? EFAULT : 0);
	ck_assert_int_eq(reg_errno(ro, 4 * ps, RW), EFAULT);
	ck_assert_int_eq(reg_errno(pr, 4 * ps, RW), 0);
	ck_assert_int_eq(reg_errno(rw, ps, RW | IBV_ACCESS_ON_DEMAND), odp ? 0 : EINVAL);
	close(fd);
}
END_TEST

START_TEST(tmpfs_and_memfd_accepted)
{
	int fd = mkfile("/dev/shm", 2 * ps);
	int mfd = memfd_create("fake_test", MFD_CLOEXEC);
	void *a = map_file(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED);
	void *b;

	ck_assert_int_eq(ftruncate(mfd, 2 * ps), 0);
	b = map_file(mfd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED);
	ck_assert_int_eq(reg_errno(a, 2 * ps, RW), 0);
	ck_assert_int_eq(reg_errno(b, 2 * ps, RW), 0);
	ck_assert_int_eq(reg_errno(b, 2 * ps, IBV_ACCESS_REMOTE_READ), 0);
}
END_TEST

/* The NIC writes the pages pinned at registration: if another mapping
 * replaced them, the write is refused loudly. */
START_TEST(backing_change_detected)
{
	int m1 = memfd_create("one", MFD_CLOEXEC), m2 = memfd_create("two", MFD_CLOEXEC);
	char *p;
	struct ibv_mr *mr;

	ck_assert_int_eq(ftruncate(m1, 4 * ps), 0);
	ck_assert_int_eq(ftruncate(m2, 4 * ps), 0);
	p = map_file(m1, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED);
	mr = ibv_reg_mr(pd, p, 4 * ps, RW);
	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 0, "abc", 3), 0);
	/* Same file, other offset at page 2: a different page. */
	ck_assert_ptr_ne(mmap(p + 2 * ps, ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m1, 0),
			 MAP_FAILED);
	ck_assert_int_eq(fake_nic_write(mr, ps, "abc", 3), 0);
	ck_assert_int_eq(fake_nic_write(mr, 2 * ps + 1, "abc", 3), EFAULT);
	ck_assert_ptr_ne(mmap(p + 3 * ps, ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m2,
			      3 * ps), MAP_FAILED);
	ck_assert_int_eq(fake_nic_read(mr, 3 * ps, p, 1), EFAULT);
	ck_assert_ptr_ne(mmap(p, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			      -1, 0), MAP_FAILED);
	ck_assert_int_eq(fake_nic_write(mr, 0, "abc", 3), EFAULT);
	ck_assert_int_eq(ibv_dereg_mr(mr), 0);
}
END_TEST

START_TEST(rereg)
{
	char *p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fake_nic_reg last;
	struct ibv_mr *mr;

	mr = ibv_reg_mr(pd, p, ps, IBV_ACCESS_REMOTE_READ);
	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 0, "x", 1), EACCES);
	ck_assert_int_eq(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0, RW), 0);
	ck_assert_int_eq(fake_nic_write(mr, 0, "x", 1), 0);
	ck_assert_int_eq(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, p + ps,
				      2 * ps, 0), 0);
	ck_assert_ptr_eq(mr->addr, p + ps);
	ck_assert_uint_eq(mr->length, 2 * ps);
	ck_assert_int_eq(fake_nic_last_reg(&last), 0);
	ck_assert_ptr_eq(last.addr, p + ps);
	ck_assert_uint_eq(last.access, RW);
	ck_assert_int_eq(fake_nic_write(mr, 2 * ps - 1, "y", 1), 0);
	ck_assert_int_eq(p[3 * ps - 1], 'y');
	ck_assert_int_eq(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, p, 0, 0),
			 IBV_REREG_MR_ERR_INPUT);
	ck_assert_int_eq(mprotect(p, ps, PROT_READ), 0);
	errno = 0;
	ck_assert_int_eq(ibv_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, p, ps, 0),
			 IBV_REREG_MR_ERR_CMD);
	ck_assert_int_eq(errno, EFAULT);
	ck_assert_ptr_eq(mr->addr, p + ps);
	ck_assert_int_eq(ibv_dereg_mr(mr), 0);
}
END_TEST

START_TEST(fail_nth_registration)
{
	char *p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	for (unsigned long i = 1; i <= 3; i++) {
		int e = reg_errno(p, ps, RW);

		ck_assert_int_eq(e, fail_reg == i ? ENOMEM : 0);
	}
	ck_assert_uint_eq(fake_nic_reg_calls(), 3);
}
END_TEST

START_TEST(iova_entry_points)
{
	char *p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fake_nic_reg last;
	struct ibv_mr *mr;

	mr = ibv_reg_mr_iova(pd, p, ps, 0x1234000, IBV_ACCESS_LOCAL_WRITE);
	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_last_reg(&last), 0);
	ck_assert_uint_eq(last.iova, 0x1234000);
	ck_assert_int_eq(ibv_dereg_mr(mr), 0);
	ck_assert_int_eq(ibv_dereg_mr(mr), EINVAL);
}
END_TEST

int main(void)
{
	const char *k = getenv("FAKE_VERBS_KERNEL"), *o = getenv("FAKE_VERBS_ODP");
	const char *f = getenv("FAKE_VERBS_FAIL_REG");
	Suite *s = suite_create("fake_verbs");
	TCase *tc = tcase_create("fake");
	SRunner *sr;
	int failed;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	kernel = k && !strcmp(k, "6.1") ? 61 : 65;
	odp = o && !strcmp(o, "1");
	fail_reg = f ? strtoul(f, NULL, 10) : 0;
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, device_and_odp_caps);
	tcase_add_test(tc, fail_nth_registration);
	/* The others count on every registration succeeding. */
	if (fail_reg)
		goto run;
	tcase_add_test(tc, anon_register_and_dma);
	tcase_add_test(tc, read_only_mr_refuses_nic_write);
	tcase_add_test(tc, bad_input);
	tcase_add_test(tc, shared_file_by_kernel);
	tcase_add_test(tc, tmpfs_and_memfd_accepted);
	tcase_add_test(tc, backing_change_detected);
	tcase_add_test(tc, rereg);
	tcase_add_test(tc, iova_entry_points);
run:
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
