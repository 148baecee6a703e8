/* SPDX-License-Identifier: MIT */
#ifndef SM_VMA_H
#define SM_VMA_H

#include "internal.h"

/* One VMA as /proc/self/maps describes it. */
struct sm_vma {
	uintptr_t start, end;
	int prot;		/* PROT_READ|PROT_WRITE|PROT_EXEC */
	bool shared;
	bool has_file;		/* backed by a file (inode != 0) */
	uint64_t offset;	/* file offset of start */
	uint64_t inode;
	unsigned int dev_major, dev_minor;
	char *path;		/* malloc'd, NULL if no name */
	bool path_pending;	/* not asked yet: sm_vma_path */
};

/* The VMAs that intersect [start, end), in address order, clipped to it.
 * Returns 0 and a malloc'd array (free with sm_vma_free), or an errno. */
int sm_vma_list(uintptr_t start, uintptr_t end, struct sm_vma **vmas, size_t *n);
void sm_vma_free(struct sm_vma *vmas, size_t n);
/* Fetch v->path if it is pending (the kernel builds it with d_path: most
 * of a query's cost, and a file the engine knows needs no name). */
int sm_vma_path(struct sm_vma *v);
/* Forget cached descriptors (after fork). */
void sm_vma_reset(void);

#endif
