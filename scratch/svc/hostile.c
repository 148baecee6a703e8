/* SPDX-License-Identifier: MIT */
/* A hostile client of safe_mrd (review reproducers, not part of the build).
 * Speaks docs/safe_mrd-protocol.md by hand.
 *
 *   hostile SOCK leak2 N          N connections, each a GM_QUERY carrying two
 *                                 descriptors (the protocol's one, plus one more)
 *   hostile SOCK bigslot N        N guarded connections, each one GM_FILE at
 *                                 slot 2^24-1; held until killed
 *   hostile SOCK fds FILE N       one guarded connection, N GM_FILE of FILE at
 *                                 slots 1..N; held until killed
 *   hostile SOCK spin FILE K      one guarded connection whose state has K
 *                                 chunk records of 2^30 pages each over a
 *                                 sparse 4 TiB arena; then the client exits
 *   hostile SOCK fill FILE NPAGES one guarded connection whose arena holds
 *                                 NPAGES pages of 0xab, all forced, chunk at
 *                                 file offset 0; then the client exits
 *                                 (HOSTILE_APPEND=1: O_APPEND set on the file
 *                                 after it was handed over; HOSTILE_FSIZE=N:
 *                                 RLIMIT_FSIZE N set before the hand-over;
 *                                 HOSTILE_NREC=K: K such chunk records)
 *   hostile SOCK stake            a child connects and says hello, hands the
 *                                 connection to a holder, and exits; prints the
 *                                 child's pid; the holder keeps it open
 *   hostile SOCK query PID        GM_QUERY for PID: prints the answer
 *   hostile SOCK wait PID MS      GM_WAIT for PID: prints whether it answered
 *                                 within MS
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../lib/guard.h"

static const char *path;

static void die(const char *w)
{
	perror(w);
	exit(1);
}

static int conn(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	return s;
}

static int sendm(int s, uint32_t type, uint32_t slot, const int *fds, size_t nfds)
{
	struct smg_msg m = { type, slot };
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	return (int)sendmsg(s, &mh, MSG_NOSIGNAL);
}

static int hello(void)
{
	int s = conn();
	char c = 0;

	if (sendm(s, GM_HELLO, SMD_VERSION, NULL, 0) != 8 || recv(s, &c, 1, 0) != 1 || c != 'k')
		die("hello");
	return s;
}

static int pidfd(pid_t p)
{
	int fd = (int)syscall(SYS_pidfd_open, p, 0);

	if (fd < 0)
		die("pidfd_open");
	return fd;
}

int main(int argc, char **argv)
{
	const char *mode;

	if (argc < 3) {
		fprintf(stderr, "usage: see the comment\n");
		return 2;
	}
	path = argv[1];
	mode = argv[2];
	if (!strcmp(mode, "leak2")) {
		int n = atoi(argv[3]), pfd = pidfd(getpid()), nul = open("/dev/null", O_RDONLY);

		for (int i = 0; i < n; i++) {
			int s = conn(), fds[2] = { pfd, nul };
			struct smg_msg a;

			if (sendm(s, GM_QUERY, SMD_VERSION, fds, 2) != 8)
				die("send");
			if (recv(s, &a, sizeof(a), 0) < 0)
				die("recv");
			close(s);
		}
		printf("leak2: %d queries sent\n", n);
		return 0;
	}
	if (!strcmp(mode, "bigslot")) {
		int n = atoi(argv[3]);
		char tmpl[] = "/tmp/hostile-bigslot-XXXXXX";
		int f = mkstemp(tmpl);

		if (f < 0)
			die("mkstemp");
		unlink(tmpl);
		for (int i = 0; i < n; i++) {
			int s = hello();

			if (sendm(s, GM_FILE, (1u << 24) - 1, &f, 1) != 8)
				die("send");
		}
		printf("bigslot: %d connections, holding\n", n);
		fflush(stdout);
		pause();
		return 0;
	}
	if (!strcmp(mode, "fds")) {
		int f = open(argv[3], O_RDWR | O_CLOEXEC), n = atoi(argv[4]), s = hello();

		if (f < 0)
			die("open");
		for (int i = 1; i <= n; i++)
			if (sendm(s, GM_FILE, (uint32_t)i, &f, 1) != 8)
				die("send");
		printf("fds: %d GM_FILE sent, holding\n", n);
		fflush(stdout);
		pause();
		return 0;
	}
	if (!strcmp(mode, "spin") || !strcmp(mode, "fill")) {
		bool spin = !strcmp(mode, "spin");
		int f = open(argv[3], O_RDWR | O_CLOEXEC);
		uint64_t k = strtoull(argv[4], NULL, 0);
		uint64_t np = spin ? SMG_PAGES_MAX : k;
		uint64_t nrec = spin ? k : getenv("HOSTILE_NREC") ? strtoull(getenv("HOSTILE_NREC"), NULL, 0) : 1;
		int arena = memfd_create("a", MFD_CLOEXEC), st = memfd_create("s", MFD_CLOEXEC);
		struct smg_header h = { .magic = SMG_MAGIC, .page_size = 4096 };
		int fds[2] = { arena, st }, s;

		if (f < 0 || arena < 0 || st < 0)
			die("open");
		if (ftruncate(arena, (off_t)(np * 4096)) || ftruncate(st, (off_t)SMG_SIZE))
			die("ftruncate");
		h.ntable = nrec;
		if (pwrite(st, &h, sizeof(h), 0) != sizeof(h))
			die("pwrite");
		for (uint64_t i = 0; i < nrec; i++) {
			struct smg_chunk r = { .valid = 1, .slot = 1, .npages = np };

			if (pwrite(st, &r, sizeof(r), (off_t)(SMG_TABLE_OFF + i * sizeof(r))) != sizeof(r))
				die("pwrite");
		}
		if (!spin) {
			static uint8_t page[4096];

			memset(page, 0xab, sizeof(page));
			for (uint64_t i = 0; i < np; i++) {
				struct smg_page p = { .hash = 0, .state = 1, .force = 1 };

				if (pwrite(st, &p, sizeof(p), (off_t)(SMG_PAGES_OFF + i * sizeof(p))) !=
					    sizeof(p) ||
				    pwrite(arena, page, sizeof(page), (off_t)(i * 4096)) != 4096)
					die("pwrite");
			}
		}
		/* A job's file size limit (set here, after the memfds were filled). */
		if (getenv("HOSTILE_FSIZE")) {
			struct rlimit rl;

			rl.rlim_cur = rl.rlim_max = strtoull(getenv("HOSTILE_FSIZE"), NULL, 0);
			if (setrlimit(RLIMIT_FSIZE, &rl))
				die("setrlimit");
		}
		s = hello();
		if (sendm(s, GM_INIT, 0, fds, 2) != 8 || sendm(s, GM_FILE, 1, &f, 1) != 8)
			die("send");
		/* GM_FILE_GONE of an unused slot: its ack says GM_FILE was checked. */
		{
			char c;

			if (sendm(s, GM_FILE_GONE, 999, NULL, 0) != 8 || recv(s, &c, 1, 0) != 1)
				die("ack");
		}
		/* After the check: the open file description is ours too. */
		if (getenv("HOSTILE_APPEND") && fcntl(f, F_SETFL, O_APPEND))
			die("F_SETFL");
		/* Our death, without the clean word: the service recovers. */
		printf("%s: handed over, dying\n", mode);
		return 0;
	}
	if (!strcmp(mode, "stake")) {
		int sv[2];
		pid_t c, h;

		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv))
			die("socketpair");
		h = fork();
		if (h == 0) {
			/* the holder: receives the connection, keeps it */
			char b;
			union {
				char buf[CMSG_SPACE(sizeof(int))];
				struct cmsghdr align;
			} u;
			struct iovec iov = { &b, 1 };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
					     .msg_controllen = sizeof(u.buf) };

			setsid();
			if (recvmsg(sv[1], &mh, 0) < 0)
				die("recvmsg");
			close(0);
			close(1);
			pause();
			_exit(0);
		}
		c = fork();
		if (c == 0) {
			int s = hello();
			char b = 0;
			union {
				char buf[CMSG_SPACE(sizeof(int))];
				struct cmsghdr align;
			} u;
			struct iovec iov = { &b, 1 };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
					     .msg_controllen = sizeof(u.buf) };
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &s, sizeof(int));
			if (sendmsg(sv[0], &mh, 0) < 0)
				die("sendmsg");
			_exit(0);
		}
		waitpid(c, NULL, 0);
		printf("%d %d\n", (int)c, (int)h);
		return 0;
	}
	if (!strcmp(mode, "query") || !strcmp(mode, "wait")) {
		bool q = !strcmp(mode, "query");
		int pfd = pidfd((pid_t)atoi(argv[3])), s = conn();
		struct pollfd p = { .fd = s, .events = POLLIN };

		if (sendm(s, q ? GM_QUERY : GM_WAIT, SMD_VERSION, &pfd, 1) != 8)
			die("send");
		if (q) {
			struct smg_msg a;

			if (recv(s, &a, sizeof(a), 0) != sizeof(a))
				die("recv");
			printf("query %s: %u guarded connection(s)\n", argv[3], a.slot);
		} else {
			int r = poll(&p, 1, atoi(argv[4]));

			printf("wait %s: %s\n", argv[3], r == 1 ? "answered" : "no answer (blocked)");
		}
		return 0;
	}
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
