/* SPDX-License-Identifier: MIT */
/* Entry point of libsafe_mr-fi.so, a libfabric DL provider found through
 * FI_PROVIDER_PATH (or libfabric's provider directory) and enabled with
 * FI_HOOK=safe_mr.  Its getinfo is NULL, which makes it a hook: libfabric
 * calls fabric() with the freshly opened fabric in attr->fabric and the
 * hooked provider as context, for every fabric it opens. */
#include <rdma/fi_errno.h>
#include <safe_mr.h>

#include "hook.h"

static int smfi_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric,
		       void *context)
{
	if (!attr || !attr->fabric) {
		smfi_warn(FI_LOG_FABRIC, "safe_mr is a hook: use FI_HOOK=safe_mr\n");
		return -FI_ENODATA;
	}
	return smfi_fabric_wrap(attr->fabric, fabric, context);
}

static void smfi_cleanup(void)
{
}

/* Not const: libfabric keeps its bookkeeping in .context. */
struct fi_provider smfi_prov = {
	.version = FI_VERSION(SAFE_MR_VERSION_MAJOR, SAFE_MR_VERSION_MINOR),
	.fi_version = FI_VERSION(1, 17),
	.name = "safe_mr",
	.getinfo = NULL,
	.fabric = smfi_fabric,
	.cleanup = smfi_cleanup,
};

SMFI_EXPORT struct fi_provider *fi_prov_ini(void)
{
	smfi_params_init();
	return &smfi_prov;
}
