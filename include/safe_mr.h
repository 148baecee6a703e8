/* SPDX-License-Identifier: MIT */
/*
 * safe_mr: safe RDMA registration of file-backed memory.
 *
 * Writable registrations that cover MAP_SHARED mappings of regular files are
 * routed through anonymous "shadow" memory at the same virtual address; the
 * shadow is written back to the file with ordinary writes at sync points
 * (deregistration, msync, fsync/fdatasync, munmap, safe_mr_sync, exit).
 *
 * Return conventions follow libibverbs: calls that return a pointer return
 * NULL and set errno; calls that return int return 0 or an errno value, except
 * the libc look-alikes (safe_mr_msync, safe_mr_fsync, ...) which return -1 and
 * set errno exactly like the calls they stand in for.
 */
#ifndef SAFE_MR_H
#define SAFE_MR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <infiniband/verbs.h>

/* off_t is 64 bits in this ABI (struct safe_mr_file_region, safe_mr_file_reg)
 * on every architecture: the library is built with _FILE_OFFSET_BITS=64.
 * On 32-bit systems compile with -D_FILE_OFFSET_BITS=64 (pkg-config
 * --cflags safe_mr passes it); a 32-bit off_t would not match the library. */
#if defined(__cplusplus) && __cplusplus >= 201103L
static_assert(sizeof(off_t) == 8, "safe_mr needs a 64-bit off_t: compile with -D_FILE_OFFSET_BITS=64");
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(off_t) == 8, "safe_mr needs a 64-bit off_t: compile with -D_FILE_OFFSET_BITS=64");
#else
typedef char safe_mr_needs_a_64_bit_off_t[sizeof(off_t) == 8 ? 1 : -1];
#endif

/* SAFE_MR_VERSION_MAJOR, _MINOR, _PATCH, SAFE_MR_VERSION_CODE(maj, min, pat),
 * SAFE_MR_VERSION and SAFE_MR_VERSION_STRING: the version of this header. */
#include "safe_mr_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the library actually loaded, e.g. "0.2.0". */
const char *safe_mr_version(void);

/* ---- Drop-in registration (same arguments and results as libibverbs) ---- */

struct ibv_mr *safe_mr_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access);
struct ibv_mr *safe_mr_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
				   uint64_t iova, int access);
struct ibv_mr *safe_mr_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
				    uint64_t iova, unsigned int access);
int safe_mr_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
		     size_t length, int access);
/* Writes back changed shadow pages (durably), then deregisters.  If the
 * writeback fails the MR stays registered, its data stays in the shadow, and
 * the errno is returned: fix the cause and call again. */
int safe_mr_dereg_mr(struct ibv_mr *mr);

/* ---- Sync ---- */

/* Make the data durable (fdatasync after the writes), not just visible to
 * read()/other mappings of the file. */
#define SAFE_MR_SYNC_DURABLE (1u << 0)

/* Write back changed pages of [offset, offset+length) of the MR (length 0 =
 * to the end).  Returns 0 or an errno (ENOSPC, EIO, EDQUOT, ...); on error
 * the pages keep their data and stay pending for the next sync. */
int safe_mr_sync(struct ibv_mr *mr, size_t offset, size_t length, unsigned int flags);
/* Every shadow of the process. */
int safe_mr_sync_all(unsigned int flags);

/* libc look-alikes that know about shadows: what the LD_PRELOAD library
 * calls, for programs that link safe_mr instead.  -1 and errno on error. */
int safe_mr_msync(void *addr, size_t length, int flags);
int safe_mr_fsync(int fd);
int safe_mr_fdatasync(int fd);
int safe_mr_munmap(void *addr, size_t length);
void *safe_mr_mremap(void *old_address, size_t old_size, size_t new_size, int flags,
		     void *new_address);

/* ---- exec ----
 *
 * An exec ends the old image like exit: safe_mr_exec_prepare() writes every
 * shadow back durably and tells the guardian the process is done, so that
 * no late writeback of the old image's shadows lands after the new image
 * wrote the file.  Returns 0 or an errno (the writeback failed: then the
 * guardian writes the shadows after the exec, as after a crash).  If the
 * exec fails, safe_mr_exec_failed() puts the shadows under a guardian again.
 * The LD_PRELOAD library does both around every exec function; a program
 * that links safe_mr calls them itself. */
int safe_mr_exec_prepare(void);
void safe_mr_exec_failed(void);

/* Wait until the guardian of process pid has finished: a process that died
 * without a sync point has its shadows written back by its guardian after
 * it is gone.  pid must still exist (alive, or a zombie not yet reaped:
 * call between waitid(..., WNOWAIT) and the reap); the LD_PRELOAD library's
 * wait functions do that for every child.  timeout_ms < 0 waits as long as
 * it takes.  0 (done, or no guardian), ETIMEDOUT, ESRCH (no such process),
 * EINVAL, or another errno. */
