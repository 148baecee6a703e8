/* SPDX-License-Identifier: MIT */
/* Modes and reporting: SAFE_MR_MODE=bounce|auto|off with and without ODP, the exit
 * summary of SAFE_MR_STATS=1 and SAFE_MR_LOG levels.  The environment is
 * read once per process, so meson runs this program once per setting and
 * it checks what that setting must do. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v ? v : dflt;
}

START_TEST(mode)
{
	const char *mode = env_or("SAFE_MR_MODE", "bounce");
	bool odp = !strcmp(env_or("FAKE_VERBS_ODP", "0"), "1");
	char path[600];
	int fd = tu_file(4 * ps, 111, path, sizeof(path));
	uint8_t *p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	uint8_t *anon = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct safe_mr_stats s0 = tu_stats(), s1;
	struct fake_nic_reg last;
	struct ibv_mr *mr, *ma;

	errno = 0;
	mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	ck_assert_int_eq(fake_nic_last_reg(&last), 0);
	if (!strcmp(mode, "off")) {
		/* Passed through untouched: the (6.5) kernel refuses it. */
		ck_assert_ptr_null(mr);
		ck_assert_int_eq(errno, EFAULT);
		ck_assert_uint_eq(last.access, RW);
		tu_assert_shadow_mask(p, 4, 0);
		ck_assert_uint_eq(tu_stats().shadowed, s0.shadowed);
	} else if (!strcmp(mode, "auto") && odp) {
		ck_assert_msg(mr != NULL, "auto+ODP registration failed: %s", strerror(errno));
		ck_assert_uint_eq(last.access, RW | IBV_ACCESS_ON_DEMAND);
		tu_assert_shadow_mask(p, 4, 0);
		s1 = tu_stats();
		ck_assert_uint_eq(s1.odp, s0.odp + 1);
		ck_assert_uint_eq(s1.shadowed, s0.shadowed);
		/* ODP follows the mapping: the NIC writes the page cache. */
		ck_assert_int_eq(fake_nic_write(mr, 5, "odp", 3), 0);
		tu_assert_file(path, 5, "odp", 3);
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	} else {
		ck_assert_msg(!strcmp(mode, "bounce") || !strcmp(mode, "auto"), "mode %s", mode);
		ck_assert_msg(mr != NULL, "%s registration failed: %s", mode, strerror(errno));
		ck_assert_uint_eq(last.access & IBV_ACCESS_ON_DEMAND, 0);
		tu_assert_shadow_mask(p, 4, 0xf);
		s1 = tu_stats();
		ck_assert_uint_eq(s1.shadowed, s0.shadowed + 1);
		ck_assert_uint_eq(s1.odp, s0.odp);
		ck_assert_int_eq(fake_nic_write(mr, 5, "bnc", 3), 0);
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
		tu_assert_file(path, 5, "bnc", 3);
	}
	/* Anonymous memory passes through in every mode. */
	ma = safe_mr_reg_mr(tu_pd, anon, ps, RW);
	ck_assert_ptr_nonnull(ma);
	ck_assert_int_eq(fake_nic_last_reg(&last), 0);
	ck_assert_uint_eq(last.access, RW);
	ck_assert_int_eq(safe_mr_dereg_mr(ma), 0);
}
END_TEST

/* Run a child that registers a shadowed range and leaves with exit(3) or
 * _exit(2); return what it wrote to stderr (malloc'ed). */
static char *child_stderr(bool clean_exit)
{
	char path[600], out[700];
	int fd = tu_file(2 * ps, 112, path, sizeof(path));
	pid_t pid;
	int st, ofd;
	char *buf;
	ssize_t n;

	snprintf(out, sizeof(out), "%s/stderr", tu_dir);
	ofd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(ofd, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint8_t *p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		struct ibv_mr *mr;

		dup2(ofd, 2);
		mr = safe_mr_reg_mr(tu_pd, p, 2 * ps, RW);
		if (!mr || fake_nic_write(mr, 0, "x", 1) || safe_mr_dereg_mr(mr))
			_exit(9);
		if (clean_exit)
			exit(0);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (%#x)", st);
	buf = calloc(1, 65536);
	n = pread(ofd, buf, 65535, 0);
	ck_assert_int_ge(n, 0);
	close(ofd);
	return buf;
}

START_TEST(stats_at_exit)
{
	char *err = child_stderr(true), *line, *save = NULL;
	int nstats = 0;

	for (line = strtok_r(err, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "safe_mr: stats", 14))
			nstats++;
	ck_assert_msg(nstats == 1, "SAFE_MR_STATS=1: %d 'safe_mr: stats' lines at exit, want 1; stderr was:\n%s",
		      nstats, err);
	free(err);
}
END_TEST

START_TEST(log_level)
{
	const char *lvl = getenv("SAFE_MR_LOG");
	char *err = child_stderr(false);

	if (!strcmp(lvl, "debug"))
		ck_assert_msg(strlen(err) > 0, "SAFE_MR_LOG=debug: a shadowed registration logged nothing");
	else if (!strcmp(lvl, "error"))
		ck_assert_msg(strlen(err) == 0, "SAFE_MR_LOG=error: a successful registration logged:\n%s",
			      err);
	else
		ck_abort_msg("SAFE_MR_LOG=%s: this test checks debug and error", lvl);
	free(err);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("modes");
	TCase *tc = tu_tcase("modes");

	tcase_add_test(tc, mode);
	if (getenv("SAFE_MR_STATS"))
		tcase_add_test(tc, stats_at_exit);
	if (getenv("SAFE_MR_LOG"))
		tcase_add_test(tc, log_level);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
