/* SPDX-License-Identifier: MIT */
/* The guardian (lib/guard.h) when it is late, signalled with the job, or
 * cannot help:
 *
 *  late_not_dead    stopped (SIGSTOP: a frozen cgroup, a suspended job)
 *                   while files are deregistered and another file takes
 *                   their arena pages: it is late, not dead.  0.2.0 closed
 *                   its socket after a 2 s ack timeout, and the guardian
 *                   then wrote the arena (another file's shadow) into a
 *                   file deregistered cleanly before.
 *  late_many_files  stopped while the process shadows 40 new files: the
 *                   process must not block (0.2.0 blocked in sendmsg once
 *                   the guardian's queue was full, engine lock held).
 *  group_sigterm    a stop that signals every process of the job (SIGTERM
 *                   to the guardian too, then to the process): the shadows
 *                   still reach the file.
 *  pid1             the process is PID 1 of its PID namespace: no guardian
 *                   can outlive it; none is started (its wait() must not
 *                   see one) and it says so; with SAFE_MR_GUARDIAN=require
 *                   the registration fails with ESRCH.
 *  lost_fds         the guardian's descriptor table is full: the files it
 *                   could not take are reported, not dropped in silence.
 *  wait_api         safe_mr_guardian_wait: late is not done; done means
 *                   the shadow is in the file, before the reap.
 *
 * The test process is a child subreaper: the guardian (an orphan by its
 * double fork) is reparented to it, so the test can signal and reap it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"
#include "../guardian_procs.h"
#include "inject.h"

static bool require_mode(void)
{
	const char *g = getenv("SAFE_MR_GUARDIAN");

	return g && !strcmp(g, "require");
}




static void say(int fd, char c)
{
	ck_assert_int_eq(write(fd, &c, 1), 1);
}

static void hear(int fd, char want)
{
	char c = 0;

	ck_assert_int_eq(read(fd, &c, 1), 1);
	ck_assert_int_eq(c, want);
}

/* A file of n pages mapped, registered and shadowed (in the target). */
struct reg {
	char path[600];
	int fd;
	uint8_t *p;
	struct ibv_mr *mr;
};

static void reg_file(struct reg *r, size_t pages, unsigned int seed)
{
	r->fd = tu_file(pages * ps, seed, r->path, sizeof(r->path));
	if (r->fd < 0)
		_exit(80);
	r->p = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	r->mr = r->p == MAP_FAILED ? NULL : safe_mr_reg_mr(tu_pd, r->p, pages * ps, RW);
	if (!r->mr || !tu_shadowed(r->p))
		_exit(81);
}

static void nic_fill(struct reg *r, size_t pages, char c)
{
	char buf[4096];

	memset(buf, c, sizeof(buf));
	for (size_t i = 0; i < pages; i++)
		if (fake_nic_write(r->mr, i * ps, buf, ps < sizeof(buf) ? ps : sizeof(buf)))
			_exit(82);
}

static void assert_filled(const char *path, size_t pages, char c)
{
	char want[4096];

	memset(want, c, sizeof(want));
	for (size_t i = 0; i < pages; i++)
		tu_assert_file(path, (off_t)(i * ps), want, ps < sizeof(want) ? ps : sizeof(want));
}

/* The target's guardian: our child (we are its subreaper). */
static pid_t wait_guardian(void)
{
	pid_t g = smt_guardian_wait_for(getpid(), 0);

	ck_assert_msg(g > 0, "no guardian running for the target");
	return g;
}

#define reap smt_guardian_reap
#define guardian_holds smt_guardian_holds

