/* SPDX-License-Identifier: MIT */
/* A process under a file size limit (ulimit -f, RLIMIT_FSIZE: some batch
 * systems set one).  safe_mr's own memory is memfds it sizes with
 * ftruncate: the shadow arena and the guardian's state (16 GiB, sparse).
 * Past the limit the kernel refuses with EFBIG and sends SIGXFSZ, whose
 * default action ends the process: the application died at its first
 * registration.  Now: registrations within the limit work, one that would
 * pass it fails with EFBIG, and the guardian that cannot have its state is
 * given up with a warning (SAFE_MR_GUARDIAN=require: the registration
 * fails).  Nothing here blocks SIGXFSZ: a regression kills the case.
 * The application's own file pages at or past the limit are not written
 * back (pwrite there raised SIGXFSZ too): the sync point fails with EFBIG
 * (README, Limits). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tutil.h"

#define LIMIT (256u << 10)

static void limit_fsize(rlim_t n)
{
	struct rlimit rl = { n, n };

	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static bool require_guardian(void)
{
	const char *g = getenv("SAFE_MR_GUARDIAN");

	return g && !strcmp(g, "require");
}

/* A registration of the 16 pages from file page `first`, a NIC write at
 * off in it, the release: in the file. */
static int small_round(uint8_t *map, size_t first, const char *path, size_t off)
{
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, map + first * ps, 16 * ps, RW);

	if (!mr)
		return errno;
	ck_assert_int_eq(fake_nic_write(mr, off, "within", 6), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, (off_t)(first * ps + off), "within", 6);
	return 0;
}

START_TEST(registrations_under_a_file_size_limit)
{
	char path[600];
	size_t big = 1u << 20;
	int fd = tu_file(big, 3, path, sizeof(path));	/* made before the limit */
	uint8_t *p = tu_map(fd, big, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr;
	int err;

	limit_fsize(LIMIT);
	err = small_round(p, 0, path, 100);
	if (require_guardian()) {
		/* The guardian cannot be had: the registration says so. */
		ck_assert_msg(err != 0, "SAFE_MR_GUARDIAN=require: a registration without "
			      "a guardian succeeded");
		ck_assert(!tu_shadowed(p));
		munmap(p, big);
		close(fd);
		return;
	}
	ck_assert_msg(err == 0, "a 64 KiB registration under a 256 KiB limit: %s", strerror(err));
	/* The arena would pass the limit: refused, the process alive. */
	mr = safe_mr_reg_mr(tu_pd, p, big, RW);
	ck_assert_msg(!mr, "a 1 MiB shadow under a 256 KiB limit was registered");
	ck_assert_int_eq(errno, EFBIG);
	ck_assert(!tu_shadowed(p + big / 2));
	/* And what fits still works. */
	ck_assert_int_eq(small_round(p, 32, path, 7), 0);
	tu_assert_file_pattern(path, 0, 100, 3);
	munmap(p, big);
	close(fd);
}
END_TEST

/* A registration across the limit (file pages 60..67, the limit at page
 * 64): the NIC's bytes below the limit reach the file at the sync point;
 * those past it make the sync point fail with EFBIG (the kernel would end
 * the process with SIGXFSZ), and stay in the shadow. */
START_TEST(pages_past_the_limit)
{
	char path[600];
	size_t big = 1u << 20;
	int fd = tu_file(big, 4, path, sizeof(path));
	uint8_t *p = tu_map(fd, big, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr;

	if (require_guardian())
		return;		/* no registration there (above) */
	limit_fsize(LIMIT);
	mr = safe_mr_reg_mr(tu_pd, p + 60 * ps, 8 * ps, RW);
	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, ps + 9, "below", 5), 0);
	ck_assert_int_eq(fake_nic_write(mr, 6 * ps + 9, "beyond", 6), 0);
	ck_assert_int_eq(safe_mr_msync(p + 60 * ps, 8 * ps, MS_SYNC), -1);
	ck_assert_int_eq(errno, EFBIG);
	tu_assert_file(path, 61 * (off_t)ps + 9, "below", 5);
	tu_assert_file_pattern(path, 66 * (off_t)ps + 9, 6, 4);
	ck_assert_mem_eq(p + 66 * ps + 9, "beyond", 6);
	munmap(p, big);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fsize");
	TCase *tc = tu_tcase("fsize");

	tcase_add_test(tc, registrations_under_a_file_size_limit);
	tcase_add_test(tc, pages_past_the_limit);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
