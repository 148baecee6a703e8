/* SPDX-License-Identifier: MIT */
/* Engine side of the guardian (guard.h): start it with the first shadow,
 * hand it the arena, the state and the files, mirror page state into the
 * state memfd.  Engine lock held throughout.
 *
 * What survives what (README, "Process death"): the guardian outlives the
 * process's death by any signal, _exit and a group SIGTERM (it ignores the
 * job's stop signals); it does not outlive its PID namespace or a kill of
 * its cgroup.  The node service safe_mrd (SAFE_MR_SERVICE, tried first)
 * does: it lives outside the job, and takes the same messages on a
 * connection to its socket.  Either is late, never dead, while its socket
 * is open: a missing ack only makes the engine go on without it. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shadow.h"
#include "guard.h"

#ifndef SMG_REL_GUARDIAN
#define SMG_REL_GUARDIAN "safe_mr/safe_mr-guardian"
#endif

/* A guardian that dies while we live is replaced, this many times. */
#define SMG_MAX_RESTARTS 8

_Atomic uint64_t sm_guard_failures;

static int sock = -1, state_fd = -1;
static uint8_t *state;		/* SMG_SIZE bytes, MAP_SHARED */
static bool off;		/* failed, cleaned or unusable in this process */
static bool pid1_said;
static bool via_service;	/* sock is a connection to safe_mrd */
static uint32_t next_slot = 1;
static unsigned int restarts;
static uint64_t lost_seen;	/* smg_header.lost_fds already reported */

/* Messages the guardian's queue could not take yet (it is late): sent in
 * order before anything else.  A GM_FILE holds its own descriptor. */
struct outmsg {
	struct outmsg *next;
	struct smg_msg m;
	int fd;
};
static struct outmsg *out_head, **out_tail = &out_head;
static unsigned int acks_owed;	/* sent messages whose ack has not come */
static bool late_said;

/* Chunk records: a bump index and a stack of freed ones. */
static uint64_t tbl_next;
static uint32_t *tbl_free;
static size_t ntbl_free, tbl_free_cap;

static struct smg_chunk *rec(uint32_t idx)
{
	return (struct smg_chunk *)(state + SMG_TABLE_OFF) + idx;
}

static struct smg_page *prec(uint64_t i)
{
	return (struct smg_page *)(state + SMG_PAGES_OFF) + i;
}

static void fail(const char *what, int err)
{
	atomic_fetch_add(&sm_guard_failures, 1);
	sm_error("no guardian for this process (%s: %s): shadowed data not yet synced is "
		 "lost if it dies", what, strerror(err));
}

/* <libdir>/safe_mr/ installed, next to the library in the build tree:
 * found relative to the library, so an install anywhere works. */
static int find_guardian(char *out, size_t n)
{
	static const char *const rel[] = { SMG_REL_GUARDIAN, "safe_mr-guardian" };
	Dl_info info;
	const char *slash;

	if (!dladdr((void *)sm_guard_chunk_new, &info) || !info.dli_fname ||
	    !(slash = strrchr(info.dli_fname, '/')))
		return ENOENT;
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		struct stat st;

		if (snprintf(out, n, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname,
			     rel[i]) >= (int)n)
			continue;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
			return 0;
	}
	return ENOENT;
}

/* One message with nfds (at most 2) descriptors, without waiting: 0,
 * EAGAIN (the guardian's queue is full: it is late), or the socket's
 * error. */
static int send_fds(const struct smg_msg *m, const int *fds, size_t nfds)
{
	struct iovec iov = { (void *)m, sizeof(*m) };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
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
	while (sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		if (errno != EINTR)
			return errno;
	if (m->type == GM_FILE_GONE || m->type == GM_CLEAN)
		acks_owed++;
	return 0;
}

static int send_now(const struct smg_msg *m, int fd)
{
	return send_fds(m, &fd, fd >= 0);
}

static void out_pop(void)
{
	struct outmsg *o = out_head;

	out_head = o->next;
	if (!out_head)
		out_tail = &out_head;
	if (o->fd >= 0)
		close(o->fd);
	free(o);
}

static void out_clear(void)
{
	while (out_head)
		out_pop();
	acks_owed = 0;
}

static void guardian_died(int err);

/* Send what waits, in order.  0, EAGAIN (still waiting), or EPIPE: the
 * guardian is gone. */
static int flush_out(void)
{
	while (out_head) {
		int err = send_now(&out_head->m, out_head->fd);

		if (err == EAGAIN)
			return EAGAIN;
		if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
			guardian_died(err);
			return EPIPE;
		}
		if (err) {
			/* ENOMEM, ETOOMANYREFS...: this message is lost, the
			 * guardian is not (a file it never gets stays unguarded). */
			fail("a message to the guardian", err);
		}
		out_pop();
	}
	return 0;
}

