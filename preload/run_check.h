/* SPDX-License-Identifier: MIT */
#ifndef SAFE_MR_PRELOAD_RUN_CHECK_H
#define SAFE_MR_PRELOAD_RUN_CHECK_H
/* Report to safe_mr-run that the preload is loaded (see run_check.c). */
void sm_pl_run_check(void);
#endif
