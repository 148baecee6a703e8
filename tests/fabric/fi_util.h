/* SPDX-License-Identifier: MIT */
/* A small RDM endpoint for the fabric tests: one per process, peers
 * exchange addresses over a socketpair (no name service needed). */
#ifndef FI_UTIL_H
#define FI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>

#define die(...) fi_util_die(__FILE__, __LINE__, __VA_ARGS__)
void fi_util_die(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
#define CHECK_FI(call) do { int _r = (call); \
	if (_r) die("%s: %d (%s)", #call, _r, fi_strerror(-_r)); } while (0)

struct rdm {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_ep *ep;
	struct fid_cq *cq;
	struct fid_av *av;
	fi_addr_t peer;
	int sock;		/* socketpair end to the peer process */
	uint64_t next_key;	/* for providers without FI_MR_PROV_KEY */
	int early;		/* completions read while retrying a post */
};

/* caps: FI_MSG | FI_RMA [| FI_ATOMIC].  Node from FI_RMA_NODE (default
 * 127.0.0.1), provider from FI_PROVIDER as libfabric reads it. */
void rdm_open(struct rdm *r, uint64_t caps, int sock);
/* Exchange addresses with the peer and insert it into the AV. */
void rdm_connect(struct rdm *r);
void rdm_close(struct rdm *r);
/* Wait for one completion (timeout from FI_TEST_TIMEOUT, default 60 s,
 * for the TCG guest); dies on error completions. */
void rdm_wait(struct rdm *r, const char *what);
/* Post an operation, retrying while the provider says -FI_EAGAIN (the
 * connection is still being set up) and driving its progress meanwhile. */
#define POST(r, call) do { int _r; \
	while ((_r = (call)) == -FI_EAGAIN) rdm_progress(r); \
	if (_r) die("%s: %d (%s)", #call, _r, fi_strerror(-_r)); } while (0)
void rdm_progress(struct rdm *r);
/* Register local memory (FI_MR_LOCAL providers need a descriptor). */
/* requested_key for the next registration (0 with FI_MR_PROV_KEY). */
uint64_t rdm_key(struct rdm *r);
struct fid_mr *rdm_reg(struct rdm *r, void *buf, size_t len, uint64_t access);

/* Out-of-band messages over the socketpair. */
void oob_send(int sock, const void *buf, size_t len);
void oob_recv(int sock, void *buf, size_t len);

#endif
