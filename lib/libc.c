/* SPDX-License-Identifier: MIT */
/* msync, fsync, fdatasync, munmap, mremap that know about shadows: the
 * sync points of the coherence model.  They behave like the libc calls
 * (-1 and errno).  The application's own call goes to the next definition
 * the preload library handed over (libc_next.h), so that function patchers
 * and later interposers see it; raw system calls otherwise.
 *
 * In a signal handler that interrupted the engine in the same thread the
 * engine's state is mid-change and its lock is taken: the sync points then
 * make the real call only, and msync/fsync/fdatasync of a shadowed file
 * fail with EDEADLK (its shadowed data was not written; call again outside
 * the handler) instead of waiting forever. */
#include <errno.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "libc_next.h"
#include "safe_mr.h"
#include "shadow.h"

/* The next definitions (libc_next.h), published once complete: the
 * preload library may hand them over from any thread at any time. */
static struct sm_libc_next next_copy;
static _Atomic(const struct sm_libc_next *) next_fns;

SM_EXPORT void sm_set_libc_next(const struct sm_libc_next *n)
{
	atomic_store_explicit(&next_fns, NULL, memory_order_release);
	if (n) {
		next_copy = *n;
		atomic_store_explicit(&next_fns, &next_copy, memory_order_release);
	}
}

static inline const struct sm_libc_next *libc_next(void)
{
	return atomic_load_explicit(&next_fns, memory_order_acquire);
}

static int real_msync(void *addr, size_t len, int flags)
{
	const struct sm_libc_next *n = libc_next();

	return n && n->msync ? n->msync(addr, len, flags) : sm_sys_msync(addr, len, flags);
}

static int real_munmap(void *addr, size_t len)
{
	const struct sm_libc_next *n = libc_next();

	return n && n->munmap ? n->munmap(addr, len) : sm_sys_munmap(addr, len);
}

static void *real_mremap(void *old, size_t old_size, size_t new_size, int flags, void *new_addr)
{
	const struct sm_libc_next *n = libc_next();

	return n && n->mremap ? n->mremap(old, old_size, new_size, flags, new_addr)
			      : sm_sys_mremap(old, old_size, new_size, flags, new_addr);
}

static int real_fsync(int fd)
{
	const struct sm_libc_next *n = libc_next();

	return n && n->fsync ? n->fsync(fd) : sm_sys_fsync(fd);
}

static int real_fdatasync(int fd)
{
	const struct sm_libc_next *n = libc_next();

	return n && n->fdatasync ? n->fdatasync(fd) : sm_sys_fdatasync(fd);
}

static inline bool any_shadow(void)
{
	return atomic_load_explicit(&sm_nchunks, memory_order_acquire) != 0;
}

/* Re-entered from a signal handler (the interrupted code is frozen, so the
 * registry can be read, not changed): does [s, e) hold shadow pages?  If
 * the handler interrupted a change of the index itself (a few stores) it
 * cannot tell, and answers yes: EDEADLK says "call again outside the
 * handler", which is right either way. */
static bool reentered_range_shadowed(uintptr_t s, uintptr_t e)
{
	return sm_chunks_reentered_any(s, e) != 0;
}

SM_EXPORT int safe_mr_msync(void *addr, size_t length, int flags)
{
	uintptr_t a = (uintptr_t)addr;
	int err = 0, ret;

	if (any_shadow() && length && a + length > a &&
	    !sm_quiet_range(sm_page_down(a), sm_page_up(a + length))) {
		uintptr_t s = sm_page_down(a), e = sm_page_up(a + length);

		if (sm_reentered()) {
			ret = real_msync(addr, length, flags);
			if (ret == 0 && reentered_range_shadowed(s, e)) {
				errno = EDEADLK;
				return -1;
			}
			return ret;
		}
		sm_lock_take();
		err = sm_sync_range(s, e, (flags & MS_SYNC) ? SM_WB_DURABLE : 0);
		if (!err)
			sm_hold_reap();
		sm_lock_drop();
	}
	/* The real msync still runs: it handles the unshadowed part and
	 * reports ENOMEM/EINVAL for bad ranges as usual. */
	ret = real_msync(addr, length, flags);
	if (ret)
		return ret;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

static int sync_fd(int fd, int (*real)(int))
{
	struct stat st;
	struct sm_file *f = NULL;
	int err = 0, ret;

	if (!any_shadow() || fstat(fd, &st))
		return real(fd);
	if (sm_reentered()) {
		ret = real(fd);
		if (ret == 0 && sm_file_known_reentered(st.st_dev, st.st_ino)) {
			errno = EDEADLK;
			return -1;
		}
		return ret;
	}
	sm_lock_take();
	f = sm_file_lookup(st.st_dev, st.st_ino);
	/* Lazy writes; the real call below makes them durable. */
	if (f) {
		err = sm_sync_file(f, 0);
		if (!err)
			sm_hold_reap();
	}
	sm_lock_drop();
	ret = real(fd);
	if (f) {
		/* Whether the pages written so far are on disk: if the flush
		 * failed the kernel may have dropped them, so they are written
		 * again at the next sync point. */
		int e = errno;

		sm_lock_take();
		f = sm_file_lookup(st.st_dev, st.st_ino);
		if (f) {
			sm_file_flushed(f, ret == 0);
			/* Linux reports a writeback error once to each open
			 * file description: ours would report this one again
			 * at our next flush, after the pages were written
			 * again.  A new description starts past it (and a
			 * flush now, while the device may still fail, could
			 * make things worse: btrfs aborts its transaction). */
			if (ret)
				sm_file_renew(f);
		}
		sm_lock_drop();
		errno = e;
	}
	if (ret)
		return ret;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

SM_EXPORT int safe_mr_fsync(int fd)
{
	return sync_fd(fd, real_fsync);
}

SM_EXPORT int safe_mr_fdatasync(int fd)
{
	return sync_fd(fd, real_fdatasync);
}

/* munmap returns what the real call returns: once the mapping is gone the
 * call has succeeded.  Shadowed data that cannot be written then stays in
 * the engine and is written (or its error reported) by the next sync point
 * of its file: fsync/fdatasync, safe_mr_sync_all, exit. */
SM_EXPORT int safe_mr_munmap(void *addr, size_t length)
{
	uintptr_t a = (uintptr_t)addr;
	int ret;

	/* The real call runs outside the engine lock: memory hooks behind it
	 * (UCX, libfabric, Open MPI) may call back into verbs.  A registration
	 * racing it at the same address finds the VMA changed (detach_stale). */
	ret = real_munmap(addr, length);
	if (ret || !any_shadow() || sm_reentered() || !length || a + length < a ||
	    sm_quiet_range(sm_page_down(a), sm_page_up(a + length)))
		return ret;
	sm_lock_take();
	if (sm_unmapped_range(sm_page_down(a), sm_page_up(a + length)))
		sm_error("munmap: shadowed data could not be written back; kept for the "
			 "next sync point of its file");
	sm_lock_drop();
	return 0;
}

SM_EXPORT void *safe_mr_mremap(void *old_address, size_t old_size, size_t new_size, int flags,
			       void *new_address)
{
	uintptr_t a = (uintptr_t)old_address;
	void *ret;

	/* The engine's own moves (restoring a file mapping) come back here
	 * through the preload library: they are the real thing. */
	if (!any_shadow() || sm_reentered() || !old_size || a + old_size < a)
		return real_mremap(old_address, old_size, new_size, flags, new_address);
	sm_lock_take();
	ret = sm_mremap_range(old_address, old_size, new_size, flags, new_address, real_mremap);
	sm_lock_drop();
	return ret;
}
