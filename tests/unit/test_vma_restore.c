/* SPDX-License-Identifier: MIT */
/* After the last release a mapping is what it was: one VMA of the
 * application's own open file, which mremap can move and grow as a whole.
 * (The engine once mapped its own reopened descriptor back: three VMAs,
 * and mremap of the whole mapping failed with EFAULT.) */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

/* VMAs that intersect [p, p + len). */
static int vmas_in(const uint8_t *p, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[1024];
	int n = 0;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < (uintptr_t)p + len &&
		    e > (uintptr_t)p)
			n++;
	}
	fclose(f);
	return n;
}

static void check(size_t first, size_t count)
{
	char path[600];
	int fd = tu_file(16 * ps, 31, path, sizeof(path));
	uint8_t *p = tu_map(fd, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0), *q;
	struct ibv_mr *mr;

	ck_assert_int_eq(vmas_in(p, 8 * ps), 1);
	mr = safe_mr_reg_mr(tu_pd, p + first * ps, count * ps, RW);
	ck_assert_ptr_nonnull(mr);
	ck_assert(tu_shadowed(p + first * ps));
	ck_assert_int_eq(fake_nic_write(mr, 0, "nic", 3), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_int_eq(vmas_in(p, 8 * ps), 1);
	ck_assert(tu_mapped_from(p + first * ps, path));
	q = safe_mr_mremap(p, 8 * ps, 16 * ps, MREMAP_MAYMOVE, NULL);
	ck_assert_msg(q != MAP_FAILED, "mremap of the whole mapping: %s", strerror(errno));
	ck_assert_mem_eq(q + first * ps, "nic", 3);
	tu_assert_mem_pattern(q + 12 * ps, 12 * ps, ps, 31);
	tu_assert_file(path, (off_t)(first * ps), "nic", 3);
	munmap(q, 16 * ps);
	close(fd);
}

START_TEST(middle_of_mapping)
{
	check(2, 4);
}
END_TEST

START_TEST(whole_mapping)
{
	check(0, 8);
}
END_TEST

/* A mapping whose protection changed while shadowed comes back with it. */
START_TEST(protection_kept)
{
	char path[600], perms[5];
	int fd = tu_file(4 * ps, 32, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(mprotect(p, 4 * ps, PROT_READ), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert(tu_maps_at(p, path, sizeof(path), perms));
	ck_assert_str_eq(perms, "r--s");
	ck_assert_int_eq(vmas_in(p, 4 * ps), 1);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vma_restore");
	TCase *tc = tu_tcase("vma_restore");

	tcase_add_test(tc, middle_of_mapping);
	tcase_add_test(tc, whole_mapping);
	tcase_add_test(tc, protection_kept);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
