/* SPDX-License-Identifier: MIT */
/* Drop-in replacements for the libibverbs registration calls. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "safe_mr.h"
#include "protocol.h"
#include "shadow.h"

#define ODP_RC_NEEDED (IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_WRITE | \
		       IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_ATOMIC)

/* ODP support per device context, asked once (SAFE_MR_MODE=auto). */
struct odp_cache {
	struct ibv_context *ctx;
	bool odp;
};
static struct odp_cache odp_seen[16];
static pthread_mutex_t odp_lock = PTHREAD_MUTEX_INITIALIZER;

static bool context_has_odp(struct ibv_context *ctx)
{
	struct ibv_device_attr_ex attr;
	bool odp = false;
	unsigned i;

	pthread_mutex_lock(&odp_lock);
	for (i = 0; i < 16 && odp_seen[i].ctx; i++)
		if (odp_seen[i].ctx == ctx) {
			odp = odp_seen[i].odp;
			pthread_mutex_unlock(&odp_lock);
			return odp;
		}
	memset(&attr, 0, sizeof(attr));
	if (ibv_query_device_ex(ctx, NULL, &attr) == 0)
		odp = (attr.odp_caps.general_caps & IBV_ODP_SUPPORT) &&
		      (attr.odp_caps.per_transport_caps.rc_odp_caps & ODP_RC_NEEDED) == ODP_RC_NEEDED;
	if (i < 16)
		odp_seen[i] = (struct odp_cache){ ctx, odp };
	pthread_mutex_unlock(&odp_lock);
	sm_info("device %s: %s", ibv_get_device_name(ctx->device),
		odp ? "On-Demand Paging for RC: file mappings use ODP" : "no ODP: shadowing");
	return odp;
}

/* One verbs registration, as the protocol's callback. */
struct verbs_reg {
	const struct sm_verbs *v;
	struct ibv_pd *pd;
	void *addr;
	size_t length;
	uint64_t iova;
	unsigned int access;
};

static int verbs_register(void *arg, void **handle)
{
	struct verbs_reg *r = arg;
	struct ibv_mr *mr = r->v->reg_mr_iova2(r->pd, r->addr, r->length, r->iova, r->access);

	if (!mr)
		return errno > 0 ? errno : EINVAL;
	*handle = mr;
	return 0;
}

static int verbs_deregister(void *arg, void *handle)
{
	const struct sm_verbs *v = arg;

	return v->dereg_mr(handle);
}

static struct ibv_mr *reg_shadowed(const struct sm_verbs *v, struct ibv_pd *pd, void *addr,
				   size_t length, uint64_t iova, unsigned int access)
{
	struct verbs_reg r = { v, pd, addr, length, iova, access };
	struct iovec iov = { addr, length };
	void *mr;
	int err = sm_register(&iov, 1, access, verbs_register, &r, &mr, NULL, sm_api_depth);

	if (err) {
		errno = err;
		return NULL;
	}
	return mr;
}

static struct ibv_mr *safe_mr_reg_mr_iova2_body(struct ibv_pd *pd, void *addr, size_t length,
					      uint64_t iova, unsigned int access)
{
	const struct sm_verbs *v;
	struct ibv_mr *mr;

	sm_init();
	SM_STAT_ADD(registrations, 1);
	if (!pd || !pd->context) {
		errno = EINVAL;
		return NULL;
	}
	v = sm_real_verbs();
	if (!v)
		return NULL;
	if (sm_cfg.mode == SM_MODE_OFF || (access & IBV_ACCESS_ON_DEMAND))
		return v->reg_mr_iova2(pd, addr, length, iova, access);
	if (!length) {
		errno = EINVAL;
		return NULL;
	}
	/* Read-only registrations too: see safe_mr_register (protocol.c). */
	if (!(access & SM_WRITE_ACCESS))
		return reg_shadowed(v, pd, addr, length, iova, access);
	if (sm_cfg.mode == SM_MODE_AUTO && context_has_odp(pd->context)) {
		int need = sm_needs_shadow(addr, length, access);

		if (need < 0)
			return NULL;	/* errno: what the kernel would say */
		if (need) {
			mr = v->reg_mr_iova2(pd, addr, length, iova, access | IBV_ACCESS_ON_DEMAND);
			if (mr) {
				SM_STAT_ADD(odp, 1);
				return mr;
			}
			sm_info("ODP registration failed (%s): shadowing instead", strerror(errno));
		}
	}
	return reg_shadowed(v, pd, addr, length, iova, access);
}

