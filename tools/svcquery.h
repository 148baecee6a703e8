/* SPDX-License-Identifier: MIT */
/* The node service safe_mrd as safe_mr-info sees it: where a process's
 * SAFE_MR_SERVICE points, whether it answers, whom it guards. */
#ifndef SMT_SVCQUERY_H
#define SMT_SVCQUERY_H

#include <stddef.h>
#include "json.h"

/* The socket SAFE_MR_SERVICE=value (NULL: unset) names; "" for off or a
 * bad value (the engine then keeps auto: the default socket). */
void smt_service_path(const char *value, char *out, size_t n);
/* Connections by which the service at path guards pid: >= 0, or -1 (no
 * service answers there). */
int smt_service_query(const char *path, int pid);
/* --config: the service this environment would use, and whether it
 * answers. */
void smt_service_show(struct smt_json *j, const char *value);

#endif
