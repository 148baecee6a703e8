/* SPDX-License-Identifier: MIT */
/* safe_mrd's GM_HELLO and GM_QUERY (docs/safe_mrd-protocol.md). */
#define SMG_GUARDIAN_SIDE 1
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "svcquery.h"
#include "../lib/guard.h"

#define DEFAULT_SOCKET "/run/safe_mr/safe_mrd.sock"	/* lib/internal.h */

void smt_service_path(const char *value, char *out, size_t n)
{
	if (!value || !strcasecmp(value, "auto") || !strcasecmp(value, "require"))
		snprintf(out, n, "%s", DEFAULT_SOCKET);
	else if (value[0] == '/' && strlen(value) < sizeof(((struct sockaddr_un *)0)->sun_path))
		snprintf(out, n, "%s", value);
	else if (!strcasecmp(value, "off"))
		snprintf(out, n, "%s", "");
	else
		snprintf(out, n, "%s", DEFAULT_SOCKET);	/* ignored: the default */
}

static int dial(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a))) {
		close(s);
		s = -1;
	}
	return s;
}

/* The answer of at most 2 s. */
static ssize_t answer(int s, void *buf, size_t n)
{
	struct pollfd p = { .fd = s, .events = POLLIN };

	if (poll(&p, 1, 2000) != 1)
		return -1;
	return recv(s, buf, n, MSG_DONTWAIT);
}

int smt_service_query(const char *path, int pid)
{
	struct smg_msg m = { GM_QUERY, SMD_VERSION };
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int s, pfd, r = -1;

	if (!path[0] || (s = dial(path)) < 0)
		return -1;
	pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd < 0) {
		close(s);
		return 0;
	}
	memset(&u, 0, sizeof(u));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &pfd, sizeof(int));
	if (sendmsg(s, &mh, MSG_NOSIGNAL) == sizeof(m) && answer(s, &m, sizeof(m)) == sizeof(m) &&
	    m.type == GM_QUERY)
		r = (int)m.slot;
	close(pfd);
	close(s);
	return r;
}

void smt_service_show(struct smt_json *j, const char *value)
{
	char path[108];
	struct smg_msg hello = { GM_HELLO, SMD_VERSION };
	const char *state;
	char c = 0;
	int s;

	smt_service_path(value, path, sizeof(path));
	if (!path[0]) {
		state = "off (SAFE_MR_SERVICE=off): every process starts its own guardian";
	} else if ((s = dial(path)) < 0) {
		state = value && !strcasecmp(value, "require") ?
			"not answering: SAFE_MR_SERVICE=require leaves processes unguarded" :
			"not answering: each process starts its own guardian (safe_mr-guardian)";
	} else {
		/* A hello, then the hang-up before any GM_INIT: the service
		 * has nothing of ours to write. */
		state = send(s, &hello, sizeof(hello), MSG_NOSIGNAL) == sizeof(hello) &&
			answer(s, &c, 1) == 1 && c == SMG_ACK ?
			"answering (protocol 1): it guards every process using safe_mr here" :
			"there, but it refused our protocol version";
		close(s);
	}
	if (j) {
		smt_json_open(j, "node_service", '{');
		smt_json_str(j, "socket", path[0] ? path : NULL);
		smt_json_str(j, "state", state);
		smt_json_close(j, '}');
	} else {
		printf("  node service safe_mrd%s%s: %s\n", path[0] ? " at " : "", path, state);
	}
}