/* Fork a target running fn(up, down): it talks to us over two pipes. */
static pid_t target(void (*fn)(int up, int down), int *up, int *down)
{
	int u[2], d[2];
	pid_t t;

	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ck_assert_int_eq(pipe2(u, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(d, O_CLOEXEC), 0);
	t = fork();
	ck_assert_int_ge(t, 0);
	if (t == 0) {
		close(u[0]);
		close(d[1]);
		/* Check's own SIGTERM handler would signal the test's group. */
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		alarm(60);
		fn(u[1], d[0]);
		_exit(0);
	}
	close(u[1]);
	close(d[0]);
	*up = u[0];
	*down = d[1];
	return t;
}

static int target_status(pid_t t)
{
	int st;

	ck_assert_int_eq(waitpid(t, &st, 0), t);
	return st;
}

/* ------------------------------------------------------------ late_not_dead */



static struct reg la, lb, lc;

static void late_target(int up, int down)
{
	reg_file(&la, 4, 51);
	reg_file(&lb, 1, 52);
	say(up, 'r');		/* the test stops the guardian */
	hear(down, 'g');
	if (safe_mr_dereg_mr(lb.mr))	/* its ack cannot come */
		_exit(83);
	nic_fill(&la, 4, 'A');
	if (safe_mr_dereg_mr(la.mr))	/* written back: A is clean */
		_exit(84);
	/* C takes the arena pages A gave back. */
	reg_file(&lc, 4, 53);
	nic_fill(&lc, 4, 'C');
	say(up, 'c');		/* the test lets the guardian run again */
	hear(down, 'x');
	/* Caught up: a file's last shadow goes, and the guardian holds it
	 * no more when the call returns (the umount promise is back). */
	{
		struct reg ld;
		pid_t g = smt_guardian_find(0, getpid());

		reg_file(&ld, 1, 54);
		if (!g || safe_mr_dereg_mr(ld.mr))
			_exit(86);
		if (guardian_holds(g, ld.path))
			_exit(87);	/* the dereg returned before its ack */
	}
	say(up, 'd');
	hear(down, 'y');
	exit(0);		/* the exit sync point: C is written, clean word */
}


START_TEST(late_not_dead)
{
	int up, down, st;
	pid_t t = target(late_target, &up, &down), g;

	hear(up, 'r');
	g = wait_guardian();
	ck_assert_int_eq(kill(g, SIGSTOP), 0);
	say(down, 'g');
	hear(up, 'c');
	ck_assert_int_eq(kill(g, SIGCONT), 0);
	usleep(200000);		/* whatever it does with what it read, it does now */
	say(down, 'x');
	hear(up, 'd');		/* else the target's status says why */
	say(down, 'y');
	st = target_status(t);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "target status %#x", st);
	ck_assert_int_eq(reap(g), 0);	/* a clean exit: it wrote nothing */
	/* tu_file's names: seed, the target's pid, its count of files. */
	snprintf(la.path, sizeof(la.path), "%s/file51-%d-0", tu_dir, (int)t);
	snprintf(lb.path, sizeof(lb.path), "%s/file52-%d-1", tu_dir, (int)t);
	snprintf(lc.path, sizeof(lc.path), "%s/file53-%d-2", tu_dir, (int)t);
	assert_filled(la.path, 4, 'A');
	assert_filled(lc.path, 4, 'C');
	tu_assert_file_pattern(lb.path, 0, ps, 52);
}
END_TEST

/* ---------------------------------------------------------- late_many_files */

#define MANY 40

static void many_target(int up, int down)
{
	static struct reg r[MANY];

	reg_file(&r[0], 1, 60);
	say(up, 'r');
	hear(down, 'g');
	/* alarm(60) in target(): a registration that blocks fails the test. */
	alarm(20);
	for (int i = 1; i < MANY; i++) {
		reg_file(&r[i], 1, 60 + (unsigned)i);
		nic_fill(&r[i], 1, (char)('a' + i % 26));
	}
	for (int i = 1; i < MANY / 2; i++)
		if (safe_mr_dereg_mr(r[i].mr))
			_exit(85);
	alarm(0);
	say(up, 'd');
	hear(down, 'k');
	for (;;)
		pause();	/* killed: the guardian writes the rest */
}

START_TEST(late_many_files)
{
	int up, down, st;
	pid_t t = target(many_target, &up, &down), g;
	char c = 0;

	hear(up, 'r');
	g = wait_guardian();
	ck_assert_int_eq(kill(g, SIGSTOP), 0);
	say(down, 'g');
	ck_assert_int_eq(read(up, &c, 1), 1);
	ck_assert_msg(c == 'd', "the process blocked on a stopped guardian");
	ck_assert_int_eq(kill(g, SIGCONT), 0);
	say(down, 'k');
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	st = target_status(t);
	ck_assert(WIFSIGNALED(st));
	/* It caught up with every message, then wrote what was left. */
	ck_assert_int_eq(reap(g), 3);
	for (int i = 1; i < MANY; i++) {
		char path[600], want = (char)('a' + i % 26);
		int fd;

		/* tu_file's names: seed, the target's pid, its count of files
		 * (the target made them all; we made none before the fork). */
		snprintf(path, sizeof(path), "%s/file%u-%d-%d", tu_dir, 60 + (unsigned)i, (int)t, i);
		fd = open(path, O_RDONLY);
		ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
		close(fd);
		assert_filled(path, 1, want);
	}
}
END_TEST

/* ------------------------------------------------------------ group_sigterm */

static struct reg gt;

