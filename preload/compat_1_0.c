/* SPDX-License-Identifier: MIT */
/* ibv_reg_mr@IBVERBS_1.0 and ibv_dereg_mr@IBVERBS_1.0: the pre-1.1 ABI,
 * whose ibv_pd/ibv_mr are libibverbs' private 1.0 structs (rdma-core
 * libibverbs/compat-1_0.c).  We never look inside them: the real 1.0 call
 * does the work, inside safe_mr's registration protocol (safe_mr_register),
 * with the 1.0 MR as the handle. */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <safe_mr.h>

#include "preload.h"

#define SM_PL_API __attribute__((visibility("default")))
#define SYMVER(impl, ver) __asm__(".symver " #impl ", " ver)

struct ibv_pd_1_0;
struct ibv_mr_1_0;

typedef struct ibv_mr_1_0 *(*reg_mr_1_0_fn)(struct ibv_pd_1_0 *, void *, size_t, int);
typedef int (*dereg_mr_1_0_fn)(struct ibv_mr_1_0 *);

static void *real_1_0(const char *name)
{
	void *h = sm_pl_ibverbs_handle();
	void *fn = h ? dlvsym(h, name, "IBVERBS_1.0") : NULL;

	if (!fn)
		errno = ENOSYS;
	return fn;
}

/* The protocol's callbacks (safe_mr_register): the 1.0 MR is the handle. */
struct reg_1_0 {
	reg_mr_1_0_fn real;
	struct ibv_pd_1_0 *pd;
	void *addr;
	size_t length;
	int access;
};

static int register_1_0(void *arg, void **handle)
{
	struct reg_1_0 *r = arg;
	struct ibv_mr_1_0 *mr = r->real(r->pd, r->addr, r->length, r->access);

	if (!mr)
		return errno > 0 ? errno : EINVAL;
	*handle = mr;
	return 0;
}

static int deregister_1_0(void *arg, void *handle)
{
	return ((dereg_mr_1_0_fn)arg)(handle);
}

SM_PL_API struct ibv_mr_1_0 *sm_pl_reg_mr_1_0(struct ibv_pd_1_0 *pd, void *addr,
					      size_t length, int access)
{
	struct reg_1_0 r = { (reg_mr_1_0_fn)real_1_0("ibv_reg_mr"), pd, addr, length, access };
	struct iovec iov = { addr, length };
	void *mr;
	int err;

	if (!r.real)
		return NULL;
	err = safe_mr_register(&iov, 1, (unsigned int)access, register_1_0, &r, &mr, NULL);
	if (err) {
		errno = err;
		return NULL;
	}
	return mr;
}
SYMVER(sm_pl_reg_mr_1_0, "ibv_reg_mr@IBVERBS_1.0");

SM_PL_API int sm_pl_dereg_mr_1_0(struct ibv_mr_1_0 *mr)
{
	dereg_mr_1_0_fn real = (dereg_mr_1_0_fn)real_1_0("ibv_dereg_mr");

	if (!real)
		return ENOSYS;
	if (!mr)
		return real(mr);
	return safe_mr_deregister(mr, deregister_1_0, (void *)real);
}
SYMVER(sm_pl_dereg_mr_1_0, "ibv_dereg_mr@IBVERBS_1.0");