/* A late guardian's queue is sent by this thread as soon as the guardian
 * reads again, even while the application makes no call: files first
 * shadowed while it was late are guarded from then on, not at the next
 * engine call (which an idle process never makes before it dies). */
static int take_acks(void);
static pthread_t qthread;
static bool qthread_on;
static _Atomic bool qthread_stop;

static void *qthread_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p;
		bool done;

		sm_lock_take();
		done = !out_head || sock < 0 || atomic_load(&qthread_stop);
		if (!done) {
			flush_out();
			take_acks();
			done = !out_head || sock < 0;
		}
		if (done)
			qthread_on = false;
		p = (struct pollfd){ .fd = sock, .events = POLLOUT };
		sm_lock_drop();
		if (done)
			return NULL;
		/* Bounded: the socket may be replaced meanwhile. */
		poll(&p, 1, 100);
	}
}

static void qthread_start(void)
{
	sigset_t all, old;

	if (qthread_on)
		return;
	/* No signal of the application's lands on our thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&qthread, NULL, qthread_main, NULL) == 0) {
		qthread_on = true;
		pthread_detach(qthread);
	} else {
		sm_warn("cannot start the thread that hands files to a late guardian: they "
			"wait for the next call of the engine");
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Queue a message (with a copy of fd) and send what can be sent. */
static int post(uint32_t type, uint32_t slot, int fd)
{
	struct outmsg *o;

	if (!out_head) {
		struct smg_msg m = { type, slot };
		int err = send_now(&m, fd);

		if (err == 0)
			return 0;
		if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
			guardian_died(err);
			return EPIPE;
		}
		if (err != EAGAIN) {
			fail("a message to the guardian", err);
			return err;
		}
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		fail("queueing a message to the guardian", ENOMEM);
		return ENOMEM;
	}
	o->m = (struct smg_msg){ type, slot };
	o->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (fd >= 0 && o->fd < 0) {
		free(o);
		fail("queueing a file for the guardian", errno);
		return EMFILE;
	}
	*out_tail = o;
	out_tail = &o->next;
	if (!late_said) {
		late_said = true;
		sm_warn("the guardian is late (stopped or starved?): messages wait for it; the "
			"process goes on, and files first shadowed meanwhile are guarded once it "
			"reads them");
	}
	if (flush_out() == EPIPE)
		return EPIPE;
	if (out_head)
		qthread_start();
	return 0;
}

/* Acks that arrived: 0, or EPIPE (EOF: the guardian is gone). */
static int take_acks(void)
{
	char buf[64];
	ssize_t r;

	while (acks_owed) {
		r = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN ? 0 : (guardian_died(errno), EPIPE);
		if (r == 0) {
			guardian_died(EPIPE);
			return EPIPE;
		}
		/* SOCK_SEQPACKET: one ack per record. */
		acks_owed--;
	}
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Wait until everything sent is acked, at most SMG_ACK_MS (SMG_LATE_MS
 * while the guardian is known to be late and has not answered what came
 * before: it is not waited for again and again): 0, ETIMEDOUT (late: we
 * go on, it catches up), or EPIPE (gone). */
#define SMG_LATE_MS 50
static int wait_acks(void)
{
	int64_t end;
	int err;

	if ((err = flush_out()) == EPIPE || (err = take_acks()))
		return err;
	/* It answered everything before the last message: it caught up. */
	if (late_said && !out_head && acks_owed <= 1) {
		sm_info("the guardian caught up");
		late_said = false;
	}
	end = now_ms() + (late_said ? SMG_LATE_MS : SMG_ACK_MS);

	for (;;) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		int64_t left = end - now_ms();
		int err;

		if ((err = flush_out()) == EPIPE || (err = take_acks()))
			return err;
		if (!acks_owed && !out_head) {
			if (late_said)
				sm_info("the guardian caught up");
			late_said = false;
			return 0;
		}
		if (left <= 0)
			break;
		if (out_head)
			p.events |= POLLOUT;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			break;
	}
	if (!late_said) {
		late_said = true;
		sm_warn("the guardian has not answered for %d ms (stopped or starved?): going on; "
			"it closes the process's files when it runs again (until then a umount of "
			"their filesystem may find it busy)", SMG_ACK_MS);
	}
	return ETIMEDOUT;
}

