/* SPDX-License-Identifier: MIT */
/* Constructor and the lookup of libibverbs' link map. */
#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <string.h>

#include "../lib/libc_next.h"
#include "preload.h"
#include "run_check.h"

atomic_bool sm_pl_ready;
__thread bool sm_pl_busy __attribute__((tls_model("initial-exec")));

static void *ibverbs_map;	/* a dlopen handle, never closed */

__attribute__((constructor)) static void sm_pl_init(void)
{
	struct sm_libc_next scratch;

	/* Before the first application call, so the engine has them. */
	sm_pl_next(&scratch);
	atomic_store_explicit(&sm_pl_ready, true, memory_order_release);
	sm_pl_run_check();	/* safe_mr-run's fail-closed check */
}

bool sm_pl_is_ibverbs(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	return strncmp(base, "libibverbs.so", strlen("libibverbs.so")) == 0;
}

sm_pl_dlopen_fn sm_pl_real_dlopen(void)
{
	static sm_pl_dlopen_fn real;
	sm_pl_dlopen_fn fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);

	if (!fn) {
		/* dlsym does not call dlopen, so this cannot recurse. */
		fn = (sm_pl_dlopen_fn)dlsym(RTLD_NEXT, "dlopen");
		__atomic_store_n(&real, fn, __ATOMIC_RELEASE);
	}
	return fn;
}

/* Not dlopen("libibverbs.so.1") through the global scope (that is our own
 * interposer) and not RTLD_NEXT (which searches the global scope after us,
 * where an application library could come before libibverbs).  The loaded
 * libibverbs is found by walking _r_debug; its link_map itself is no handle
 * (glibc builds the search list of a library loaded at startup only when it
 * is dlopen'ed: dlsym on its bare link_map crashes), so it is opened by its
 * path with RTLD_NOLOAD through libc's dlopen. */
void *sm_pl_ibverbs_handle(void)
{
	void *h = __atomic_load_n(&ibverbs_map, __ATOMIC_ACQUIRE);
	sm_pl_dlopen_fn real;

	if (h)
		return h;
	real = sm_pl_real_dlopen();
	if (!real)
		return NULL;
	for (struct link_map *m = _r_debug.r_map; m; m = m->l_next) {
		if (m->l_name && sm_pl_is_ibverbs(m->l_name)) {
			h = real(m->l_name, RTLD_LAZY | RTLD_NOLOAD);
			break;
		}
	}
	if (h)
		__atomic_store_n(&ibverbs_map, h, __ATOMIC_RELEASE);
	return h;
}
