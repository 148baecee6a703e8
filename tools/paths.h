/* SPDX-License-Identifier: MIT */
/* Where the tools find the preload and the hook provider. */
#ifndef SMT_PATHS_H
#define SMT_PATHS_H

#include <stdbool.h>
#include <stddef.h>

/* Absolute path of the preload library next to this tool (the install's, or
 * the build tree's when run from it); false if there is none. */
bool smt_preload_path(char *out, size_t n);
/* The libfabric provider directory holding libsafe_mr-fi.so, likewise. */
bool smt_provider_dir(char *out, size_t n);
/* out = a + "/" + b, canonical if it exists; false if too long. */
bool smt_join(char *out, size_t n, const char *a, const char *b);

#endif
