/* SPDX-License-Identifier: MIT */
/* Shadowing in place: the shadow replaces the file pages in place, at the same
 * address, with the file's contents; the MR is what the NIC registered;
 * threads and forked children see the same memory. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

START_TEST(same_address_same_keys)
{
	char path[600];
	int fd = tu_file(8 * ps, 11, path, sizeof(path));
	uint8_t *p = tu_map(fd, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct fake_nic_reg last;
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p + 5, 6 * ps, RW);
	char buf[4];

	ck_assert_msg(mr != NULL, "registration failed: %s", strerror(errno));
	ck_assert_int_eq(fake_nic_last_reg(&last), 0);
	ck_assert_ptr_eq(last.addr, p + 5);	/* the NIC got the application's address */
	ck_assert_uint_eq(last.length, 6 * ps);
	ck_assert_ptr_eq(mr->addr, p + 5);
	ck_assert_uint_eq(mr->length, 6 * ps);
	ck_assert_uint_eq(mr->lkey, last.mr->lkey);
	ck_assert_uint_eq(mr->rkey, last.mr->rkey);
	ck_assert_ptr_eq(mr->pd, tu_pd);
	tu_assert_shadow_mask(p, 8, 0x7f);
	tu_assert_mem_pattern(p, 0, 8 * ps, 11);
	/* CPU and NIC see the same memory both ways. */
	p[100] = 'A';
	ck_assert_int_eq(fake_nic_read(mr, 95, buf, 1), 0);
	ck_assert_int_eq(buf[0], 'A');
	ck_assert_int_eq(fake_nic_write(mr, 3 * ps, "NIC", 3), 0);
	ck_assert_mem_eq(p + 5 + 3 * ps, "NIC", 3);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 100, "A", 1);
	tu_assert_file(path, 5 + 3 * ps, "NIC", 3);
}
END_TEST

struct writer {
	volatile uint64_t *slot;
	atomic_bool stop;
	uint64_t last;
};

static void *writer_fn(void *arg)
{
	struct writer *w = arg;
	uint64_t i = 0;

	while (!atomic_load(&w->stop))
		*w->slot = ++i;
	w->last = i;
	return NULL;
}

/* A thread storing into the range while it is being shadowed: no fault
 * (no hole), no lost store. */
START_TEST(thread_writes_while_shadowing)
{
	char path[600];
	int fd = tu_file(64 * ps, 12, path, sizeof(path));
	uint8_t *p = tu_map(fd, 64 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct writer w = { .slot = (volatile uint64_t *)(p + 40 * ps + 8) };
	pthread_t t;
	struct ibv_mr *mr;
	uint64_t v;

	ck_assert_int_eq(pthread_create(&t, NULL, writer_fn, &w), 0);
	while (*w.slot == *(const uint64_t *)(const void *)(p + 40 * ps + 8) && *w.slot < 1000)
		;
	for (int round = 0; round < 20; round++) {
		mr = safe_mr_reg_mr(tu_pd, p, 64 * ps, RW);
		ck_assert_msg(mr != NULL, "registration failed: %s", strerror(errno));
		ck_assert(tu_shadowed(p + 40 * ps));
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	}
	mr = safe_mr_reg_mr(tu_pd, p, 64 * ps, RW);
	ck_assert_ptr_nonnull(mr);
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	memcpy(&v, p + 40 * ps + 8, 8);
	ck_assert_uint_eq(v, w.last);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 40 * ps + 8, &w.last, 8);
}
END_TEST

/* A forked child does not inherit registrations: it gets the file mapping
 * back, showing what the parent's shadow held at fork (fork writes it to
 * the page cache).  The child's stores go to the file like any other
 * process's; the parent's shadow does not see them, and the parent's sync
 * points do not overwrite them (it never changed that page). */
START_TEST(fork_child_gets_file)
{
	char path[600];
	int fd = tu_file(4 * ps, 13, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	pid_t pid;
	int st;

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(fake_nic_write(mr, 10, "parent", 6), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = memcmp(p + 10, "parent", 6) == 0 && !tu_shadowed(p) &&
			 tu_mapped_from(p, path);

		memcpy(p + 2 * ps, "child", 5);
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "child did not see the NIC's data through the file mapping");
	tu_assert_file(path, 2 * ps, "child", 5);
	ck_assert_int_eq(safe_mr_sync(mr, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	tu_assert_file(path, 2 * ps, "child", 5);
	tu_assert_file(path, 10, "parent", 6);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 2 * ps, "child", 5);
	tu_assert_file(path, 10, "parent", 6);
}
END_TEST

/* The iova entry points shadow the same way and pass the iova through. */
START_TEST(iova_entry_points)
{
	char path[600];
	int fd = tu_file(2 * ps, 14, path, sizeof(path));
	uint8_t *p = tu_map(fd, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct fake_nic_reg last;
	struct ibv_mr *a = safe_mr_reg_mr_iova(tu_pd, p, ps, 0x10000, RW);
	struct ibv_mr *b = safe_mr_reg_mr_iova2(tu_pd, p + ps, ps, 0x20000, RW);

	ck_assert_msg(a && b, "iova registration failed: %s", strerror(errno));
	ck_assert_int_eq(fake_nic_last_reg(&last), 0);
	ck_assert_uint_eq(last.iova, 0x20000);
	tu_assert_shadow_mask(p, 2, 0x3);
	ck_assert_int_eq(fake_nic_write(a, 0, "ia", 2), 0);
	ck_assert_int_eq(fake_nic_write(b, 0, "ib", 2), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(a), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(b), 0);
	tu_assert_file(path, 0, "ia", 2);
	tu_assert_file(path, ps, "ib", 2);
}
END_TEST

/* A large fill copies the file through the engine's own mapping of it:
 * every byte as a read gives it, so the hashes match (a release writes
 * nothing), and the last page's bytes past the end of file (which a store
 * through the mapping leaves in the page cache) are zeros in the shadow, as
 * a read gives them. */
START_TEST(large_fill_reads_like_pread)
{
	char path[600];
	size_t size = 20 * ps + ps / 2;
	int fd = tu_file(size, 5, path, sizeof(path));
	uint8_t *p = tu_map(fd, 21 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct safe_mr_stats before;
	struct ibv_mr *mr;

	p[size + 10] = 0x5a;	/* past EOF, in the page cache's last page */
	mr = safe_mr_reg_mr(tu_pd, p, 21 * ps, RW);
	ck_assert_msg(mr != NULL, "registration failed: %s", strerror(errno));
	tu_assert_shadow_mask(p, 21, (1u << 21) - 1);
	tu_assert_mem_pattern(p, 0, size, 5);
	ck_assert_uint_eq(p[size + 10], 0);
	before = tu_stats();
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_uint_eq(tu_stats().bytes_written_back, before.bytes_written_back);
	tu_assert_file_pattern(path, 0, size, 5);
	ck_assert_int_eq(tu_file_size(path), (off_t)size);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shadow");
	TCase *tc = tu_tcase("shadow");

	tcase_add_test(tc, same_address_same_keys);
	tcase_add_test(tc, thread_writes_while_shadowing);
	tcase_add_test(tc, fork_child_gets_file);
	tcase_add_test(tc, iova_entry_points);
	tcase_add_test(tc, large_fill_reads_like_pread);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
