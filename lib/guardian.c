/* SPDX-License-Identifier: MIT */
/* safe_mr-guardian, in <libdir>/safe_mr/: started by libsafe_mr with a
 * process's first shadow (guard.h).  It receives the shadow arena, the state memfd and the
 * process's writable file descriptors, and waits.  When the socket reaches
 * EOF without a clean-exit message, the process died (or exec'd) without a
 * sync point: every page a shadow holds whose contents differ from what
 * the file held (hash), or that is marked forced, is written to the file
 * through the process's own descriptor, never past the end of the file,
 * then each file is flushed (fdatasync).  Then it exits.
 *
 * Usage (by the library only): safe_mr-guardian PID LOGLEVEL, socket on
 * fd 3.  Exit status: 0 the process exited cleanly (nothing to do), 3 it
 * died and everything changed was written and flushed, 1 something failed. */
#define SMG_GUARDIAN_SIDE 1
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <stddef.h>

#include "internal.h"
#include "guard.h"
#include "guardcore.h"

size_t sm_page_size;		/* hash.c */

static const char *pid = "?";
static int level;

static void say(struct smg_core *c, int lvl, const char *msg)
{
	char buf[512];
	int n;

	(void)lvl;
	n = snprintf(buf, sizeof(buf), "safe_mr-guardian[%d] for %s: %s\n", (int)getpid(), pid,
		     msg);
	if (n > (int)sizeof(buf) - 1) {
		n = (int)sizeof(buf) - 1;
		buf[n - 1] = '\n';
	}
	(void)c;
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nowhere to say it */
	}
}

/* Held until we exit: a waiter's connection hangs up then. */
static void listen_for_waiters(pid_t target)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	unsigned long long start = smg_starttime(target);
	size_t len;
	int s;

	if (!start)
		return;
	smg_wait_name(a.sun_path, sizeof(a.sun_path), &len, target, start);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un,
							sun_path) + len)) || listen(s, SOMAXCONN)) {
		if (level >= 1) {
			char m[128];

			snprintf(m, sizeof(m), "not waitable (%s)", strerror(errno));
			say(NULL, 1, m);
		}
		if (s >= 0)
			close(s);
	}
}

int main(int argc, char **argv)
{
	struct smg_core c;
	uint32_t type;
	pid_t p;
	int r;

	if (argc != 3) {
		fprintf(stderr, "safe_mr-guardian is started by libsafe_mr, not by hand\n");
		return 2;
	}
	pid = argv[1];
	sm_page_size = (size_t)sysconf(_SC_PAGESIZE);
	level = atoi(argv[2]);
	smg_core_init(&c, SMG_FD, level, say, NULL);
	/* Hold no directory of the process's (a umount would find it busy). */
	if (chdir("/"))
		return 1;
	/* The job's signals are not for us: we outlive the process.  A stop
	 * signals every process of the job or unit (slurmd, systemd's
	 * KillMode=control-group: SIGTERM, then SIGKILL after a grace time),
	 * and the grace time is when the shadows get written. */
	{
		static const int job[] = { SIGINT, SIGHUP, SIGQUIT, SIGTERM, SIGPIPE, SIGTSTP,
					   SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGALRM, SIGXFSZ };

		for (size_t i = 0; i < sizeof(job) / sizeof(job[0]); i++)
			signal(job[i], SIG_IGN);
	}
	/* One descriptor per shadowed file of the process: as many as the
	 * hard limit lets us hold. */
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	/* Not the application's child: its wait() must never see us.  The
	 * first process leaves once the second listens for waiters (guard.h):
	 * the name is there before the library's spawn returns, held by the
	 * guardian itself (a waiter checks who listens). */
	{
		int ready[2];
		char c;

		if (pipe(ready))
			return 1;
		p = fork();
		if (p < 0)
			return 1;
		if (p > 0) {
			close(ready[1]);
			_exit(read(ready[0], &c, 1) == 1 ? 0 : 1);
		}
		close(ready[0]);
		listen_for_waiters((pid_t)atoi(pid));
		if (write(ready[1], "", 1) != 1)
			return 1;
		close(ready[1]);
	}
	while (smg_core_receive(&c, &type))
		;
	r = c.clean ? 0 : smg_core_recover(&c) ? 1 : 3;
	smg_core_release(&c);
	return r;
}
