/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "safe_mr.h"
#include "shadow.h"

SM_EXPORT const char *safe_mr_version(void)
{
	return SAFE_MR_VERSION_STRING;
}

SM_EXPORT int safe_mr_sync_all(unsigned int flags)
{
	int err;

	if (flags & ~SAFE_MR_SYNC_DURABLE)
		return EINVAL;
	sm_lock_take();
	err = sm_sync_everything(flags & SAFE_MR_SYNC_DURABLE ? SM_WB_DURABLE : 0);
	if (!err)
		sm_hold_reap();
	sm_lock_drop();
	return err;
}
