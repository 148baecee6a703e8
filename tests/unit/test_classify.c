/* SPDX-License-Identifier: MIT */
/* What is shadowed: only writable registrations of MAP_SHARED pages of regular
 * files on writeback filesystems are shadowed, page by page; everything
 * else is left exactly as it is. Run under FAKE_VERBS_KERNEL=6.1 and 6.5. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

static int kernel(void)
{
	const char *k = getenv("FAKE_VERBS_KERNEL");

	return k && !strcmp(k, "6.1") ? 61 : 65;
}

/* Register, check nothing was shadowed and the fake saw the call. */
static void assert_passthrough(void *p, size_t len, int access)
{
	struct safe_mr_stats before = tu_stats(), after;
	unsigned long calls = fake_nic_reg_calls();
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, len, access);

	ck_assert_msg(mr != NULL, "registration failed: %s", strerror(errno));
	after = tu_stats();
	ck_assert_uint_eq(after.registrations, before.registrations + 1);
	ck_assert_uint_eq(after.shadowed, before.shadowed);
	ck_assert_uint_eq(after.shadow_bytes_now, 0);
	ck_assert_uint_eq(fake_nic_reg_calls(), calls + 1);
	tu_assert_shadow_mask(p, (len + ps - 1) / ps, 0);
	if (access & IBV_ACCESS_LOCAL_WRITE)
		ck_assert_int_eq(fake_nic_write(mr, 0, "x", 1), 0);
	else
		ck_assert_int_eq(fake_nic_read(mr, 0, &(char){0}, 1), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
}

START_TEST(anonymous)
{
	void *p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char perms[5];

	ck_assert_ptr_ne(p, MAP_FAILED);
	assert_passthrough(p, 4 * ps, RW);
	ck_assert(tu_maps_at(p, NULL, 0, perms));
	ck_assert_str_eq(perms, "rw-p");
}
END_TEST

START_TEST(private_file)
{
	char path[600];
	int fd = tu_file(4 * ps, 1, path, sizeof(path));
	void *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0);

	assert_passthrough(p, 4 * ps, RW);
	ck_assert(tu_mapped_from(p, path));
}
END_TEST

START_TEST(tmpfs_file)
{
	char path[600];
	int fd = tu_file_in("/dev/shm", 4 * ps, 2, path, sizeof(path));
	void *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);

	assert_passthrough(p, 4 * ps, RW);
	ck_assert(tu_mapped_from(p, path));
	unlink(path);
}
END_TEST

START_TEST(memfd)
{
	int fd = memfd_create("classify", MFD_CLOEXEC);
	void *p;

	ck_assert_int_eq(ftruncate(fd, 4 * ps), 0);
	p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	assert_passthrough(p, 4 * ps, RW);
}
END_TEST

