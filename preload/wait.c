/* SPDX-License-Identifier: MIT */
/* wait functions: a child that died without a sync point has its shadows
 * written by its guardian after it is gone.  Before a wait reaps such a
 * child, it waits for that guardian (safe_mr_guardian_wait), so that a
 * parent that sees the child's end and then reads the file sees what the
 * child's shadows held.
 *
 * The child is found without reaping it (waitid with WNOWAIT, the same
 * children and events the call asked for), then the call goes on to the
 * next definition for that child.  Calls that only look (WNOWAIT) pass
 * through. */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <safe_mr.h>

#include "preload.h"

#define SM_PL_API __attribute__((visibility("default")))

typedef pid_t (*wait4_fn)(pid_t, int *, int, struct rusage *);
typedef pid_t (*waitpid_fn)(pid_t, int *, int);
typedef pid_t (*wait_fn)(int *);
typedef int (*waitid_fn)(idtype_t, id_t, siginfo_t *, int);

/* The kernel's waitid, not an interposer's: only a look. */
static int peek(idtype_t type, id_t id, siginfo_t *si, int flags)
{
	static waitid_fn real;

	if (!real)
		real = (waitid_fn)dlsym(RTLD_NEXT, "waitid");
	si->si_pid = 0;
	return real ? real(type, id, si, flags | WNOWAIT) : -1;
}

/* Look (as the call would, without reaping); if a child has ended, wait
 * for its guardian.  Returns the child's pid to narrow the call to (so
 * that it reaps the child whose guardian we waited for), 0 to make the
 * call as it is, or -1 with errno set: the look failed as the call would
 * (EINTR, ECHILD): return that. */
static pid_t guardian_first(idtype_t type, id_t id, int flags)
{
	siginfo_t si;
	int err = errno;

	if (sm_pl_bypass() || (flags & WNOWAIT))
		return 0;
	if (peek(type, id, &si, flags)) {
		if (errno == EINTR || errno == ECHILD)
			return -1;
		errno = err;
		return 0;	/* the call itself says what is wrong */
	}
	errno = err;
	if (!si.si_pid)
		return 0;	/* WNOHANG: nothing yet */
	if (si.si_code == CLD_EXITED || si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) {
		sm_pl_busy = true;
		safe_mr_guardian_wait(si.si_pid, -1);
		sm_pl_busy = false;
		errno = err;
	}
	return si.si_pid;
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
	wait4_fn next = (wait4_fn)dlsym(RTLD_NEXT, "wait4");
	idtype_t type;
	id_t id;
	pid_t child;

	which(pid, &type, &id);
	child = guardian_first(type, id, as_waitid(options));
	if (child < 0)
		return -1;
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	return next(child ? child : pid, status, options, ru);
}

SM_PL_API pid_t waitpid(pid_t pid, int *status, int options)
{
	waitpid_fn next = (waitpid_fn)dlsym(RTLD_NEXT, "waitpid");
	idtype_t type;
	id_t id;
	pid_t child;

	which(pid, &type, &id);
	child = guardian_first(type, id, as_waitid(options));
	if (child < 0)
		return -1;
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	return next(child ? child : pid, status, options);
}

SM_PL_API pid_t wait(int *status)
{
	waitpid_fn next = (waitpid_fn)dlsym(RTLD_NEXT, "waitpid");
	wait_fn next_wait = (wait_fn)dlsym(RTLD_NEXT, "wait");
	pid_t child = guardian_first(P_ALL, 0, WEXITED);

	if (child < 0)
		return -1;
	/* Narrowed to the child we waited for: waitpid says the same. */
	if (child && next)
		return next(child, status, 0);
	if (!next_wait) {
		errno = ENOSYS;
		return -1;
	}
	return next_wait(status);
}

SM_PL_API int waitid(idtype_t type, id_t id, siginfo_t *info, int options)
{
	waitid_fn next = (waitid_fn)dlsym(RTLD_NEXT, "waitid");
	pid_t child = guardian_first(type, id, options);

	if (child < 0)
		return -1;
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	return child && type != P_PIDFD ? next(P_PID, (id_t)child, info, options)
					: next(type, id, info, options);
}
