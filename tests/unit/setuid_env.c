/* SPDX-License-Identifier: MIT */
/* Loads libsafe_mr and exits: with SAFE_MR_STATS=1 the library prints its
 * summary line at exit, unless the process is in secure-execution mode
 * (setuid), where SAFE_MR_* must be ignored.  Run by test_setuid_env.sh. */
#include <stdio.h>

#include "safe_mr.h"

int main(void)
{
	printf("safe_mr %s loaded\n", safe_mr_version());
	return 0;
}
