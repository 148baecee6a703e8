/* SPDX-License-Identifier: MIT */
/* The node service safe_mrd (service/safe_mrd.c, docs/safe_mrd-protocol.md)
 * as the guardian of processes that live and die beside it: started by the
 * test, outside the targets' process groups and PID namespaces.
 *
 *  - a target killed with its whole process group: the service writes back,
 *    and safe_mr_guardian_wait returns once it has (no embedded guardian
 *    was started);
 *  - a PID namespace whose init dies (the target as PID 1, and as PID 2
 *    beside its own guardian): with the service written, without it
 *    (SMT_SERVICE_OFF, test service_off) lost;
 *  - hostile clients: descriptors of a directory, a pipe, a socket, a
 *    read-only or O_APPEND file, another user's file (a client running as
 *    nobody) are refused and never written; garbage, oversized messages and
 *    stray descriptors are ignored; idle and stalled clients do not keep
 *    others from being served; a user's connection limit;
 *  - the service stopped (SIGTERM): a client that died is still written,
 *    a live one is hung up on and guards itself (its own guardian), at
 *    once, without a call of its own. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"
#include "../guardian_procs.h"
#include "../../lib/guard.h"

static char sockpath[108];
static bool svc;	/* SAFE_MR_SERVICE names our socket (not the negative control) */

static pid_t daemon_start(const char *opt, const char *arg)
{
	pid_t d = fork();

	ck_assert_int_ge(d, 0);
	if (d == 0) {
		const char *bin = getenv("SAFE_MRD");

		/* It ends with the test, even a failed one. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(bin, "safe_mrd", "--foreground", "--socket", sockpath, "--log-level",
		      "info", opt, arg, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		struct stat st;

		if (stat(sockpath, &st) == 0 && S_ISSOCK(st.st_mode))
			return d;
		ck_assert_int_eq(waitpid(d, NULL, WNOHANG), 0);
		usleep(10000);
	}
	ck_abort_msg("safe_mrd did not come up");
	return -1;
}

static int daemon_stop(pid_t d)
{
	int st;

	ck_assert_int_eq(kill(d, SIGTERM), 0);
	ck_assert_int_eq(waitpid(d, &st, 0), d);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void read_all(int fd, void *p, size_t n)
{
	ck_assert_int_eq(read(fd, p, n), (ssize_t)n);
}

/* Shadow 4 pages of path, the NIC writes page 0, the CPU page 2; tell
 * `ready` our pid, then wait (killed, or told to end on `go`). */
static void target(const char *path, int ready, int go)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	pid_t me = getpid();
	struct ibv_mr *mr;
	uint8_t *p;
	char c;

	/* A failed test leaves no target behind (holding its output); a
	 * namespace's init outlives its parent on purpose. */
	if (me != 1)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (fd < 0)
		_exit(90);
	p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	mr = p == MAP_FAILED ? NULL : safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	if (!mr || !tu_shadowed(p))
		_exit(91);
	if (fake_nic_write(mr, 100, "written by the NIC", 18))
		_exit(92);
	memcpy(p + 2 * ps + 7, "stored by the CPU", 17);
	if (write(ready, &me, sizeof(me)) != sizeof(me))
		_exit(94);
	while (read(go, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

static void assert_written(const char *path)
{
	tu_assert_file(path, 100, "written by the NIC", 18);
	tu_assert_file(path, 2 * (off_t)ps + 7, "stored by the CPU", 17);
	tu_assert_file_pattern(path, 0, 100, 41);
	tu_assert_file_pattern(path, 3 * (off_t)ps, ps, 41);
	ck_assert_int_eq(tu_file_size(path), (off_t)(4 * ps));
}

static void assert_lost(const char *path)
{
	tu_assert_file_pattern(path, 100, 18, 41);
	tu_assert_file_pattern(path, 2 * (off_t)ps + 7, 17, 41);
}

/* /proc/PID/stat's state letter, 0 if gone. */
static char process_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	return p && p[1] ? p[2] : 0;
}

static bool file_has(const char *path, off_t off, const char *want)
{
	char buf[64] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool ok = fd >= 0 && pread(fd, buf, strlen(want), off) == (ssize_t)strlen(want) &&
		  !memcmp(buf, want, strlen(want));

	if (fd >= 0)
		close(fd);
	return ok;
}

/* One protocol message with descriptors: 0 or errno. */
static int smt_send(int s, uint32_t type, uint32_t slot, const int *fds, size_t n)
{
	struct smg_msg m = { type, slot };
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (n) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	}
	return sendmsg(s, &mh, MSG_NOSIGNAL) == sizeof(m) ? 0 : errno;
}

static int smt_send_nb(int s, uint32_t type, uint32_t slot)
{
	struct smg_msg m = { type, slot };

	return send(s, &m, sizeof(m), MSG_NOSIGNAL | MSG_DONTWAIT) == sizeof(m) ? 0 : errno;
}

/* GM_WAIT for ourselves: returns once the service holds no connection of
 * ours as a guardian (those we closed are written back). */
static void wait_self(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	char c = 0;

	strcpy(a.sun_path, sockpath);
	ck_assert_int_ge(pfd, 0);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(smt_send(s, GM_WAIT, SMD_VERSION, &pfd, 1), 0);
	ck_assert_int_eq(recv(s, &c, 1, 0), 1);
	ck_assert_int_eq(c, SMG_ACK);
	close(s);
	close(pfd);
}

/* safe_mr-info --json --pid PID: its "protector". */
static void info_protector(pid_t pid, char *out, size_t n)
{
	char cmd[700], line[4096] = "";
	const char *p;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "'%s' --json --pid %d", getenv("SAFE_MR_INFO"), (int)pid);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line + strlen(line), (int)(sizeof(line) - strlen(line)), f) &&
	       strlen(line) < sizeof(line) - 1)
		;
	pclose(f);
	p = strstr(line, "\"protector\"");
	ck_assert_msg(p, "no protector in %s", line);
	p = strchr(p + 11, '"');
	ck_assert_ptr_nonnull(p);
	snprintf(out, n, "%.*s", (int)strcspn(p + 1, "\""), p + 1);
}

