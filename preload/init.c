/* SPDX-License-Identifier: MIT */
/* Constructor and the lookup of libibverbs' link map. */
#include <link.h>
#include <stddef.h>
#include <string.h>

#include "preload.h"

atomic_bool sm_pl_ready;
__thread bool sm_pl_busy __attribute__((tls_model("initial-exec")));

static void *ibverbs_map;

__attribute__((constructor)) static void sm_pl_init(void)
{
	atomic_store_explicit(&sm_pl_ready, true, memory_order_release);
}

bool sm_pl_is_ibverbs(const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	return strncmp(base, "libibverbs.so", strlen("libibverbs.so")) == 0;
}

/* Not dlopen (that would be our own interposer and would bump a refcount)
 * and not RTLD_NEXT (which searches the global scope after us, where an
 * application library could come before libibverbs). */
void *sm_pl_ibverbs_handle(void)
{
	void *h = __atomic_load_n(&ibverbs_map, __ATOMIC_ACQUIRE);

	if (h)
		return h;
	for (struct link_map *m = _r_debug.r_map; m; m = m->l_next) {
		if (m->l_name && sm_pl_is_ibverbs(m->l_name)) {
			__atomic_store_n(&ibverbs_map, m, __ATOMIC_RELEASE);
			return m;
		}
	}
	return NULL;
}