SM_EXPORT struct ibv_mr *safe_mr_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
					      uint64_t iova, unsigned int access)
{
	struct ibv_mr *r;

	sm_api_depth++;
	r = safe_mr_reg_mr_iova2_body(pd, addr, length, iova, access);
	if (!r)
		SM_STAT_ADD(reg_failed, 1);
	sm_api_depth--;
	return r;
}

SM_EXPORT struct ibv_mr *safe_mr_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access)
{
	return safe_mr_reg_mr_iova2(pd, addr, length, (uintptr_t)addr, (unsigned int)access);
}

SM_EXPORT struct ibv_mr *safe_mr_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
					     uint64_t iova, int access)
{
	return safe_mr_reg_mr_iova2(pd, addr, length, iova, (unsigned int)access);
}

static int safe_mr_dereg_mr_body(struct ibv_mr *mr)
{
	const struct sm_verbs *v;

	if (!mr)
		return EINVAL;
	v = sm_real_verbs();
	if (!v)
		return errno;
	return safe_mr_deregister(mr, verbs_deregister, (void *)v);
}

SM_EXPORT int safe_mr_dereg_mr(struct ibv_mr *mr)
{
	int r;

	sm_api_depth++;
	r = safe_mr_dereg_mr_body(mr);
	sm_api_depth--;
	return r;
}

static int safe_mr_rereg_mr_body(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
			       size_t length, int access)
{
	const struct sm_verbs *v = sm_real_verbs();
	struct sm_hold *h = NULL;
	void *new_addr;
	size_t new_len;
	unsigned int new_access;
	int err;

	if (!mr)
		return EINVAL;
	if (!v)
		return errno;
	if (sm_cfg.mode == SM_MODE_OFF ||
	    !(flags & (IBV_REREG_MR_CHANGE_TRANSLATION | IBV_REREG_MR_CHANGE_ACCESS)))
		return v->rereg_mr(mr, flags, pd, addr, length, access) ? (errno ? errno : EINVAL) : 0;
	new_addr = (flags & IBV_REREG_MR_CHANGE_TRANSLATION) ? addr : mr->addr;
	new_len = (flags & IBV_REREG_MR_CHANGE_TRANSLATION) ? length : mr->length;
	/* Without CHANGE_ACCESS we do not know the old access: assume the
	 * NIC may write (a needless shadow at worst, never a missing one). */
	new_access = (flags & IBV_REREG_MR_CHANGE_ACCESS) ? (unsigned int)access
							  : IBV_ACCESS_LOCAL_WRITE;
	if (access & IBV_ACCESS_ON_DEMAND && (flags & IBV_REREG_MR_CHANGE_ACCESS))
		return v->rereg_mr(mr, flags, pd, addr, length, access) ? (errno ? errno : EINVAL) : 0;
	err = sm_hold_acquire(new_addr, new_len, new_access, false, NULL, &h);
	if (err)
		return err;
	/* Old data first: the old range's holds are written back before the
	 * NIC is pointed elsewhere. */
	sm_lock_take();
	err = sm_sync_owner_locked(mr, 0, 0, SM_WB_DURABLE);
	sm_lock_drop();
	if (err) {
		sm_hold_abort(h);
		return err;
	}
	err = v->rereg_mr(mr, flags, pd, addr, length, access);
	if (err) {
		/* libibverbs: a negative ibv_rereg_mr_err_code, errno set */
		err = errno ? errno : EINVAL;
		sm_hold_abort(h);
		return err;
	}
	if (safe_mr_release_owner(mr))
		sm_error("rereg: data of the old range is pending");
	if (sm_hold_shadowed(h))
		sm_hold_set_owner(h, mr);
	else
		sm_hold_abort(h);
	return 0;
}

SM_EXPORT int safe_mr_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
			       size_t length, int access)
{
	int r;

	sm_api_depth++;
	r = safe_mr_rereg_mr_body(mr, flags, pd, addr, length, access);
	sm_api_depth--;
	return r;
}

SM_EXPORT int safe_mr_sync(struct ibv_mr *mr, size_t offset, size_t length, unsigned int flags)
{
	int err;

	if (!mr || (flags & ~SAFE_MR_SYNC_DURABLE) || offset > mr->length)
		return EINVAL;
	if (!length || length > mr->length - offset)
		length = mr->length - offset;
	if (!atomic_load(&sm_nchunks))
		return 0;
	/* The MR's holds cover [mr->addr, +mr->length): same offsets. */
	sm_lock_take();
	err = sm_sync_owner_locked(mr, offset, length,
				   flags & SAFE_MR_SYNC_DURABLE ? SM_WB_DURABLE : 0);
	sm_lock_drop();
	return err;
}
