/* SPDX-License-Identifier: MIT */
/* Where io_uring_setup is refused (seccomp, old kernels) writeback falls
 * back to pwrite by itself, reports it in the stats, and loses nothing.
 * The refusal is a seccomp filter returning ENOSYS, installed in a forked
 * child so the test process itself keeps io_uring. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "fake_nic.h"
#include "st_util.h"

static void deny_io_uring_setup(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		perror("seccomp");
		_exit(2);
	}
	if (syscall(__NR_io_uring_setup, 4, NULL) != -1 || errno != ENOSYS) {
		fprintf(stderr, "seccomp filter did not take effect\n");
		_exit(3);
	}
}

/* In the child: register, let the NIC change scattered pages, sync. */
static int child(void)
{
	int fd = st_file(64 * PS);
	struct safe_mr_file_region *r = safe_mr_file_reg(pd, fd, 0, 64 * PS, RW_ACCESS);
	char *buf = malloc(PS);
	struct safe_mr_stats s;
	int ret;

	if (!r)
		return 10;
	for (size_t p = 0; p < 64; p += 3) {
		st_fill(buf, p * PS, PS, 1);
		if (fake_nic_write(r->mr, p * PS, buf, PS))
			return 11;
	}
	if (safe_mr_file_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE))
		return 12;
	for (size_t p = 0; p < 64; p++)
		if (!st_file_is(fd, p * PS, PS, p % 3 ? 0 : 1))
			return 13;
	safe_mr_stats(&s);
	if (s.writeback_engine != SAFE_MR_WB_PWRITE) {
		fprintf(stderr, "engine %u, want pwrite\n", s.writeback_engine);
		return 14;
	}
	if (s.write_calls != 22 || s.sync_errors)
		return 15;
	ret = safe_mr_file_dereg(r) ? 16 : 0;
	free(buf);
	st_teardown();
	return ret;
}

START_TEST(seccomp_denies_io_uring)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		deny_io_uring_setup();
		pd = st_pd();
		_exit(child());
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "child died");
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("uring_fallback");
	TCase *tc = tcase_create("fallback");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, seccomp_denies_io_uring);
	suite_add_tcase(s, tc);
	return st_run(s);
}
