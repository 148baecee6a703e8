/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD is a list separated by colons or spaces (ld.so(8)). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ldpreload.h"

static bool is_sanitizer(const char *entry, size_t len)
{
	const char *slash = memrchr(entry, '/', len);
	const char *base = slash ? slash + 1 : entry;

	return !strncmp(base, "libasan", 7) || !strncmp(base, "libclang_rt.asan", 16) ||
	       !strncmp(base, "libtsan", 7);
}

char *smt_ldpreload_with(const char *old, const char *preload)
{
	const char *p;
	char *v;
	size_t keep = 0, rest;

	if (!old || !*old)
		return strdup(preload);
	/* Already there (nested launchers, mpirun -x LD_PRELOAD): keep it. */
	for (p = old; *p;) {
		size_t len = strcspn(p, ": ");

		if (len == strlen(preload) && !strncmp(p, preload, len))
			return strdup(old);
		p += len;
		p += strspn(p, ": ");
	}
	/* keep: the end of the last sanitizer entry at the head; rest: the
	 * first entry after it. */
	for (p = old + strspn(old, ": "); *p;) {
		size_t len = strcspn(p, ": ");

		if (!is_sanitizer(p, len))
			break;
		p += len;
		keep = (size_t)(p - old);
		p += strspn(p, ": ");
	}
	rest = keep + strspn(old + keep, ": ");
	if (asprintf(&v, "%.*s%s%s%s%s", (int)keep, old, keep ? ":" : "", preload,
		     old[rest] ? ":" : "", old + rest) < 0)
		return NULL;
	return v;
}
