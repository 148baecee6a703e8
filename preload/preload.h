/* SPDX-License-Identifier: MIT */
/* Shared state of the LD_PRELOAD layer.  Everything here is hidden: the only
 * exports are the interposed symbols (see libsafe_mr_preload.map). */
#ifndef SAFE_MR_PRELOAD_H
#define SAFE_MR_PRELOAD_H

#include <stdbool.h>
#include <stdatomic.h>

/* Set by our constructor.  Our dependencies (libsafe_mr.so, libibverbs,
 * libc) are initialised before it, so once it is set the engine may be
 * called; before that the libc wrappers go straight to the kernel. */
extern atomic_bool sm_pl_ready;

/* Per-thread "inside a wrapper" flag.  initial-exec: no __tls_get_addr,
 * which may allocate on first use. */
extern __thread bool sm_pl_busy __attribute__((tls_model("initial-exec")));

/* True when a libc wrapper must bypass the engine (too early, or re-entered). */
static inline bool sm_pl_bypass(void)
{
	return !atomic_load_explicit(&sm_pl_ready, memory_order_acquire) || sm_pl_busy;
}

struct sm_libc_next;
/* The next definitions (dlsym(RTLD_NEXT)) of msync, munmap, mremap, fsync,
 * fdatasync: `scratch` filled and returned if they are not published yet,
 * the published copy once they are, NULL when re-entered while resolving
 * them (dlsym may allocate, and an allocator may unmap): the caller then
 * makes the raw system call.  The first resolution hands them to the
 * engine (sm_set_libc_next), for the application's own calls. */
const struct sm_libc_next *sm_pl_next(struct sm_libc_next *scratch);

typedef void *(*sm_pl_dlopen_fn)(const char *, int);
/* libc's dlopen (the next definition after ours); NULL if none. */
sm_pl_dlopen_fn sm_pl_real_dlopen(void);

/* A dlopen handle of the libibverbs already loaded; NULL if none is. */
void *sm_pl_ibverbs_handle(void);

/* Basename of `path` starts with "libibverbs.so". */
bool sm_pl_is_ibverbs(const char *path);

#endif
