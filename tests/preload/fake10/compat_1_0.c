/* SPDX-License-Identifier: MIT */
/* ibv_reg_mr@IBVERBS_1.0 and ibv_dereg_mr@IBVERBS_1.0 for the fake
 * libibverbs, as rdma-core's libibverbs/compat-1_0.c implements them: a
 * private 1.0 struct around a current MR, the work done by calling the
 * current entry points through the PLT (so, in a preloaded process, through
 * the interposer, exactly as with the real library). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <infiniband/verbs.h>

#include "compat_1_0.h"

__attribute__((visibility("default"))) struct ibv_mr_1_0 *
fake10_reg_mr_1_0(struct ibv_pd_1_0 *pd, void *addr, size_t length, int access)
{
	struct ibv_mr_1_0 *mr = malloc(sizeof(*mr));
	struct ibv_mr *real;

	if (!mr)
		return NULL;
	real = ibv_reg_mr_iova2(pd->real_pd, addr, length, (uintptr_t)addr,
				(unsigned int)access);
	if (!real) {
		free(mr);
		return NULL;
	}
	mr->context = pd->context;
	mr->pd = pd;
	mr->addr = real->addr;
	mr->length = real->length;
	mr->handle = real->handle;
	mr->lkey = real->lkey;
	mr->rkey = real->rkey;
	mr->real_mr = real;
	return mr;
}
__asm__(".symver fake10_reg_mr_1_0, ibv_reg_mr@IBVERBS_1.0");

__attribute__((visibility("default"))) int fake10_dereg_mr_1_0(struct ibv_mr_1_0 *mr)
{
	int ret = ibv_dereg_mr(mr->real_mr);

	if (!ret)
		free(mr);
	return ret;
}
__asm__(".symver fake10_dereg_mr_1_0, ibv_dereg_mr@IBVERBS_1.0");
