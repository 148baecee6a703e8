/* SPDX-License-Identifier: MIT */
/* libc sync points: msync, munmap, mremap, fsync, fdatasync.
 *
 * Exported unversioned (base version), so references to msync@GLIBC_2.2.5
 * and the like bind here: glibc accepts a base-version definition for any
 * versioned reference.  Too early (before our constructor, so possibly
 * before libsafe_mr's) or re-entered, they go straight to the kernel. */
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <safe_mr.h>

#include "preload.h"

#define SM_PL_API __attribute__((visibility("default")))

SM_PL_API int msync(void *addr, size_t length, int flags)
{
	int ret;

	if (sm_pl_bypass())
		return (int)syscall(SYS_msync, addr, length, flags);
	sm_pl_busy = true;
	ret = safe_mr_msync(addr, length, flags);
	sm_pl_busy = false;
	return ret;
}

SM_PL_API int munmap(void *addr, size_t length)
{
	int ret;

	if (sm_pl_bypass())
		return (int)syscall(SYS_munmap, addr, length);
	sm_pl_busy = true;
	ret = safe_mr_munmap(addr, length);
	sm_pl_busy = false;
	return ret;
}

SM_PL_API void *mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...)
{
	void *new_address = NULL;
	void *ret;

	/* Like glibc: the fifth argument exists only with MREMAP_FIXED. */
	if (flags & MREMAP_FIXED) {
		va_list ap;

		va_start(ap, flags);
		new_address = va_arg(ap, void *);
		va_end(ap);
	}
	if (sm_pl_bypass())
		return (void *)syscall(SYS_mremap, old_address, old_size, new_size, flags,
				       new_address);
	sm_pl_busy = true;
	ret = safe_mr_mremap(old_address, old_size, new_size, flags, new_address);
	sm_pl_busy = false;
	return ret;
}

SM_PL_API int fsync(int fd)
{
	int ret;

	if (sm_pl_bypass())
		return (int)syscall(SYS_fsync, fd);
	sm_pl_busy = true;
	ret = safe_mr_fsync(fd);
	sm_pl_busy = false;
	return ret;
}

SM_PL_API int fdatasync(int fd)
{
	int ret;

	if (sm_pl_bypass())
		return (int)syscall(SYS_fdatasync, fd);
	sm_pl_busy = true;
	ret = safe_mr_fdatasync(fd);
	sm_pl_busy = false;
	return ret;
}
