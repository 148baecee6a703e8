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
#include <sys/syscall.h>
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

/* The node service guards pid (or guarded it, and writes back now): wait
 * until it is done.  The process is named by a pidfd, which the service
 * reads in its own PID namespace (ours may be another).  0 done, or nothing
 * to wait for; ETIMEDOUT. */
static int service_wait(pid_t pid, int timeout_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct smg_msg m = { GM_WAIT, SMD_VERSION };
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	struct pollfd p;
	int s, pfd, r;

	if (sm_cfg.service == SM_SVC_OFF)
		return 0;
	pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd < 0)
		return 0;	/* reaped already: its guardian, if any, was waited for */
	memcpy(a.sun_path, sm_cfg.service_path, sizeof(sm_cfg.service_path));
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a))) {
		/* No service: none guards it. */
		if (s >= 0)
			close(s);
		close(pfd);
		return 0;
	}
	memset(&u, 0, sizeof(u));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &pfd, sizeof(int));
	r = (int)sendmsg(s, &mh, MSG_NOSIGNAL);
	close(pfd);
	if (r != (int)sizeof(m)) {
		close(s);
		return 0;
	}
	/* Its answer, or its hang-up: done. */
	p = (struct pollfd){ .fd = s, .events = POLLIN };
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR && timeout_ms < 0);
	close(s);
	return r > 0 ? 0 : r == 0 ? ETIMEDOUT : errno;
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
	/* SAFE_MR_SERVICE (once parsed, a load and a compare). */
	sm_init();
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
		/* No guardian of its own listens: none was started, or it is
		 * done; the node service may guard it. */
		r = errno == ECONNREFUSED || errno == ENOENT ? 0 : errno;
		close(s);
		return r ? r : service_wait(pid, timeout_ms < 0 ? -1 : timeout_ms > waited ?
					    timeout_ms - waited : 0);
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
