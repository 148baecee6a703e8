/* SPDX-License-Identifier: MIT */
/* RDMA devices and io_uring, as safe_mr-info reports them. */
#ifndef SMT_DEVICES_H
#define SMT_DEVICES_H

#include <stdbool.h>
#include <stddef.h>

struct smt_device {
	char name[64];
	char error[128];	/* set when it could not be opened or queried */
	bool odp;		/* general ODP support */
	unsigned int rc_caps;	/* IBV_ODP_SUPPORT_* for RC */
	bool odp_rc;		/* everything SAFE_MR_MODE=auto needs for RC */
};

/* Fills up to max devices; returns how many there are, or -errno. */
int smt_devices(struct smt_device *d, int max);
/* Names of the RC ODP capabilities set in caps, space separated. */
void smt_rc_caps_str(unsigned int caps, char *out, size_t n);
/* 0 when an io_uring can be set up, else the errno; detail says more. */
int smt_io_uring(char *detail, size_t n);

#endif