static void term_target(int up, int down)
{
	reg_file(&gt, 2, 70);
	nic_fill(&gt, 2, 'T');
	say(up, 'r');
	hear(down, 'x');
	for (;;)
		pause();
}

START_TEST(group_sigterm)
{
	int up, down, st;
	pid_t t = target(term_target, &up, &down), g;

	hear(up, 'r');
	g = wait_guardian();
	/* As slurmd or systemd stop a job: every process gets SIGTERM (the
	 * guardian first here, so that a guardian that dies of it is seen). */
	ck_assert_int_eq(kill(g, SIGTERM), 0);
	usleep(100000);
	ck_assert_int_eq(kill(t, SIGTERM), 0);
	st = target_status(t);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
	ck_assert_int_eq(reap(g), 3);
	snprintf(gt.path, sizeof(gt.path), "%s/file70-%d-0", tu_dir, (int)t);
	assert_filled(gt.path, 2, 'T');
}
END_TEST

/* ----------------------------------------------------------------- wait_api */

START_TEST(wait_api)
{
	int up, down, st;
	pid_t t = target(term_target, &up, &down), g;
	siginfo_t si;

	hear(up, 'r');
	g = wait_guardian();
	ck_assert_int_eq(safe_mr_guardian_wait(t, 50), ETIMEDOUT);	/* alive */
	ck_assert_int_eq(kill(g, SIGSTOP), 0);
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	/* A zombie, not reaped: its guardian is late, not done. */
	ck_assert_int_eq(waitid(P_PID, (id_t)t, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(safe_mr_guardian_wait(t, 200), ETIMEDOUT);
	ck_assert_int_eq(kill(g, SIGCONT), 0);
	ck_assert_int_eq(safe_mr_guardian_wait(t, -1), 0);
	/* Done means written: before the reap, before any look at the file. */
	snprintf(gt.path, sizeof(gt.path), "%s/file70-%d-0", tu_dir, (int)t);
	assert_filled(gt.path, 2, 'T');
	st = target_status(t);
	ck_assert(WIFSIGNALED(st));
	ck_assert_int_eq(safe_mr_guardian_wait(t, 0), ESRCH);
	ck_assert_int_eq(safe_mr_guardian_wait(0, 0), EINVAL);
	ck_assert_int_eq(safe_mr_guardian_wait(getpid(), 0), 0);	/* has none */
	ck_assert_int_eq(reap(g), 3);
}
END_TEST

/* --------------------------------------------------------------------- pid1 */

/* As PID 1 of a new PID namespace: register; report over `up` whether it
 * succeeded (errno), whether our wait() sees a child, and our stderr. */
static void pid1_target(int up, int down)
{
	int err = 0, w;
	struct reg r;

	(void)down;
	r.fd = tu_file(2 * ps, 75, r.path, sizeof(r.path));
	r.p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
	if (r.p == MAP_FAILED)
		_exit(86);
	r.mr = safe_mr_reg_mr(tu_pd, r.p, 2 * ps, RW);
	if (!r.mr)
		err = errno;
	usleep(100000);		/* a guardian's double fork would be done */
	w = waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
	if (write(up, &err, sizeof(err)) != sizeof(err) || write(up, &w, sizeof(w)) != sizeof(w))
		_exit(87);
	if (r.mr && safe_mr_dereg_mr(r.mr))
		_exit(88);
	_exit(0);
}

START_TEST(pid1)
{
	int up[2], errp[2], st, err = -1, nochild = 0;
	char log[4096] = "";
	ssize_t n, got = 0;
	pid_t x;

	ck_assert_int_eq(pipe2(up, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(errp, O_CLOEXEC), 0);
	/* The new namespace is made in a child that only forks its PID 1 and
	 * leaves with _exit (LeakSanitizer cannot stop the world of a
	 * process whose children live in another PID namespace). */
	x = fork();
	ck_assert_int_ge(x, 0);
	if (x == 0) {
		pid_t t;
		int tst;

		if (unshare(CLONE_NEWPID))
			_exit(errno == EPERM ? 77 : 70);
		t = fork();
		if (t < 0)
			_exit(71);
		if (t == 0) {
			if (getpid() != 1)
				_exit(89);
			dup2(errp[1], STDERR_FILENO);
			close(up[0]);
			pid1_target(up[1], -1);
		}
		_exit(waitpid(t, &tst, 0) == t && WIFEXITED(tst) ? WEXITSTATUS(tst) : 72);
	}
	close(up[1]);
	close(errp[1]);
	if (read(up[0], &err, sizeof(err)) != sizeof(err)) {
		st = target_status(x);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 77, "status %#x", st);
		fprintf(stderr, "pid1: no CLONE_NEWPID here (not root): not run\n");
		ck_assert_int_ne(tu_require_root("a PID namespace", "false"), 1);
		return;
	}
	ck_assert_int_eq(read(up[0], &nochild, sizeof(nochild)), sizeof(nochild));
	while (got < (ssize_t)sizeof(log) - 1 &&
	       (n = read(errp[0], log + got, sizeof(log) - 1 - (size_t)got)) > 0)
		got += n;
	log[got] = 0;
	st = target_status(x);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "target status %#x", st);
	ck_assert_msg(nochild, "PID 1's wait() sees a child: a guardian was started");
	ck_assert_msg(strstr(log, "PID 1 of its PID namespace"), "not said: %s", log);
	if (require_mode())
		ck_assert_int_eq(err, ESRCH);
	else
		ck_assert_int_eq(err, 0);
}
END_TEST

/* ----------------------------------------------------------------- lost_fds */

#define LOST 24

static void lost_target(int up, int down)
{
	static struct reg r[LOST];

	reg_file(&r[0], 1, 80);
	say(up, 'r');
	hear(down, 'g');	/* the guardian's descriptor table is small now */
	for (int i = 1; i < LOST; i++)
		reg_file(&r[i], 1, 80 + (unsigned)i);
	exit(0);
}

START_TEST(lost_fds)
{
	int up, down, st, errp[2];
	struct rlimit small = { 8, 8 };
	char log[16384] = "";
	ssize_t n, got = 0;
	pid_t t, g;
	int saved = dup(STDERR_FILENO);

	ck_assert_int_eq(pipe2(errp, O_CLOEXEC), 0);
	dup2(errp[1], STDERR_FILENO);	/* the target's stderr */
	t = target(lost_target, &up, &down);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(errp[1]);
	hear(up, 'r');
	g = wait_guardian();
	ck_assert_int_eq(prlimit(g, RLIMIT_NOFILE, &small, NULL), 0);
	say(down, 'g');
	st = target_status(t);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "target status %#x", st);
	ck_assert_int_eq(reap(g), 0);
	while (got < (ssize_t)sizeof(log) - 1 &&
	       (n = read(errp[0], log + got, sizeof(log) - 1 - (size_t)got)) > 0)
		got += n;
	log[got] = 0;
	ck_assert_msg(strstr(log, "could not take"), "lost descriptors not reported: %s", log);
}
END_TEST

