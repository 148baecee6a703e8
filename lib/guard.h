/* SPDX-License-Identifier: MIT */
/* The guardian: a small process (lib/guardian.c, installed in
 * <libdir>/safe_mr/) that keeps a process's shadows written back when
 * the process dies without a sync point (SIGKILL, a crash, _exit, exec).
 *
 * It holds the shadow arena and a second memfd, the "state", in which the
 * engine mirrors what the guardian needs of each chunk: where its pages lie
 * in the arena and in which file, and per page the hash of what the file
 * holds (struct sm_page.hash), its state and force bit.  Both are shared
 * memory, so nothing is copied and nothing is sent per write.  The files
 * arrive as the engine's own writable descriptors (SCM_RIGHTS): the
 * guardian never opens a path.  The end of the socket the process holds is
 * O_CLOEXEC: EOF means the process is gone (or exec'd).  A clean exit says
 * so first (GM_CLEAN), and the guardian leaves without writing.
 *
 * This header is the protocol shared by both sides, and the engine's hooks. */
#ifndef SM_GUARD_H
#define SM_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- state memfd layout ----
 * [0, 4096)                header
 * [SMG_TABLE_OFF, +...)    chunk records, index = sm_chunk.guard - 1
 * [SMG_PAGES_OFF, +...)    page records, one per arena page (a chunk's are
 *                          at its arena offset / page size)
 * The file is sized (sparse) once; only touched records take memory. */
#define SMG_MAGIC 0x736d6731u		/* "smg1" */
#define SMG_TABLE_OFF 4096ull
#define SMG_TABLE_MAX (1ull << 22)	/* chunk records */
#define SMG_PAGES_OFF (256ull << 20)
#define SMG_PAGES_MAX (1ull << 30)	/* page records: a 4 TiB arena of 4 KiB pages */
#define SMG_SIZE (SMG_PAGES_OFF + SMG_PAGES_MAX * 16ull)

struct smg_header {
	uint32_t magic;
	uint32_t page_size;
	_Atomic uint64_t ntable;	/* chunk records ever used: the guardian's walk */
	/* Written by the guardian: descriptors it could not receive (its
	 * table was full: MSG_CTRUNC).  Those files are not guarded; the
	 * engine reports it (sm_guard_failures, the log). */
	_Atomic uint64_t lost_fds;
};

struct smg_chunk {
	_Atomic uint32_t valid;		/* written last on creation, cleared first */
	uint32_t slot;			/* file (0: no writable descriptor: skip) */
	uint64_t file_off, arena_off, npages;
	uint64_t pages;			/* index of its first page record */
	uint64_t pad[3];
};

/* Page states as in shadow.h: 0 gone (arena punched: never written),
 * 1 mapped, 2 detached; both of the last hold data. */
struct smg_page {
	_Atomic uint64_t hash;
	_Atomic uint8_t state;
	_Atomic uint8_t force;
	uint8_t pad[6];
};

/* ---- messages on the SOCK_SEQPACKET pair ---- */
enum {
	GM_INIT = 1,	/* fds: arena, state */
	GM_FILE,	/* fd: slot's writable descriptor */
	GM_FILE_GONE,	/* slot closed: the guardian closes its copy, then acks */
	GM_CLEAN,	/* everything is durable: close everything, ack, exit
			 * without writing */
	/* The node service only (safe_mrd, docs/safe_mrd-protocol.md): the
	 * first message on a connection says what it is for. */
	GM_HELLO = 16,	/* slot: SMD_VERSION; answer SMG_ACK (then as a guardian)
			 * or SMD_NACK (and the service hangs up) */
	GM_WAIT,	/* fd: a pidfd; answer SMG_ACK once no connection of
			 * that process is open or being written back */
	GM_QUERY,	/* fd: a pidfd; answer struct smg_msg {GM_QUERY, number
			 * of that process's guarded connections} */
};
#define SMD_VERSION 1
#define SMD_NACK 'v'
/* The guardian's ack (one byte) of GM_FILE_GONE and GM_CLEAN: when the
 * process has closed a file, the guardian holds it no more (a umount right
 * after does not find it busy).
 *
 * A guardian that is late (stopped, frozen, swapped out, starved) is alive:
 * the engine waits SMG_ACK_MS for an ack, then goes on and collects the
 * ack later; it never closes the socket of a live guardian (the guardian
 * would read that as the process's death).  Messages the guardian's queue
 * cannot take yet wait in the engine's own queue, so a late guardian never
 * blocks the application. */
