/* SPDX-License-Identifier: MIT */
/* Under LD_PRELOAD, the references of an ordinary binary (msync@GLIBC_2.2.5,
 * dlopen@GLIBC_2.34, ibv_reg_mr@IBVERBS_1.1, ...) must bind to the
 * interposer: the address the dynamic linker resolved for each must lie in
 * libsafe_mr_preload.so. */
#include <dlfcn.h>
#include <infiniband/verbs.h>

#include "util.h"

static int check(const char *name, void *fn)
{
	Dl_info info;

	if (!dladdr(fn, &info) || !info.dli_fname) {
		fprintf(stderr, "FAIL: %s: no object at %p\n", name, fn);
		return 1;
	}
	/* An ASan build binds dlopen to ASan's interceptor, which forwards to
	 * the next definition: ours (LD_PRELOAD lists libasan first). */
	if (!strcmp(name, "dlopen") && strstr(info.dli_fname, "libasan")) {
		printf("ok: %s -> %s (forwards to the interposer)\n", name, info.dli_fname);
		return 0;
	}
	if (!strstr(info.dli_fname, "libsafe_mr_preload")) {
		fprintf(stderr, "FAIL: %s bound to %s\n", name, info.dli_fname);
		return 1;
	}
	printf("ok: %s -> %s\n", name, info.dli_fname);
	return 0;
}

#define CHECK(fn) check(#fn, (void *)&(fn))

int main(void)
{
	int bad = 0;

	bad += CHECK(msync);
	bad += CHECK(munmap);
	bad += CHECK(mremap);
	bad += CHECK(fsync);
	bad += CHECK(fdatasync);
	bad += CHECK(dlopen);
	bad += CHECK(ibv_reg_mr);
	bad += CHECK(ibv_reg_mr_iova);
	bad += CHECK(ibv_reg_mr_iova2);
	bad += CHECK(ibv_rereg_mr);
	bad += CHECK(ibv_dereg_mr);
	return bad ? 1 : 0;
}
