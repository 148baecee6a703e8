/* SPDX-License-Identifier: MIT */
/* A hook sees only libfabric calls: msync, fsync, munmap and mremap of a
 * shadowed range reach the file only with the preload library in the
 * process too.  Said once, on stderr (not only at FI_LOG_LEVEL=warn), at
 * the first registration that needed a shadow. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "hook.h"

/* Is the msync the program calls the preload's? */
static bool preload_interposes(void)
{
	void *fn = dlsym(RTLD_DEFAULT, "msync");
	Dl_info di;
	const char *base;

	if (!fn || !dladdr(fn, &di) || !di.dli_fname)
		return false;
	base = strrchr(di.dli_fname, '/');
	return !strcmp(base ? base + 1 : di.dli_fname, "libsafe_mr_preload.so");
}

void smfi_note_shadowed(void)
{
	static atomic_bool said;
	const char *log = getenv("SAFE_MR_LOG");
	char buf[512];
	int n;

	if (atomic_exchange(&said, true) || preload_interposes())
		return;
	smfi_warn(FI_LOG_MR, "libc sync points are not seen without the preload\n");
	if (log && !strcasecmp(log, "error"))
		return;
	n = snprintf(buf, sizeof(buf),
		     "safe_mr[%d]: warn: libfabric hook without the preload library: "
		     "msync, fsync, munmap and mremap do not write shadowed file pages "
		     "back; fi_close(mr), safe_mr_fi_sync() and exit do (run with "
		     "LD_PRELOAD=libsafe_mr_preload.so, or safe_mr-run --fabric)\n",
		     (int)getpid());
	if (n > 0 && write(STDERR_FILENO, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0) {
		/* nothing sensible to do */
	}
}
