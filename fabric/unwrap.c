/* SPDX-License-Identifier: MIT */
/* Fids handed to the hooked provider must be its own objects, never ours. */
#include "hook.h"

struct fid *smfi_unwrap(struct fid *fid)
{
	struct fid *inner;

	if (!fid)
		return NULL;
	if ((inner = smfi_mr_inner(fid)) || (inner = smfi_domain_inner(fid)) ||
	    (inner = smfi_fabric_inner(fid)))
		return inner;
	return fid;
}
