/* SPDX-License-Identifier: MIT */
/* FI_SAFE_MR_* provider parameters (listed by `fi_info -e`).  The engine is
 * configured only by its SAFE_MR_* environment variables, read once at its
 * first use, so a set parameter is copied into the matching variable here,
 * before any safe_mr call.  Precedence: an explicit SAFE_MR_X wins over
 * FI_SAFE_MR_X (setenv without overwrite). */
#include <stdio.h>
#include <stdlib.h>
#include <rdma/fi_errno.h>

#include "hook.h"

struct smfi_param {
	const char *name;	/* libfabric turns it into FI_SAFE_MR_<NAME> */
	const char *env;
	enum fi_param_type type;
	const char *help;
};

static const struct smfi_param params[] = {
	{ "mode", "SAFE_MR_MODE", FI_PARAM_STRING,
	  "How file-backed registrations are made safe: bounce (shadow them), auto "
	  "(on-demand paging where the NIC has it, else bounce) or off. Same as "
	  "SAFE_MR_MODE, which wins when both are set. (default: bounce)" },
	{ "log", "SAFE_MR_LOG", FI_PARAM_STRING,
	  "safe_mr log level: error, warn, info or debug. Same as SAFE_MR_LOG. "
	  "(default: warn)" },
	{ "stats", "SAFE_MR_STATS", FI_PARAM_BOOL,
	  "Print one 'safe_mr: stats' line on stderr at exit. Same as SAFE_MR_STATS. "
	  "(default: no)" },
	{ "flush_ms", "SAFE_MR_FLUSH_MS", FI_PARAM_SIZE_T,
	  "Write changed shadow pages back every N milliseconds (0: only at sync "
	  "points). Same as SAFE_MR_FLUSH_MS. (default: 0)" },
	{ "writeback", "SAFE_MR_WRITEBACK", FI_PARAM_STRING,
	  "Writeback engine: auto, io_uring or pwrite. Same as SAFE_MR_WRITEBACK. "
	  "(default: auto)" },
	{ "reserve", "SAFE_MR_RESERVE", FI_PARAM_STRING,
	  "Reserve the blocks a writable file range lacks at registration (ext4, xfs), "
	  "so that writeback cannot fail with ENOSPC: auto or off. Same as SAFE_MR_RESERVE. "
	  "(default: auto)" },
	{ "guardian", "SAFE_MR_GUARDIAN", FI_PARAM_STRING,
	  "Start a guardian process that writes the shadows back if the process dies "
	  "without a sync point (SIGKILL, crash, _exit): on, off, or require (a "
	  "registration that would shadow fails with ESRCH where no guardian can "
	  "protect the process). Same as SAFE_MR_GUARDIAN. (default: on)" },
};

static void export_param(const struct smfi_param *p)
{
	char buf[32];
	const char *val = NULL;
	char *str = NULL;
	int flag = 0;
	size_t num = 0;

	switch (p->type) {
	case FI_PARAM_STRING:
		if (fi_param_get_str(&smfi_prov, p->name, &str) == FI_SUCCESS)
			val = str;
		break;
	case FI_PARAM_BOOL:
		if (fi_param_get_bool(&smfi_prov, p->name, &flag) == FI_SUCCESS)
			val = flag ? "1" : "0";
		break;
	default:
		if (fi_param_get_size_t(&smfi_prov, p->name, &num) == FI_SUCCESS) {
			snprintf(buf, sizeof(buf), "%zu", num);
			val = buf;
		}
		break;
	}
	if (!val)
		return;
	if (getenv(p->env)) {
		smfi_info(FI_LOG_CORE, "%s is set: FI_SAFE_MR parameter %s ignored\n",
			  p->env, p->name);
		return;
	}
	setenv(p->env, val, 0);
	smfi_info(FI_LOG_CORE, "%s=%s (from FI_SAFE_MR parameter %s)\n", p->env, val,
		  p->name);
}

void smfi_params_init(void)
{
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		fi_param_define(&smfi_prov, params[i].name, params[i].type, "%s",
				params[i].help);
		export_param(&params[i]);
	}
}
