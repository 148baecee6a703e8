/* SPDX-License-Identifier: MIT */
/* libc sync points: msync, munmap, mremap, fsync, fdatasync.
 *
 * Exported unversioned (base version), so references to msync@GLIBC_2.2.5
 * and the like bind here: glibc accepts a base-version definition for any
 * versioned reference.
 *
 * Each call does the shadow work in the engine, and the call itself then
 * goes on to the next definition (next.c), which the engine makes for us
 * (sm_set_libc_next): function patchers and later interposers see every
 * call the application made, once.  Too early (before our constructor, so
 * possibly before libsafe_mr's) or re-entered (from the next definition
 * itself, or from the engine), a call skips the engine and goes straight
 * to the next definition; only while that is being resolved does it go to
 * the kernel. */
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <safe_mr.h>

#include "../lib/libc_next.h"
#include "preload.h"

#define SM_PL_API __attribute__((visibility("default")))

SM_PL_API int msync(void *addr, size_t length, int flags)
{
	struct sm_libc_next scratch;
	const struct sm_libc_next *next = sm_pl_next(&scratch);
	int ret;

	if (!sm_pl_bypass()) {
		sm_pl_busy = true;
		ret = safe_mr_msync(addr, length, flags);
		sm_pl_busy = false;
		return ret;
	}
	if (next && next->msync)
		return next->msync(addr, length, flags);
	return (int)syscall(SYS_msync, addr, length, flags);
}

SM_PL_API int munmap(void *addr, size_t length)
{
	struct sm_libc_next scratch;
	const struct sm_libc_next *next = sm_pl_next(&scratch);
	int ret;

	if (!sm_pl_bypass()) {
		sm_pl_busy = true;
		ret = safe_mr_munmap(addr, length);
		sm_pl_busy = false;
		return ret;
	}
	if (next && next->munmap)
		return next->munmap(addr, length);
	return (int)syscall(SYS_munmap, addr, length);
}

SM_PL_API void *mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...)
{
	struct sm_libc_next scratch;
	const struct sm_libc_next *next = sm_pl_next(&scratch);
	void *new_address = NULL;
	void *ret;

	/* Like glibc: the fifth argument exists only with MREMAP_FIXED. */
	if (flags & MREMAP_FIXED) {
		va_list ap;

		va_start(ap, flags);
		new_address = va_arg(ap, void *);
		va_end(ap);
	}
	if (!sm_pl_bypass()) {
		sm_pl_busy = true;
		ret = safe_mr_mremap(old_address, old_size, new_size, flags, new_address);
		sm_pl_busy = false;
		return ret;
	}
	if (next && next->mremap)
		return next->mremap(old_address, old_size, new_size, flags, new_address);
	return (void *)syscall(SYS_mremap, old_address, old_size, new_size, flags, new_address);
}

SM_PL_API int fsync(int fd)
{
	struct sm_libc_next scratch;
	const struct sm_libc_next *next = sm_pl_next(&scratch);
	int ret;

	if (!sm_pl_bypass()) {
		sm_pl_busy = true;
		ret = safe_mr_fsync(fd);
		sm_pl_busy = false;
		return ret;
	}
	if (next && next->fsync)
		return next->fsync(fd);
	return (int)syscall(SYS_fsync, fd);
}

SM_PL_API int fdatasync(int fd)
{
	struct sm_libc_next scratch;
	const struct sm_libc_next *next = sm_pl_next(&scratch);
	int ret;

	if (!sm_pl_bypass()) {
		sm_pl_busy = true;
		ret = safe_mr_fdatasync(fd);
		sm_pl_busy = false;
		return ret;
	}
	if (next && next->fdatasync)
		return next->fdatasync(fd);
	return (int)syscall(SYS_fdatasync, fd);
}
