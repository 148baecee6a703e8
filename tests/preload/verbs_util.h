/* SPDX-License-Identifier: MIT */
/* A protection domain on the first verbs device, for the preload tests
 * that link libibverbs (the fake one, found by LD_LIBRARY_PATH). */
#ifndef SM_PL_TEST_VERBS_UTIL_H
#define SM_PL_TEST_VERBS_UTIL_H

#include <infiniband/verbs.h>

#include "util.h"

static inline struct ibv_pd *open_pd(void)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx;
	struct ibv_pd *pd;

	if (!list || !list[0])
		die("no verbs device (is the fake libibverbs on LD_LIBRARY_PATH?)");
	ctx = ibv_open_device(list[0]);
	if (!ctx)
		die("ibv_open_device: %s", strerror(errno));
	ibv_free_device_list(list);
	pd = ibv_alloc_pd(ctx);
	if (!pd)
		die("ibv_alloc_pd: %s", strerror(errno));
	return pd;
}

static inline void close_pd(struct ibv_pd *pd)
{
	struct ibv_context *ctx = pd->context;

	if (ibv_dealloc_pd(pd) || ibv_close_device(ctx))
		die("ibv_dealloc_pd/ibv_close_device failed");
}

#endif
