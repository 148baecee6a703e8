/* SPDX-License-Identifier: MIT */
/* libibverbs' private 1.0-ABI structs (rdma-core libibverbs/compat-1_0.c). */
#ifndef SM_PL_COMPAT_1_0_H
#define SM_PL_COMPAT_1_0_H

#include <stddef.h>
#include <stdint.h>

struct ibv_pd;
struct ibv_mr;

struct ibv_pd_1_0 {
	void *context;			/* struct ibv_context_1_0 * */
	uint32_t handle;
	struct ibv_pd *real_pd;
};

struct ibv_mr_1_0 {
	void *context;			/* struct ibv_context_1_0 * */
	struct ibv_pd_1_0 *pd;
	void *addr;
	size_t length;
	uint32_t handle;
	uint32_t lkey;
	uint32_t rkey;
	struct ibv_mr *real_mr;
};

#endif
