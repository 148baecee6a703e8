/* SPDX-License-Identifier: MIT */
/*
 * blockd: a small RDMA block server exporting one file.
 *
 * The file is registered with safe_mr_file_reg (an anonymous buffer filled
 * from the file, no mapping); clients RDMA-WRITE blocks into it and send a
 * commit (block range).  The server makes the range durable with
 * safe_mr_file_sync(..., SAFE_MR_SYNC_DURABLE) and only then replies 0.  On
 * a sync error (ENOSPC, EIO, ...) it replies with the errno, keeps running
 * and keeps the data: a later commit of the same range retries the write.
 *
 *   blockd -f FILE [-a ADDR] [-p PORT]       (ADDR: of an RDMA device)
 *
 * Prints "blockd: ready" on stdout once listening.  SIGINT/SIGTERM: write
 * back, deregister, exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <rdma/rdma_cma.h>

#include "safe_mr.h"
#include "blockd_proto.h"

#define RXN 4

struct conn;
struct rx_slot {
	struct conn *c;
	struct bd_msg msg;
};

struct conn {
	struct rdma_cm_id *id;
	struct ibv_mr *mr;	/* of this struct's message buffers */
	struct bd_msg tx;
	struct rx_slot rx[RXN];
};

static struct ibv_pd *pd;
static struct ibv_cq *cq;
static struct ibv_comp_channel *chan;
static struct safe_mr_file_region *region;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int post_recv(struct rx_slot *s)
{
	struct ibv_sge sge = { (uintptr_t)&s->msg, sizeof(s->msg), s->c->mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = (uintptr_t)s, .sg_list = &sge, .num_sge = 1 }, *bad;

	return ibv_post_recv(s->c->id->qp, &wr, &bad);
}

static int on_connect(struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr qa = {
		.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 8, .max_recv_wr = RXN, .max_send_sge = 1, .max_recv_sge = 1 },
	};
	struct bd_hello hello = {
		.addr = (uintptr_t)region->addr, .nblocks = region->length / BD_BLOCK,
		.rkey = region->mr->rkey, .block = BD_BLOCK,
	};
	struct rdma_conn_param cp = { .private_data = &hello, .private_data_len = sizeof(hello),
				      .responder_resources = 4, .initiator_depth = 4 };
	struct conn *c = calloc(1, sizeof(*c));

	if (id->verbs != pd->context) {
		fprintf(stderr, "blockd: connection on another device, refused\n");
		free(c);
		rdma_reject(id, NULL, 0);
		return -1;
	}
	if (!c || rdma_create_qp(id, pd, &qa))
		goto fail;
	c->id = id;
	id->context = c;
	c->mr = ibv_reg_mr(pd, c, sizeof(*c), IBV_ACCESS_LOCAL_WRITE);
	if (!c->mr)
		goto fail_qp;
	for (int i = 0; i < RXN; i++) {
		c->rx[i].c = c;
		if (post_recv(&c->rx[i]))
			goto fail_mr;
	}
	if (rdma_accept(id, &cp))
		goto fail_mr;
	return 0;
fail_mr:
	ibv_dereg_mr(c->mr);
fail_qp:
	rdma_destroy_qp(id);
fail:
	perror("blockd: accept");
	free(c);
	rdma_reject(id, NULL, 0);
	return -1;
}

static void on_disconnect(struct rdma_cm_id *id)
{
	struct conn *c = id->context;

	rdma_destroy_qp(id);
	if (c) {
		ibv_dereg_mr(c->mr);
		free(c);
	}
	rdma_destroy_id(id);
}

/* A commit: durable first, reply after. */
static void on_commit(struct rx_slot *s)
{
	struct conn *c = s->c;
	struct bd_msg m = s->msg;
	size_t nblocks = region->length / BD_BLOCK;
	int err;

	if (m.type != BD_COMMIT || m.first >= nblocks || !m.count || m.count > nblocks - m.first)
		err = EINVAL;
	else
		err = safe_mr_file_sync(region, m.first * BD_BLOCK, m.count * BD_BLOCK,
					SAFE_MR_SYNC_DURABLE);
	if (err)
		fprintf(stderr, "blockd: commit [%llu, +%llu) failed: %s (data kept)\n",
			(unsigned long long)m.first, (unsigned long long)m.count, strerror(err));
	if (post_recv(s))
		perror("blockd: post_recv");
	c->tx = (struct bd_msg){ .type = BD_REPLY, .status = (uint32_t)err, .seq = m.seq,
				 .first = m.first, .count = m.count };
	{
		struct ibv_sge sge = { (uintptr_t)&c->tx, sizeof(c->tx), c->mr->lkey };
		struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
					  .send_flags = IBV_SEND_SIGNALED }, *bad;

		if (ibv_post_send(c->id->qp, &wr, &bad))
			perror("blockd: post_send");
	}
}