static void wthread_wake(void);

static void drop_state(void)
{
	out_clear();
	if (state)
		sm_sys_munmap(state, SMG_SIZE);
	state = NULL;
	if (state_fd >= 0)
		close(state_fd);
	state_fd = -1;
	if (sock >= 0)
		close(sock);
	sock = -1;
	if (via_service)
		wthread_wake();
	via_service = false;
	free(tbl_free);
	tbl_free = NULL;
	ntbl_free = tbl_free_cap = 0;
	tbl_next = 0;
	lost_seen = 0;
}

/* The guardian never came, or cannot be used. */
static void give_up(const char *what, int err)
{
	fail(what, err);
	drop_state();
	off = true;
}

/* posix_spawn runs no atfork handler; the guardian gets its socket as fd
 * SMG_FD, /dev/null as stdin and stdout, our stderr for its messages, and
 * nothing else: above all no /dev/infiniband/uverbs* descriptor, which
 * would keep the process's MRs (and the NIC's access) alive after it died.
 * A new session: the terminal's ^C or hangup for the job is not for it.
 * It forks once more and its first process exits: the guardian is never a
 * child that the application's wait() could reap. */
static int spawn(const char *path, int fd)
{
	char pid[24], level[4];
	char *argv[] = { "safe_mr-guardian", pid, level, NULL };
	char *envp[] = { NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t all, none;
	pid_t child;
	int err, st;

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	snprintf(level, sizeof(level), "%d", (int)sm_cfg.log_level);
	sigfillset(&all);
	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, fd, SMG_FD);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addclosefrom_np(&fa, SMG_FD + 1);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
				 POSIX_SPAWN_SETSID);
	err = posix_spawn(&child, path, &fa, &at, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (err)
		return err;
	/* The kernel's wait4: an interposed waitpid (ours, under the preload)
	 * has nothing to do with our own helper. */
	while (syscall(SYS_wait4, child, &st, 0, NULL) < 0) {
		if (errno == EINTR)
			continue;
		return 0;	/* reaped by the application (SIGCHLD): the socket tells */
	}
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : ECHILD;
}

/* PID 1 of a PID namespace: when it dies the kernel kills every process
 * in the namespace, a guardian too, and orphans (the guardian, by its
 * double fork) are its children, which its wait() would see.  No guardian
 * can help there: say so once, rather than promise it. */
static bool pid1(void)
{
	if (getpid() != 1)
		return false;
	if (!pid1_said) {
		pid1_said = true;
		sm_warn("this process is PID 1 of its PID namespace: no guardian can outlive it, "
			"so shadowed data not yet synced is lost if it dies (run it under an init "
			"that stays, or with safe_mr's node service)");
	}
	return true;
}

/* ---- the node service (safe_mrd(8), docs/safe_mrd-protocol.md) ----
 * The same messages as to our own guardian, on a connection to the
 * service's socket after a GM_HELLO.  A service that hangs up while we
 * live (it was stopped) is a guardian that died: a new one gets
 * everything.  So that an idle process learns it at once, not at its
 * next call, a thread watches the connection for the hang-up. */
static pthread_t wthread;
static bool wthread_on;
static int wake_fd = -1;	/* eventfd: the watcher's poll ends at once (exit) */

static void wthread_wake(void)
{
	uint64_t one = 1;

	if (wake_fd >= 0 && write(wake_fd, &one, sizeof(one)) < 0) {
		/* full: it is awake anyway */
	}
}

static void *wthread_main(void *arg)
{
	(void)arg;
	for (;;) {
		int s;

		sm_lock_take();
		s = sock;
		if (!via_service || s < 0 || atomic_load(&qthread_stop)) {
			wthread_on = false;
			sm_lock_drop();
			return NULL;
		}
		sm_lock_drop();
		/* Bounded: the socket may be replaced meanwhile. */
		{
			struct pollfd w[2] = { { .fd = s, .events = POLLRDHUP },
					       { .fd = wake_fd, .events = POLLIN } };
			uint64_t n;

			if (poll(w, 2, 1000) < 1)
				continue;
			if (w[1].revents && read(wake_fd, &n, sizeof(n)) < 0) {
				/* drained by another */
			}
			if (!w[0].revents)
				continue;
		}
		sm_lock_take();
		if (sock == s && via_service && take_acks() == 0 && sock == s) {
			char c;
			ssize_t r = recv(s, &c, 1, MSG_DONTWAIT);

			/* EOF: gone.  A stray record is read and dropped. */
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
				guardian_died(r == 0 ? EPIPE : errno);
		}
		sm_lock_drop();
	}
}

