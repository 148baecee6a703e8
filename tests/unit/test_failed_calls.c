/* SPDX-License-Identifier: MIT */
/* A munmap or mremap that fails changes nothing: the range stays
 * shadowed, the NIC and the CPU keep seeing the same memory, and the data
 * reaches the file at deregistration.  (The engine once wrote back and
 * let go of the shadow before the real call, so after a failed in-place
 * grow the NIC wrote memory the process no longer saw.) */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

/* Two pages of a file, mapped with an anonymous page right after them. */
static uint8_t *map_blocked(int fd)
{
	uint8_t *r = mmap(NULL, 3 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(r, MAP_FAILED);
	return tu_map_at(r, fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
}

/* Still one shadow: the NIC's write is seen by the CPU and the CPU's by
 * the NIC, and both reach the file. */
static void assert_coherent(struct ibv_mr *mr, uint8_t *p, const char *path)
{
	char buf[8];

	tu_assert_shadow_mask(p, 2, 0x3);
	ck_assert_int_eq(fake_nic_write(mr, 0, "nicdata", 7), 0);
	ck_assert_mem_eq(p, "nicdata", 7);
	memcpy(p + ps, "cpudata", 7);
	ck_assert_int_eq(fake_nic_read(mr, ps, buf, 7), 0);
	ck_assert_mem_eq(buf, "cpudata", 7);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 0, "nicdata", 7);
	tu_assert_file(path, ps, "cpudata", 7);
}

START_TEST(mremap_grow_in_place_blocked)
{
	char path[600];
	int fd = tu_file(4 * ps, 21, path, sizeof(path));
	uint8_t *p = map_blocked(fd);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);

	ck_assert_ptr_nonnull(mr);
	errno = 0;
	ck_assert_ptr_eq(safe_mr_mremap(p, 2 * ps, 3 * ps, 0, NULL), MAP_FAILED);
	ck_assert_int_eq(errno, ENOMEM);
	assert_coherent(mr, p, path);
}
END_TEST

/* A failure only the kernel finds (an unaligned MREMAP_FIXED target),
 * after the file mapping was put back for the move: undone. */
START_TEST(mremap_fixed_bad_target)
{
	char path[600];
	int fd = tu_file(4 * ps, 22, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *q = mmap(NULL, 4 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 100, "before", 6), 0);
	errno = 0;
	ck_assert_ptr_eq(safe_mr_mremap(p, 2 * ps, 2 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, q + 1),
			 MAP_FAILED);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_mem_eq(p + 100, "before", 6);
	assert_coherent(mr, p, path);
	tu_assert_file(path, 100, "before", 6);
}
END_TEST

START_TEST(munmap_unaligned)
{
	char path[600];
	int fd = tu_file(4 * ps, 23, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);

	ck_assert_ptr_nonnull(mr);
	errno = 0;
	ck_assert_int_eq(safe_mr_munmap(p + 1, ps), -1);
	ck_assert_int_eq(errno, EINVAL);
	assert_coherent(mr, p, path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("failed_calls");
	TCase *tc = tu_tcase("failed_calls");

	tcase_add_test(tc, mremap_grow_in_place_blocked);
	tcase_add_test(tc, mremap_fixed_bad_target);
	tcase_add_test(tc, munmap_unaligned);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
