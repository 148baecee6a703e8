/* SPDX-License-Identifier: MIT */
/* See rc_loop.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rc_loop.h"

void die(int code, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(code);
}

static void open_device(struct rc_loop *rc, const char *dev)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_port_attr pa;

	for (int i = 0; list && list[i] && !rc->ctx; i++)
		if (!dev || !strcmp(dev, ibv_get_device_name(list[i])))
			rc->ctx = ibv_open_device(list[i]);
	if (!rc->ctx)
		die(RC_EXIT_SETUP, "cannot open RDMA device %s", dev ? dev : "(first)");
	ibv_free_device_list(list);
	if (ibv_query_port(rc->ctx, 1, &pa) || pa.state != IBV_PORT_ACTIVE)
		die(RC_EXIT_SETUP, "port 1 is not ACTIVE");
	rc->mtu = pa.active_mtu;
	rc->gid_idx = -1;
	for (int i = 0; i < pa.gid_tbl_len; i++) {	/* RoCEv2 IPv4 GID */
		static const uint8_t v4[12] = { [10] = 0xff, [11] = 0xff };
		union ibv_gid g;

		if (ibv_query_gid(rc->ctx, 1, i, &g) || memcmp(g.raw, v4, 12))
			continue;
		if (rc->gid_idx < 0 || (g.raw[12] == 127 && g.raw[15] == 1)) {
			rc->gid_idx = i;
			rc->gid = g;
		}
	}
	if (rc->gid_idx < 0)
		die(RC_EXIT_SETUP, "no IPv4 RoCE GID");
	rc->pd = ibv_alloc_pd(rc->ctx);
	rc->cq = rc->pd ? ibv_create_cq(rc->ctx, 16, NULL, NULL, 0) : NULL;
	if (!rc->cq)
		die(RC_EXIT_SETUP, "ibv_alloc_pd/ibv_create_cq: %s", strerror(errno));
}

static struct ibv_qp *qp_create(struct rc_loop *rc)
{
	struct ibv_qp_init_attr qa = {
		.send_cq = rc->cq, .recv_cq = rc->cq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 4, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1 },
	};
	struct ibv_qp *qp = ibv_create_qp(rc->pd, &qa);

	if (!qp)
		die(RC_EXIT_SETUP, "ibv_create_qp: %s", strerror(errno));
	return qp;
}

static void qp_connect(struct rc_loop *rc, struct ibv_qp *qp, uint32_t remote)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_INIT, .port_num = 1,
		.qp_access_flags = IBV_ACCESS_REMOTE_WRITE,
	};

	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			  IBV_QP_ACCESS_FLAGS))
		die(RC_EXIT_SETUP, "modify_qp INIT: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = rc->mtu;
	a.dest_qp_num = remote;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = rc->gid;
	a.ah_attr.grh.sgid_index = (uint8_t)rc->gid_idx;
	a.ah_attr.grh.hop_limit = 64;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		die(RC_EXIT_SETUP, "modify_qp RTR: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		die(RC_EXIT_SETUP, "modify_qp RTS: %s", strerror(errno));
}

void rc_open(struct rc_loop *rc, const char *dev)
{
	memset(rc, 0, sizeof(*rc));
	open_device(rc, dev);
	rc->target = qp_create(rc);
	rc->peer = qp_create(rc);
	qp_connect(rc, rc->target, rc->peer->qp_num);
	qp_connect(rc, rc->peer, rc->target->qp_num);
}

void rc_write(struct rc_loop *rc, struct ibv_mr *lmr, void *src, size_t len, void *dst,
	      uint32_t rkey)
{
	struct ibv_sge sge = { (uintptr_t)src, (uint32_t)len, lmr->lkey };
	struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
				  .send_flags = IBV_SEND_SIGNALED }, *bad;
	struct ibv_wc wc;
	int n;

	wr.wr.rdma.remote_addr = (uintptr_t)dst;
	wr.wr.rdma.rkey = rkey;
	if ((n = ibv_post_send(rc->peer, &wr, &bad)))
		die(RC_EXIT_SETUP, "ibv_post_send: %s", strerror(n));
	while ((n = ibv_poll_cq(rc->cq, 1, &wc)) == 0)
		;
	if (n < 0 || wc.status != IBV_WC_SUCCESS)
		die(RC_EXIT_SETUP, "RDMA WRITE completion: %s",
		    n < 0 ? "poll failed" : ibv_wc_status_str(wc.status));
}
