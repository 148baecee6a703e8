/* SPDX-License-Identifier: MIT */
/* Internals of the libibverbs test double. */
#ifndef FAKE_H
#define FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <infiniband/verbs.h>

#define FAKE_EXPORT __attribute__((visibility("default")))

/* What backs one page: compared at DMA time with what backed it at
 * registration.  Anonymous memory: dev 0, ino 0, off 0. */
struct fake_backing {
	dev_t dev;
	ino_t ino;
	uint64_t off;
};

/* One VMA of /proc/self/maps. */
struct fake_vma {
	uintptr_t start, end;
	bool r, w, shared;
	uint64_t off;
	dev_t dev;
	ino_t ino;
	char path[256];
};

/* Read /proc/self/maps: a malloc'ed array (sorted, as the kernel prints
 * it) in *out, count returned, -1 + errno on failure. */
ssize_t fake_read_maps(struct fake_vma **out);

/* Kernel emulation (kernel.c): would ib_umem_get accept the range?
 * 0 or errno; on success fills backing[] (one per page from the page
 * containing addr) when backing is not NULL. */
int fake_kernel_check(void *addr, size_t length, unsigned int access,
		      struct fake_backing *backing);
/* Backing of the pages of [page, page + n*pagesize) now; 0 or errno. */
int fake_backing_now(uintptr_t page, size_t n, struct fake_backing *backing);

/* Environment (read once). */
struct fake_env {
	int kernel;		/* 61 or 65 */
	bool odp;
	unsigned long fail_reg;	/* 0: never */
};
const struct fake_env *fake_env(void);

size_t fake_page_size(void);

#endif