static void drain_cq(void)
{
	struct ibv_cq *ev_cq;
	void *ctx;
	struct ibv_wc wc[16];
	int n;

	if (ibv_get_cq_event(chan, &ev_cq, &ctx))
		return;
	ibv_ack_cq_events(ev_cq, 1);
	ibv_req_notify_cq(cq, 0);
	while ((n = ibv_poll_cq(cq, 16, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			if (wc[i].status != IBV_WC_SUCCESS) {
				if (wc[i].status != IBV_WC_WR_FLUSH_ERR)
					fprintf(stderr, "blockd: completion %s\n",
						ibv_wc_status_str(wc[i].status));
				continue;
			}
			if (wc[i].opcode == IBV_WC_RECV)
				on_commit((struct rx_slot *)(uintptr_t)wc[i].wr_id);
		}
	}
}

int main(int argc, char **argv)
{
	const char *file = NULL, *addr = "127.0.0.1";
	int port = BD_PORT, opt, fd, err;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *listen_id;
	struct ibv_context *verbs;
	struct addrinfo *ai, hints = { .ai_family = AF_INET, .ai_flags = AI_PASSIVE };
	char portstr[16];
	struct stat st;

	while ((opt = getopt(argc, argv, "f:a:p:")) != -1) {
		switch (opt) {
		case 'f': file = optarg; break;
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (!file)
		goto usage;
	fd = open(file, O_RDWR);
	if (fd < 0 || fstat(fd, &st) || st.st_size < (off_t)BD_BLOCK) {
		fprintf(stderr, "blockd: %s: %s\n", file, fd < 0 ? strerror(errno) : "too small");
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(addr, portstr, &hints, &ai)) {
		fprintf(stderr, "blockd: bad address %s\n", addr);
		return 1;
	}
	ec = rdma_create_event_channel();
	if (!ec || rdma_create_id(ec, &listen_id, NULL, RDMA_PS_TCP) ||
	    rdma_bind_addr(listen_id, ai->ai_addr) || rdma_listen(listen_id, 16)) {
		perror("blockd: listen");
		return 1;
	}
	freeaddrinfo(ai);
	/* A loopback or wildcard listen is bound to no device: take
	 * librdmacm's first one (its contexts are the ones connections get). */
	verbs = listen_id->verbs;
	if (!verbs) {
		struct ibv_context **devs = rdma_get_devices(NULL);

		verbs = devs ? devs[0] : NULL;
		if (!verbs) {
			fprintf(stderr, "blockd: no RDMA device\n");
			return 1;
		}
	}
	pd = ibv_alloc_pd(verbs);
	chan = pd ? ibv_create_comp_channel(verbs) : NULL;
	cq = chan ? ibv_create_cq(verbs, 256, NULL, chan, 0) : NULL;
	if (!cq || ibv_req_notify_cq(cq, 0)) {
		perror("blockd: pd/cq");
		return 1;
	}
	region = safe_mr_file_reg(pd, fd, 0, (size_t)st.st_size & ~(size_t)(BD_BLOCK - 1),
				  IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
				  IBV_ACCESS_REMOTE_READ);
	if (!region) {
		perror("blockd: safe_mr_file_reg");
		return 1;
	}
	printf("blockd: ready %s port %d, %zu blocks of %s\n", addr, port,
	       region->length / BD_BLOCK, file);
	fflush(stdout);

	while (!stop) {
		struct pollfd pfd[2] = { { ec->fd, POLLIN, 0 }, { chan->fd, POLLIN, 0 } };
		struct rdma_cm_event *ev;

		if (poll(pfd, 2, 500) <= 0)
			continue;
		if (pfd[1].revents & POLLIN)
			drain_cq();
		if ((pfd[0].revents & POLLIN) && !rdma_get_cm_event(ec, &ev)) {
			struct rdma_cm_id *id = ev->id;
			enum rdma_cm_event_type type = ev->event;

			rdma_ack_cm_event(ev);
			if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
				if (on_connect(id))
					rdma_destroy_id(id);
			} else if (type == RDMA_CM_EVENT_DISCONNECTED) {
				on_disconnect(id);
			}
		}
	}
	err = safe_mr_file_dereg(region);
	if (err)
		fprintf(stderr, "blockd: final writeback failed: %s\n", strerror(err));
	return err ? 1 : 0;
usage:
	fprintf(stderr, "usage: %s -f FILE [-a ADDR] [-p PORT]\n", argv[0]);
	return 2;
}
