/* SPDX-License-Identifier: MIT */
/* The guardian's work for one guarded process ("client"), shared by the
 * per-process guardian (guardian.c) and the node service (service/safe_mrd.c):
 * take the messages of guard.h from the client's socket, hold what they
 * pass, and when the socket ends without the clean word, write back.
 *
 * Everything the client passes is checked (smg_core_receive): the arena and
 * the state must be regular files (memfds), each file descriptor a regular
 * file open for writing and not O_APPEND (pwrite would append).  A refused
 * descriptor is counted in the state's lost_fds like one that could not be
 * received: the engine reports that file as unguarded.  The client's memory
 * is only ever read with pread, never mapped: a client that shrinks its
 * memfds cannot make its guardian fault (SIGBUS), which in the service
 * would end the protection of every other process too. */
#ifndef SM_GUARDCORE_H
#define SM_GUARDCORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct smg_core {
	int sock;		/* the client's connection (SOCK_SEQPACKET) */
	int arena_fd, state_fd;	/* -1 until GM_INIT */
	int *slots;		/* slot -> descriptor, -1 */
	size_t nslots;
	_Atomic bool clean;	/* the clean word came: nothing to write (set
				 * before its ack: others may read it) */
	int level;		/* log level: 0 error .. 3 debug */
	/* Log one line (without newline) about this client. */
	void (*say)(struct smg_core *c, int lvl, const char *msg);
	void *user;
	/* What recovery did. */
	size_t pages, failed, files;
};

/* Initialise c for the client on sock. */
void smg_core_init(struct smg_core *c, int sock, int level,
		   void (*say)(struct smg_core *, int, const char *), void *user);
/* One message: 1 read (also one refused or not understood), 0 EOF or a
 * socket error (the client is gone).  *type gets the message type (0 if
 * none). */
int smg_core_receive(struct smg_core *c, uint32_t *type);
/* The client died: write back what changed, flush.  0 everything written
 * (or nothing to do), 1 something failed. */
int smg_core_recover(struct smg_core *c);
/* Close everything held (not the socket). */
void smg_core_release(struct smg_core *c);
/* The one-byte answer to GM_FILE_GONE, GM_CLEAN and GM_HELLO. */
void smg_core_ack(struct smg_core *c, char what);

#endif
