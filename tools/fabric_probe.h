/* SPDX-License-Identifier: MIT */
/* Does libfabric, with FI_HOOK=safe_mr and our provider directory, load the
 * hook and put it in front of the fabrics it opens? */
#ifndef SMT_FABRIC_PROBE_H
#define SMT_FABRIC_PROBE_H

#include <stddef.h>

enum smt_hook {
	SMT_HOOK_ACTIVE,	/* a fabric was opened, and it is the hook's */
	SMT_HOOK_LOADED,	/* loaded, but no provider could open a fabric */
	SMT_HOOK_NOT_WRAPPED,	/* loaded, but a fabric was opened without it */
	SMT_HOOK_NOT_LOADED,	/* libfabric did not load libsafe_mr-fi.so */
	SMT_HOOK_NO_LIBFABRIC,	/* libfabric.so.1 cannot be loaded */
	SMT_HOOK_NO_SUPPORT,	/* these tools were built without libfabric */
	SMT_HOOK_PROBE_FAILED,	/* the probe process died */
};

/* Runs the probe in a child process (libfabric's state, and the hook's
 * engine, stay out of the caller) with the caller's environment plus
 * FI_HOOK=safe_mr and provdir prepended to FI_PROVIDER_PATH.  `detail`
 * gets one line saying what was seen (provider, libfabric version, ...). */
enum smt_hook smt_fabric_probe(const char *provdir, char *detail, size_t n);
/* A short name for the result ("active", "not-loaded", ...). */
const char *smt_hook_name(enum smt_hook h);
/* FI_PROVIDER_PATH with provdir in front of any value already set (the
 * caller frees). */
char *smt_provider_path(const char *provdir);

#endif
