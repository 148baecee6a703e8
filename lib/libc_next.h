/* SPDX-License-Identifier: MIT */
/* Internal interface between the LD_PRELOAD library and the engine: the
 * next definitions of the libc calls the preload library interposes.
 *
 * The preload library's msync, munmap, mremap, fsync and fdatasync do the
 * shadow work in the engine (safe_mr_msync & co.), and the application's own
 * call must then reach whatever comes after the preload library (libc, a
 * later interposer, code that a function patcher such as UCX's ucm or
 * libfabric's memhooks rewrote), not the kernel directly: else those never
 * see the application's calls.  The preload library resolves these with
 * dlsym(RTLD_NEXT, ...) and hands them over once, before or after the
 * engine's constructor, from any thread.
 *
 * Once set, safe_mr_msync/munmap/mremap/fsync/fdatasync make the
 * application's call (the one they stand in for, on the caller's
 * arguments) through these pointers; a NULL member, or no call of
 * sm_set_libc_next at all, means the raw system call as before.  The
 * engine's private calls (its shadow arena, remapping file pages back) keep
 * raw system calls.  The engine copies *next; NULL resets to raw calls.
 *
 * Not part of the public API (include/safe_mr.h): exported by libsafe_mr.so
 * only in its private version node, for libsafe_mr_preload.so. */
#ifndef SAFE_MR_LIBC_NEXT_H
#define SAFE_MR_LIBC_NEXT_H

#include <stddef.h>

struct sm_libc_next {
	int (*msync)(void *addr, size_t length, int flags);
	int (*munmap)(void *addr, size_t length);
	/* Like glibc's: the fifth argument (new_address) is read only with
	 * MREMAP_FIXED; passing it always is harmless. */
	void *(*mremap)(void *old_address, size_t old_size, size_t new_size, int flags, ...);
	int (*fsync)(int fd);
	int (*fdatasync)(int fd);
};

void sm_set_libc_next(const struct sm_libc_next *next);

#endif
