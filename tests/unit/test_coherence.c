/* SPDX-License-Identifier: MIT */
/* MAP_SHARED coherence inside one process (issue 18): every mapping of a
 * file page shows the same bytes, whichever mapping is registered and
 * whoever writes (the NIC or the CPU), and every mapping gets its file
 * page back at the release.
 *
 * The same program runs with SAFE_MR_MODE=off on the fake's 6.1 kernel:
 * a plain registration of the file pages, coherent by construction (the
 * oracle, which proves the checks right); and with safe_mr, where the
 * shadow must behave the same. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tutil.h"

static bool plain(void)
{
	const char *m = getenv("SAFE_MR_MODE");

	return m && !strcmp(m, "off");
}

/* With safe_mr, a page is shadowed in every mapping or in none. */
static void assert_both_shadowed(const uint8_t *p, const uint8_t *q, size_t npages)
{
	if (plain())
		return;
	for (size_t i = 0; i < npages; i++) {
		ck_assert_msg(tu_shadowed(p + i * ps), "page %zu of the registered mapping", i);
		ck_assert_msg(tu_shadowed(q + i * ps), "page %zu of the second mapping", i);
	}
}

/* (a) A NIC write into a registered mapping is seen through a second,
 * plain mapping of the same file pages. */
START_TEST(nic_write_seen_by_plain_mapping)
{
	char path[600];
	int fd = tu_file(4 * ps, 11, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *q = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);

	ck_assert_ptr_nonnull(mr);
	assert_both_shadowed(p, q, 4);
	ck_assert_int_eq(fake_nic_write(mr, ps + 5, "fromnic", 7), 0);
	ck_assert_mem_eq(p + ps + 5, "fromnic", 7);
	ck_assert_msg(!memcmp(q + ps + 5, "fromnic", 7),
		      "the NIC's write is not seen through the second mapping");
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_mem_eq(q + ps + 5, "fromnic", 7);
	tu_assert_file(path, ps + 5, "fromnic", 7);
	munmap(p, 4 * ps);
	munmap(q, 4 * ps);
	close(fd);
}
END_TEST

/* (a) ... and through a second mapping that is registered too, by the CPU
 * and by that registration's NIC reads; a mapping of part of the pages at
 * another offset too. */
START_TEST(nic_write_seen_by_registered_mapping)
{
	char path[600];
	int fd = tu_file(6 * ps, 12, path, sizeof(path));
	uint8_t *p = tu_map(fd, 6 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *q = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 2 * ps);
	struct ibv_mr *a = safe_mr_reg_mr(tu_pd, p, 6 * ps, RW);
	struct ibv_mr *b = safe_mr_reg_mr(tu_pd, q, 4 * ps, RW);
	char got[8] = { 0 };

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	assert_both_shadowed(p + 2 * ps, q, 4);
	/* file page 3: p's page 3, q's page 1 */
	ck_assert_int_eq(fake_nic_write(a, 3 * ps + 9, "nic-a", 5), 0);
	ck_assert_msg(!memcmp(q + ps + 9, "nic-a", 5),
		      "NIC write through A not seen through B's mapping");
	ck_assert_int_eq(fake_nic_read(b, ps + 9, got, 5), 0);
	ck_assert_msg(!memcmp(got, "nic-a", 5), "NIC write through A not read through B's MR");
	ck_assert_int_eq(fake_nic_write(b, 2 * ps, "nic-b", 5), 0);
	ck_assert_msg(!memcmp(p + 4 * ps, "nic-b", 5),
		      "NIC write through B not seen through A's mapping");
	ck_assert_int_eq(safe_mr_dereg_mr(a), 0);
	/* B still registered: its pages still shared with A's mapping. */
	ck_assert_int_eq(fake_nic_write(b, 3 * ps, "late-b", 6), 0);
	ck_assert_msg(!memcmp(p + 5 * ps, "late-b", 6),
		      "after A's release, B's NIC write not seen through A's mapping");
	ck_assert_int_eq(safe_mr_dereg_mr(b), 0);
	tu_assert_file(path, 3 * ps + 9, "nic-a", 5);
	tu_assert_file(path, 4 * ps, "nic-b", 5);
	tu_assert_file(path, 5 * ps, "late-b", 6);
	munmap(p, 6 * ps);
	munmap(q, 4 * ps);
	close(fd);
}
END_TEST

/* (b) A store through a second mapping is what the NIC reads through the
 * registration. */
START_TEST(store_through_second_mapping_seen_by_nic)
{
	char path[600];
	int fd = tu_file(4 * ps, 13, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *q = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	char got[8] = { 0 };

	ck_assert_ptr_nonnull(mr);
	memcpy(q + 2 * ps + 1, "cpustor", 7);
	ck_assert_int_eq(fake_nic_read(mr, 2 * ps + 1, got, 7), 0);
	ck_assert_msg(!memcmp(got, "cpustor", 7),
		      "a store through the second mapping is not what the NIC reads");
	ck_assert_mem_eq(p + 2 * ps + 1, "cpustor", 7);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 2 * ps + 1, "cpustor", 7);
	munmap(p, 4 * ps);
	munmap(q, 4 * ps);
	close(fd);
}
END_TEST

/* The release: after the deregistration both mappings are the file's own
 * mappings again, show the NIC's bytes, and the file holds them; a store
 * after the release goes to the file through either. */
START_TEST(release_gives_every_mapping_its_file)
{
	char path[600];
	int fd = tu_file(4 * ps, 14, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *q = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p + ps, 2 * ps, RW);

	ck_assert_ptr_nonnull(mr);
	assert_both_shadowed(p + ps, q + ps, 2);
	ck_assert_int_eq(fake_nic_write(mr, 10, "beforerel", 9), 0);
	memcpy(q + 2 * ps + 3, "viaq", 4);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	for (size_t i = 0; i < 4; i++) {
		ck_assert_msg(tu_mapped_from(p + i * ps, path), "page %zu of p is not the file", i);
		ck_assert_msg(tu_mapped_from(q + i * ps, path), "page %zu of q is not the file", i);
	}
	ck_assert_mem_eq(p + ps + 10, "beforerel", 9);
	ck_assert_mem_eq(q + ps + 10, "beforerel", 9);
	ck_assert_mem_eq(p + 2 * ps + 3, "viaq", 4);
	tu_assert_file(path, ps + 10, "beforerel", 9);
	tu_assert_file(path, 2 * ps + 3, "viaq", 4);
	memcpy(p + ps, "after", 5);
	ck_assert_mem_eq(q + ps, "after", 5);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
	munmap(p, 4 * ps);
	munmap(q, 4 * ps);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("coherence");
	TCase *tc = tu_tcase("coherence");

	tcase_add_test(tc, nic_write_seen_by_plain_mapping);
	tcase_add_test(tc, nic_write_seen_by_registered_mapping);
	tcase_add_test(tc, store_through_second_mapping_seen_by_nic);
	tcase_add_test(tc, release_gives_every_mapping_its_file);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
