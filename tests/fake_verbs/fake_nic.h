/* SPDX-License-Identifier: MIT */
/*
 * Test double of libibverbs: what a test can ask the fake "NIC".
 *
 * The fake libibverbs.so.1 (this directory) registers memory like a kernel
 * would (checks emulated per FAKE_VERBS_KERNEL=6.1|6.5) and lets a test play
 * the NIC: fake_nic_write/read copy into/out of a live MR, and fail with
 * EFAULT if the memory now mapped at an address is not the memory that was
 * mapped there at registration (a real NIC keeps DMAing into the pages it
 * pinned, whatever the process maps there later).
 *
 * Environment: FAKE_VERBS_KERNEL=6.1|6.5 (default 6.5), FAKE_VERBS_ODP=1
 * (device reports ODP for RC, IBV_ACCESS_ON_DEMAND accepted),
 * FAKE_VERBS_FAIL_REG=N (the Nth registration call fails with ENOMEM).
 */
#ifndef FAKE_NIC_H
#define FAKE_NIC_H

#include <stddef.h>
#include <stdint.h>
#include <infiniband/verbs.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Copy len bytes to/from mr->addr + offset, as the NIC's DMA would.
 * 0, or: ENOENT (mr not registered), EINVAL (range outside the MR),
 * EACCES (write into an MR without a writable access flag), EFAULT (the
 * backing at the address changed since registration; also printed). */
int fake_nic_write(struct ibv_mr *mr, size_t offset, const void *src, size_t len);
int fake_nic_read(struct ibv_mr *mr, size_t offset, void *dst, size_t len);

/* Live MRs (registered, not yet deregistered). */
size_t fake_nic_mr_count(void);

/* Calls into ibv_reg_mr_iova2 so far (every entry point ends there), and
 * the arguments and result of the last one. */
unsigned long fake_nic_reg_calls(void);
struct fake_nic_reg {
	void *addr;
	size_t length;
	uint64_t iova;
	unsigned int access;
	int result;		/* 0 or the errno of the failed registration */
	struct ibv_mr *mr;	/* NULL if it failed */
};
/* 0, or ENOENT if there was no registration yet. */
int fake_nic_last_reg(struct fake_nic_reg *out);

/* Forget the statistics above (live MRs stay). */
void fake_nic_reset_stats(void);

#ifdef __cplusplus
}
#endif

#endif
