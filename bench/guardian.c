/* SPDX-License-Identifier: MIT */
/* (e) What the guardian (SAFE_MR_GUARDIAN, lib/guard.h) costs.  It starts
 * once per process, with the first shadow, and its settings are read once
 * per process: each sample is a fresh process (this program re-executed
 * with --guardian-child), on and off alternating.  Measured:
 *   - the first shadow of a process (the guardian is started there);
 *   - later shadows: acquire + release of one page (the state record),
 *     of a file with no other shadow (its descriptor is handed to the
 *     guardian and taken back) and of one with another shadow alive;
 *   - a sync of a fully changed 16 MiB range (the per-page mirror);
 *   - exit: from the last instruction of main to the parent's waitpid,
 *     nothing left to sync (the clean word to the guardian). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <safe_mr.h>

#include "bench.h"

#define WR (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)
#define SYNC_LEN (16 * MiB)
#define LATER 31

static double acquire_release(uint8_t *p, size_t len, double *acq)
{
	struct safe_mr_range *r;
	double t0 = now_ns(), t1;

	if (safe_mr_range_acquire(p, len, WR, NULL, &r) || safe_mr_range_shadowed(r) != len)
		die("guardian child: no shadow of %s", size_name(len));
	t1 = now_ns();
	if (safe_mr_range_release(r))
		die("guardian child: release failed");
	if (acq)
		*acq = t1 - t0;
	return now_ns() - t0;
}

/* Another process holds `path` open: the guardian has the file (a guardian
 * that could not start would make the "on" samples measure nothing). */
static bool guardian_holds(const char *path)
{
	DIR *proc = opendir("/proc");
	struct dirent *d;
	bool found = false;

	while (proc && !found && (d = readdir(proc))) {
		char dir[300], link[600], got[4096];
		struct dirent *f;
		DIR *fds;

		if (d->d_name[0] < '1' || d->d_name[0] > '9' || atoi(d->d_name) == (int)getpid())
			continue;
		snprintf(dir, sizeof(dir), "/proc/%s/fd", d->d_name);
		if (!(fds = opendir(dir)))
			continue;
		while (!found && (f = readdir(fds))) {
			ssize_t n;

			snprintf(link, sizeof(link), "%s/%s", dir, f->d_name);
			n = readlink(link, got, sizeof(got) - 1);
			found = n > 0 && (got[n] = 0, !strcmp(got, path));
		}
		closedir(fds);
	}
	if (proc)
		closedir(proc);
	return found;
}

/* The child: prints "first later later_same sync stamp" (ns) and exits
 * normally. */
int bench_guardian_child(const char *dir)
{
	char path[4096];
	double first, later[LATER], same[LATER], sync[5], t0;
	struct safe_mr_range *r, *anchor;
	uint8_t *p;
	int fd;

	snprintf(path, sizeof(path), "%s/bench_guardian.%d", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)SYNC_LEN))
		die("%s: %s", path, strerror(errno));
	p = mmap(NULL, SYNC_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	memset(p, 1, SYNC_LEN);		/* allocated, in the page cache */
	acquire_release(p, 4096, &first);
	for (int i = 0; i < LATER; i++)
		later[i] = acquire_release(p + (size_t)(i + 1) * 4096, 4096, NULL);
	if (safe_mr_range_acquire(p + SYNC_LEN - 4096, 4096, WR, NULL, &anchor))
		die("guardian child: acquire");
	char abs[4096];

	/* The descriptor is in flight to the guardian for a moment. */
	if (strcmp(getenv("SAFE_MR_GUARDIAN"), "off") && realpath(path, abs)) {
		int tries = 0;

		while (!guardian_holds(abs) && ++tries < 2000)
			usleep(1000);
		if (tries == 2000)
			die("guardian child: SAFE_MR_GUARDIAN=on, but no guardian holds %s", path);
	}
	for (int i = 0; i < LATER; i++)
		same[i] = acquire_release(p + (size_t)(i + 1) * 4096, 4096, NULL);
	if (safe_mr_range_release(anchor))
		die("guardian child: release failed");
	if (safe_mr_range_acquire(p, SYNC_LEN, WR, NULL, &r))
		die("guardian child: acquire %s", size_name(SYNC_LEN));
	for (int i = 0; i < 5; i++) {
		memset(p, 2 + i, SYNC_LEN);
		t0 = now_ns();
		if (safe_mr_range_sync(r, 0, 0, 0))
			die("guardian child: sync failed");
		sync[i] = now_ns() - t0;
	}
	unlink(path);	/* shadowed already: not reopened */
	if (safe_mr_range_release(r))
		die("guardian child: release failed");
	/* Nothing shadowed any more: exit has nothing to sync and, with the
	 * guardian, only tells it so. */
	printf("%.0f %.0f %.0f %.0f %.0f\n", first, median(later, LATER), median(same, LATER),
	       median(sync, 5), now_ns());
	fflush(stdout);
	exit(0);
}