/* ---------------------------------------------------------- late_and_exec */

/* late_queue_death: the guardian is late (stopped) while the process
 * shadows more files than the socket's buffer holds GM_FILE messages
 * (about 280 with the default 212992-byte wmem); the rest wait in the
 * engine's own queue.  The guardian runs again and has all the time it
 * wants, the process is idle (nothing flushes its queue), then dies: the
 * guardian never got those files' descriptors, their records are valid,
 * and their shadows are lost in silence.  README: "everything that reached
 * a shadow before the death reaches the file". */
#define QMANY 400

static void queue_target(int up, int down)
{
	static struct reg r[QMANY];

	reg_file(&r[0], 1, 100);
	say(up, 'r');
	hear(down, 'g');
	for (int i = 1; i < QMANY; i++) {
		reg_file(&r[i], 1, 100 + (unsigned)i);
		nic_fill(&r[i], 1, (char)('a' + i % 26));
	}
	say(up, 'd');
	for (;;)
		pause();	/* killed, idle: the guardian writes the rest */
}

START_TEST(late_queue_death)
{
	int up, down, st, lost = 0, first = 0;
	pid_t t = target(queue_target, &up, &down), g;
	char c = 0;

	hear(up, 'r');
	g = wait_guardian();
	ck_assert_int_eq(kill(g, SIGSTOP), 0);
	say(down, 'g');
	ck_assert_int_eq(read(up, &c, 1), 1);
	ck_assert_int_eq(c, 'd');
	ck_assert_int_eq(kill(g, SIGCONT), 0);
	usleep(1000000);	/* it catches up with everything it was sent */
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	st = target_status(t);
	ck_assert(WIFSIGNALED(st));
	reap(g);
	for (int i = 1; i < QMANY; i++) {
		char path[600], want = (char)('a' + i % 26), got = 0;
		int fd;

		snprintf(path, sizeof(path), "%s/file%u-%d-%d", tu_dir, 100 + (unsigned)i, (int)t, i);
		fd = open(path, O_RDONLY);
		ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
		ck_assert_int_eq(pread(fd, &got, 1, 0), 1);
		close(fd);
		if (got != want && !lost++)
			first = i;
		unlink(path);
	}
	ck_assert_msg(!lost, "%d of %d files shadowed while the guardian was late lost their "
		      "shadow at the death (the first: file %d): their GM_FILE never left the "
		      "engine's queue", lost, QMANY - 1, first);
}
END_TEST

