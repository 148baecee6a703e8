/* SPDX-License-Identifier: MIT */
/* Putting the preload into an LD_PRELOAD list (safe_mr-run, the Slurm
 * plugin). */
#ifndef SMT_LDPRELOAD_H
#define SMT_LDPRELOAD_H

/* The LD_PRELOAD value with `preload` in it, keeping what `old` (may be
 * NULL) had: after the sanitizer runtimes at its head (ASan aborts unless
 * it comes first), before everything else; `old` itself (a copy) when it
 * has `preload` already.  malloc'ed; NULL when out of memory. */
char *smt_ldpreload_with(const char *old, const char *preload);

#endif
