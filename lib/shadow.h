/* SPDX-License-Identifier: MIT */
/* The shadow engine's state, shared by its files:
 *   lock.c      the engine lock (knows its owner thread: signal handlers)
 *   registry.c  the registry: chunks by address and by file, holds by owner
 *   shadow.c    chunks: fill and swap in, restore, free; holds
 *   merge.c     byte-granular three-way merge against concurrent writers
 *   sync.c      change detection and writeback, durability tracking
 *   unmap.c     munmap/mremap of shadowed ranges
 *   lifecycle.c fork, the periodic flusher, exit and unload */
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
	uint8_t unsynced;	/* written since the file's last durable flush */
	uint8_t kept;		/* the keeper still maps this page of the file */
};

/* A run of shadowed pages created together from one VMA of one file. */
struct sm_chunk {
	struct sm_chunk *next, *prev;	/* all chunks (sm_chunks) */
	struct sm_chunk *f_next, *f_prev;	/* the chunks of `file` */
	struct sm_chunk *u_next, *u_prev;	/* ... that have unsynced pages */
	bool u_listed;
	struct sm_inode node;	/* in sm_chunk_tree: [start, start + npages pages) */
	uintptr_t start;	/* application address of page 0 */
	size_t npages;
	struct sm_file *file;
	off_t file_off;		/* file offset of page 0 */
	int prot;
	off_t arena_off;
	uint8_t *alias;		/* the engine's own view of the shadow */
	bool own_alias;		/* a mapping of its own (else in the arena's view) */
	uint8_t *keeper;	/* the application's own file mapping, moved
				 * aside (mremap old_size 0): moved back on
				 * restore, so the VMA is what it was */
	unsigned int holds;	/* hold segments pointing here */
	size_t live;		/* pages not PG_NONE */
	uint32_t guard;		/* its record in the guardian's state + 1 (guard.h) */
	bool orphans;		/* mapped pages nobody holds, whose restore
				 * failed: retried after a successful sync */
	struct sm_page pg[];
};

struct sm_seg {
	struct sm_chunk *c;
	size_t first, count;
};

struct sm_hold {
	struct sm_hold *next, *prev;	/* all holds (sm_holds) */
	struct sm_hold *o_next, *o_prev;	/* the holds of `owner` */
	struct sm_hnode o_node;	/* the first hold of an owner: in the owner table */
	const void *owner;
	uintptr_t addr;
	size_t len;
	size_t shadowed;	/* bytes */
	bool pending;		/* released, but its writeback failed: finished
				 * by the next successful sync point */
	size_t nseg, cap;
	struct sm_seg *seg;
	size_t reserved;	/* bytes of holes it filled (kept, also when
				 * the registration fails: reserve.c) */
};

/* ---- lock.c ---- */
extern pthread_mutex_t sm_lock;
/* This thread holds (or is taking) the engine lock.  A signal handler that
 * finds it set interrupted the engine: it must not wait for the lock. */
extern __thread bool sm_lock_mine __attribute__((tls_model("initial-exec")));
/* Set while some thread holds the engine lock (sm_quiet_range). */
extern _Atomic bool sm_lock_busy;
static inline void sm_lock_take(void)
{
	sm_lock_mine = true;
	pthread_mutex_lock(&sm_lock);
	atomic_store(&sm_lock_busy, true);
}
static inline void sm_lock_drop(void)
{
	atomic_store(&sm_lock_busy, false);
	pthread_mutex_unlock(&sm_lock);
	sm_lock_mine = false;
}
/* Depth of safe_mr calls on this thread that run code (the real verbs
 * calls, malloc) a signal handler must not re-enter. */
extern __thread unsigned int sm_api_depth __attribute__((tls_model("initial-exec")));
/* Called from a signal handler that interrupted safe_mr on this thread? */
static inline bool sm_reentered(void)
{
	return sm_lock_mine || sm_api_depth;
}
/* Could another thread of this process write memory right now? */
bool sm_threads(void);

/* Chunks alive: lets hot libc interposers skip the lock when zero. */
extern _Atomic size_t sm_nchunks;
/* The registry (lock held; read lock-free only by a signal handler that
 * interrupted the lock's owner, which cannot change it meanwhile). */
extern struct sm_chunk *sm_chunks;
extern struct sm_hold *sm_holds;