START_TEST(shared_file_writable)
{
	char path[600];
	int fd = tu_file(4 * ps, 3, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct safe_mr_stats s0 = tu_stats(), s1;
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);

	ck_assert_msg(mr != NULL, "registration failed: %s", strerror(errno));
	s1 = tu_stats();
	ck_assert_uint_eq(s1.registrations, s0.registrations + 1);
	ck_assert_uint_eq(s1.shadowed, s0.shadowed + 1);
	ck_assert_uint_eq(s1.shadow_bytes_now, 4 * ps);
	ck_assert_uint_ge(s1.bytes_shadowed, s0.bytes_shadowed + 4 * ps);
	tu_assert_shadow_mask(p, 4, 0xf);
	tu_assert_mem_pattern(p, 0, 4 * ps, 3);
	ck_assert_int_eq(fake_nic_write(mr, ps, "nic", 3), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert(tu_mapped_from(p, path));
	tu_assert_file(path, (off_t)ps, "nic", 3);
}
END_TEST

/* Read-only access: the NIC cannot write, nothing to shadow, unless the
 * kernel refuses the pin (6.1 on a PROT_READ shared mapping): then it is
 * retried with a shadow. */
START_TEST(shared_file_read_only_access)
{
	char path[600];
	int fd = tu_file(4 * ps, 4, path, sizeof(path));
	void *rw = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	void *ro = tu_map(fd, 4 * ps, PROT_READ, MAP_SHARED, 0);
	struct ibv_mr *mr;
	char perms[5];

	/* Read-only access to a writable shared mapping is shadowed: a
	 * writable registration of the same pages would otherwise leave this
	 * MR pinning pages the CPU no longer sees. */
	mr = safe_mr_reg_mr(tu_pd, rw, 4 * ps, RO);
	ck_assert_ptr_nonnull(mr);
	tu_assert_shadow_mask(rw, 4, 0xf);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_shadow_mask(rw, 4, 0);
	mr = safe_mr_reg_mr(tu_pd, ro, 4 * ps, RO);
	ck_assert_msg(mr != NULL, "read-only registration of a PROT_READ shared file mapping failed: %s",
		      strerror(errno));
	if (kernel() == 61) {
		ck_assert_uint_eq(fake_nic_reg_calls(), 3);	/* 1 passthrough + refused + retry */
		tu_assert_shadow_mask(ro, 4, 0xf);
		ck_assert(tu_maps_at(ro, NULL, 0, perms));
		ck_assert_str_eq(perms, "r--s");
	} else {
		tu_assert_shadow_mask(ro, 4, 0);
	}
	tu_assert_mem_pattern(ro, 0, 4 * ps, 4);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert(tu_mapped_from(ro, path));
	tu_assert_file_pattern(path, 0, 4 * ps, 4);
}
END_TEST

/* anon | file A (2 pages) | file B (1 page) | anon, unaligned ends. */
START_TEST(mixed_range)
{
	char pa[600], pb[600];
	int fa = tu_file(8 * ps, 5, pa, sizeof(pa)), fb = tu_file(8 * ps, 6, pb, sizeof(pb));
	uint8_t *p = mmap(NULL, 6 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *mr;
	uint8_t nic[6 * 4096];

	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_uint_le(6 * ps, sizeof(nic));
	tu_map_at(p + ps, fa, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 2 * ps);
	tu_map_at(p + 3 * ps, fb, ps, PROT_READ | PROT_WRITE, MAP_SHARED, 5 * ps);
	mr = safe_mr_reg_mr(tu_pd, p + 100, 5 * ps - 200, RW);
	ck_assert_msg(mr != NULL, "registration failed: %s", strerror(errno));
	ck_assert_ptr_eq(mr->addr, p + 100);
	ck_assert_uint_eq(mr->length, 5 * ps - 200);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 3 * ps);
	tu_assert_shadow_mask(p, 6, 0xe);
	tu_assert_mem_pattern(p + ps, 2 * ps, 2 * ps, 5);
	tu_assert_mem_pattern(p + 3 * ps, 5 * ps, ps, 6);
	memset(nic, 0xab, sizeof(nic));
	ck_assert_int_eq(fake_nic_write(mr, 0, nic, 5 * ps - 200), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(pa, 2 * ps, nic, 2 * ps);
	tu_assert_file_pattern(pa, 0, 2 * ps, 5);
	tu_assert_file_pattern(pa, 4 * ps, 4 * ps, 5);
	tu_assert_file(pb, 5 * ps, nic, ps);
	tu_assert_file_pattern(pb, 0, 5 * ps, 6);
	tu_assert_file_pattern(pb, 6 * ps, 2 * ps, 6);
	ck_assert(tu_mapped_from(p + ps, pa));
	ck_assert(tu_mapped_from(p + 3 * ps, pb));
}
END_TEST

/* An unaligned registration inside one page shadows exactly that page. */
START_TEST(unaligned_single_page)
{
	char path[600];
	int fd = tu_file(4 * ps, 7, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p + 2 * ps + 17, 100, RW);

	ck_assert_ptr_nonnull(mr);
	tu_assert_shadow_mask(p, 4, 0x4);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, ps);
	ck_assert_int_eq(fake_nic_write(mr, 99, "Z", 1), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 2 * ps + 17 + 99, "Z", 1);
	tu_assert_file_pattern(path, 0, 2 * ps + 17 + 99, 7);
}
END_TEST

/* The last page of a file that ends mid-page: its tail past EOF is
 * shadowed with the page (the NIC may write it) but never written back,
 * and the file never grows. */
START_TEST(pages_past_eof)
{
	char path[600];
	size_t flen = ps + ps / 2;
	int fd = tu_file(flen, 8, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);
	uint8_t ff[2 * 4096];

	ck_assert_msg(mr != NULL, "registration up to the end of the last page failed: %s",
		      strerror(errno));
	tu_assert_shadow_mask(p, 2, 0x3);
	tu_assert_mem_pattern(p, 0, flen, 8);
	for (size_t i = flen; i < 2 * ps; i++)
		ck_assert_int_eq(p[i], 0);
	memset(ff, 0xff, sizeof(ff));
	ck_assert_int_eq(fake_nic_write(mr, 0, ff, 2 * ps), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_int_eq(tu_file_size(path), (off_t)flen);
	tu_assert_file(path, 0, ff, flen);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("classify");
	TCase *tc = tu_tcase("classify");

	tcase_add_test(tc, anonymous);
	tcase_add_test(tc, private_file);
	tcase_add_test(tc, tmpfs_file);
	tcase_add_test(tc, memfd);
	tcase_add_test(tc, shared_file_writable);
	tcase_add_test(tc, shared_file_read_only_access);
	tcase_add_test(tc, mixed_range);
	tcase_add_test(tc, unaligned_single_page);
	tcase_add_test(tc, pages_past_eof);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
