/* SPDX-License-Identifier: MIT */
/* Static reasons why LD_PRELOAD would not reach a program. */
#ifndef SMT_PREFLIGHT_H
#define SMT_PREFLIGHT_H

#include <stddef.h>

/* Find `prog` as execvp would (PATH when it has no slash) into `path`.
 * 0 or an errno. */
int smt_find_program(const char *prog, char *path, size_t n);
/* NULL when the dynamic loader of `path` (a program, or a script's
 * interpreter) would load `preload`, else why not (static text or `buf`). */
const char *smt_preflight(const char *path, const char *preload, char *buf, size_t n);

#endif