/* ---- registry.c (lock held) ----
 * A chunk is linked in three places: the list of all chunks (walks that
 * visit everything: sync_all, fork), the interval tree by address, and the
 * list of its file's chunks.  A hold: the list of all holds, and the list
 * of its owner's, whose first hold is in a hash table keyed by owner.
 * Lookups are O(log n) (tree) or O(1) (hash); nothing allocates. */
extern struct sm_itree sm_chunk_tree;
void sm_chunk_link(struct sm_chunk *c);
void sm_chunk_unlink(struct sm_chunk *c);
/* Chunks overlapping [s, e), lowest start first.  c must still be linked
 * when the next one is asked for. */
struct sm_chunk *sm_chunk_first_in(uintptr_t s, uintptr_t e);
struct sm_chunk *sm_chunk_next_in(const struct sm_chunk *c, uintptr_t s, uintptr_t e);
/* From a signal handler that interrupted the engine on this thread: does
 * a chunk overlap [s, e)?  1, 0, or -1: the registry was mid-change. */
int sm_chunks_reentered_any(uintptr_t s, uintptr_t e);
/* Page i of c was written since its file's last durable flush: c goes on
 * the file's list of chunks with unsynced pages (sm_file_flushed). */
void sm_page_unsynced(struct sm_chunk *c, size_t i);
void sm_chunk_unsynced_done(struct sm_chunk *c);	/* off that list */
/* c->orphans, counted: sync points skip the walk when none has them. */
void sm_chunk_set_orphans(struct sm_chunk *c, bool on);
extern size_t sm_norphans;
void sm_hold_link(struct sm_hold *h);
void sm_hold_unlink(struct sm_hold *h);
/* Move h to another owner's list. */
void sm_hold_owner_set(struct sm_hold *h, const void *owner);
/* The holds of owner: the first, then h->o_next. */
struct sm_hold *sm_owner_first(const void *owner);
/* Every hold of owner `from` becomes `to`'s. */
void sm_owner_move(const void *from, const void *to);
/* Fork child, after freeing every chunk and hold: empty indexes. */
void sm_registry_forget(void);

/* Lock-free filter for the sync points: a count of linked chunks per 2 MiB
 * granule of address space, folded into SM_GRAN_SLOTS slots.  Maintained
 * by sm_chunk_link/unlink under the lock. */
#define SM_GRAN_SHIFT 21
#define SM_GRAN_SLOTS 4096u
extern _Atomic unsigned int sm_gran[SM_GRAN_SLOTS];

/* Without the lock: true when no chunk overlaps [s, e) and no thread holds
 * the engine lock, so a sync point on [s, e) has nothing to do.  Called
 * after the real munmap (or before the real msync): a registration that
 * takes the lock after this load looks at the mappings as they are now
 * (seq_cst: the lock flag is stored before it queries any VMA), and one
 * that dropped it before has published its chunk's counts. */
static inline bool sm_quiet_range(uintptr_t s, uintptr_t e)
{
	uintptr_t g = s >> SM_GRAN_SHIFT, ge = (e - 1) >> SM_GRAN_SHIFT;

	if (atomic_load(&sm_lock_busy) || ge - g >= SM_GRAN_SLOTS)
		return false;
	for (; g <= ge; g++)
		if (atomic_load_explicit(&sm_gran[g % SM_GRAN_SLOTS], memory_order_relaxed))
			return false;
	return true;
}

static inline uint8_t *sm_page_ptr(struct sm_chunk *c, size_t i)
{
	return c->alias + i * sm_page_size;
}

static inline uintptr_t sm_page_addr(const struct sm_chunk *c, size_t i)
{
	return c->start + i * sm_page_size;
}

/* ---- merge.c ---- */
/* live[] may be written by other threads right now.  Bytes where theirs
 * differs from base are copied into live unless live changed them itself
 * (live != base): the later write wins, at byte granularity, atomically
 * against concurrent stores. */
void sm_merge_page(uint8_t *live, const uint8_t *base, const uint8_t *theirs);

/* ---- shadow.c (lock held) ---- */
/* Scratch buffers for filling, restoring and verifying: each SM_SLICE bytes,
 * small enough to stay in cache. */
#define SM_SLICE (1u << 20)
#define SM_SLICE_PAGES (SM_SLICE / 4096u)
int sm_scratch(uint8_t **a, uint8_t **b);
void sm_scratch_free(void);	/* unload */
/* Pages [first, +count) of c are finished with: free their memory. */
void sm_pages_gone(struct sm_chunk *c, size_t first, size_t count);
void sm_chunk_free(struct sm_chunk *c);
/* Page i of c (unreferenced, detached) may go: written back, or changed
 * but wholly past the end of file (dropped, logged). */
