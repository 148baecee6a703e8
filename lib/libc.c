/* SPDX-License-Identifier: MIT */
/* msync, fsync, fdatasync, munmap, mremap that know about shadows: the
 * sync points of the coherence model.  They behave like the libc calls
 * (-1 and errno); a writeback error is reported as the call's error. */
#include <errno.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "safe_mr.h"
#include "shadow.h"

static inline bool any_shadow(void)
{
	return atomic_load_explicit(&sm_nchunks, memory_order_acquire) != 0;
}

SM_EXPORT int safe_mr_msync(void *addr, size_t length, int flags)
{
	uintptr_t a = (uintptr_t)addr;
	int err = 0;

	if (any_shadow() && length && a + length > a) {
		pthread_mutex_lock(&sm_lock);
		err = sm_sync_range(sm_page_down(a), sm_page_up(a + length),
				    (flags & MS_SYNC) ? SM_WB_DURABLE : 0);
		if (!err)
			sm_hold_reap();
		pthread_mutex_unlock(&sm_lock);
	}
	/* The real msync still runs: it handles the unshadowed part and
	 * reports ENOMEM/EINVAL for bad ranges as usual. */
	if (sm_sys_msync(addr, length, flags))
		return -1;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

static int sync_fd(int fd, int (*real)(int))
{
	struct stat st;
	int err = 0;

	if (any_shadow() && fstat(fd, &st) == 0) {
		pthread_mutex_lock(&sm_lock);
		struct sm_file *f = sm_file_lookup(st.st_dev, st.st_ino);
		/* Lazy writes; the real call below makes them durable. */
		if (f)
			err = sm_sync_file(f, 0);
		if (f && !err)
			sm_hold_reap();
		pthread_mutex_unlock(&sm_lock);
	}
	if (real(fd))
		return -1;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

SM_EXPORT int safe_mr_fsync(int fd)
{
	return sync_fd(fd, sm_sys_fsync);
}

SM_EXPORT int safe_mr_fdatasync(int fd)
{
	return sync_fd(fd, sm_sys_fdatasync);
}

SM_EXPORT int safe_mr_munmap(void *addr, size_t length)
{
	uintptr_t a = (uintptr_t)addr;
	int ret;

	if (!any_shadow() || !length || a + length < a)
		return sm_sys_munmap(addr, length);
	pthread_mutex_lock(&sm_lock);
	if (sm_unmap_range(sm_page_down(a), sm_page_up(a + length), false))
		sm_error("munmap: shadowed data could not be written back; kept for the next sync");
	ret = sm_sys_munmap(addr, length);
	pthread_mutex_unlock(&sm_lock);
	return ret;
}

SM_EXPORT void *safe_mr_mremap(void *old_address, size_t old_size, size_t new_size, int flags,
			       void *new_address)
{
	uintptr_t a = (uintptr_t)old_address;
	void *ret;

	if (!any_shadow() || !old_size || a + old_size < a)
		return sm_sys_mremap(old_address, old_size, new_size, flags, new_address);
	pthread_mutex_lock(&sm_lock);
	if (sm_unmap_range(sm_page_down(a), sm_page_up(a + old_size), true))
		sm_error("mremap: shadowed data could not be written back; kept for the next sync");
	ret = sm_sys_mremap(old_address, old_size, new_size, flags, new_address);
	pthread_mutex_unlock(&sm_lock);
	return ret;
}