/* exec_failed_dup: safe_mr_exec_prepare's writeback fails (EIO: it says
 * "the guardian writes it after the exec"), so the guardian is not told;
 * the exec fails too, and safe_mr_exec_failed records every chunk again
 * in the same guardian without releasing the old records.  The stale
 * record of file A (its old slot: A's descriptor, still open in the
 * guardian) outlives A's deregistration; file B's shadow takes A's arena
 * pages, and at the death the guardian writes B's data into file A. */
static struct reg xa, xb;

static void exec_target(int up, int down)
{
	char *argv[] = { "no-such-program", NULL };
	int err;

	(void)down;
	reg_file(&xa, 4, 110);
	nic_fill(&xa, 4, 'A');
	if (!inj_install())
		_exit(90);
	inj_arm(xa.fd, INJ_WRITE, 0, 1000000, EIO);
	err = safe_mr_exec_prepare();
	inj_disarm();
	if (err == 0)
		_exit(91);	/* the premise: the writeback failed */
	execv("/nonexistent/no-such-program", argv);
	safe_mr_exec_failed();
	/* A is written (A's bytes in the file) and goes. */
	if (safe_mr_dereg_mr(xa.mr))
		_exit(92);
	if (munmap(xa.p, 4 * ps))
		_exit(93);
	/* B's shadow takes the arena pages A gave back. */
	reg_file(&xb, 4, 111);
	nic_fill(&xb, 4, 'B');
	say(up, 'k');
	for (;;)
		pause();
}

START_TEST(exec_failed_dup)
{
	int up, down, st;
	pid_t t = target(exec_target, &up, &down), g;
	char c = 0;

	ck_assert_int_eq(read(up, &c, 1), 1);
	ck_assert_msg(c == 'k', "the target failed before the premise");
	g = wait_guardian();
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	st = target_status(t);
	ck_assert(WIFSIGNALED(st));
	reap(g);
	snprintf(xa.path, sizeof(xa.path), "%s/file110-%d-0", tu_dir, (int)t);
	snprintf(xb.path, sizeof(xb.path), "%s/file111-%d-1", tu_dir, (int)t);
	assert_filled(xb.path, 4, 'B');
	/* A was deregistered cleanly with 'A': nothing may write it after. */
	assert_filled(xa.path, 4, 'A');
}
END_TEST

/* wait_timeout_backlog: safe_mr_guardian_wait(pid, 0) on a live process
 * must return ETIMEDOUT at once, however often it is called (a monitor
 * that polls).  The guardian never accepts: every waiter's connection
 * stays in its accept queue after the waiter closed it, and once the
 * queue (listen backlog 64) is full, connect() blocks, whatever the
 * timeout, until the guardian exits. */
START_TEST(wait_timeout_backlog)
{
	int up, down, st;
	pid_t t = target(term_target, &up, &down), g, h;

	hear(up, 'r');
	g = wait_guardian();
	h = fork();
	ck_assert_int_ge(h, 0);
	if (h == 0) {
		signal(SIGALRM, SIG_DFL);	/* not Check's: it kills the group */
		alarm(10);
		for (int i = 0; i < 200; i++)
			if (safe_mr_guardian_wait(t, 0) != ETIMEDOUT)
				_exit(1);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(h, &st, 0), h);
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	target_status(t);
	reap(g);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "200 calls of safe_mr_guardian_wait(pid, 0) on a live process did not all "
		      "return ETIMEDOUT within 10 s (status %#x: %s)", st,
		      WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? "blocked in connect" : "?");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("guardian_life");
	TCase *tc = tu_tcase("guardian_life");

	tcase_set_timeout(tc, 90);
	if (!require_mode()) {
		tcase_add_test(tc, late_not_dead);
		tcase_add_test(tc, late_many_files);
		tcase_add_test(tc, group_sigterm);
		tcase_add_test(tc, lost_fds);
		tcase_add_test(tc, wait_api);
	}
	tcase_add_test(tc, pid1);
	suite_add_tcase(s, tc);
	if (!require_mode()) {
		TCase *rv = tu_tcase("late_and_exec");

		tcase_set_timeout(rv, 90);
		tcase_add_test(rv, late_queue_death);
		tcase_add_test(rv, exec_failed_dup);
		tcase_add_test(rv, wait_timeout_backlog);
		suite_add_tcase(s, rv);
	}
	return tu_run(s);
}