bool sm_page_finished(struct sm_chunk *c, size_t i);
void sm_chunk_maybe_free(struct sm_chunk *c);	/* if no page and no hold is left */
/* Unmap the keeper's pages [first, +count) that it still holds. */
void sm_keeper_drop(struct sm_chunk *c, size_t first, size_t count);
/* Map the file back over pages [first, +n) of c with protection prot: the
 * keeper's pages moved home if it has them all, else a new mapping of our
 * descriptor.  raw: system calls only (a forked child). */
int sm_map_file_back(struct sm_chunk *c, size_t first, size_t n, int prot, bool raw);
/* Does [first, +count) of c still show our arena at the expected offsets?
 * Sets *prot to its protection. */
bool sm_still_ours(struct sm_chunk *c, size_t first, size_t count, int *prot);
/* Put the file mapping back over mapped pages [first, +count) of c,
 * writing back what changed first and merging late writes.  Pages become
 * detached; those without references are gone unless keep.  0 or errno
 * (then from the failed slice on nothing changed: still shadowed). */
int sm_restore_run(struct sm_chunk *c, size_t first, size_t count, bool nic_may_write,
		   bool keep);
/* Restore unreferenced mapped pages of chunks marked orphans. */
void sm_restore_orphans(void);
/* Swap the arena back in over pages [first, +count) that were restored by
 * sm_restore_run(..., keep=true) (undo of a failed mremap). */
int sm_reshadow_run(struct sm_chunk *c, size_t first, size_t count);

/* ---- sync.c (lock held) ---- */
/* One selection of chunk pages to write back. */
struct sm_sel {
	struct sm_chunk *c;
	size_t first, count;
};
/* Write back the changed pages of a selection that are in `states`:
 * grouped by file; with SM_WB_DURABLE one fdatasync per file, and a failed
 * flush marks every page written since the file's last good flush dirty
 * again (the kernel may have dropped them).  `src`, if not NULL, is a copy
 * of the single selection's pages to write instead of the shadow. */
int sm_writeback_sel(struct sm_sel *sel, size_t n, unsigned int flags, unsigned int states,
		     const uint8_t *src);
int sm_sync_range(uintptr_t start, uintptr_t end, unsigned int flags);
int sm_sync_file(struct sm_file *f, unsigned int flags);
int sm_sync_everything(unsigned int flags);
int sm_hold_sync_locked(struct sm_hold *h, size_t off, size_t len, unsigned int flags);
int sm_sync_owner_locked(const void *owner, size_t off, size_t len, unsigned int flags);
/* f's size now.  If it is below the size the engine saw last, someone
 * truncated f meanwhile: the shadow pages wholly in the lost part count as
 * written (what they held was cut off with the file), so a regrown file
 * never gets their old contents back. */
off_t sm_file_eof(struct sm_file *f);	/* -1: fstat failed */
/* The application flushed f itself (fsync/fdatasync, msync MS_SYNC):
 * ok = whether that flush succeeded. */
void sm_file_flushed(struct sm_file *f, bool ok);
/* Chunk pages inside [start, end) (application addresses), clipped. */
bool sm_chunk_clip(struct sm_chunk *c, uintptr_t start, uintptr_t end, size_t *first,
		   size_t *count);

/* ---- unmap.c (lock held) ---- */
/* The application unmapped [start, end) (the real munmap succeeded). */
int sm_unmapped_range(uintptr_t start, uintptr_t end);
/* mremap of [old, old+old_size): restore the file mapping first, call
 * `real`, undo on failure.  Returns what the real call returned. */
void *sm_mremap_range(void *old, size_t old_size, size_t new_size, int flags, void *new_addr,
		      void *(*real)(void *, size_t, size_t, int, void *));

/* ---- holds (shadow.c) ---- */
struct sm_hold *sm_hold_first(void);
/* Release h later: its owner is gone (deregistered) but the data could not
 * be written; the next successful sync point finishes it. */
void sm_hold_defer(struct sm_hold *h);
/* After a successful sync point: finish deferred releases and restores. */
void sm_hold_reap(void);
extern size_t sm_npending;	/* deferred releases */
/* Takes the lock: would [addr, +len) with `access` need a shadow?  1, 0,
 * or -1 with errno (EINVAL/EFAULT: what the kernel would refuse). */
int sm_needs_shadow(void *addr, size_t len, unsigned int access);

/* ---- lifecycle.c ---- */
void sm_flusher_start(void);

#endif
