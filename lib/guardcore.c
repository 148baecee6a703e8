/* SPDX-License-Identifier: MIT */
/* One guarded process's messages and recovery (guardcore.h), for the
 * per-process guardian and the node service alike. */
#define SMG_GUARDIAN_SIDE 1
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "guard.h"
#include "guardcore.h"

/* Pages read per pread of the arena during recovery. */
#define BATCH 64

static void say(struct smg_core *c, int lvl, const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	if (lvl > c->level || !c->say)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	c->say(c, lvl, buf);
}

void smg_core_init(struct smg_core *c, int sock, int level,
		   void (*sayfn)(struct smg_core *, int, const char *), void *user)
{
	memset(c, 0, sizeof(*c));
	c->sock = sock;
	c->arena_fd = c->state_fd = -1;
	c->level = level;
	c->say = sayfn;
	c->user = user;
}

static bool pread_full(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		len -= (size_t)r;
		off += r;
	}
	return true;
}

/* Counted in the state: the engine says which files are not guarded.
 * Only we write the counter (the engine reads it). */
static void lost_fd(struct smg_core *c, const char *why)
{
	uint64_t n = 0;

	say(c, 0, "a file descriptor of the process %s: that file is not guarded", why);
	if (c->state_fd < 0)
		return;
	if (!pread_full(c->state_fd, &n, sizeof(n), offsetof(struct smg_header, lost_fds)))
		n = 0;
	n++;
	if (pwrite(c->state_fd, &n, sizeof(n), offsetof(struct smg_header, lost_fds)) < 0) {
		/* the engine will not know: said above */
	}
}

void smg_core_ack(struct smg_core *c, char what)
{
	while (send(c->sock, &what, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EINTR)
		;
}

/* A file descriptor we may write through for the client: a regular file,
 * open for writing (the client's open proved its right to write it: we
 * add no right of our own), not O_APPEND (pwrite would append).  NULL, or
 * why not. */
static const char *file_refused(int fd)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fstat(fd, &st))
		return "could not be examined";
	if (!S_ISREG(st.st_mode))
		return "is not a regular file";
	if ((fl & O_ACCMODE) != O_WRONLY && (fl & O_ACCMODE) != O_RDWR)
		return "is not open for writing";
	if (fl & O_APPEND)
		return "is open with O_APPEND";
	return NULL;
}

static bool memfd_ok(int fd)
{
	struct stat st;

	return !fstat(fd, &st) && S_ISREG(st.st_mode);
}

static void set_slot(struct smg_core *c, uint32_t s, int fd)
{
	if (s >= c->nslots) {
		/* Slots are handed out from 1 upwards: a huge one is garbage. */
		size_t n = (size_t)s + 64;
		int *p = s < (1u << 24) ? realloc(c->slots, n * sizeof(*p)) : NULL;

		if (!p) {
			close(fd);
			lost_fd(c, "could not be stored (slot out of range or no memory)");
			return;
		}
		for (size_t i = c->nslots; i < n; i++)
			p[i] = -1;
		c->slots = p;
		c->nslots = n;
	}
	if (c->slots[s] >= 0)
		close(c->slots[s]);
	c->slots[s] = fd;
}

void smg_core_release(struct smg_core *c)
{
	for (size_t i = 0; i < c->nslots; i++)
		if (c->slots[i] >= 0)
			close(c->slots[i]);
	free(c->slots);
	c->slots = NULL;
	c->nslots = 0;
	if (c->arena_fd >= 0)
		close(c->arena_fd);
	if (c->state_fd >= 0)
		close(c->state_fd);
	c->arena_fd = c->state_fd = -1;
}

int smg_core_receive(struct smg_core *c, uint32_t *type)
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
	const char *why;
	ssize_t r;

	*type = 0;
	do
		r = recvmsg(c->sock, &mh, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return 0;
	/* A descriptor that did not fit (our table is full, or more were
	 * sent than the message carries; the kernel closed the rest). */
	if (mh.msg_flags & MSG_CTRUNC)
		lost_fd(c, "could not be received (descriptor table full?)");
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (nfds < 2)
					fds[nfds++] = fd;
				else
					close(fd);
			}
		}
	/* Not one whole message of ours (short, or MSG_TRUNC: longer). */
	if (r != sizeof(m) || (mh.msg_flags & MSG_TRUNC)) {
		say(c, 1, "a message that is not one of the protocol's (%zd bytes): ignored", r);
		m.type = 0;
	}
	*type = m.type;
	switch (m.type) {
	case GM_INIT:
		if (nfds == 2 && c->arena_fd < 0 && memfd_ok(fds[0]) && memfd_ok(fds[1])) {
			c->arena_fd = fds[0];
			c->state_fd = fds[1];
			nfds = 0;
		} else {
			say(c, 0, "GM_INIT refused (not two regular files, or a second one)");
		}
		break;
	case GM_FILE:
		if (nfds != 1) {
			say(c, 1, "GM_FILE without one descriptor: ignored");
			break;
		}
		if ((why = file_refused(fds[0]))) {
			lost_fd(c, why);
			break;
		}
		set_slot(c, m.slot, fds[0]);
		nfds = 0;
		break;
	case GM_FILE_GONE:
		if (m.slot < c->nslots && c->slots[m.slot] >= 0) {
			close(c->slots[m.slot]);
			c->slots[m.slot] = -1;
		}
		smg_core_ack(c, SMG_ACK);
		break;
	case GM_CLEAN:
		/* Nothing left to guard: hold nothing of the process's. */
		c->clean = true;
		smg_core_release(c);
		smg_core_ack(c, SMG_ACK);
		break;
	default:
		break;	/* the caller's (GM_HELLO...) or garbage */
	}
	for (size_t i = 0; i < nfds; i++)
		close(fds[i]);
	return 1;
}

