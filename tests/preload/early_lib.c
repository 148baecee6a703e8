/* SPDX-License-Identifier: MIT */
/* A library whose constructor uses every interposed libc call.  It needs
 * only libc, so nothing orders it after the preload library's constructor:
 * these calls can arrive before safe_mr is initialised.  They must work,
 * and still end in the next definition: with a spy preloaded after safe_mr
 * (spy_lib.c), the spy must see each of them once. */
#include <dlfcn.h>

#include "early.h"

static int ran, spied;
static unsigned counts[5];
static const char *const calls[5] = { "msync", "munmap", "mremap", "fsync", "fdatasync" };

__attribute__((constructor)) static void early_lib_init(void)
{
	unsigned (*count)(const char *) =
		(unsigned (*)(const char *))dlsym(RTLD_DEFAULT, "sm_spy_count");
	void (*unwatch)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "sm_spy_unwatch");

	early_watch = (void (*)(void *, int))dlsym(RTLD_DEFAULT, "sm_spy_watch");
	early_exercise("library constructor");
	if (early_watch && count && unwatch) {
		for (int i = 0; i < 5; i++)
			counts[i] = count(calls[i]);
		unwatch();
		spied = 1;
	}
	ran = 1;
}

/* Whether the constructor ran; with a spy, what it saw of each call. */
__attribute__((visibility("default"))) int early_lib_report(unsigned out[5],
						   const char *const **names)
{
	for (int i = 0; i < 5; i++)
		out[i] = counts[i];
	*names = calls;
	return ran + spied;
}