static void wthread_start(void)
{
	sigset_t all, old;

	if (wthread_on)
		return;
	/* A new one (a fork child's inherited one is its parent's too). */
	if (wake_fd >= 0)
		close(wake_fd);
	wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (wake_fd < 0) {
		sm_warn("cannot watch the node service (eventfd: %s): a stop of the service is "
			"seen at the next call of the engine", strerror(errno));
		return;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&wthread, NULL, wthread_main, NULL) == 0) {
		wthread_on = true;
		pthread_detach(wthread);
	} else {
		sm_warn("cannot start the thread that watches the node service: a stop of the "
			"service is seen at the next call of the engine");
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* A connection the service accepted (it answered our GM_HELLO), or -1
 * with *err: ENOENT/ECONNREFUSED (none listens), EAGAIN (its backlog is
 * full), ETIMEDOUT (no answer within SMG_ACK_MS: given up before we handed
 * it anything, so nothing of ours is left with it), EPROTO (refused). */
static int service_connect(int *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct smg_msg hello = { GM_HELLO, SMD_VERSION };
	struct pollfd p;
	char c = 0;
	int s;

	memcpy(a.sun_path, sm_cfg.service_path, sizeof(sm_cfg.service_path));
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		*err = errno;
		return -1;
	}
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) ||
	    send(s, &hello, sizeof(hello), MSG_NOSIGNAL | MSG_DONTWAIT) != sizeof(hello)) {
		*err = errno;
		close(s);
		return -1;
	}
	p = (struct pollfd){ .fd = s, .events = POLLIN };
	for (int64_t end = now_ms() + SMG_ACK_MS;;) {
		int64_t left = end - now_ms();
		int r = poll(&p, 1, left > 0 ? (int)left : 0);

		if (r == 1 || left <= 0 || (r < 0 && errno != EINTR))
			break;
	}
	if (recv(s, &c, 1, MSG_DONTWAIT) != 1 || c != SMG_ACK) {
		*err = c == SMD_NACK ? EPROTO : errno == EAGAIN ? ETIMEDOUT : EPROTO;
		close(s);
		return -1;
	}
	return s;
}

static bool start(void)
{
	char path[PATH_MAX];
	struct smg_header *h;
	int sv[2], fds[2], err, s = -1;

	if (off || sm_cfg.guardian == SM_GUARD_OFF)
		return false;
	if (sock >= 0)
		return true;
	if (sm_cfg.service != SM_SVC_OFF) {
		s = service_connect(&err);
		if (s < 0 && sm_cfg.service == SM_SVC_REQUIRE) {
			give_up("SAFE_MR_SERVICE=require: the node service safe_mrd at "
				"its socket", err);
			return false;
		}
		if (s < 0)
			sm_debug("node service at %s: %s: starting our own guardian",
				 sm_cfg.service_path, strerror(err));
	}
	if (s < 0 && pid1()) {
		off = true;
		atomic_fetch_add(&sm_guard_failures, 1);
		return false;
	}
	if (s < 0 && (err = find_guardian(path, sizeof(path)))) {
		give_up("safe_mr-guardian not found next to libsafe_mr.so", err);
		return false;
	}
	state_fd = memfd_create("safe_mr-state", MFD_CLOEXEC);
	err = state_fd < 0 ? errno : sm_ftruncate_own(state_fd, (off_t)SMG_SIZE);
	if (err) {
		if (s >= 0)
			close(s);
		give_up(err == EFBIG ? "state memfd (sparse, 16 GiB), over RLIMIT_FSIZE"
				     : "state memfd", err);
		return false;
	}
	state = sm_sys_mmap(NULL, SMG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			    state_fd, 0);
	if (state == MAP_FAILED) {
		state = NULL;
		if (s >= 0)
			close(s);
		give_up("state mapping", errno);
		return false;
	}
	h = (struct smg_header *)state;
	h->magic = SMG_MAGIC;
	h->page_size = (uint32_t)sm_page_size;
	if (s >= 0) {
		sock = s;
		via_service = true;
	} else {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
			give_up("socketpair", errno);
			return false;
		}
		sock = sv[0];
		err = spawn(path, sv[1]);
		close(sv[1]);
		if (err) {
			give_up(path, err);
			return false;
		}
	}
	fds[0] = sm_arena_fd();
	fds[1] = state_fd;
	/* The first message: the queue is empty, it cannot be full. */
	err = send_fds(&(struct smg_msg){ GM_INIT, 0 }, fds, 2);
	if (err) {
		give_up("handing over the arena", err);
		return false;
	}
	if (via_service) {
		sm_debug("guarded by the node service at %s", sm_cfg.service_path);
		wthread_start();
	} else {
		sm_debug("guardian %s started", path);
	}
	return true;
}