#ifndef RWF_NOAPPEND
#define RWF_NOAPPEND 0x00000020	/* Linux 6.9 */
#endif

/* pwrite at off even if O_APPEND was set after file_refused looked: the
 * client shares the open file description and can set it with F_SETFL, and
 * pwrite would then append (past the end of file and past the client's own
 * RLIMIT_FSIZE, which is not ours).  Before 6.9 the flag is refused: check
 * it ourselves (a race with the client is left there). */
static ssize_t pwrite_at(int fd, const void *buf, size_t len, off_t off)
{
	struct iovec iov = { (void *)buf, len };
	ssize_t r = pwritev2(fd, &iov, 1, off, RWF_NOAPPEND);
	int fl;

	if (r >= 0 || errno != EOPNOTSUPP)
		return r;
	if ((fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_APPEND)) {
		errno = fl < 0 ? errno : EBADF;
		return -1;
	}
	return pwrite(fd, buf, len, off);
}

static int write_full(int fd, const uint8_t *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t r = pwrite_at(fd, buf, len, off);

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

/* The changed pages of one chunk record; false: stop (no memory). */
static bool chunk_writeback(struct smg_core *c, const struct smg_chunk *r, uint64_t arena_len,
			    uint8_t *touched, uint8_t *buf, struct smg_page *pg)
{
	int fd = r->slot < c->nslots ? c->slots[r->slot] : -1;
	struct stat st;

	if (fd < 0 || r->npages > SMG_PAGES_MAX || r->pages > SMG_PAGES_MAX - r->npages ||
	    r->arena_off > arena_len || r->npages * sm_page_size > arena_len - r->arena_off ||
	    r->arena_off % sm_page_size || r->file_off % sm_page_size ||
	    r->file_off > (uint64_t)INT64_MAX - r->npages * sm_page_size)
		return true;
	if (fstat(fd, &st))
		return true;
	for (uint64_t b = 0; b < r->npages; b += BATCH) {
		uint64_t n = r->npages - b < BATCH ? r->npages - b : BATCH;

		if (!pread_full(c->state_fd, pg, n * sizeof(*pg), (off_t)(SMG_PAGES_OFF +
				(r->pages + b) * sizeof(*pg))))
			return true;	/* the state was shrunk: nothing more to read */
		for (uint64_t i = 0; i < n; i++) {
			off_t off = (off_t)(r->file_off + (b + i) * sm_page_size);
			uint8_t s = pg[i].state;
			size_t len = sm_page_size;
			int err;

			touched[r->slot] |= s != 0;
			if ((s != 1 && s != 2) || off >= st.st_size)
				continue;
			if (!pread_full(c->arena_fd, buf, sm_page_size,
					(off_t)(r->arena_off + (b + i) * sm_page_size)))
				return true;	/* the arena was shrunk */
			if (!pg[i].force && sm_page_hash(buf) == pg[i].hash)
				continue;
			/* Never extend the file: the page holding EOF up to EOF. */
			if (off + (off_t)len > st.st_size)
				len = (size_t)(st.st_size - off);
			err = write_full(fd, buf, len, off);
			if (err) {
				c->failed++;
				say(c, 0, "writing file offset %lld: %s", (long long)off,
				    strerror(err));
			} else {
				c->pages++;
			}
		}
	}
	return true;
}

int smg_core_recover(struct smg_core *c)
{
	struct smg_header h;
	struct stat as;
	uint8_t *touched, *buf;
	struct smg_page *pg;
	uint64_t n;

	if (c->clean || c->arena_fd < 0 || c->state_fd < 0 || fstat(c->arena_fd, &as))
		return 0;	/* nothing was ever shadowed */
	if (!pread_full(c->state_fd, &h, sizeof(h), 0)) {
		say(c, 0, "cannot read the state: nothing written");
		return 1;
	}
	if (h.magic != SMG_MAGIC || h.page_size != sm_page_size) {
		say(c, 0, "state from another version of safe_mr: nothing written");
		return 1;
	}
	touched = calloc(c->nslots ? c->nslots : 1, 1);
	buf = malloc(sm_page_size);
	pg = malloc(BATCH * sizeof(*pg));
	if (!touched || !buf || !pg) {
		free(touched);
		free(buf);
		free(pg);
		say(c, 0, "no memory: nothing written");
		return 1;
	}
	n = h.ntable;
	n = n > SMG_TABLE_MAX ? SMG_TABLE_MAX : n;
	for (uint64_t k = 0; k < n && as.st_size > 0; k++) {
		struct smg_chunk r;

		if (!pread_full(c->state_fd, &r, sizeof(r), (off_t)(SMG_TABLE_OFF + k * sizeof(r))))
			break;
		if (r.valid != 1)
			continue;
		chunk_writeback(c, &r, (uint64_t)as.st_size, touched, buf, pg);
	}
	/* Also what earlier lazy writebacks left in the page cache. */
	for (size_t s = 0; s < c->nslots; s++) {
		if (!touched[s] || c->slots[s] < 0)
			continue;
		c->files++;
		if (fdatasync(c->slots[s])) {
			c->failed++;
			say(c, 0, "fdatasync: %s", strerror(errno));
		}
	}
	free(touched);
	free(buf);
	free(pg);
	if (c->pages || c->failed)
		say(c, c->failed ? 0 : 1, "process ended without a sync point: %zu pages written "
		    "back to %zu files, durable%s", c->pages, c->files,
		    c->failed ? ", with errors" : "");
	else
		say(c, 2, "process ended without a sync point: nothing changed (%zu files flushed)",
		    c->files);
	return c->failed ? 1 : 0;
}
