/* SPDX-License-Identifier: MIT */
/* The fake device: one RoCE port, a real struct verbs_context so that the
 * inline ibv_query_device_ex() of verbs.h finds query_device_ex. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

static struct ibv_device fake_device = {
	.node_type = IBV_NODE_CA,
	.transport_type = IBV_TRANSPORT_IB,
	.name = "fake0",
	.dev_name = "uverbs0",
	.dev_path = "/sys/class/infiniband_verbs/uverbs0",
	.ibdev_path = "/sys/class/infiniband/fake0",
};

static _Atomic uint32_t pd_handles;

FAKE_EXPORT struct ibv_device **ibv_get_device_list(int *num_devices)
{
	struct ibv_device **list = calloc(2, sizeof(*list));

	if (!list) {
		errno = ENOMEM;
		return NULL;
	}
	list[0] = &fake_device;
	if (num_devices)
		*num_devices = 1;
	return list;
}

FAKE_EXPORT void ibv_free_device_list(struct ibv_device **list)
{
	free(list);
}

FAKE_EXPORT const char *ibv_get_device_name(struct ibv_device *device)
{
	return device->name;
}

static void fill_attr(struct ibv_device_attr *a)
{
	memset(a, 0, sizeof(*a));
	strcpy(a->fw_ver, "fake-1.0");
	a->vendor_id = 0xfa4e;
	a->max_mr_size = UINT64_MAX;
	a->page_size_cap = 0xfffff000;
	a->max_qp = 1024;
	a->max_qp_wr = 1024;
	a->max_sge = 16;
	a->max_cq = 1024;
	a->max_cqe = 4096;
	a->max_mr = 1 << 20;
	a->max_pd = 1024;
	a->max_qp_rd_atom = 16;
	a->max_qp_init_rd_atom = 16;
	a->atomic_cap = IBV_ATOMIC_HCA;
	a->phys_port_cnt = 1;
}

FAKE_EXPORT int ibv_query_device(struct ibv_context *context, struct ibv_device_attr *attr)
{
	(void)context;
	fill_attr(attr);
	return 0;
}

static int fake_query_device_ex(struct ibv_context *context,
				const struct ibv_query_device_ex_input *input,
				struct ibv_device_attr_ex *attr, size_t attr_size)
{
	struct ibv_device_attr_ex a;

	(void)context;
	if (input && input->comp_mask)
		return EINVAL;
	if (attr_size < sizeof(struct ibv_device_attr))
		return EINVAL;
	memset(&a, 0, sizeof(a));
	fill_attr(&a.orig_attr);
	if (fake_env()->odp) {
		uint32_t rc = IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_WRITE |
			      IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_ATOMIC;

		a.odp_caps.general_caps = IBV_ODP_SUPPORT;
		a.odp_caps.per_transport_caps.rc_odp_caps = rc;
	}
	memset(attr, 0, attr_size);
	memcpy(attr, &a, attr_size < sizeof(a) ? attr_size : sizeof(a));
	return 0;
}

FAKE_EXPORT struct ibv_context *ibv_open_device(struct ibv_device *device)
{
	struct verbs_context *v = calloc(1, sizeof(*v));

	if (!v) {
		errno = ENOMEM;
		return NULL;
	}
	v->sz = sizeof(*v);
	v->query_device_ex = fake_query_device_ex;
	v->context.device = device;
	v->context.cmd_fd = -1;
	v->context.async_fd = -1;
	v->context.num_comp_vectors = 1;
	v->context.abi_compat = __VERBS_ABI_IS_EXTENDED;
	pthread_mutex_init(&v->context.mutex, NULL);
	return &v->context;
}

FAKE_EXPORT int ibv_close_device(struct ibv_context *context)
{
	struct verbs_context *v = verbs_get_ctx(context);

	if (!v)
		return EINVAL;
	pthread_mutex_destroy(&context->mutex);
	free(v);
	return 0;
}

FAKE_EXPORT struct ibv_pd *ibv_alloc_pd(struct ibv_context *context)
{
	struct ibv_pd *pd;

	if (!context) {
		errno = EINVAL;
		return NULL;
	}
	pd = calloc(1, sizeof(*pd));
	if (!pd) {
		errno = ENOMEM;
		return NULL;
	}
	pd->context = context;
	pd->handle = atomic_fetch_add(&pd_handles, 1) + 1;
	return pd;
}

/* Defined in mr.c: MRs still registered on pd. */
size_t fake_mrs_on_pd(const struct ibv_pd *pd);

FAKE_EXPORT int ibv_dealloc_pd(struct ibv_pd *pd)
{
	if (!pd)
		return EINVAL;
	if (fake_mrs_on_pd(pd))
		return EBUSY;
	free(pd);
	return 0;
}
