/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "safe_mr.h"
#include "shadow.h"

void sm_stats_print(void);

SM_EXPORT const char *safe_mr_version(void)
{
	return SAFE_MR_VERSION_STRING;
}

SM_EXPORT int safe_mr_sync_all(unsigned int flags)
{
	int err;

	if (flags & ~SAFE_MR_SYNC_DURABLE)
		return EINVAL;
	pthread_mutex_lock(&sm_lock);
	err = sm_sync_everything(flags & SAFE_MR_SYNC_DURABLE ? SM_WB_DURABLE : 0);
	if (!err)
		sm_hold_reap();
	pthread_mutex_unlock(&sm_lock);
	return err;
}

/* Process exit is a sync point: everything shadowed is written back and
 * made durable.  (A crash or _exit loses what changed since the last sync
 * point; SAFE_MR_FLUSH_MS bounds that.) */
__attribute__((destructor)) static void safe_mr_fini(void)
{
	if (atomic_load(&sm_nchunks)) {
		int err = safe_mr_sync_all(SAFE_MR_SYNC_DURABLE);

		if (err)
			sm_error("at exit: shadowed data could not be written back: %s",
				 strerror(err));
	}
	sm_init();
	if (sm_cfg.stats_at_exit)
		sm_stats_print();
}
