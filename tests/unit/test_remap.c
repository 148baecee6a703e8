/* SPDX-License-Identifier: MIT */
/* munmap and mremap of shadowed ranges: what the application unmaps or
 * moves is written back first; pages still registered stay pinned by the
 * NIC ("detached") and what it writes there reaches the file at the next
 * sync point of the MR or the file. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

/* What a NIC holds after the application unmapped a registered range: the
 * pinned pages themselves.  fake_nic_write goes through the address (and
 * rightly refuses once the address maps something else), so emulate the
 * pins with a second mapping of the same shadow pages (mremap of a shared
 * mapping with old_size 0), taken while the range is registered. */
static uint8_t *pinned_pages(void *p, size_t len)
{
	uint8_t *alias = mremap(p, 0, len, MREMAP_MAYMOVE);

	ck_assert_ptr_ne(alias, MAP_FAILED);
	return alias;
}

/* The CPU's last write before munmap reaches the file, no registration
 * left: everything is freed. */
START_TEST(munmap_after_dereg_writes_back)
{
	char path[600];
	int fd = tu_file(4 * ps, 61, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);

	uint8_t *pins;

	ck_assert_ptr_nonnull(mr);
	pins = pinned_pages(p, 4 * ps);
	ck_assert_int_eq(fake_nic_write(mr, ps + 8, "nicdata", 7), 0);
	memcpy(p + 3 * ps, "cpudata", 7);
	ck_assert_int_eq(safe_mr_munmap(p, 4 * ps), 0);
	tu_assert_file(path, ps + 8, "nicdata", 7);
	tu_assert_file(path, 3 * ps, "cpudata", 7);
	ck_assert(!tu_maps_at(p, NULL, 0, NULL));
	/* Still registered: the NIC keeps writing the (detached) shadow, and
	 * deregistration writes that to the file. */
	memcpy(pins + 2 * ps, "afterunmap", 10);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 2 * ps, "afterunmap", 10);
	munmap(pins, 4 * ps);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
	close(fd);
}
END_TEST

/* fsync on the file is a sync point for detached pages too. */
START_TEST(detached_pages_synced_by_fsync)
{
	char path[600];
	int fd = tu_file(2 * ps, 62, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);

	uint8_t *pins;

	ck_assert_ptr_nonnull(mr);
	pins = pinned_pages(p, 2 * ps);
	ck_assert_int_eq(safe_mr_munmap(p, 2 * ps), 0);
	memcpy(pins + 100, "viafsync", 8);
	ck_assert_int_eq(safe_mr_fsync(fd), 0);
	tu_assert_file(path, 100, "viafsync", 8);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	munmap(pins, 2 * ps);
	close(fd);
}
END_TEST

/* MPICH's teardown, as seen from safe_mr: the window is registered (UCX
 * keeps its cached registration past MPI_Win_free), synced, closed and
 * unmapped; the address is mapped again, anonymous, and written by someone
 * else; then the cached registration goes.  The file keeps the window's
 * last contents: nothing from the new mapping reaches it. */
START_TEST(dereg_after_unmap_and_reuse_of_the_address)
{
	char path[600], mpath[600];
	int fd = tu_file(4 * ps, 64, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	uint8_t *q;

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 0, "windowpage0", 11), 0);
	ck_assert_int_eq(fake_nic_write(mr, 3 * ps, "windowpage3", 11), 0);
	ck_assert_int_eq(safe_mr_msync(p, 4 * ps, MS_SYNC), 0);
	close(fd);
	ck_assert_int_eq(safe_mr_munmap(p, 4 * ps), 0);
	q = mmap(p, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		 -1, 0);
	ck_assert_ptr_eq(q, p);
	memset(q, 0xee, 4 * ps);
	ck_assert_int_eq(safe_mr_munmap(q, 4 * ps), 0);
	q = mmap(p, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		 -1, 0);
	ck_assert_ptr_eq(q, p);
	memset(q, 0xdd, 4 * ps);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 0, "windowpage0", 11);
	tu_assert_file(path, 3 * ps, "windowpage3", 11);
	/* The address is still the other owner's anonymous memory. */
	ck_assert(tu_maps_at(q, mpath, sizeof(mpath), NULL));
	ck_assert_str_eq(mpath, "");
	memset(q, 0xcc, 4 * ps);
	tu_assert_file(path, 0, "windowpage0", 11);
	munmap(q, 4 * ps);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
}
END_TEST

