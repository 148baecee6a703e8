/* SPDX-License-Identifier: MIT */
/* fsync is async-signal-safe: a signal handler may call it while the same
 * thread is inside ibv_reg_mr/ibv_dereg_mr.  The sync point must not wait
 * for the engine lock its own thread holds (the engine once deadlocked
 * here): for a shadowed file it returns EDEADLK (its shadowed data was not
 * written; call again outside the handler), otherwise it works. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "tutil.h"

#define LEN (16u << 20)

static int hfd = -1, other_fd = -1;
static volatile sig_atomic_t calls, edeadlk, ok, other_ok, bad;

static void on_alarm(int sig)
{
	int e = errno;

	(void)sig;
	calls++;
	if (safe_mr_fsync(hfd) == 0)
		ok++;
	else if (errno == EDEADLK)
		edeadlk++;
	else
		bad++;
	/* a file with no shadow: always just fsync */
	if (safe_mr_fsync(other_fd) == 0)
		other_ok++;
	else
		bad++;
	errno = e;
}

START_TEST(fsync_in_handler)
{
	char path[600], other[600];
	uint8_t *p;
	struct sigaction sa;
	struct itimerval it = { { 0, 7000 }, { 0, 7000 } };
	int rounds = 0;

	hfd = tu_file(LEN, 61, path, sizeof(path));
	other_fd = tu_file(ps, 62, other, sizeof(other));
	p = tu_map(hfd, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
	/* A registration that is alive the whole time, so that every handler
	 * call finds a shadowed file. */
	struct ibv_mr *keep = safe_mr_reg_mr(tu_pd, p, ps, RW);
	ck_assert_ptr_nonnull(keep);
	ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	while (rounds < 60 && (edeadlk < 3 || rounds < 4)) {
		struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p + ps, LEN - ps, RW);

		ck_assert_ptr_nonnull(mr);
		ck_assert_int_eq(fake_nic_write(mr, (size_t)rounds * ps, "sig", 3), 0);
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
		rounds++;
	}
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	ck_assert_int_eq(safe_mr_dereg_mr(keep), 0);
	ck_assert_msg(!bad, "%d handler calls failed otherwise", (int)bad);
	ck_assert_msg(edeadlk > 0, "no handler call interrupted the engine in %d rounds (%d calls)",
		      rounds, (int)calls);
	ck_assert_int_eq(other_ok, calls);
	for (int i = 0; i < rounds; i++)
		tu_assert_file(path, (off_t)(ps + (size_t)i * ps), "sig", 3);
	ck_assert_int_eq(safe_mr_fsync(hfd), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("signal");
	TCase *tc = tu_tcase("signal");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, fsync_in_handler);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
