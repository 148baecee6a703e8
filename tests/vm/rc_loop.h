/* SPDX-License-Identifier: MIT */
/* The guest programs' NIC peer: two RC QPs on one RDMA device, connected
 * to each other over its IPv4 RoCE GID (127.0.0.1 preferred), so that one
 * process can RDMA-WRITE into its own registered memory through the real
 * kernel stack (rxe). */
#ifndef RC_LOOP_H
#define RC_LOOP_H

#include <infiniband/verbs.h>
#include <stddef.h>
#include <stdint.h>

/* Exit status of a failed set-up; the programs' own die(). */
#define RC_EXIT_SETUP 4
void die(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

struct rc_loop {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *target, *peer;	/* the peer's WRITEs land in the target's MRs */
	union ibv_gid gid;
	int gid_idx;
	enum ibv_mtu mtu;
};

/* Open `dev` (NULL: the first device), its PD and CQ, and the connected
 * pair; dies with RC_EXIT_SETUP. */
void rc_open(struct rc_loop *rc, const char *dev);
/* RDMA WRITE len bytes from src (in lmr) to dst (rkey) from the peer, and
 * wait for the completion: on RC it means the data is placed. */
void rc_write(struct rc_loop *rc, struct ibv_mr *lmr, void *src, size_t len, void *dst,
	      uint32_t rkey);

#endif