/* mremap moves a real file mapping: the shadow is written back and the
 * file mapping put back first; the moved mapping sees the data. */
START_TEST(mremap_moves_file_mapping)
{
	char path[600], mpath[600];
	int fd = tu_file(4 * ps, 63, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	uint8_t *q, *pins;

	ck_assert_ptr_nonnull(mr);
	ck_assert(tu_shadowed(p));
	pins = pinned_pages(p, 4 * ps);
	ck_assert_int_eq(fake_nic_write(mr, 5, "beforemove", 10), 0);
	q = safe_mr_mremap(p, 4 * ps, 8 * ps, MREMAP_MAYMOVE, NULL);
	ck_assert_ptr_ne(q, MAP_FAILED);
	ck_assert(tu_maps_at(q, mpath, sizeof(mpath), NULL));
	ck_assert_str_eq(mpath, path);
	ck_assert_mem_eq(q + 5, "beforemove", 10);
	tu_assert_file(path, 5, "beforemove", 10);
	/* The NIC still writes the pages it pinned; dereg writes them back. */
	memcpy(pins + 2 * ps, "pinned", 6);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 2 * ps, "pinned", 6);
	ck_assert_mem_eq(q + 2 * ps, "pinned", 6);
	munmap(pins, 4 * ps);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
	close(fd);
}
END_TEST

/* A forked child gets the file mapping back: it sees what the parent's
 * shadow held at fork, and never the arena range the parent frees and
 * reuses for another file.  Its writes reach its own file.  (The child
 * once kept mapping the arena: after the parent released A and shadowed B
 * in the same range, the child's "A" showed B and its writes went to B.) */
START_TEST(fork_child_never_sees_other_file)
{
	char pa[600], pb[600];
	int fa = tu_file(2 * ps, 64, pa, sizeof(pa)), fb = tu_file(2 * ps, 65, pb, sizeof(pb));
	uint8_t *a = tu_map(fa, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *b = tu_map(fb, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, a, 2 * ps, RW), *mrb;
	int go[2], status;
	pid_t pid;

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(fake_nic_write(mr, 0, "parentnic", 9), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;
		int ok = read(go[0], &c, 1) == 1 && !memcmp(a, "parentnic", 9);

		for (size_t i = 0; i < ps && ok; i++)
			ok = a[ps + i] == tu_byte(64, ps + i);
		memcpy(a + ps, "childwrote", 10);
		ok &= safe_mr_msync(a, 2 * ps, MS_SYNC) == 0;
		_exit(ok ? 0 : 1);
	}
	/* The parent lets A go and shadows B, likely in A's arena range. */
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	mrb = safe_mr_reg_mr(tu_pd, b, 2 * ps, RW);
	ck_assert_ptr_nonnull(mrb);
	ck_assert_int_eq(fake_nic_write(mrb, 0, "Bnic", 4), 0);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "the child's mapping of A did not show A");
	ck_assert_int_eq(safe_mr_dereg_mr(mrb), 0);
	tu_assert_file(pa, 0, "parentnic", 9);
	tu_assert_file(pa, ps, "childwrote", 10);
	tu_assert_file(pb, 0, "Bnic", 4);
	tu_assert_file_pattern(pb, ps, ps, 65);
	close(go[0]);
	close(go[1]);
	close(fa);
	close(fb);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("remap");
	TCase *tc = tu_tcase("remap");

	tcase_add_test(tc, munmap_after_dereg_writes_back);
	tcase_add_test(tc, dereg_after_unmap_and_reuse_of_the_address);
	tcase_add_test(tc, detached_pages_synced_by_fsync);
	tcase_add_test(tc, mremap_moves_file_mapping);
	tcase_add_test(tc, fork_child_never_sees_other_file);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
