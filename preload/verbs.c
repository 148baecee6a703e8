/* SPDX-License-Identifier: MIT */
/* The current-ABI libibverbs entry points, forwarded to the engine.
 * Each is defined under an internal name and bound to its versioned
 * public name with .symver, exactly as libibverbs defines them, so that
 * binaries linked against any libibverbs bind to these. */
#include <errno.h>
#include <infiniband/verbs.h>
#include <safe_mr.h>

#include "preload.h"

/* verbs.h makes these macros; we define the functions. */
#undef ibv_reg_mr
#undef ibv_reg_mr_iova

#define SM_PL_API __attribute__((visibility("default")))
#define SYMVER(impl, ver) __asm__(".symver " #impl ", " ver)

SM_PL_API struct ibv_mr *sm_pl_reg_mr_1_1(struct ibv_pd *pd, void *addr, size_t length,
					  int access)
{
	return safe_mr_reg_mr(pd, addr, length, access);
}
SYMVER(sm_pl_reg_mr_1_1, "ibv_reg_mr@@IBVERBS_1.1");

SM_PL_API struct ibv_mr *sm_pl_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
					   uint64_t iova, int access)
{
	return safe_mr_reg_mr_iova(pd, addr, length, iova, access);
}
SYMVER(sm_pl_reg_mr_iova, "ibv_reg_mr_iova@@IBVERBS_1.7");

SM_PL_API struct ibv_mr *sm_pl_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
					    uint64_t iova, unsigned int access)
{
	return safe_mr_reg_mr_iova2(pd, addr, length, iova, access);
}
SYMVER(sm_pl_reg_mr_iova2, "ibv_reg_mr_iova2@@IBVERBS_1.8");

SM_PL_API int sm_pl_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
			     size_t length, int access)
{
	int err = safe_mr_rereg_mr(mr, flags, pd, addr, length, access);

	/* libibverbs' convention: a negative ibv_rereg_mr_err_code, errno set
	 * (safe_mr_rereg_mr returns the errno itself). */
	if (!err)
		return 0;
	errno = err;
	return err == EINVAL ? IBV_REREG_MR_ERR_INPUT : IBV_REREG_MR_ERR_CMD;
}
SYMVER(sm_pl_rereg_mr, "ibv_rereg_mr@@IBVERBS_1.1");

SM_PL_API int sm_pl_dereg_mr_1_1(struct ibv_mr *mr)
{
	return safe_mr_dereg_mr(mr);
}
SYMVER(sm_pl_dereg_mr_1_1, "ibv_dereg_mr@@IBVERBS_1.1");
