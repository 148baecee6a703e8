/* SPDX-License-Identifier: MIT */
/* Would a writable MAP_SHARED mapping of this file be shadowed, and why:
 * the engine's rules (lib/file.c: sm_file_classify), from its filesystem
 * facts (lib/fsfacts.c, compiled into the tool too). */
#ifndef SMT_FSCLASS_H
#define SMT_FSCLASS_H

#include <stdbool.h>
#include <stddef.h>

struct smt_fsclass {
	const char *kind;	/* "regular", "directory", "device", "other", "missing" */
	const char *fs;		/* filesystem name ("ext4", "tmpfs", ...) or NULL */
	long magic;		/* statfs f_type */
	bool dax;		/* statx STATX_ATTR_DAX */
	bool shadowed;		/* the engine would shadow its pages */
	bool writable;		/* we may open it O_RDWR (a writable mapping) */
	char reason[256];
};

/* 0, or an errno (the path cannot be examined; reason says why). */
int smt_classify(const char *path, struct smt_fsclass *c);

#endif
