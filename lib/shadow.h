/* SPDX-License-Identifier: MIT */
#ifndef SM_SHADOW_H
#define SM_SHADOW_H

#include <pthread.h>

#include "file.h"

/* Page states.  A page of a chunk is either gone (restored to the file),
 * shadowed at its application address, or "detached": still pinned by a
 * registration but no longer mapped by the application (munmap/mremap). */
enum { PG_NONE = 0, PG_MAPPED = 1, PG_DETACHED = 2 };

struct sm_page {
	uint64_t hash;		/* contents as last read from / written to the file */
	uint32_t refs;		/* holds covering the page */
	uint8_t state;
	uint8_t force;		/* write back even if the hash matches */
};

/* A run of shadowed pages created together from one VMA of one file. */
struct sm_chunk {
	struct sm_chunk *next;
	uintptr_t start;	/* application address of page 0 */
	size_t npages;
	struct sm_file *file;
	off_t file_off;		/* file offset of page 0 */
	int prot;
	off_t arena_off;
	uint8_t *alias;		/* the engine's own mapping of the shadow */
	unsigned int holds;	/* hold segments pointing here */
	size_t live;		/* pages not PG_NONE */
	struct sm_page pg[];
};

struct sm_seg {
	struct sm_chunk *c;
	size_t first, count;
};

struct sm_hold {
	struct sm_hold *next;
	const void *owner;
	uintptr_t addr;
	size_t len;
	size_t shadowed;	/* bytes */
	bool pending;		/* released, but its writeback failed: finished
				 * by the next successful sync point */
	size_t nseg, cap;
	struct sm_seg *seg;
};

extern pthread_mutex_t sm_lock;
/* Chunks alive: lets hot libc interposers skip the lock when zero. */
extern _Atomic size_t sm_nchunks;

/* All below: sm_lock held. */
int sm_sync_range(uintptr_t start, uintptr_t end, unsigned int flags);
int sm_sync_file(struct sm_file *f, unsigned int flags);
int sm_sync_everything(unsigned int flags);
int sm_hold_sync_locked(struct sm_hold *h, size_t off, size_t len, unsigned int flags);
int sm_sync_owner_locked(const void *owner, size_t off, size_t len, unsigned int flags);
int sm_unmap_range(uintptr_t start, uintptr_t end, bool restore_file);
struct sm_hold *sm_hold_first(void);
/* Release h later: its owner is gone (deregistered) but the data could not
 * be written; the next successful sync point finishes it. */
void sm_hold_defer(struct sm_hold *h);
/* Finish deferred releases whose data now writes back. */
void sm_hold_reap(void);
/* Takes the lock: would [addr, +len) with `access` need a shadow?  1, 0,
 * or -1 with errno (EINVAL/EFAULT: what the kernel would refuse). */
int sm_needs_shadow(void *addr, size_t len, unsigned int access);

#endif
