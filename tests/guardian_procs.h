/* SPDX-License-Identifier: MIT */
/* Finding, watching and reaping a process's guardian (lib/guard.h), for the
 * tests of both the engine and the preload.  A guardian runs as
 * "safe_mr-guardian PID LEVEL"; a test that is a child subreaper becomes
 * its parent (it is an orphan by its double fork). */
#ifndef SM_TEST_GUARDIAN_PROCS_H
#define SM_TEST_GUARDIAN_PROCS_H

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* A live guardian that is our child (parent == 0: any parent) and guards
 * pid (pid == 0: any); 0 if none. */
static inline pid_t smt_guardian_find(pid_t parent, pid_t pid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;
	char want[32];

	snprintf(want, sizeof(want), "%d", (int)pid);
	while (d && !found && (e = readdir(d))) {
		char f[300], buf[512], *rp;
		size_t n;
		int ppid;
		FILE *fp;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(f, sizeof(f), "/proc/%s/cmdline", e->d_name);
		if (!(fp = fopen(f, "r")))
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
		buf[n] = 0;
		if (n < 17 || strcmp(buf, "safe_mr-guardian") || (pid && strcmp(buf + 17, want)))
			continue;
		snprintf(f, sizeof(f), "/proc/%s/stat", e->d_name);
		if (!(fp = fopen(f, "r")))
			continue;
		if (!fgets(buf, sizeof(buf), fp))
			buf[0] = 0;
		fclose(fp);
		rp = strrchr(buf, ')');
		if (rp && rp[2] != 'Z' && sscanf(rp + 2, "%*c %d", &ppid) == 1 &&
		    (!parent || ppid == parent))
			found = atoi(e->d_name);
	}
	if (d)
		closedir(d);
	return found;
}

/* The same, waited for up to 5 s. */
static inline pid_t smt_guardian_wait_for(pid_t parent, pid_t pid)
{
	pid_t g = 0;

	for (int i = 0; i < 500 && !(g = smt_guardian_find(parent, pid)); i++)
		usleep(10000);
	return g;
}

/* Does g hold a descriptor of path? */
static inline bool smt_guardian_holds(pid_t g, const char *path)
{
	char dir[64], f[400], l[600];
	struct dirent *e;
	bool held = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)g);
	if (!(d = opendir(dir)))
		return false;
	while ((e = readdir(d))) {
		ssize_t n;

		snprintf(f, sizeof(f), "%s/%s", dir, e->d_name);
		n = readlink(f, l, sizeof(l) - 1);
		if (n > 0) {
			l[n] = 0;
			held |= !strcmp(l, path);
		}
	}
	closedir(d);
	return held;
}

/* Reap our child g within 30 s: its exit status, 128 + the signal that
 * ended it, or -1 (none came, or it is not our child). */
static inline int smt_guardian_reap(pid_t g)
{
	int st;

	for (int i = 0; i < 3000; i++) {
		pid_t w = waitpid(g, &st, WNOHANG);

		if (w == g)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (w < 0)
			return -1;
		usleep(10000);
	}
	return -1;
}

#endif
