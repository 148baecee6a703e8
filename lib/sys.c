/* SPDX-License-Identifier: MIT */
/* Raw system calls for the calls the preload library interposes: the engine
 * must reach the kernel, never its own interposers (no recursion). */
#include <sys/mman.h>
#include <sys/syscall.h>
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

void *sm_swap_mremap(void *from, size_t len, void *to)
{
	return mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
}
