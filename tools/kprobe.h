/* SPDX-License-Identifier: MIT */
/* What the running kernel does with a writable registration of a shared
 * file mapping, probed on an RDMA device. */
#ifndef SMT_KPROBE_H
#define SMT_KPROBE_H

#include <stddef.h>

/* Registers one page of a MAP_SHARED mapping of a scratch file (in dir, on
 * a filesystem with writeback) for LOCAL_WRITE on the first device, and
 * deregisters it (nothing is written).  Returns "efault" (refused),
 * "silent-loss" (accepted), or NULL when it could not probe; device gets
 * the device's name, or why not. */
const char *smt_kernel_probe(const char *dir, char *device, size_t n);

#endif
