/* SPDX-License-Identifier: MIT */
/* Range holds: the shadow engine without a verbs registration, for other
 * registration paths (the libfabric hook, other NIC libraries). */
#include <errno.h>

#include "safe_mr.h"
#include "shadow.h"

static int safe_mr_range_acquire_body(void *addr, size_t length, unsigned int access,
				    const void *owner, struct safe_mr_range **range)
{
	struct sm_hold *h;
	int err;

	if (!range)
		return EINVAL;
	*range = NULL;
	sm_init();
	SM_STAT_ADD(registrations, 1);
	if (sm_cfg.mode == SM_MODE_OFF) {
		/* Still a valid handle, shadowing nothing. */
		err = sm_hold_acquire(addr, length, SM_ACQUIRE_NOTHING, false, owner, &h);
	} else {
		err = sm_hold_acquire(addr, length,
				      access & ~(SM_ACQUIRE_DROP_EMPTY | SM_ACQUIRE_NOTHING),
				      false, owner, &h);
	}
	if (!err)
		*range = (struct safe_mr_range *)h;
	return err;
}

SM_EXPORT int safe_mr_range_acquire(void *addr, size_t length, unsigned int access,
				    const void *owner, struct safe_mr_range **range)
{
	int r;

	sm_api_depth++;
	r = safe_mr_range_acquire_body(addr, length, access, owner, range);
	if (r && range)	/* (without range it was not counted) */
		SM_STAT_ADD(reg_failed, 1);
	sm_api_depth--;
	return r;
}

SM_EXPORT int safe_mr_range_sync(struct safe_mr_range *range, size_t offset, size_t length,
				 unsigned int flags)
{
	if (!range || (flags & ~SAFE_MR_SYNC_DURABLE))
		return EINVAL;
	return sm_hold_sync((struct sm_hold *)range, offset, length,
			    flags & SAFE_MR_SYNC_DURABLE ? SM_WB_DURABLE : 0);
}

static int safe_mr_range_release_body(struct safe_mr_range *range)
{
	if (!range)
		return EINVAL;
	return sm_hold_release((struct sm_hold *)range);
}

SM_EXPORT int safe_mr_range_release(struct safe_mr_range *range)
{
	int r;

	sm_api_depth++;
	r = safe_mr_range_release_body(range);
	sm_api_depth--;
	return r;
}

SM_EXPORT size_t safe_mr_range_shadowed(const struct safe_mr_range *range)
{
	return sm_hold_shadowed((const struct sm_hold *)range);
}

SM_EXPORT int safe_mr_sync_owner(const void *owner, unsigned int flags)
{
	int err;

	if (flags & ~SAFE_MR_SYNC_DURABLE)
		return EINVAL;
	sm_lock_take();
	err = sm_sync_owner_locked(owner, 0, 0,
				   flags & SAFE_MR_SYNC_DURABLE ? SM_WB_DURABLE : 0);
	sm_lock_drop();
	return err;
}

static int safe_mr_release_owner_body(const void *owner)
{
	int first = 0;

	for (;;) {
		struct sm_hold *h;

		sm_lock_take();
		for (h = sm_owner_first(owner); h && h->pending; h = h->o_next)
			;
		sm_lock_drop();
		if (!h)
			return first;
		int err = sm_hold_release(h);
		if (err) {
			/* The data stays in the shadow; the next sync point that
			 * writes it back finishes the release. */
			if (!first)
				first = err;
			sm_hold_defer(h);
		}
	}
}

SM_EXPORT int safe_mr_release_owner(const void *owner)
{
	int r;

	sm_api_depth++;
	r = safe_mr_release_owner_body(owner);
	sm_api_depth--;
	return r;
}

SM_EXPORT int safe_mr_fi_sync(struct fid_mr *mr, unsigned int flags)
{
	if (!mr)
		return EINVAL;
	return safe_mr_sync_owner(mr, flags);
}
