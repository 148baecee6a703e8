/* SPDX-License-Identifier: MIT */
/* The real libibverbs registration calls.  The preload library interposes
 * them globally, so they are looked up with dlvsym on libibverbs' own handle.
 * That handle comes from libc's dlopen, resolved through libc's handle: the
 * preload library also interposes dlopen("libibverbs.so*") (to cover
 * programs that dlsym through such a handle), and must not fool us. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

#include "internal.h"

static struct sm_verbs real;
static bool real_ok;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

typedef void *(*dlopen_fn)(const char *, int);

static dlopen_fn libc_dlopen(void)
{
	static const char *const libs[] = { "libc.so.6", "libdl.so.2" };

	for (unsigned i = 0; i < 2; i++) {
		void *h = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
		void *fn = h ? dlsym(h, "dlopen") : NULL;

		if (fn)
			return (dlopen_fn)fn;
	}
	return NULL;
}

static void resolve(void)
{
	dlopen_fn open_fn = libc_dlopen();
	void *h;

	if (!open_fn) {
		sm_error("cannot find libc's dlopen");
		return;
	}
	h = open_fn("libibverbs.so.1", RTLD_NOW | RTLD_NOLOAD);
	if (!h)
		h = open_fn("libibverbs.so.1", RTLD_NOW);
	if (!h) {
		sm_error("cannot find libibverbs.so.1");
		return;
	}
	real.reg_mr_iova2 = dlvsym(h, "ibv_reg_mr_iova2", "IBVERBS_1.8");
	real.dereg_mr = dlvsym(h, "ibv_dereg_mr", "IBVERBS_1.1");
	real.rereg_mr = dlvsym(h, "ibv_rereg_mr", "IBVERBS_1.1");
	real_ok = real.reg_mr_iova2 && real.dereg_mr && real.rereg_mr;
	if (!real_ok)
		sm_error("libibverbs lacks ibv_reg_mr_iova2@IBVERBS_1.8 (rdma-core < 29?)");
}

const struct sm_verbs *sm_real_verbs(void)
{
	pthread_once(&real_once, resolve);
	if (!real_ok) {
		errno = ENOSYS;
		return NULL;
	}
	return &real;
}
