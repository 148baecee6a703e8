/* SPDX-License-Identifier: MIT */
/* Loads libsafe_mr and exits: with SAFE_MR_STATS=1 the library prints its
 * summary line at exit, unless the process is in secure-execution mode
 * (setuid), where SAFE_MR_* must be ignored.  Run by test_setuid_env.sh. */
#include <stdio.h>

#include "safe_mr.h"

int main(void)
{
	static char buf[4096] __attribute__((aligned(4096)));
	struct safe_mr_range *r;

	printf("safe_mr %s loaded\n", safe_mr_version());
	/* The stats line is printed only by processes that registered
	 * something: register (and release) an anonymous page. */
	if (safe_mr_range_acquire(buf, sizeof(buf), 0, NULL, &r) == 0)
		safe_mr_range_release(r);
	return 0;
}
