/* SPDX-License-Identifier: MIT */
#ifndef SM_PROTOCOL_H
#define SM_PROTOCOL_H

#include "safe_mr.h"

/* safe_mr_register without counting a registration: for reg.c, which
 * counts its own (ODP and pass-through registrations included).  reg runs
 * with sm_api_depth == cb_depth. */
int sm_register(const struct iovec *iov, size_t iovcnt, unsigned int access,
		safe_mr_register_cb reg, void *arg, void **handle, size_t *shadowed,
		unsigned int cb_depth);

#endif
