/* SPDX-License-Identifier: MIT */
/* wait functions: a child that died without a sync point has its shadows
 * written by its guardian after it is gone.  Before a blocking wait reaps
 * such a child, it waits for that guardian (safe_mr_guardian_wait), so that
 * a parent that sees the child's end and then reads the file sees what the
 * child's shadows held.
 *
 * The ended child is found without reaping it (waitid with WNOWAIT, the
 * same children and events the call asked for), then the call goes on to
 * the next definition with its own arguments: two threads waiting for any
 * child each still get one.  Calls with WNOHANG (SIGCHLD handlers, event
 * loops) or WNOWAIT pass straight through: they must not block, and a late
 * guardian would make them.  Everything here is async-signal-safe: the
 * next definitions are resolved at load, or the system call is made. */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <safe_mr.h>

#include "preload.h"

#define SM_PL_API __attribute__((visibility("default")))

typedef pid_t (*wait4_fn)(pid_t, int *, int, struct rusage *);
typedef pid_t (*waitpid_fn)(pid_t, int *, int);
typedef pid_t (*wait_fn)(int *);
typedef int (*waitid_fn)(idtype_t, id_t, siginfo_t *, int);

static wait4_fn next_wait4;
static waitpid_fn next_waitpid;
static wait_fn next_wait;
static waitid_fn next_waitid;

__attribute__((constructor)) static void wait_next_init(void)
{
	next_wait4 = (wait4_fn)dlsym(RTLD_NEXT, "wait4");
	next_waitpid = (waitpid_fn)dlsym(RTLD_NEXT, "waitpid");
	next_wait = (wait_fn)dlsym(RTLD_NEXT, "wait");
	next_waitid = (waitid_fn)dlsym(RTLD_NEXT, "waitid");
}

/* The kernel's waitid, not an interposer's: only a look. */
static int peek(idtype_t type, id_t id, siginfo_t *si, int flags)
{
	si->si_pid = 0;
	return (int)syscall(SYS_waitid, type, id, si, flags | WNOWAIT, NULL);
}

/* Look (as the call would, without reaping); if a child has ended, wait
 * for its guardian.  0: make the call; -1 with errno: the look failed as
 * the call would (EINTR, ECHILD): return that. */
static int guardian_first(idtype_t type, id_t id, int flags)
{
	siginfo_t si;
	int err = errno;

	if (sm_pl_bypass() || (flags & (WNOHANG | WNOWAIT)))
		return 0;
	if (peek(type, id, &si, flags)) {
		if (errno == EINTR || errno == ECHILD)
			return -1;
		errno = err;
		return 0;	/* the call itself says what is wrong */
	}
	if (si.si_pid &&
	    (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED))
		safe_mr_guardian_wait(si.si_pid, -1);
	errno = err;
	return 0;
}

/* waitpid/wait4's pid as waitid's idtype and id. */
static void which(pid_t pid, idtype_t *type, id_t *id)
{
	if (pid > 0) {
		*type = P_PID;
		*id = (id_t)pid;
	} else if (pid == -1) {
		*type = P_ALL;
		*id = 0;
	} else {
		*type = P_PGID;
		*id = (id_t)(pid == 0 ? getpgrp() : -pid);
	}
}

/* waitpid/wait4 options as waitid flags: exits always, stops and
 * continues only where asked. */
static int as_waitid(int options)
{
	int f = WEXITED | (options & (WNOHANG | WNOWAIT | __WALL | __WCLONE | __WNOTHREAD));

	if (options & WUNTRACED)
		f |= WSTOPPED;
	if (options & WCONTINUED)
		f |= WCONTINUED;
	return f;
}

SM_PL_API pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
	idtype_t type;
	id_t id;

	which(pid, &type, &id);
	if (guardian_first(type, id, as_waitid(options)))
		return -1;
	return next_wait4 ? next_wait4(pid, status, options, ru)
			  : (pid_t)syscall(SYS_wait4, pid, status, options, ru);
}

SM_PL_API pid_t waitpid(pid_t pid, int *status, int options)
{
	idtype_t type;
	id_t id;

	which(pid, &type, &id);
	if (guardian_first(type, id, as_waitid(options)))
		return -1;
	return next_waitpid ? next_waitpid(pid, status, options)
			    : (pid_t)syscall(SYS_wait4, pid, status, options, NULL);
}

SM_PL_API pid_t wait(int *status)
{
	if (guardian_first(P_ALL, 0, WEXITED))
		return -1;
	return next_wait ? next_wait(status) : (pid_t)syscall(SYS_wait4, -1, status, 0, NULL);
}

SM_PL_API int waitid(idtype_t type, id_t id, siginfo_t *info, int options)
{
	if (guardian_first(type, id, options))
		return -1;
	return next_waitid ? next_waitid(type, id, info, options)
			   : (int)syscall(SYS_waitid, type, id, info, options, NULL);
}