static int sample(const char *self, bool on, double v[6])
{
	int pp[2], st;
	char buf[256];
	ssize_t n;
	pid_t pid;

	if (pipe2(pp, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(pp[1], STDOUT_FILENO);
		setenv("SAFE_MR_GUARDIAN", on ? "on" : "off", 1);
		execl(self, self, "--guardian-child", bench_dir, (char *)NULL);
		_exit(127);
	}
	close(pp[1]);
	n = pid < 0 ? -1 : read(pp[0], buf, sizeof(buf) - 1);
	close(pp[0]);
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	v[5] = now_ns();
	if (n <= 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		return -1;
	buf[n] = 0;
	if (sscanf(buf, "%lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5)
		return -1;
	v[4] = v[5] - v[4];	/* exit */
	return 0;
}

void bench_guardian(void)
{
#define NE 5
	static const char *const what[NE] = {
		"(e) first shadow: guardian started", "(e) later shadow, new file: acq+rel",
		"(e) later shadow, same file: acq+rel", "(e) sync, fully changed: mirror",
		"(e) exit: guardian told" };
	static const char units[NE] = { 'a', 'a', 'r', 'r', 'a' };
	static const double targets[NE] = { 5e6, 50e3, 1.05, 1.05, 1e6 };
	static const size_t sizes[NE] = { 4096, 4096, 4096, SYNC_LEN, SYNC_LEN };
	int reps = quick ? 5 : 11;
	double on[NE][reps], off[NE][reps], v[6];
	struct row *r[NE];
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	for (int k = 0; k < NE; k++)
		r[k] = add_row(what[k], sizes[k], units[k], targets[k]);
	if (n <= 0) {
		for (int k = 0; k < NE; k++)
			not_run(r[k], "no /proc/self/exe");
		return;
	}
	self[n] = 0;
	for (int i = 0; i < reps; i++) {
		for (int j = 0; j < 2; j++) {
			bool g = (i + j) & 1;

			if (sample(self, g, v)) {
				fail("guardian sample (SAFE_MR_GUARDIAN=%s) failed", g ? "on" : "off");
				for (int k = 0; k < NE; k++)
					not_run(r[k], "a sample failed (see above)");
				return;
			}
			for (int k = 0; k < NE; k++)
				(g ? on : off)[k][i] = v[k];
		}
	}
	for (int k = 0; k < NE; k++) {
		r[k]->value = median(on[k], reps);
		r[k]->base = median(off[k], reps);
		r[k]->measured = true;
		r[k]->pass = units[k] == 'a' ? r[k]->value - r[k]->base <= r[k]->target
					     : r[k]->value <= r[k]->base * r[k]->target;
		snprintf(r[k]->note, sizeof(r[k]->note), "SAFE_MR_GUARDIAN=on vs off, %d processes "
			 "each", reps);
	}
}
