/* SPDX-License-Identifier: MIT */
#ifndef SM_FILE_H
#define SM_FILE_H

#include <sys/stat.h>

#include "index.h"
#include "internal.h"
#include "vma.h"

/* A backing file of shadowed pages: our own descriptor on it, used for
 * filling shadows, writing back and restoring the mapping. */
struct sm_chunk;
struct sm_file {
	struct sm_file *next, *prev;
	struct sm_hnode hnode;	/* files by (dev, ino) */
	struct sm_chunk *chunks;	/* its chunks (registry.c) */
	struct sm_chunk *unsynced;	/* those with pages written since the last flush */
	dev_t dev;		/* fstat of our descriptor: what fsync(fd) sees */
	ino_t ino;
	int fd;
	bool writable;		/* fd opened O_RDWR */
	bool dax;
	long fs_magic;		/* statfs f_type */
	unsigned int refs;	/* chunks using it */
	uint32_t guard_slot;	/* the guardian's copy of fd (guard.h), 0: none */
	off_t eof_seen;		/* its size when the engine last looked (sm_file_eof):
				 * a smaller one means someone truncated it since */
};

enum sm_backing {
	SM_BACK_NONE,		/* anonymous, private, tmpfs, hugetlbfs, devices: leave alone */
	SM_BACK_FILE,		/* shared mapping of a regular file with writeback */
	SM_BACK_ARENA,		/* our own shadow memory */
};

/* Classify a shared file-backed VMA; for SM_BACK_FILE also return the file
 * (referenced, opened with write access if `write`).  0 or errno. */
int sm_file_classify(const struct sm_vma *v, bool write, enum sm_backing *kind,
		     struct sm_file **file);
void sm_file_put(struct sm_file *f);
/* Give f a new open file description of the same file (same descriptor
 * number): it does not report writeback errors from before. */
void sm_file_renew(struct sm_file *f);
/* The file with this identity, if any pages of it are shadowed. */
struct sm_file *sm_file_lookup(dev_t dev, ino_t ino);
/* The same from a signal handler that interrupted the engine on this
 * thread: 1, 0, or -1 when the table was mid-change. */
int sm_file_known_reentered(dev_t dev, ino_t ino);
/* Forget everything without closing mappings (fork child). */
void sm_file_reset(void);

/* Reserve the blocks [off, +len) lacks (below EOF) where that guarantees
 * later writes (ext4, xfs) and SAFE_MR_RESERVE allows: 0, ENOSPC or
 * EDQUOT (other failures: no promise, 0).  Holes larger than the free
 * space are refused before anything is allocated.  Nothing reserved is
 * given back, also when the call or the registration fails: *reserved
 * counts the bytes allocated, for sm_reserve_kept to report. */
bool sm_reserve_applies(long fs_magic);
int sm_reserve(int fd, long fs_magic, off_t off, size_t len, size_t *reserved);
int sm_reserve_fd(int fd, off_t off, size_t len, size_t *reserved);	/* fstatfs first */
/* A registration failed after reserving `reserved` bytes: say so (info). */
void sm_reserve_kept(size_t reserved);

/* The shadow arena: one memfd for all shadow memory of the process. */
int sm_arena_alloc(size_t len, off_t *off);
void sm_arena_free(off_t off, size_t len);
void sm_arena_discard(off_t off, size_t len);	/* release memory, keep range */
int sm_arena_fd(void);
/* The engine's view of arena bytes [off, +len), or NULL: map one. */
uint8_t *sm_arena_view(off_t off, size_t len);
bool sm_arena_is(const struct sm_vma *v);
void sm_arena_reset(void);
/* arenafree.c: the free extents below the arena's bump pointer `end`.
 * take: an extent of len bytes, if one is free.  put: free [off, +len),
 * merged with its neighbours; what reaches *end lowers it. */
bool sm_afree_take(size_t len, off_t *off);
void sm_afree_put(off_t off, size_t len, off_t *end);
void sm_afree_reset(void);

#endif
