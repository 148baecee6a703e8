/* SPDX-License-Identifier: MIT */
/* The dlopen interposer must not change how other libraries are found:
 * glibc searches a relative name in the *caller's* DT_RUNPATH, and this
 * program's RUNPATH is the only way to find libsm_pl_plugin.so.  Also the
 * ordinary cases: dlopen(NULL) and a library by soname. */
#include <dlfcn.h>

#include "util.h"

int main(void)
{
	int (*answer)(void);
	const char *llp = getenv("LD_LIBRARY_PATH");
	void *h;

	/* Found through LD_LIBRARY_PATH, the test would prove nothing. */
	if (llp && strstr(llp, "plugin"))
		die("LD_LIBRARY_PATH=%s finds the plugin without RUNPATH", llp);
	h = dlopen("libsm_pl_plugin.so", RTLD_NOW);
	if (!h)
		die("dlopen by RUNPATH: %s", dlerror());
	answer = (int (*)(void))dlsym(h, "sm_pl_plugin_answer");
	if (!answer || answer() != 42)
		die("plugin symbol wrong");
	if (dlclose(h))
		die("dlclose: %s", dlerror());
	h = dlopen(NULL, RTLD_NOW);
	if (!h || !dlsym(h, "printf"))
		die("dlopen(NULL): %s", dlerror());
	h = dlopen("libm.so.6", RTLD_NOW);
	if (!h || !dlsym(h, "cos"))
		die("dlopen(libm.so.6): %s", dlerror());
	printf("ok: dlopen by RUNPATH, of NULL and by soname unchanged\n");
	return 0;
}
