/* SPDX-License-Identifier: MIT */
/* Waiting for another process's guardian (guard.h, "waiting for a
 * guardian"): so that whoever sees a process end (its parent's wait) can
 * also see its shadows reach the file. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "safe_mr.h"
#include "internal.h"
#include "guard.h"

/* Is the listener pid's guardian: the process's own user (a guardian runs
 * as it) and a process started as "safe_mr-guardian PID"?  Abstract names
 * have no permissions: anyone may bind one; a squatter is not waited for. */
static bool listener_is_theirs(int s, pid_t pid)
{
	static const char name[] = "safe_mr-guardian";
	char path[48] = "/proc/", want[48], buf[64];
	struct ucred cr;
	socklen_t n = sizeof(cr);
	struct stat st;
	size_t wl;
	ssize_t r;
	int fd;

	smg_utoa(path + 6, (unsigned long long)pid)[0] = 0;
	if (stat(path, &st) || getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &n) ||
	    cr.uid != st.st_uid || cr.pid <= 0)
		return false;
	memcpy(want, name, sizeof(name));	/* argv: name, pid, level */
	wl = (size_t)(smg_utoa(want + sizeof(name), (unsigned long long)pid) - want);
	want[wl++] = 0;
	memcpy(smg_utoa(path + 6, (unsigned long long)cr.pid), "/cmdline", 9);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	r = read(fd, buf, sizeof(buf));
	close(fd);
	return r >= (ssize_t)wl && memcmp(buf, want, wl) == 0;
}

/* Async-signal-safe: the preload's waitpid may run in a SIGCHLD handler. */
SM_EXPORT int safe_mr_guardian_wait(pid_t pid, int timeout_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	unsigned long long start;
	struct pollfd p;
	size_t len;
	int s, r, waited = 0;

	if (pid <= 0)
		return EINVAL;
	if (!(start = smg_starttime(pid)))
		return ESRCH;	/* reaped already (or never was) */
	smg_wait_name(a.sun_path, sizeof(a.sun_path), &len, pid, start);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return errno;
	/* Non-blocking: with the guardian's backlog full (many waiters),
	 * connect says EAGAIN instead of ignoring our timeout; try again. */
	for (;;) {
		r = connect(s, (struct sockaddr *)&a,
			    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
		if (!r || (errno != EAGAIN && errno != EINTR))
			break;
		if (timeout_ms >= 0 && (waited += 10) > timeout_ms) {
			close(s);
			return ETIMEDOUT;
		}
		poll(NULL, 0, 10);
	}
	if (r) {
		/* No guardian listens: none was started, or it is done. */
		r = errno == ECONNREFUSED || errno == ENOENT ? 0 : errno;
		close(s);
		return r;
	}
	/* Abstract names have no permissions: whoever listens must be the
	 * process's own user (its guardian runs as it), else it is not its
	 * guardian but a squatter, and nothing waits for it. */
	if (!listener_is_theirs(s, pid)) {
		close(s);
		return 0;
	}
	/* It never accepts: its exit hangs the connection up. */
	p = (struct pollfd){ .fd = s, .events = POLLIN };
	do
		r = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms > waited ? timeout_ms - waited : 0);
	while (r < 0 && errno == EINTR && timeout_ms < 0);
	close(s);
	return r > 0 ? 0 : r == 0 ? ETIMEDOUT : errno;
}
