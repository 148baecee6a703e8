/* SPDX-License-Identifier: MIT */
/* MAP_SHARED coherence across fork (issue 18): a fork child shares its
 * parent's registered file pages as it shares any MAP_SHARED page.  Its
 * stores are what the parent's NIC reads, and the NIC's writes are what
 * the child reads, while the parent holds the registration.
 *
 * The same program runs with SAFE_MR_MODE=off on the fake's 6.1 kernel
 * (a plain registration: coherent by construction, the oracle). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

static int child_status(pid_t pid)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* The child's store to a registered page is what the NIC reads; the
 * release writes it to the file. */
START_TEST(child_store_seen_by_nic)
{
	char path[600], got[8] = { 0 };
	int fd = tu_file(4 * ps, 21, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	pid_t pid;

	ck_assert_ptr_nonnull(mr);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		memcpy(p + ps + 7, "kidstor", 7);
		_exit(0);
	}
	ck_assert_int_eq(child_status(pid), 0);
	ck_assert_int_eq(fake_nic_read(mr, ps + 7, got, 7), 0);
	ck_assert_msg(!memcmp(got, "kidstor", 7), "the child's store is not what the NIC reads");
	ck_assert_mem_eq(p + ps + 7, "kidstor", 7);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, ps + 7, "kidstor", 7);
	ck_assert(tu_mapped_from(p, path));
	close(fd);
}
END_TEST

/* The NIC's write after the fork is what the child reads. */
START_TEST(child_sees_nic_write)
{
	char path[600];
	int fd = tu_file(4 * ps, 22, path, sizeof(path)), go[2], done[2];
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	pid_t pid;
	char c;

	ck_assert_ptr_nonnull(mr);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(done), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(memcmp(p + 3 * ps + 2, "nicwrit", 7) ? 1 : 0);
	}
	ck_assert_int_eq(fake_nic_write(mr, 3 * ps + 2, "nicwrit", 7), 0);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_msg(child_status(pid) == 0, "the child does not see the NIC's write");
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	tu_assert_file(path, 3 * ps + 2, "nicwrit", 7);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fork_coherence");
	TCase *tc = tu_tcase("fork_coherence");

	tcase_add_test(tc, child_store_seen_by_nic);
	tcase_add_test(tc, child_sees_nic_write);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
