/* SPDX-License-Identifier: MIT */
/* The next definitions of the libc calls we interpose (libc's, a later
 * LD_PRELOAD library's, or code a function patcher rewrote): where every
 * application call ends, so that UCX's ucm, libfabric's memhooks, Open MPI's
 * patcher and tracers see every call the application made, once.  They
 * also see the engine's own notices of memory it changed under the
 * application: an mmap(MAP_FIXED) when a shadow goes in, a same-size
 * mremap when the file mapping comes back (lib/sys.c).
 *
 * Resolved by the first call that needs them (possibly a constructor that
 * runs before ours) or by our constructor, whichever comes first.  dlsym
 * may allocate and an allocator may unmap: such a re-entered call gets NULL
 * and goes to the kernel.  Threads that race on the first resolution each
 * use their own (identical) result; one of them publishes it. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>

#include "../lib/libc_next.h"
#include "preload.h"

/* Weak: an engine without it still runs (its calls stay raw syscalls). */
extern __attribute__((weak)) void sm_set_libc_next(const struct sm_libc_next *next);

enum { NEXT_NONE, NEXT_WRITING, NEXT_READY };

static struct sm_libc_next published;
static atomic_int state;

static void resolve(struct sm_libc_next *n)
{
	n->msync = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
	n->munmap = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
	n->mremap = (void *(*)(void *, size_t, size_t, int, ...))dlsym(RTLD_NEXT, "mremap");
	n->fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	n->fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
}

const struct sm_libc_next *sm_pl_next(struct sm_libc_next *scratch)
{
	int expected = NEXT_NONE;

	if (atomic_load_explicit(&state, memory_order_acquire) == NEXT_READY)
		return &published;
	if (sm_pl_busy)
		return NULL;
	sm_pl_busy = true;
	resolve(scratch);
	sm_pl_busy = false;
	if (atomic_compare_exchange_strong_explicit(&state, &expected, NEXT_WRITING,
						    memory_order_acq_rel, memory_order_acquire)) {
		published = *scratch;
		atomic_store_explicit(&state, NEXT_READY, memory_order_release);
		if (sm_set_libc_next)
			sm_set_libc_next(&published);
	}
	return scratch;
}
