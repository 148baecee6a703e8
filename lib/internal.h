/* SPDX-License-Identifier: MIT */
/* Internal interfaces of libsafe_mr.  Nothing here is exported: the library
 * is built with -fvisibility=hidden and a version script. */
#ifndef SAFE_MR_INTERNAL_H
#define SAFE_MR_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <infiniband/verbs.h>

#define SM_EXPORT __attribute__((visibility("default")))

/* ---- configuration (config.c): SAFE_MR_* read once, secure_getenv ---- */
enum sm_mode { SM_MODE_BOUNCE, SM_MODE_AUTO, SM_MODE_OFF };
enum sm_log_level { SM_LOG_ERROR, SM_LOG_WARN, SM_LOG_INFO, SM_LOG_DEBUG };
enum sm_wb_pref { SM_WB_PREF_AUTO, SM_WB_PREF_URING, SM_WB_PREF_PWRITE };

/* SAFE_MR_GUARDIAN: require = a registration that would shadow a writable
 * file fails (ESRCH) where no guardian can protect the process. */
enum sm_guard_pref { SM_GUARD_OFF, SM_GUARD_ON, SM_GUARD_REQUIRE };
/* SAFE_MR_SERVICE: the node service (safe_mrd) as the guardian: auto = try
 * it, else start one's own; require = the service or none; off = one's
 * own.  A path is auto with that socket. */
enum sm_service_pref { SM_SVC_OFF, SM_SVC_AUTO, SM_SVC_REQUIRE };
#define SMD_DEFAULT_SOCKET "/run/safe_mr/safe_mrd.sock"

struct sm_config {
	enum sm_mode mode;		/* SAFE_MR_MODE=bounce|auto|off (bounce) */
	enum sm_log_level log_level;	/* SAFE_MR_LOG=error|warn|info|debug (warn) */
	bool stats_at_exit;		/* SAFE_MR_STATS=1 */
	unsigned int flush_ms;		/* SAFE_MR_FLUSH_MS=N (0: off) */
	enum sm_wb_pref writeback;	/* SAFE_MR_WRITEBACK=auto|io_uring|pwrite */
	bool reserve;			/* SAFE_MR_RESERVE=auto|off (auto) */
	enum sm_guard_pref guardian;	/* SAFE_MR_GUARDIAN=on|off|require (on) */
	int threads;			/* SAFE_MR_THREADS=N (-1: default) */
	enum sm_service_pref service;	/* SAFE_MR_SERVICE=auto|off|require|PATH */
	char service_path[108];		/* its socket (sun_path) */
};
extern struct sm_config sm_cfg;
/* Parse the environment once (thread-safe, idempotent). */
void sm_init(void);

