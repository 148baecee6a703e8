/* SPDX-License-Identifier: MIT */
/* The guardian (lib/guard.h): a registering process that dies without a
 * sync point (SIGKILL, SIGSEGV, _exit, execve) still gets what the NIC and
 * the CPU wrote into its shadows to the file; a clean exit leaves nothing
 * for the guardian to do; a forked child does not keep the parent's
 * guardian waiting; pages the shadow did not change are not written over
 * another writer's data; the guardian holds none of the process's other
 * descriptors and is never the process's child; a guardian that cannot
 * start does not fail the registration.
 *
 * The test process is a child subreaper: the guardian (a grandchild of the
 * target, orphaned on purpose) is reparented to it, so the test reaps it
 * and reads its exit status: 0 clean exit, 3 wrote back after a death.
 *
 * With SAFE_MR_GUARDIAN=off (the negative control, test guardian_off) the
 * same deaths lose the data: the file keeps its old contents. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

/* Our children named safe_mr-guardian (orphans reparented to us). */
#define find_guardian() smt_guardian_find(getpid(), 0)
#define guardian_holds smt_guardian_holds

enum end { END_KILL, END_SEGV, END_EXIT, END_EXEC, END_CLEAN, END_FORK_KILL,
	   END_NO_GUARDIAN, END_SYNCED_KILL };

/* Address space for 2 GiB more than we have: the guardian's state (a
 * 16 GiB mapping) cannot be mapped, so it cannot start. */
static void starve(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long kb = 0;
	struct rlimit r;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %lu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	r.rlim_cur = r.rlim_max = (kb + (2ul << 20)) * 1024;
	if (!kb || setrlimit(RLIMIT_AS, &r))
		_exit(89);
}

static bool guardian_on(void)
{
	const char *g = getenv("SAFE_MR_GUARDIAN");

	return !g || strcmp(g, "off");
}

static void write_all(int fd, const void *p, size_t n)
{
	ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
}

static void read_all(int fd, void *p, size_t n)
{
	ck_assert_int_eq(read(fd, p, n), (ssize_t)n);
}

/* The target: shadows 4 pages of the file, the "NIC" writes page 0, the
 * CPU page 2; tells the test (ready: its pid, or a forked child's), waits
 * for the go, and ends as asked. */
static void target(const char *path, enum end how, int ready, int go)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	/* A descriptor the guardian must not inherit (as a uverbs fd). */
	int decoy = open("/dev/zero", O_RDONLY);
	uint8_t *p;
	struct ibv_mr *mr;
	pid_t other = 0;
	char c;

	if (fd < 0 || decoy < 0)
		_exit(90);
	if (how == END_NO_GUARDIAN)
		starve();
	p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	mr = p == MAP_FAILED ? NULL : safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	if (!mr || !tu_shadowed(p))
		_exit(91);
	/* The guardian is nobody's child here: our wait() never sees it. */
	if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
		_exit(93);
	/* A child that inherits everything and outlives us (forked before
	 * the writes: fork is a sync point). */
	if (how == END_FORK_KILL) {
		other = fork();
		if (other == 0) {
			for (;;)
				pause();
		}
	}
	if (fake_nic_write(mr, 100, "written by the NIC", 18))
		_exit(92);
	memcpy(p + 2 * ps + 7, "stored by the CPU", 17);
	/* Written back (to the page cache): the guardian must know the file
	 * holds these pages now. */
	if (how == END_SYNCED_KILL && safe_mr_sync_all(0))
		_exit(97);
	if (write(ready, &other, sizeof(other)) != sizeof(other) || read(go, &c, 1) != 1)
		_exit(94);
	switch (how) {
	case END_SEGV: {
		struct rlimit no = { 0, 0 };

		setrlimit(RLIMIT_CORE, &no);
		signal(SIGSEGV, SIG_DFL);
		*(volatile int *)(uintptr_t)atoi("8") = 1;
		break;
	}
	case END_EXIT:
		_exit(0);
	case END_EXEC:
		execl("/bin/true", "true", (char *)NULL);
		_exit(95);
	case END_CLEAN:
	case END_NO_GUARDIAN:
		exit(0);	/* the exit sync point, then a clean word to the guardian */
	default:
		for (;;)
			pause();	/* killed */
	}
	_exit(96);
}


/* The guardian's descriptors: /dev/null, stderr, its socket, the two
 * memfds and the file (once it has read them from the socket), never the
 * decoy (/dev/zero). */
static bool guardian_fds(pid_t g, const char *path)
{
	char dir[64], f[400], l[600];
	struct dirent *e;
	bool file = false, arena = false, st = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)g);
	d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(f, sizeof(f), "%s/%s", dir, e->d_name);
		n = readlink(f, l, sizeof(l) - 1);
		ck_assert_int_gt(n, 0);
		l[n] = 0;
		ck_assert_msg(strcmp(l, "/dev/zero"), "guardian holds the process's fd %s -> %s",
			      e->d_name, l);
		file |= !strcmp(l, path);
		arena |= !strncmp(l, "/memfd:safe_mr-shadow", 21);
		st |= !strncmp(l, "/memfd:safe_mr-state", 20);
	}
	closedir(d);
	return file && arena && st;
}

static void check_guardian_fds(pid_t g, const char *path)
{
	char f[64], l[64];
	ssize_t n;

	for (int i = 0; i < 500 && !guardian_fds(g, path); i++)
		usleep(10000);
	ck_assert_msg(guardian_fds(g, path), "the guardian lacks the file or a memfd");
	/* Nor the process's working directory (a umount would be busy). */
	snprintf(f, sizeof(f), "/proc/%d/cwd", (int)g);
	n = readlink(f, l, sizeof(l) - 1);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(l[0], '/');
}


