/* SPDX-License-Identifier: MIT */
/* safe_mr-info --config: the effective SAFE_MR_* settings (as ucx_info -c). */
#ifndef SMT_CFGSHOW_H
#define SMT_CFGSHOW_H

#include "json.h"

/* Prints the settings (text, or into j when not NULL); returns how many
 * values are not valid (each with its warning). */
int smt_config_show(struct smt_json *j);

#endif