static bool tbl_alloc(uint32_t *idx)
{
	if (ntbl_free) {
		*idx = tbl_free[--ntbl_free];
		return true;
	}
	if (tbl_next >= SMG_TABLE_MAX)
		return false;
	*idx = (uint32_t)tbl_next++;
	atomic_store(&((struct smg_header *)state)->ntable, tbl_next);
	return true;
}

static void tbl_release(uint32_t idx)
{
	if (ntbl_free == tbl_free_cap) {
		size_t n = tbl_free_cap ? tbl_free_cap * 2 : 64;
		uint32_t *p = realloc(tbl_free, n * sizeof(*p));

		if (!p)
			return;	/* the record is lost to reuse: harmless */
		tbl_free = p;
		tbl_free_cap = n;
	}
	tbl_free[ntbl_free++] = idx;
}

/* A chunk's page records sit at its arena pages' index: the arena gives
 * each page to one chunk at a time, so they need no allocator. */
static void pages_release(uint64_t at, uint64_t len)
{
	uint64_t s = sm_page_up(SMG_PAGES_OFF + at * sizeof(struct smg_page));
	uint64_t e = sm_page_down(SMG_PAGES_OFF + (at + len) * sizeof(struct smg_page));

	/* Large runs give their memory back. */
	if (e > s)
		fallocate(state_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)s,
			  (off_t)(e - s));
}

/* Descriptors the guardian could not take: those files are unguarded. */
static void check_lost(void)
{
	uint64_t lost = atomic_load(&((struct smg_header *)state)->lost_fds);

	if (lost != lost_seen) {
		atomic_fetch_add(&sm_guard_failures, lost - lost_seen);
		sm_error("the guardian could not take %llu file descriptor(s) (its descriptor "
			 "table is full): those files are not guarded",
			 (unsigned long long)(lost - lost_seen));
		lost_seen = lost;
	}
}

/* The chunk's record, and its file for the guardian: false if c stays
 * unguarded (no guardian, or it died meanwhile: then every chunk, c too,
 * was handed to a new one). */
static bool chunk_record(struct sm_chunk *c)
{
	struct sm_file *f = c->file;
	struct smg_chunk *r;
	uint32_t idx;
	uint64_t pages;

	if (f->writable && !f->guard_slot) {
		uint32_t slot = next_slot++;
		int err = post(GM_FILE, slot, f->fd);

		/* EPIPE: it died, and a new one took every linked chunk (f's
		 * other chunks too, so f may have a slot now); c is not
		 * linked yet: it goes to the new one here. */
		if (err == EPIPE && !f->guard_slot && sock >= 0)
			err = post(GM_FILE, slot = next_slot++, f->fd);
		if (!f->guard_slot && err != EPIPE)
			f->guard_slot = slot;	/* a lost message is counted */
	}
	if (sock < 0 || (f->writable && !f->guard_slot))
		return false;
	check_lost();
	pages = (uint64_t)c->arena_off / sm_page_size;
	if (pages + c->npages > SMG_PAGES_MAX || !tbl_alloc(&idx))
		return false;
	memset(prec(pages), 0, c->npages * sizeof(struct smg_page));
	r = rec(idx);
	r->slot = f->writable ? f->guard_slot : 0;
	r->file_off = (uint64_t)c->file_off;
	r->arena_off = (uint64_t)c->arena_off;
	r->npages = c->npages;
	r->pages = pages;
	atomic_store_explicit(&r->valid, 1, memory_order_release);
	c->guard = idx + 1;
	return true;
}

