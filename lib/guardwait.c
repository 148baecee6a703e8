/* SPDX-License-Identifier: MIT */
/* Waiting for another process's guardian (guard.h, "waiting for a
 * guardian"): so that whoever sees a process end (its parent's wait) can
 * also see its shadows reach the file. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "safe_mr.h"
#include "internal.h"
#include "guard.h"

SM_EXPORT int safe_mr_guardian_wait(pid_t pid, int timeout_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	unsigned long long start;
	struct pollfd p;
	size_t len;
	int s, r;

	if (pid <= 0)
		return EINVAL;
	if (!(start = smg_starttime(pid)))
		return ESRCH;	/* reaped already (or never was) */
	smg_wait_name(a.sun_path, sizeof(a.sun_path), &len, pid, start);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return errno;
	do
		r = connect(s, (struct sockaddr *)&a,
			    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	while (r && errno == EINTR);
	if (r) {
		/* No guardian listens: none was started, or it is done. */
		r = errno == ECONNREFUSED || errno == ENOENT ? 0 : errno;
		close(s);
		return r;
	}
	/* It never accepts: its exit hangs the connection up. */
	p = (struct pollfd){ .fd = s, .events = POLLIN };
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR && timeout_ms < 0);
	close(s);
	return r > 0 ? 0 : r == 0 ? ETIMEDOUT : errno;
}
