/* SPDX-License-Identifier: MIT */
/* A hook on mremap that takes four arguments, as UCX 1.13's ucm_mremap
 * does: what reaches the kernel as the new address is not the caller's
 * but a stray value.  Here the stray value is chosen, to make the harm
 * certain: the address in the program's exported stray_target (memory the
 * program owns and checks; a program without it is refused).  It counts
 * the calls, and those with MREMAP_FIXED, which such a hook must never
 * get from safe_mr.  Preloaded after safe_mr, like a hook that patched
 * libc's mremap. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

API atomic_int drop5_calls, drop5_fixed_calls;

API void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...)
{
	void **stray = dlsym(RTLD_DEFAULT, "stray_target");

	if (!stray) {
		static const char msg[] = "drop5: the program exports no stray_target\n";

		(void)!write(2, msg, sizeof(msg) - 1);
		abort();
	}
	atomic_fetch_add(&drop5_calls, 1);
	if (flags & MREMAP_FIXED)
		atomic_fetch_add(&drop5_fixed_calls, 1);
	return (void *)syscall(SYS_mremap, old, old_size, new_size, flags, *stray);
}