int safe_mr_guardian_wait(pid_t pid, int timeout_ms);

/* ---- Range holds: shadow pages without registering them ----
 *
 * For registration paths that are not libibverbs (libfabric providers, other
 * NIC libraries): acquire before the pages are pinned, release after they
 * are unpinned.  `owner` is any pointer that identifies the registration (the
 * ibv_mr, the fid_mr, ...); it may be NULL. */
struct safe_mr_range;

int safe_mr_range_acquire(void *addr, size_t length, unsigned int access,
			  const void *owner, struct safe_mr_range **range);
int safe_mr_range_sync(struct safe_mr_range *range, size_t offset, size_t length,
		       unsigned int flags);
/* Writes back (durably) and drops the hold; on a writeback error returns the
 * errno and keeps the hold, like safe_mr_dereg_mr. */
int safe_mr_range_release(struct safe_mr_range *range);
/* Bytes of the range that are shadowed (0: nothing needed a shadow). */
size_t safe_mr_range_shadowed(const struct safe_mr_range *range);
/* All ranges acquired with this owner. */
int safe_mr_sync_owner(const void *owner, unsigned int flags);
int safe_mr_release_owner(const void *owner);

/* ---- The registration protocol, for any registration call ----
 *
 * What safe_mr_reg_mr and safe_mr_dereg_mr do around libibverbs, around a
 * registration call of your own (another NIC library, a wrapper):
 * safe_mr_register shadows what the pages need, calls reg(arg, &handle),
 * undoes the shadows if it fails, and, for a read-only registration refused
 * with EFAULT or EOPNOTSUPP, shadows every file page and calls reg once more.
 * The handle reg returns (non-NULL, live until deregistered) names the
 * registration: safe_mr_sync_owner(handle) syncs it.  safe_mr_deregister
 * writes back durably (on failure: returns the errno, nothing deregistered),
 * calls dereg(arg, handle), and writes back what the NIC wrote since.
 * Callbacks return 0 or a positive errno value. */
typedef int (*safe_mr_register_cb)(void *arg, void **handle);
typedef int (*safe_mr_deregister_cb)(void *arg, void *handle);

int safe_mr_register(const struct iovec *iov, size_t iovcnt, unsigned int access,
		     safe_mr_register_cb reg, void *arg, void **handle, size_t *shadowed);
int safe_mr_deregister(void *handle, safe_mr_deregister_cb dereg, void *arg);

/* libfabric: sync the file-backed pages of an MR registered through the
 * FI_HOOK=safe_mr provider. */
struct fid_mr;
int safe_mr_fi_sync(struct fid_mr *mr, unsigned int flags);

/* ---- File-range registration for storage daemons (no mapping needed) ---- */

struct safe_mr_file_region {
	void *addr;		/* buffer holding the file range */
	size_t length;		/* bytes registered */
	struct ibv_mr *mr;	/* its registration: lkey, rkey */
	int fd;			/* the caller's descriptor (not owned) */
	off_t offset;		/* file offset of addr[0] */
};

/* Anonymous buffer filled from fd[offset, offset+length), registered with
 * `access`; only what changed is ever written back.  NULL + errno on error. */
struct safe_mr_file_region *safe_mr_file_reg(struct ibv_pd *pd, int fd, off_t offset,
					     size_t length, unsigned int access);
int safe_mr_file_sync(struct safe_mr_file_region *region, size_t offset, size_t length,
		      unsigned int flags);
/* Reload pages of the sub-range that nobody changed since the last fill or
 * sync from the file (picks up writes made with write() by others). */
int safe_mr_file_refresh(struct safe_mr_file_region *region, size_t offset, size_t length);
/* Writes back (durably) and frees; on a writeback error returns the errno and
 * keeps the region. */
int safe_mr_file_dereg(struct safe_mr_file_region *region);

/* ---- Statistics ---- */

enum safe_mr_writeback_engine {
	SAFE_MR_WB_NONE = 0,	/* no writeback has happened yet */
	SAFE_MR_WB_PWRITE = 1,
	SAFE_MR_WB_IO_URING = 2,
};

struct safe_mr_stats {
	uint64_t registrations;		/* registrations seen (all entry points) */
	uint64_t shadowed;		/* registrations that needed a shadow */
	uint64_t odp;			/* registrations turned into ODP (mode auto) */
	uint64_t bytes_shadowed;	/* bytes copied into shadows */
	uint64_t bytes_written_back;	/* bytes written back to files */
	uint64_t write_calls;		/* write operations issued for writeback */
	uint64_t sync_errors;		/* failed writebacks or syncs */
	uint64_t shadow_bytes_now;	/* bytes currently shadowed */
	uint32_t writeback_engine;	/* enum safe_mr_writeback_engine */
	uint32_t reserved32;
	uint64_t reserved[6];
};

/* Fill *stats with the process-wide counters.  0 or EINVAL. */
int safe_mr_stats(struct safe_mr_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* SAFE_MR_H */