/* GM_QUERY: the service's open guarded connections of pid. */
static int svc_guards(pid_t pid)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct smg_msg m = { 0, 0 };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);

	strcpy(a.sun_path, sockpath);
	ck_assert_int_ge(pfd, 0);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(smt_send(s, GM_QUERY, SMD_VERSION, &pfd, 1), 0);
	ck_assert_int_eq(recv(s, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	ck_assert_int_eq(m.type, GM_QUERY);
	close(s);
	close(pfd);
	return (int)m.slot;
}

/* ------------------------------------------------------------ deaths */

START_TEST(group_sigkill)
{
	char path[600];
	int rd[2], go[2];
	siginfo_t si;
	pid_t d = daemon_start(NULL, NULL), t, got;

	close(tu_file(4 * ps, 41, path, sizeof(path)));
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	t = fork();
	ck_assert_int_ge(t, 0);
	if (t == 0) {
		setpgid(0, 0);	/* its own group: the daemon is not in it */
		target(path, rd[1], go[0]);
	}
	read_all(rd[0], &got, sizeof(got));
	/* The service guards it: no guardian of its own; safe_mr-info says. */
	ck_assert_int_eq(smt_guardian_find(0, t), 0);
	{
		char prot[64];

		info_protector(t, prot, sizeof(prot));
		ck_assert_str_eq(prot, "service");
	}
	ck_assert_int_eq(kill(-t, SIGKILL), 0);
	ck_assert_int_eq(waitid(P_PID, (id_t)t, &si, WEXITED | WNOWAIT), 0);
	/* The wait means: the service has written back for it. */
	ck_assert_int_eq(safe_mr_guardian_wait(t, 20000), 0);
	assert_written(path);
	ck_assert_int_eq(waitpid(t, NULL, 0), t);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* A PID namespace: its init is the target (pid1) or runs it (PID 2).  The
 * test kills the init; the kernel kills everything in the namespace. */
static void pidns(bool pid1)
{
	char path[600];
	int rd[2], go[2], ip[2];
	pid_t d = svc ? daemon_start(NULL, NULL) : 0, c, init, got;

	close(tu_file(4 * ps, 41, path, sizeof(path)));
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(ip, O_CLOEXEC), 0);
	c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0) {
		pid_t i;

		if (unshare(CLONE_NEWPID))
			_exit(80);
		i = fork();
		if (i < 0)
			_exit(81);
		if (i > 0) {
			write(ip[1], &i, sizeof(i));
			_exit(0);	/* the init is reparented to the test */
		}
		if (pid1)
			target(path, rd[1], go[0]);
		if (fork() == 0)
			target(path, rd[1], go[0]);
		for (;;)
			pause();
	}
	read_all(ip[0], &init, sizeof(init));
	ck_assert_int_eq(waitpid(c, NULL, 0), c);
	read_all(rd[0], &got, sizeof(got));
	ck_assert_int_eq(got, pid1 ? 1 : 2);
	ck_assert_int_eq(kill(init, SIGKILL), 0);
	/* Reaped: everything in the namespace is gone, its guardians too. */
	ck_assert_int_eq(waitpid(init, NULL, 0), init);
	if (!svc) {
		assert_lost(path);
		return;
	}
	/* The service writes it now (the namespace's pids mean nothing to
	 * the test: the file tells). */
	for (int i = 0; i < 2000 && !file_has(path, 2 * (off_t)ps + 7, "stored by the CPU"); i++)
		usleep(10000);
	assert_written(path);
	ck_assert_int_eq(daemon_stop(d), 0);
}