#define SMG_ACK 'k'
#define SMG_ACK_MS 2000
struct smg_msg {
	uint32_t type;
	uint32_t slot;
};
#define SMG_FD 3	/* the guardian's end of the socket */

/* ---- waiting for a guardian ----
 * A guardian listens (and never accepts) on an abstract Unix socket named
 * after the process it guards: its pid and start time (pid reuse cannot
 * confuse two).  It closes it when it is done: after the clean word, or
 * once the shadows of a dead process are written and flushed.  A waiter
 * connects and waits for the hang-up (safe_mr_guardian_wait). */
#include <fcntl.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static inline char *smg_utoa(char *p, unsigned long long v)
{
	char d[24];
	int k = 0;

	do
		d[k++] = (char)('0' + v % 10);
	while ((v /= 10) && k < 23);
	while (k)
		*p++ = d[--k];
	return p;
}

/* sun_path of the abstract name (leading NUL), its length in *len (no
 * stdio: async-signal-safe). */
static inline void smg_wait_name(char *path, size_t size, size_t *len, pid_t pid,
				 unsigned long long start)
{
	static const char pre[] = "safe_mr-guardian.";
	char *p = path;

	(void)size;	/* 1 + 17 + 2 * 20 + 1 bytes at most: sun_path holds 108 */
	*p++ = 0;
	memcpy(p, pre, sizeof(pre) - 1);
	p = smg_utoa(p + sizeof(pre) - 1, (unsigned long long)pid);
	*p++ = '.';
	p = smg_utoa(p, start);
	*len = (size_t)(p - path);
}

/* Start time (clock ticks since boot, /proc/PID/stat field 22) of a live or
 * zombie process; 0 if it is gone.  Async-signal-safe (open, read): the
 * preload's waitpid may run in a SIGCHLD handler. */
static inline unsigned long long smg_starttime(pid_t pid)
{
	char path[32] = "/proc/", buf[1024];
	unsigned long long t = 0;
	ssize_t n = 0, r;
	int fd, field = 2;
	char *p, *q;

	memcpy(smg_utoa(path + 6, (unsigned long long)pid), "/stat", 6);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	while (n < (ssize_t)sizeof(buf) - 1 &&
	       (r = read(fd, buf + n, sizeof(buf) - 1 - (size_t)n)) > 0)
		n += r;
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	/* After the last ')' of the command name: field 3 on, space-separated. */
	if (!(q = strrchr(buf, ')')))
		return 0;
	for (p = q + 1; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	for (; *p >= '0' && *p <= '9'; p++)
		t = t * 10 + (unsigned long long)(*p - '0');
	return field == 22 ? t : 0;
}

/* ---- engine side (guard.c; engine lock held) ---- */
#ifndef SMG_GUARDIAN_SIDE
struct sm_chunk;
struct sm_file;
/* A chunk was created (pages not filled yet): start the guardian if needed,
 * hand it the file, create the record.  Never fails: without a guardian the
 * chunk is just not crash-proof (logged). */
void sm_guard_chunk_new(struct sm_chunk *c);
/* Before shadowing a page of a writable file: 0, or ESRCH where
 * SAFE_MR_GUARDIAN=require and no guardian protects this process. */
int sm_guard_required(void);
void sm_guard_chunk_gone(struct sm_chunk *c);
/* Pages [first, +n) of c changed hash, state or force. */
void sm_guard_pages(struct sm_chunk *c, size_t first, size_t n);
void sm_guard_file_gone(struct sm_file *f);
/* The process's data is durable (exit sync succeeded): the guardian can go. */
void sm_guard_clean(void);
/* exec: the same as a clean exit (the new image must not meet a late
 * writeback of the old one); and if the exec failed, guard again. */
void sm_guard_exec_failed(void);
/* Before dlclose's teardown, engine lock not held: the thread that sends
 * a late guardian its queue is gone. */
void sm_guard_thread_stop(void);
/* Fork child: forget the parent's guardian without touching its state. */
void sm_guard_forget(bool chunks_kept);
/* Times this process was left unguarded, in whole or in part: starts that
 * failed, a guardian that died, descriptors it could not take (the stats
 * line, safe_mr-info). */
extern _Atomic uint64_t sm_guard_failures;
#endif

#endif