/* ---- logging (log.c) ---- */
void sm_log(enum sm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define sm_error(...) sm_log(SM_LOG_ERROR, __VA_ARGS__)
#define sm_warn(...) sm_log(SM_LOG_WARN, __VA_ARGS__)
#define sm_info(...) sm_log(SM_LOG_INFO, __VA_ARGS__)
#define sm_debug(...) sm_log(SM_LOG_DEBUG, __VA_ARGS__)

/* ---- statistics (stats.c) ---- */
struct sm_counters {
	_Atomic uint64_t registrations, shadowed, odp, bytes_shadowed,
		bytes_written_back, write_calls, sync_errors, shadow_bytes_now;
	_Atomic uint64_t reg_failed;	/* of the registrations, those that failed */
	_Atomic uint32_t writeback_engine;
};
extern struct sm_counters sm_stats;
#define SM_STAT_ADD(field, n) \
	atomic_fetch_add_explicit(&sm_stats.field, (n), memory_order_relaxed)
#define SM_STAT_SUB(field, n) \
	atomic_fetch_sub_explicit(&sm_stats.field, (n), memory_order_relaxed)

/* ---- raw system calls (sys.c) ----
 * The engine never calls the libc symbols that the preload library
 * interposes (mmap family, msync, fsync, fdatasync): these go straight to
 * the kernel.  They return like libc: -1 (MAP_FAILED) and errno. */
void *sm_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* The MAP_FIXED swaps of application memory (shadow in, file back) go
 * through libc's mmap on purpose: registration caches below or beside us
 * (libfabric's memhooks monitor, UCX, Open MPI's patcher) hook that symbol
 * to learn that memory at an address changed and drop what they pinned
 * there.  The preload library does not interpose mmap: no recursion. */
void *sm_swap_mmap(void *addr, size_t len, int prot, int fd, off_t off);
/* After the engine moved a file mapping over [addr, +len) with
 * sm_sys_mremap (MREMAP_FIXED never goes through a hook: lib/sys.c), tell
 * libc's hooks, for the same reason as sm_swap_mmap, with a four-argument
 * mremap of the range to its own size. */
void sm_swap_notify(void *addr, size_t len);
/* RLIMIT_FSIZE (INT64_MAX if none), and ftruncate of one of our own
 * memfds within it: EFBIG rather than the SIGXFSZ that would end the
 * application.  Returns 0 or an errno. */
off_t sm_fsize_limit(void);
int sm_ftruncate_own(int fd, off_t size);
int sm_sys_munmap(void *addr, size_t len);
void *sm_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
int sm_sys_msync(void *addr, size_t len, int flags);
int sm_sys_fsync(int fd);
int sm_sys_fdatasync(int fd);

extern size_t sm_page_size;
static inline uintptr_t sm_page_down(uintptr_t a) { return a & ~(uintptr_t)(sm_page_size - 1); }
static inline uintptr_t sm_page_up(uintptr_t a) { return (a + sm_page_size - 1) & ~(uintptr_t)(sm_page_size - 1); }

/* ---- the real libibverbs calls (verbs.c) ----
 * Resolved with dlvsym on libibverbs' own link map, never through the
 * global scope, so the LD_PRELOAD interposers are never re-entered. */
struct sm_verbs {
	struct ibv_mr *(*reg_mr_iova2)(struct ibv_pd *, void *, size_t, uint64_t, unsigned int);
	int (*dereg_mr)(struct ibv_mr *);
	int (*rereg_mr)(struct ibv_mr *, int, struct ibv_pd *, void *, size_t, int);
};
/* NULL (errno set) if libibverbs cannot be found. */
const struct sm_verbs *sm_real_verbs(void);

/* ---- page hashing (hash.c): change detection for shadows ---- */
/* 64-bit hash of one page (sm_page_size bytes). */
uint64_t sm_page_hash(const void *page);
/* The portable implementation (tests compare it with the dispatched one). */
uint64_t sm_page_hash_portable(const void *page);

/* ---- writeback (writeback.c) ----
 * One extent: `len` bytes at `buf` go to file offset `off`.  Callers pass
 * extents sorted by offset and already clipped to the file's end; the
 * engine merges what is contiguous, issues the writes (io_uring, or pwrite
 * when io_uring is unavailable or SAFE_MR_WRITEBACK=pwrite) and with
 * SM_WB_DURABLE ends with an fdatasync.  Returns 0 or the first errno; each
 * extent's own result is in ext[i].err (a failed fdatasync marks them all).
 * Updates bytes_written_back, write_calls, writeback_engine and sync_errors. */
#define SM_WB_DURABLE (1u << 0)
struct sm_wb_extent {
	const void *buf;
	size_t len;
	off_t off;
	int err;
};
int sm_writeback(int fd, struct sm_wb_extent *ext, size_t n, unsigned int flags);
/* Unload: this thread's io_uring and the ring key go. */
void sm_wb_unload(void);

/* ---- the shadow engine (shadow.c, range.c) ---- */
struct sm_hold;			/* = struct safe_mr_range */
/* Shadow the file-backed pages of [addr, addr+len) that `access` needs.
 * 0 or errno (EINVAL, EFAULT, ENOMEM, EACCES); on error nothing changed.
 * force_all: shadow file-backed pages even for read-only access (used
 * after the kernel refused a read-only registration). */
int sm_hold_acquire(void *addr, size_t len, unsigned int access, bool force_all,
		    const void *owner, struct sm_hold **out);
/* Access bits with which the device may write the pages. */
#define SM_WRITE_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | \
			 IBV_ACCESS_REMOTE_ATOMIC)
/* Or'ed into access: if nothing needed a shadow, *out is NULL (no hold to
 * track or release: the pass-through fast path). */
#define SM_ACQUIRE_DROP_EMPTY (1u << 31)
/* Or'ed into access: check the range, shadow nothing (SAFE_MR_MODE=off). */
#define SM_ACQUIRE_NOTHING (1u << 30)
int sm_hold_release(struct sm_hold *h);	/* writeback durable + drop */
void sm_hold_abort(struct sm_hold *h);	/* drop without writeback (failed reg) */
int sm_hold_sync(struct sm_hold *h, size_t off, size_t len, unsigned int flags);
size_t sm_hold_shadowed(const struct sm_hold *h);
void sm_hold_set_owner(struct sm_hold *h, const void *owner);

#endif
