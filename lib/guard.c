/* SPDX-License-Identifier: MIT */
/* Engine side of the guardian (guard.h): start it with the first shadow,
 * hand it the arena, the state and the files, mirror page state into the
 * state memfd.  Engine lock held throughout. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shadow.h"
#include "guard.h"

#ifndef SMG_REL_GUARDIAN
#define SMG_REL_GUARDIAN "safe_mr/safe_mr-guardian"
#endif

_Atomic uint64_t sm_guard_failures;

static int sock = -1, state_fd = -1;
static uint8_t *state;		/* SMG_SIZE bytes, MAP_SHARED */
static bool off;		/* failed, cleaned or unusable in this process */
static uint32_t next_slot = 1;

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

static int send_msg(uint32_t type, uint32_t slot, const int *fds, size_t nfds)
{
	struct smg_msg m = { type, slot };
	struct iovec iov = { &m, sizeof(m) };
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
	while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return errno;
	return 0;
}

/* The guardian's ack: 0, or an errno (it is gone or stuck: we go on). */
static int wait_ack(void)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	char c;
	int r;

	do
		r = poll(&p, 1, SMG_ACK_MS);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return ETIMEDOUT;
	do
		r = (int)recv(sock, &c, 1, 0);
	while (r < 0 && errno == EINTR);
	return r == 1 && c == SMG_ACK ? 0 : r < 0 ? errno : EPIPE;
}

static void drop_state(void)
{
	if (state)
		sm_sys_munmap(state, SMG_SIZE);
	state = NULL;
	if (state_fd >= 0)
		close(state_fd);
	state_fd = -1;
	if (sock >= 0)
		close(sock);
	sock = -1;
	free(tbl_free);
	tbl_free = NULL;
	ntbl_free = tbl_free_cap = 0;
	tbl_next = 0;
}

/* The guardian went away under us, or never came. */
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
	while (waitpid(child, &st, 0) < 0) {
		if (errno == EINTR)
			continue;
		return 0;	/* reaped by the application (SIGCHLD): the socket tells */
	}
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : ECHILD;
}

static bool start(void)
{
	char path[PATH_MAX];
	struct smg_header *h;
	int sv[2], fds[2], err;

	if (off || !sm_cfg.guardian)
		return false;
	if (sock >= 0)
		return true;
	err = find_guardian(path, sizeof(path));
	if (err) {
		give_up("safe_mr-guardian not found next to libsafe_mr.so", err);
		return false;
	}
	state_fd = memfd_create("safe_mr-state", MFD_CLOEXEC);
	if (state_fd < 0 || ftruncate(state_fd, (off_t)SMG_SIZE)) {
		give_up("state memfd", errno);
		return false;
	}
	state = sm_sys_mmap(NULL, SMG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			    state_fd, 0);
	if (state == MAP_FAILED) {
		state = NULL;
		give_up("state mapping", errno);
		return false;
	}
	h = (struct smg_header *)state;
	h->magic = SMG_MAGIC;
	h->page_size = (uint32_t)sm_page_size;
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
	fds[0] = sm_arena_fd();
	fds[1] = state_fd;
	err = send_msg(GM_INIT, 0, fds, 2);
	if (err) {
		give_up("handing over the arena", err);
		return false;
	}
	sm_debug("guardian %s started", path);
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

void sm_guard_chunk_new(struct sm_chunk *c)
{
	struct sm_file *f = c->file;
	struct smg_chunk *r;
	uint32_t idx;
	uint64_t pages;

	c->guard = 0;
	if (!start())
		return;
	if (f->writable && !f->guard_slot) {
		int err = send_msg(GM_FILE, next_slot, &f->fd, 1);

		if (err) {
			give_up("handing over a file", err);
			return;
		}
		f->guard_slot = next_slot++;
	}
	pages = (uint64_t)c->arena_off / sm_page_size;
	if (pages + c->npages > SMG_PAGES_MAX || !tbl_alloc(&idx))
		return;
	memset(prec(pages), 0, c->npages * sizeof(struct smg_page));
	r = rec(idx);
	r->slot = f->writable ? f->guard_slot : 0;
	r->file_off = (uint64_t)c->file_off;
	r->arena_off = (uint64_t)c->arena_off;
	r->npages = c->npages;
	r->pages = pages;
	atomic_store_explicit(&r->valid, 1, memory_order_release);
	c->guard = idx + 1;
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
	int err;

	if (f->guard_slot && sock >= 0) {
		err = send_msg(GM_FILE_GONE, f->guard_slot, NULL, 0);
		if (!err)
			err = wait_ack();
		if (err)
			give_up("closing a file", err);
	}
	f->guard_slot = 0;
}

void sm_guard_clean(void)
{
	int err = 0;

	if (sock >= 0) {
		err = send_msg(GM_CLEAN, 0, NULL, 0);
		if (!err)
			err = wait_ack();
	}
	if (err)
		sm_warn("the guardian did not take the clean exit (%s): it checks the shadows",
			strerror(err));
	drop_state();
	/* The chunks still point into the state: no new guardian for them. */
	off = true;
}

void sm_guard_forget(bool chunks_kept)
{
	/* Our copies only: close and munmap write nothing the parent's
	 * guardian reads. */
	if (state)
		sm_sys_munmap(state, SMG_SIZE);
	state = NULL;
	drop_state();
	off = chunks_kept;
}
