/* SPDX-License-Identifier: MIT */
/* A hook on mremap that takes four arguments, as UCX 1.13's ucm_mremap
 * does: what reaches the kernel as the new address is not the caller's
 * but a stray value.  Here the stray value is chosen, to make the harm
 * certain: the address in the program's exported stray_target (memory the
 * program owns and checks).  Preloaded after safe_mr, like a hook that
 * patched libc's mremap. */
#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((visibility("default"))) void *mremap(void *old, size_t old_size,
						    size_t new_size, int flags, ...)
{
	void **stray = dlsym(RTLD_DEFAULT, "stray_target");

	return (void *)syscall(SYS_mremap, old, old_size, new_size, flags,
			       stray ? *stray : NULL);
}