/* The guardian's exit status (it is our only other child by now), or -1
 * if none came within 30 s. */
static int reap_guardian(void)
{
	int st;

	for (int i = 0; i < 3000; i++) {
		pid_t w = waitpid(-1, &st, WNOHANG);

		if (w > 0)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (w < 0 && errno == ECHILD)
			return -1;
		usleep(10000);
	}
	return -1;
}

/* other_writer: another process writes a page the shadow never changed
 * (page 1), or, after a sync (END_SYNCED_KILL), one the shadow changed and
 * wrote back since (page 0): the guardian must not write either. */
static void run(enum end how, bool other_writer)
{
	char path[600];
	int rd[2], gp[2], st, gst;
	pid_t t, other, g = 0;
	int fd = tu_file(4 * ps, 41, path, sizeof(path));

	close(fd);
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(gp, O_CLOEXEC), 0);
	t = fork();
	ck_assert_int_ge(t, 0);
	if (t == 0) {
		close(rd[0]);
		close(gp[1]);
		target(path, how, rd[1], gp[0]);
	}
	close(rd[1]);
	close(gp[0]);
	read_all(rd[0], &other, sizeof(other));
	if (how == END_NO_GUARDIAN) {
		/* The registration went on without it (shadowed: checked). */
		ck_assert_int_eq(find_guardian(), 0);
	} else if (guardian_on()) {
		g = find_guardian();
		ck_assert_msg(g > 0, "no guardian running for the target");
		check_guardian_fds(g, path);
	} else {
		ck_assert_int_eq(find_guardian(), 0);
	}
	if (other_writer) {
		/* Another writer changes page 1, which the shadow never did. */
		int w = open(path, O_WRONLY | O_CLOEXEC);

		ck_assert_int_eq(pwrite(w, "another writer", 14,
					how == END_SYNCED_KILL ? 200 : (off_t)ps + 3), 14);
		close(w);
	}
	write_all(gp[1], "g", 1);
	if (how == END_KILL || how == END_FORK_KILL || how == END_SYNCED_KILL)
		ck_assert_int_eq(kill(t, SIGKILL), 0);
	ck_assert_int_eq(waitpid(t, &st, 0), t);
	/* A clean exit: once it is over, the guardian holds none of the
	 * process's files (it acked the clean word before the exit ended). */
	if (how == END_CLEAN && g)
		ck_assert_msg(!guardian_holds(g, path), "the guardian still holds the file");
	switch (how) {
	case END_SEGV:
		ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
		break;
	case END_KILL:
	case END_FORK_KILL:
	case END_SYNCED_KILL:
		ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		break;
	default:
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "target status %#x", st);
	}
	/* With a forked child of the target still alive (it inherited
	 * everything), the guardian must finish all the same. */
	gst = guardian_on() && how != END_NO_GUARDIAN ? reap_guardian() : -1;
	if (other) {
		kill(other, SIGKILL);
		ck_assert_int_eq(waitpid(other, NULL, 0), other);
	}
	close(rd[0]);
	close(gp[1]);
	if (!guardian_on() || how == END_NO_GUARDIAN) {
		ck_assert_int_eq(find_guardian(), 0);
		if (how == END_CLEAN || how == END_NO_GUARDIAN || how == END_SYNCED_KILL) {
			tu_assert_file(path, 100, "written by the NIC", 18);
		} else {
			/* The negative control: without it the data is lost. */
			tu_assert_file_pattern(path, 100, 18, 41);
			tu_assert_file_pattern(path, 2 * (off_t)ps + 7, 17, 41);
		}
		return;
	}
	ck_assert_int_eq(gst, how == END_CLEAN ? 0 : 3);
	tu_assert_file(path, 100, "written by the NIC", 18);
	tu_assert_file(path, 2 * (off_t)ps + 7, "stored by the CPU", 17);
	tu_assert_file_pattern(path, 0, 100, 41);
	tu_assert_file_pattern(path, 3 * (off_t)ps, ps, 41);
	if (other_writer && how == END_SYNCED_KILL)
		tu_assert_file(path, 200, "another writer", 14);
	else if (other_writer)
		tu_assert_file(path, (off_t)ps + 3, "another writer", 14);
	else
		tu_assert_file_pattern(path, (off_t)ps, ps, 41);
	ck_assert_int_eq(tu_file_size(path), (off_t)(4 * ps));
}

START_TEST(sigkill) { run(END_KILL, false); } END_TEST
START_TEST(sigsegv) { run(END_SEGV, false); } END_TEST
START_TEST(underscore_exit) { run(END_EXIT, false); } END_TEST
START_TEST(execve_) { run(END_EXEC, false); } END_TEST
START_TEST(clean_exit) { run(END_CLEAN, false); } END_TEST
START_TEST(forked_child) { run(END_FORK_KILL, false); } END_TEST
START_TEST(other_writer) { run(END_KILL, true); } END_TEST
START_TEST(start_fails) { run(END_NO_GUARDIAN, false); } END_TEST
START_TEST(other_writer_after_sync) { run(END_SYNCED_KILL, true); } END_TEST

int main(void)
{
	Suite *s = suite_create("guardian");
	TCase *tc = tu_tcase("guardian");

	tcase_add_test(tc, sigkill);
	tcase_add_test(tc, sigsegv);
	tcase_add_test(tc, underscore_exit);
	tcase_add_test(tc, execve_);
	tcase_add_test(tc, clean_exit);
	tcase_add_test(tc, forked_child);
	tcase_add_test(tc, other_writer);
	tcase_add_test(tc, start_fails);
	tcase_add_test(tc, other_writer_after_sync);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
