/* SPDX-License-Identifier: MIT */
/* Raw system calls for the calls the preload library interposes: the engine
 * must reach the kernel, never its own interposers (no recursion). */
#include <errno.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <stdint.h>
#include <unistd.h>

#include "internal.h"

void *sm_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int sm_sys_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

void *sm_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

int sm_sys_msync(void *addr, size_t len, int flags)
{
	return (int)syscall(SYS_msync, addr, len, flags);
}

int sm_sys_fsync(int fd)
{
	return (int)syscall(SYS_fsync, fd);
}

int sm_sys_fdatasync(int fd)
{
	return (int)syscall(SYS_fdatasync, fd);
}

void *sm_swap_mmap(void *addr, size_t len, int prot, int fd, off_t off)
{
	return mmap(addr, len, prot, MAP_SHARED | MAP_FIXED, fd, off);
}

/* The engine's moves of a file mapping back over a shadow are the raw
 * system call (MREMAP_FIXED): a hook on libc's mremap may not pass the
 * fifth argument on (UCX 1.13's ucm_mremap takes four), and the kernel
 * then moved the file mapping over whatever a stray register named,
 * another object's memory, which the MPI library went on writing into the
 * file.  The hooks hear of the change by this: a resize of [addr, +len) to
 * its own size through libc, four arguments, a no-op for the kernel; every
 * hook reports the range unmapped (ucm: and mapped again).  A tracer
 * preloaded after safe_mr sees it as an mremap at that address. */
void sm_swap_notify(void *addr, size_t len)
{
	int saved = errno;

	(void)mremap(addr, len, len, 0);
	errno = saved;
}

/* ftruncate of our own memfds (the arena, the guardian's state) within
 * the process's RLIMIT_FSIZE: past it the kernel refuses with EFBIG and
 * sends SIGXFSZ, whose default action ends the application.  0 or an
 * errno. */
off_t sm_fsize_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_FSIZE, &rl) || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > (rlim_t)INT64_MAX)
		return (off_t)INT64_MAX;
	return (off_t)rl.rlim_cur;
}

int sm_ftruncate_own(int fd, off_t size)
{
	if (size > sm_fsize_limit())
		return EFBIG;
	return ftruncate(fd, size) ? errno : 0;
}