START_TEST(pidns_init_is_target) { pidns(true); } END_TEST
START_TEST(pidns_init_dies) { pidns(false); } END_TEST

/* A fork child has its own connection: the parent shadows A, its child
 * then shadows B; killing the child writes B (the parent stays guarded),
 * killing the parent then writes A. */
static void fork_target(const char *a, const char *b, int ready, int go)
{
	int fd = open(a, O_RDWR | O_CLOEXEC);
	struct ibv_mr *mr;
	uint8_t *p;

	if (fd < 0)
		_exit(90);
	p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	mr = p == MAP_FAILED ? NULL : safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	if (!mr || !tu_shadowed(p))
		_exit(91);
	if (fork() == 0)
		target(b, ready, go);	/* its own registration, its own connection */
	if (fake_nic_write(mr, 100, "written by the NIC", 18))
		_exit(92);
	memcpy(p + 2 * ps + 7, "stored by the CPU", 17);
	target(a, ready, go);	/* a second registration of A: same chunk */
}

START_TEST(fork_child)
{
	char pa[600], pb[600];
	int rd[2], go[2];
	pid_t d = daemon_start(NULL, NULL), t, x, y, child;
	siginfo_t si;

	close(tu_file(4 * ps, 41, pa, sizeof(pa)));
	close(tu_file(4 * ps, 41, pb, sizeof(pb)));
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	t = fork();
	if (t == 0) {
		setpgid(0, 0);
		fork_target(pa, pb, rd[1], go[0]);
	}
	read_all(rd[0], &x, sizeof(x));
	read_all(rd[0], &y, sizeof(y));
	child = x == t ? y : x;
	ck_assert_int_ne(child, t);
	ck_assert_int_eq(smt_guardian_find(0, t), 0);
	ck_assert_int_eq(smt_guardian_find(0, child), 0);
	ck_assert_int_eq(kill(child, SIGKILL), 0);
	/* The parent (paused in read) does not reap it: a zombie to wait on. */
	for (int i = 0; i < 500 && process_state(child) != 'Z'; i++)
		usleep(10000);
	ck_assert_int_eq(safe_mr_guardian_wait(child, 20000), 0);
	assert_written(pb);
	tu_assert_file_pattern(pa, 100, 18, 41);	/* the parent's: not yet */
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	ck_assert_int_eq(waitid(P_PID, (id_t)t, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(safe_mr_guardian_wait(t, 20000), 0);
	assert_written(pa);
	ck_assert_int_eq(waitpid(t, NULL, 0), t);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* exec: the prepared exec is a clean end of the connection (the service
 * writes nothing, holds nothing); a failed one connects again, and a
 * death after it is written by the service. */
static void exec_target(const char *path, int ready, int go)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	struct ibv_mr *mr;
	pid_t me = getpid();
	uint8_t *p;
	char c;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	p = fd < 0 ? MAP_FAILED : mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	mr = p == MAP_FAILED ? NULL : safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	if (!mr || !tu_shadowed(p))
		_exit(91);
	if (safe_mr_exec_prepare())
		_exit(92);
	execl("/nonexistent/safe_mr-test", "x", (char *)NULL);
	safe_mr_exec_failed();
	if (fake_nic_write(mr, 100, "written by the NIC", 18))
		_exit(93);
	memcpy(p + 2 * ps + 7, "stored by the CPU", 17);
	if (write(ready, &me, sizeof(me)) != sizeof(me))
		_exit(94);
	while (read(go, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

START_TEST(exec_failed)
{
	char path[600];
	int rd[2], go[2];
	siginfo_t si;
	pid_t d = daemon_start(NULL, NULL), t, got;

	close(tu_file(4 * ps, 41, path, sizeof(path)));
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	t = fork();
	if (t == 0)
		exec_target(path, rd[1], go[0]);
	read_all(rd[0], &got, sizeof(got));
	ck_assert_int_eq(smt_guardian_find(0, t), 0);
	ck_assert_int_eq(svc_guards(t), 1);	/* the first connection ended cleanly */
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	ck_assert_int_eq(waitid(P_PID, (id_t)t, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(safe_mr_guardian_wait(t, 20000), 0);
	assert_written(path);
	ck_assert_int_eq(waitpid(t, NULL, 0), t);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* A service that is late (stopped) when the client dies is waited for, not
 * given up: it writes once it runs again. */
START_TEST(late_service)
{
	char path[600];
	int rd[2], go[2];
	siginfo_t si;
	pid_t d = daemon_start(NULL, NULL), t, got;

	close(tu_file(4 * ps, 41, path, sizeof(path)));
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	t = fork();
	if (t == 0) {
		setpgid(0, 0);
		target(path, rd[1], go[0]);
	}
	read_all(rd[0], &got, sizeof(got));
	ck_assert_int_eq(kill(d, SIGSTOP), 0);
	/* A signal is delivered later than kill() returns: the service may
	 * still run (and answer the death) unless it is seen stopped first. */
	ck_assert_int_eq(waitid(P_PID, (id_t)d, &si, WSTOPPED | WNOWAIT), 0);
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	ck_assert_int_eq(waitid(P_PID, (id_t)t, &si, WEXITED | WNOWAIT), 0);
	/* Still stopped: the wait cannot be answered. */
	ck_assert_int_eq(safe_mr_guardian_wait(t, 300), ETIMEDOUT);
	tu_assert_file_pattern(path, 100, 18, 41);
	ck_assert_int_eq(kill(d, SIGCONT), 0);
	ck_assert_int_eq(safe_mr_guardian_wait(t, 20000), 0);
	assert_written(path);
	ck_assert_int_eq(waitpid(t, NULL, 0), t);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* ------------------------------------------------------------ hostile */

/* A raw client: hello, then GM_INIT with an arena of 2 pages holding
 * "EVIL" and a state that says page 0 of slot 1's file, at file offset 0,
 * changed (forced).  *state: our state memfd (lost_fds is read there). */
static int raw_client(int *state)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct smg_msg hello = { GM_HELLO, SMD_VERSION };
	struct smg_header h = { .magic = SMG_MAGIC };
	struct smg_chunk r = { .slot = 1, .npages = 1 };
	struct smg_page pg = { .state = 1, .force = 1 };
	int arena = memfd_create("evil-arena", MFD_CLOEXEC), s, fds[2];
	char c = 0, page[65536];

	memset(page, 'E', sizeof(page));
	memcpy(page, "EVIL", 4);
	h.page_size = (uint32_t)ps;
	h.ntable = 1;
	r.valid = 1;
	*state = memfd_create("evil-state", MFD_CLOEXEC);
	ck_assert(arena >= 0 && *state >= 0);
	ck_assert_int_eq(ftruncate(*state, (off_t)SMG_SIZE), 0);
	ck_assert_int_eq(pwrite(arena, page, ps, 0), (ssize_t)ps);
	ck_assert_int_eq(pwrite(*state, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_int_eq(pwrite(*state, &r, sizeof(r), SMG_TABLE_OFF), (ssize_t)sizeof(r));
	ck_assert_int_eq(pwrite(*state, &pg, sizeof(pg), SMG_PAGES_OFF), (ssize_t)sizeof(pg));
	strcpy(a.sun_path, sockpath);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(send(s, &hello, sizeof(hello), 0), (ssize_t)sizeof(hello));
	ck_assert_int_eq(recv(s, &c, 1, 0), 1);
	ck_assert_int_eq(c, SMG_ACK);
	fds[0] = arena;
	fds[1] = *state;
	ck_assert_int_eq(smt_send(s, GM_INIT, 0, fds, 2), 0);
	close(arena);
	return s;
}

/* Everything sent so far was handled: GM_FILE_GONE of an unused slot is
 * acked in order. */
static void sync_with(int s)
{
	char c = 0;

	ck_assert_int_eq(smt_send(s, GM_FILE_GONE, 9999, NULL, 0), 0);
	ck_assert_int_eq(recv(s, &c, 1, 0), 1);
	ck_assert_int_eq(c, SMG_ACK);
}

static uint64_t lost_fds(int state)
{
	uint64_t n = 0;

	ck_assert_int_eq(pread(state, &n, sizeof(n), offsetof(struct smg_header, lost_fds)),
			 (ssize_t)sizeof(n));
	return n;
}

/* The client hands `fd` as slot 1 and dies: refused descriptors are
 * counted and never written; a good one is (the control). */
static void hand_and_die(int fd, bool refused, const char *path)
{
	int state, s = raw_client(&state);
	uint64_t before = lost_fds(state);

	ck_assert_int_eq(smt_send(s, GM_FILE, 1, &fd, 1), 0);
	sync_with(s);
	ck_assert_int_eq(lost_fds(state), before + (refused ? 1 : 0));
	close(s);	/* died: no clean word */
	wait_self();
	if (path)
		ck_assert_msg(file_has(path, 0, "EVIL") != refused, "%s: the service %s", path,
			      refused ? "wrote through a refused descriptor" : "did not write");
	close(state);
}

START_TEST(refused_descriptors)
{
	char path[600], ro[600], ap[600];
	int p[2], sv[2], dir, fd;
	pid_t d = daemon_start(NULL, NULL);

	/* The control: our own file, writable: written. */
	fd = tu_file(4 * ps, 41, path, sizeof(path));
	hand_and_die(fd, false, path);
	close(fd);
	/* Read-only, O_APPEND: refused, the file unchanged. */
	close(tu_file(4 * ps, 41, ro, sizeof(ro)));
	fd = open(ro, O_RDONLY | O_CLOEXEC);
	hand_and_die(fd, true, ro);
	close(fd);
	close(tu_file(4 * ps, 41, ap, sizeof(ap)));
	fd = open(ap, O_RDWR | O_APPEND | O_CLOEXEC);
	hand_and_die(fd, true, ap);
	close(fd);
	tu_assert_file_pattern(ro, 0, 4 * ps, 41);
	tu_assert_file_pattern(ap, 0, 4 * ps, 41);
	/* Not files at all. */
	dir = open(tu_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	hand_and_die(dir, true, NULL);
	close(dir);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	hand_and_die(p[1], true, NULL);
	close(p[0]);
	close(p[1]);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	hand_and_die(sv[0], true, NULL);
	close(sv[0]);
	close(sv[1]);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* A client running as nobody passes root's file (0644), which it can open
 * only for reading: refused, never written. */
START_TEST(other_users_file)
{
	char path[600];
	int st, rd[2];
	pid_t d = daemon_start(NULL, NULL), c;

	close(tu_file(4 * ps, 41, path, sizeof(path)));
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_int_eq(chmod(tu_dir, 0755), 0);
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	c = fork();
	ck_assert_int_ge(c, 0);
	if (c == 0) {
		int fd;

		if (setgid(65534) || setuid(65534))
			_exit(70);
		if (open(path, O_RDWR | O_CLOEXEC) >= 0 || errno != EACCES)
			_exit(71);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			_exit(72);
		hand_and_die(fd, true, NULL);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(c, &st, 0), c);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nobody's client: %#x", st);
	tu_assert_file_pattern(path, 0, 4 * ps, 41);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* Garbage, oversized messages, stray descriptors, a second hello: ignored;
 * the connection still works, and the service still serves others. */
START_TEST(garbage)
{
	static char big[200000];
	char path[600];
	int state, s, fd, two[2];
	pid_t d = daemon_start(NULL, NULL);
	uint32_t odd[5] = { 999, 1, 2, 3, 4 };

	s = raw_client(&state);
	ck_assert_int_eq(send(s, "x", 1, 0), 1);
	ck_assert_int_eq(send(s, odd, sizeof(odd), 0), (ssize_t)sizeof(odd));
	memset(big, 0xff, sizeof(big));
	ck_assert_int_eq(send(s, big, sizeof(big), 0), (ssize_t)sizeof(big));
	ck_assert_int_eq(send(s, odd, 8, 0), 8);
	ck_assert_int_eq(smt_send(s, GM_HELLO, SMD_VERSION, NULL, 0), 0);
	ck_assert_int_eq(smt_send(s, GM_INIT, 0, NULL, 0), 0);	/* a second, without fds */
	/* Stray descriptors: on a message that takes none, and three at once. */
	fd = tu_file(4 * ps, 41, path, sizeof(path));
	ck_assert_int_eq(pipe2(two, O_CLOEXEC), 0);
	ck_assert_int_eq(smt_send(s, GM_CLEAN + 40, 0, &fd, 1), 0);
	ck_assert_int_eq(smt_send(s, GM_FILE, 2, (int[]){ fd, two[0], two[1] }, 3), 0);
	sync_with(s);
	/* Still a guardian: slot 1 = the file, then death: written. */
	ck_assert_int_eq(smt_send(s, GM_FILE, 1, &fd, 1), 0);
	sync_with(s);
	close(s);
	wait_self();
	ck_assert(file_has(path, 0, "EVIL"));
	close(fd);
	close(two[0]);
	close(two[1]);
	close(state);
	/* A wrong version is refused with SMD_NACK. */
	{
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		char c = 0;

		strcpy(a.sun_path, sockpath);
		s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		ck_assert_int_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
		ck_assert_int_eq(smt_send(s, GM_HELLO, SMD_VERSION + 7, NULL, 0), 0);
		ck_assert_int_eq(recv(s, &c, 1, 0), 1);
		ck_assert_int_eq(c, SMD_NACK);
		ck_assert_int_eq(recv(s, &c, 1, 0), 0);
		close(s);
	}
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* 50 connections that never say a word, one guarded client that never
 * reads its acks and floods the service, one whose recovery is being
 * asked to wait: a real target is still guarded and written at once. */
START_TEST(stalled_clients)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char path[600];
	int idle[50], state, flood, rd[2], go[2];
	siginfo_t si;
	pid_t d = daemon_start(NULL, NULL), t, got;

	strcpy(a.sun_path, sockpath);
	for (int i = 0; i < 50; i++) {
		idle[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		ck_assert_int_eq(connect(idle[i], (struct sockaddr *)&a, sizeof(a)), 0);
	}
	flood = raw_client(&state);
	for (int i = 0; i < 100000; i++)
		if (smt_send_nb(flood, GM_FILE_GONE, 9999) != 0)
			break;	/* its queue is full: the service reads no faster */
	close(tu_file(4 * ps, 41, path, sizeof(path)));
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	t = fork();
	ck_assert_int_ge(t, 0);
	if (t == 0) {
		setpgid(0, 0);
		target(path, rd[1], go[0]);
	}
	read_all(rd[0], &got, sizeof(got));
	ck_assert_int_eq(smt_guardian_find(0, t), 0);
	ck_assert_int_eq(kill(t, SIGKILL), 0);
	ck_assert_int_eq(waitid(P_PID, (id_t)t, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(safe_mr_guardian_wait(t, 20000), 0);
	assert_written(path);
	ck_assert_int_eq(waitpid(t, NULL, 0), t);
	for (int i = 0; i < 50; i++)
		close(idle[i]);
	close(flood);
	close(state);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* --max-per-user 2: root's third connection is refused (hung up), nobody's
 * first is served. */
START_TEST(per_user_limit)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int s[3], st, e;
	char c;
	pid_t d = daemon_start("--max-per-user", "2"), n;

	strcpy(a.sun_path, sockpath);
	for (int i = 0; i < 3; i++) {
		s[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		ck_assert_int_eq(connect(s[i], (struct sockaddr *)&a, sizeof(a)), 0);
		e = smt_send(s[i], GM_HELLO, SMD_VERSION, NULL, 0);
		/* The third may be hung up on before it says hello. */
		ck_assert_msg(e == 0 || (i == 2 && (e == EPIPE || e == ECONNRESET)), "%s",
			      strerror(e));
	}
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(recv(s[i], &c, 1, 0), 1);
		ck_assert_int_eq(c, SMG_ACK);
	}
	ck_assert_int_le(recv(s[2], &c, 1, 0), 0);
	n = fork();
	if (n == 0) {
		int k;

		if (setgid(65534) || setuid(65534))
			_exit(70);
		k = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (connect(k, (struct sockaddr *)&a, sizeof(a)) ||
		    smt_send(k, GM_HELLO, SMD_VERSION, NULL, 0) || recv(k, &c, 1, 0) != 1 ||
		    c != SMG_ACK)
			_exit(71);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(n, &st, 0), n);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nobody not served: %#x", st);
	for (int i = 0; i < 3; i++)
		close(s[i]);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* ------------------------------------------------------------ stop */

/* The service stopped: a client that died just before is written; a live
 * one is hung up on and, on its own (it makes no call), starts its own
 * guardian, which then writes when it is killed. */
START_TEST(service_stop)
{
	char pa[600], pb[600];
	int rd[2], go[2];
	siginfo_t si;
	pid_t d = daemon_start(NULL, NULL), ta, tb, got, g = 0;

	close(tu_file(4 * ps, 41, pa, sizeof(pa)));
	close(tu_file(4 * ps, 41, pb, sizeof(pb)));
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ck_assert_int_eq(pipe2(rd, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	ta = fork();
	if (ta == 0)
		target(pa, rd[1], go[0]);
	read_all(rd[0], &got, sizeof(got));
	tb = fork();
	if (tb == 0)
		target(pb, rd[1], go[0]);
	read_all(rd[0], &got, sizeof(got));
	ck_assert_int_eq(smt_guardian_find(0, tb), 0);
	ck_assert_int_eq(kill(ta, SIGKILL), 0);
	ck_assert_int_eq(waitid(P_PID, (id_t)ta, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(daemon_stop(d), 0);
	/* Exited only after writing for the dead. */
	assert_written(pa);
	ck_assert_int_eq(waitpid(ta, NULL, 0), ta);
	/* The live one guards itself now: its own guardian holds the file
	 * once the hand-over is done (the records are written right after,
	 * in the same call of the engine).  Found again each time: the
	 * guardian's first process (it forks) bears the same name. */
	for (int i = 0; i < 500; i++) {
		g = smt_guardian_find(0, tb);
		if (g && smt_guardian_holds(g, pb))
			break;
		g = 0;
		usleep(10000);
	}
	ck_assert_msg(g > 0, "the live client did not start its own guardian");
	usleep(50000);
	ck_assert_int_eq(kill(tb, SIGKILL), 0);
	ck_assert_int_eq(waitid(P_PID, (id_t)tb, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(safe_mr_guardian_wait(tb, 20000), 0);
	assert_written(pb);
	ck_assert_int_eq(waitpid(tb, NULL, 0), tb);
}
END_TEST

/* The descriptor count of the service (its /proc/PID/fd). */
static int service_fds(pid_t d)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)d);
	ck_assert((dir = opendir(path)) != NULL);
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* A first message with more descriptors than it takes: the service keeps
 * none of them once the connection is over (it used to keep the second of
 * two: one descriptor per connection, until its table was full and it
 * accepted no one). */
START_TEST(first_message_fds)
{
	pid_t d = daemon_start(NULL, NULL);
	int before, after = 0, p[2], pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	ck_assert_int_ge(pfd, 0);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	strcpy(a.sun_path, sockpath);
	before = service_fds(d);
	for (int i = 0; i < 50; i++) {
		int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		struct smg_msg m;

		ck_assert_int_eq(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
		ck_assert_int_eq(smt_send(s, i % 2 ? GM_QUERY : GM_WAIT, SMD_VERSION,
					  (int[]){ pfd, p[0] }, 2), 0);
		ck_assert_int_gt(recv(s, &m, sizeof(m), 0), 0);
		close(s);
	}
	/* The service closes each connection after its answer. */
	for (int i = 0; i < 200 && (after = service_fds(d)) > before; i++)
		usleep(10000);
	ck_assert_msg(after <= before, "the service holds %d descriptors, %d before", after,
		      before);
	close(p[0]);
	close(p[1]);
	close(pfd);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* O_APPEND set on the shared open file description after the service
 * checked the descriptor: the writeback still lands at the page's offset,
 * and never extends the file. */
START_TEST(append_after_check)
{
	char path[600];
	int state, s, fd;
	pid_t d = daemon_start(NULL, NULL);
	struct stat st;

	fd = tu_file(4 * ps, 41, path, sizeof(path));
	s = raw_client(&state);
	ck_assert_int_eq(smt_send(s, GM_FILE, 1, &fd, 1), 0);
	sync_with(s);
	ck_assert_int_eq(lost_fds(state), 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, O_APPEND), 0);
	close(s);	/* died: no clean word */
	wait_self();
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_msg(st.st_size == (off_t)(4 * ps), "the file grew to %lld bytes",
		      (long long)st.st_size);
	ck_assert(file_has(path, 0, "EVIL"));
	tu_assert_file_pattern(path, ps, 3 * ps, 41);
	close(fd);
	close(state);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* The service's descriptor table is full (a client handed it as many as
 * its limit): it waits for room instead of spinning on accept. */
START_TEST(table_full_no_spin)
{
	pid_t d = daemon_start(NULL, NULL);
	struct rlimit rl = { 64, 64 };
	char path[600], statp[64];
	int state, s, fd, q;
	unsigned long long t0 = 0, t1 = 0;
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	ck_assert_int_eq(prlimit(d, RLIMIT_NOFILE, &rl, NULL), 0);
	fd = tu_file(4 * ps, 41, path, sizeof(path));
	s = raw_client(&state);
	for (uint32_t i = 1; i <= 80; i++)
		ck_assert_int_eq(smt_send(s, GM_FILE, i, &fd, 1), 0);
	sync_with(s);
	ck_assert_uint_gt(lost_fds(state), 0);	/* the table is full */
	/* A connection the service cannot accept now. */
	strcpy(a.sun_path, sockpath);
	q = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(q, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(statp, sizeof(statp), "/proc/%d/stat", (int)d);
	for (int k = 0; k < 2; k++) {
		FILE *f = fopen(statp, "r");
		unsigned long long ut, st;

		ck_assert(f != NULL);
		ck_assert_int_eq(fscanf(f, "%*d (%*[^)]) %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
					"%*u %llu %llu", &ut, &st), 2);
		fclose(f);
		*(k ? &t1 : &t0) = ut + st;
		if (!k)
			sleep(1);
	}
	/* A spinning accept loop takes about 100 ticks a second. */
	ck_assert_msg(t1 - t0 < 10, "the service used %llu ticks in 1 s", t1 - t0);
	close(q);
	close(s);
	wait_self();
	close(fd);
	close(state);
	ck_assert_int_eq(daemon_stop(d), 0);
}
END_TEST

/* Each test its own socket (a failed one's service dies with it). */
static void per_test(void)
{
	snprintf(sockpath, sizeof(sockpath), "/tmp/safe_mrd-test.%d.sock", (int)getpid());
	setenv("SAFE_MR_SERVICE", svc ? sockpath : "off", 1);
	tu_setup();
}

int main(void)
{
	Suite *s = suite_create("service");
	TCase *tc = tcase_create("service");

	svc = !getenv("SMT_SERVICE_OFF");
	snprintf(sockpath, sizeof(sockpath), "/tmp/safe_mrd-test.%d.sock", (int)getpid());
	setenv("SAFE_MR_SERVICE", svc ? sockpath : "off", 1);
	tcase_add_checked_fixture(tc, per_test, tu_teardown);
	tcase_set_timeout(tc, 120);
	if (getenv("SMT_ONLY") && !strcmp(getenv("SMT_ONLY"), "stop"))
		tcase_add_test(tc, service_stop);
	else if (getenv("SMT_ONLY") && !strcmp(getenv("SMT_ONLY"), "attack")) {
		tcase_add_test(tc, first_message_fds);
		tcase_add_test(tc, append_after_check);
		tcase_add_test(tc, table_full_no_spin);
	}
	else if (svc) {
		tcase_add_test(tc, group_sigkill);
		tcase_add_test(tc, refused_descriptors);
		tcase_add_test(tc, other_users_file);
		tcase_add_test(tc, garbage);
		tcase_add_test(tc, stalled_clients);
		tcase_add_test(tc, per_user_limit);
		tcase_add_test(tc, service_stop);
		tcase_add_test(tc, fork_child);
		tcase_add_test(tc, late_service);
		tcase_add_test(tc, exec_failed);
		tcase_add_test(tc, first_message_fds);
		tcase_add_test(tc, append_after_check);
		tcase_add_test(tc, table_full_no_spin);
	}
	tcase_add_test(tc, pidns_init_dies);
	if (svc)
		tcase_add_test(tc, pidns_init_is_target);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