/* The chunks' records and the files' slots are the old guardian's: none. */
static void forget_records(void)
{
	for (struct sm_chunk *c = sm_chunks; c; c = c->next) {
		c->guard = 0;
		c->file->guard_slot = 0;
	}
}

/* A new guardian gets every chunk and file (after forget_records). */
static void record_all(void)
{
	if (!start())
		return;
	for (struct sm_chunk *c = sm_chunks; c && sock >= 0; c = c->next)
		if (chunk_record(c))
			sm_guard_pages(c, 0, c->npages);
}

/* The guardian is gone while we live (killed, crashed: not late, its
 * socket is closed): a new one gets every chunk and file. */
static void guardian_died(int err)
{
	static bool in;

	if (in)
		return;		/* the new one died during its own hand-over */
	in = true;
	fail("the guardian died", err);
	drop_state();
	forget_records();
	if (off) {
		/* Ending (clean exit, exec, unload): no new one for nothing. */
	} else if (++restarts > SMG_MAX_RESTARTS) {
		sm_error("the guardian died %u times: no more guardians for this process",
			 restarts - 1);
		off = true;
	} else {
		record_all();
	}
	in = false;
}

int sm_guard_required(void)
{
	if (sm_cfg.guardian != SM_GUARD_REQUIRE || start())
		return 0;
	sm_error("SAFE_MR_GUARDIAN=require: no guardian protects this process: registration "
		 "refused");
	return ESRCH;
}

void sm_guard_chunk_new(struct sm_chunk *c)
{
	c->guard = 0;
	if (start())
		chunk_record(c);
}

void sm_guard_chunk_gone(struct sm_chunk *c)
{
	struct smg_chunk *r;

	if (!c->guard || !state)
		return;
	r = rec(c->guard - 1);
	atomic_store_explicit(&r->valid, 0, memory_order_release);
	pages_release(r->pages, r->npages);
	tbl_release(c->guard - 1);
	c->guard = 0;
}

void sm_guard_pages(struct sm_chunk *c, size_t first, size_t n)
{
	struct smg_page *p;

	if (!c->guard || !state)
		return;
	p = prec(rec(c->guard - 1)->pages);
	for (size_t i = first; i < first + n; i++) {
		atomic_store_explicit(&p[i].hash, c->pg[i].hash, memory_order_relaxed);
		atomic_store_explicit(&p[i].force, c->pg[i].force, memory_order_relaxed);
		atomic_store_explicit(&p[i].state, c->pg[i].state, memory_order_release);
	}
}

void sm_guard_file_gone(struct sm_file *f)
{
	uint32_t slot = f->guard_slot;

	f->guard_slot = 0;
	if (slot && sock >= 0 && post(GM_FILE_GONE, slot, -1) == 0)
		wait_acks();
}

void sm_guard_clean(void)
{
	/* A guardian that dies now is not replaced: nothing is left to guard. */
	off = true;
	if (state)
		check_lost();
	if (sock >= 0 && post(GM_CLEAN, 0, -1) == 0 && wait_acks() == ETIMEDOUT && out_head)
		sm_warn("the guardian did not take the clean word: it checks the shadows after "
			"the process is gone (everything is durable: it writes nothing changed)");
	drop_state();
	/* The chunks still point into the state: no new guardian for them
	 * (unless an exec fails: sm_guard_exec_failed). */
	off = true;
}

void sm_guard_exec_failed(void)
{
	/* Still guarded (exec_prepare's writeback failed, so the guardian was
	 * never told): its records are good as they are. */
	if (sock >= 0 || sm_cfg.guardian == SM_GUARD_OFF)
		return;
	off = false;
	forget_records();
	if (sm_chunks)
		record_all();
}

/* dlclose: the thread runs our code.  Engine lock not held. */
void sm_guard_thread_stop(void)
{
	atomic_store(&qthread_stop, true);
	sm_lock_take();
	wthread_wake();
	sm_lock_drop();
	for (int i = 0; i < 300; i++) {
		bool on;

		sm_lock_take();
		on = qthread_on || wthread_on;
		sm_lock_drop();
		if (!on)
			return;
		poll(NULL, 0, 10);
	}
}

void sm_guard_forget(bool chunks_kept)
{
	/* Our copies only: close and munmap write nothing the parent's
	 * guardian reads; the parent's queued messages are its own. */
	drop_state();
	off = chunks_kept;
	restarts = 0;
	late_said = false;
	qthread_on = false;	/* the parent's threads: not ours */
	wthread_on = false;
}
