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

size_t sm_page_size;		/* hash.c */

static int arena_fd = -1, state_fd = -1;
static int *slots;		/* slot -> descriptor, -1 */
static size_t nslots;
static const char *pid = "?";
static int level = 1;		/* SM_LOG_WARN */

static void say(int lvl, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (lvl > level)
		return;
	n = snprintf(buf, sizeof(buf), "safe_mr-guardian[%d] for %s: ", (int)getpid(), pid);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nowhere to say it */
	}
}

static void set_slot(uint32_t s, int fd)
{
	if (s >= nslots) {
		size_t n = s + 64;
		int *p = realloc(slots, n * sizeof(*p));

		if (!p) {
			close(fd);
			return;
		}
		for (size_t i = nslots; i < n; i++)
			p[i] = -1;
		slots = p;
		nslots = n;
	}
	if (slots[s] >= 0)
		close(slots[s]);
	slots[s] = fd;
}

static const uint8_t *state_map(void);

static void lost_fd(void)
{
	const uint8_t *st = state_map();

	say(0, "a file descriptor of the process could not be received (descriptor table "
	    "full?): that file is not guarded");
	if (st)
		atomic_fetch_add(&((struct smg_header *)st)->lost_fds, 1);
}

static void ack(void)
{
	char c = SMG_ACK;

	while (send(SMG_FD, &c, 1, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/* One message: 1 read, 0 EOF (or an error: the same, the process is gone). */
static int receive(bool *clean)
{
	struct smg_msg m;
	struct iovec iov = { &m, sizeof(m) };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	int fds[2] = { -1, -1 };
	size_t nfds = 0;
	ssize_t r;

	do
		r = recvmsg(SMG_FD, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return 0;
	/* A descriptor that did not fit our table: that file is not guarded.
	 * Said here and counted in the state, where the engine reports it. */
	if (mh.msg_flags & MSG_CTRUNC)
		lost_fd();
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			nfds = nfds > 2 ? 2 : nfds;
			memcpy(fds, CMSG_DATA(cm), nfds * sizeof(int));
		}
	if (r != sizeof(m))
		m.type = 0;
	switch (m.type) {
	case GM_INIT:
		if (nfds == 2) {
			arena_fd = fds[0];
			state_fd = fds[1];
			nfds = 0;
		}
		break;
	case GM_FILE:
		if (nfds == 1) {
			set_slot(m.slot, fds[0]);
			nfds = 0;
		}
		break;
	case GM_FILE_GONE:
		if (m.slot < nslots && slots[m.slot] >= 0) {
			close(slots[m.slot]);
			slots[m.slot] = -1;
		}
		ack();
		break;
	case GM_CLEAN:
		/* Nothing left to guard: hold nothing of the process's. */
		*clean = true;
		for (size_t i = 0; i < nslots; i++)
			if (slots[i] >= 0)
				close(slots[i]);
		nslots = 0;
		if (arena_fd >= 0)
			close(arena_fd);
		if (state_fd >= 0)
			close(state_fd);
		arena_fd = state_fd = -1;
		ack();
		break;
	}
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	return 1;
}

static int write_full(int fd, const uint8_t *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t r = pwrite(fd, buf, len, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? errno : EIO;
		buf += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

struct tally {
	size_t pages, failed;
	uint8_t *touched;	/* per slot: flush it */
};

/* The changed pages of one chunk record. */
static void chunk_writeback(const struct smg_chunk *r, const struct smg_page *pg,
			    const uint8_t *arena, uint64_t arena_len, struct tally *t)
{
	int fd = r->slot < nslots ? slots[r->slot] : -1;
	struct stat st;

	if (fd < 0 || r->npages > SMG_PAGES_MAX || r->pages > SMG_PAGES_MAX - r->npages ||
	    r->arena_off > arena_len || r->npages * sm_page_size > arena_len - r->arena_off)
		return;
	if (fstat(fd, &st))
		return;
	for (uint64_t i = 0; i < r->npages; i++) {
		const uint8_t *data = arena + r->arena_off + i * sm_page_size;
		off_t off = (off_t)(r->file_off + i * sm_page_size);
		uint8_t s = atomic_load(&pg[i].state);
		size_t len = sm_page_size;
		int err;

		t->touched[r->slot] |= s != 0;
		if ((s != 1 && s != 2) || off >= st.st_size)
			continue;
		if (!atomic_load(&pg[i].force) && sm_page_hash(data) == atomic_load(&pg[i].hash))
			continue;
		/* Never extend the file: the page holding EOF up to EOF. */
		if (off + (off_t)len > st.st_size)
			len = (size_t)(st.st_size - off);
		err = write_full(fd, data, len, off);
		if (err) {
			t->failed++;
			say(0, "writing file offset %lld: %s", (long long)off, strerror(err));
		} else {
			t->pages++;
		}
	}
}

/* The state, mapped once (writable: lost_fds is ours to count). */
static const uint8_t *state_map(void)
{
	static uint8_t *st;
	struct stat ss;

	if (st || state_fd < 0 || fstat(state_fd, &ss) || (uint64_t)ss.st_size < SMG_SIZE)
		return st;
	st = mmap(NULL, SMG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, state_fd, 0);
	if (st == MAP_FAILED) {
		say(0, "cannot map the state: %s", strerror(errno));
		st = NULL;
	}
	return st;
}

static int recover(void)
{
	struct stat as;
	const struct smg_header *h;
	const uint8_t *arena = NULL, *st;
	struct tally t = { 0 };
	uint64_t n;
	size_t files = 0;

	if (arena_fd < 0 || state_fd < 0 || fstat(arena_fd, &as))
		return 0;	/* nothing was ever shadowed */
	if (!(st = state_map()))
		return 1;
	h = (const struct smg_header *)st;
	if (h->magic != SMG_MAGIC || h->page_size < 4096 || (h->page_size & (h->page_size - 1))) {
		say(0, "state from another version of safe_mr: nothing written");
		return 1;
	}
	sm_page_size = h->page_size;
	if (as.st_size > 0) {
		arena = mmap(NULL, (size_t)as.st_size, PROT_READ, MAP_SHARED, arena_fd, 0);
		if (arena == MAP_FAILED) {
			say(0, "cannot map the shadows: %s", strerror(errno));
			return 1;
		}
	}
	t.touched = calloc(nslots ? nslots : 1, 1);
	if (!t.touched)
		return 1;
	n = atomic_load(&h->ntable);
	n = n > SMG_TABLE_MAX ? SMG_TABLE_MAX : n;
	for (uint64_t k = 0; k < n && arena; k++) {
		const struct smg_chunk *r = (const struct smg_chunk *)(st + SMG_TABLE_OFF) + k;

		if (atomic_load_explicit(&r->valid, memory_order_acquire) != 1)
			continue;
		chunk_writeback(r, (const struct smg_page *)(st + SMG_PAGES_OFF) + r->pages,
				arena, (uint64_t)as.st_size, &t);
	}
	/* Also what earlier lazy writebacks left in the page cache. */
	for (size_t s = 0; s < nslots; s++) {
		if (!t.touched[s] || slots[s] < 0)
			continue;
		files++;
		if (fdatasync(slots[s])) {
			t.failed++;
			say(0, "fdatasync: %s", strerror(errno));
		}
	}
	free(t.touched);
	if (t.pages || t.failed)
		say(t.failed ? 0 : 1, "process ended without a sync point: %zu pages written back "
		    "to %zu files, durable%s", t.pages, files, t.failed ? ", with errors" : "");
	else
		say(2, "process ended without a sync point: nothing changed (%zu files flushed)",
		    files);
	return t.failed ? 1 : 0;
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
		say(1, "not waitable (%s)", strerror(errno));
		if (s >= 0)
			close(s);
	}
}

int main(int argc, char **argv)
{
	bool clean = false;
	pid_t p;

	if (argc != 3) {
		fprintf(stderr, "safe_mr-guardian is started by libsafe_mr, not by hand\n");
		return 2;
	}
	pid = argv[1];
	level = atoi(argv[2]);
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
	while (receive(&clean))
		;
	if (clean)
		return 0;
	return recover() ? 1 : 3;
}
