/* SPDX-License-Identifier: MIT */
/*
 * blockc: client of blockd.  Writes verifiable blocks (block number,
 * generation, client id, checksum per 4 KiB) into the server's file buffer
 * with RDMA WRITE, commits each one, and appends "ACK client block gen" to
 * a log once the server said it is durable.  At the end it reads every
 * block it wrote back with RDMA READ and checks it.
 *
 *   blockc -s ADDR [-p PORT] -c ID -F FIRST -K BLOCKS -n OPS [-g GEN0]
 *          [-l ACKLOG] [-r RETRIES] [-R RETRY_MS]
 *   blockc -V FILE -l ACKLOG      offline: every ACKed block is in FILE,
 *                                 whole, with that generation or a later one
 *
 * Exit: 0 ok, 1 setup/transport error, 3 a commit kept failing, 4 a
 * read-back or verification mismatch.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <rdma/rdma_cma.h>

#include "blockd_proto.h"

struct bufs {
	unsigned char block[BD_BLOCK];
	struct bd_msg tx, rx;
};

static struct rdma_cm_id *id;
static struct ibv_cq *cq;
static struct ibv_mr *mr;
static struct bufs *b;
static struct bd_hello hello;

static int cm_wait(struct rdma_event_channel *ec, enum rdma_cm_event_type want)
{
	struct rdma_cm_event *ev;
	int ok;

	if (rdma_get_cm_event(ec, &ev))
		return -1;
	ok = ev->event == want;
	if (ok && want == RDMA_CM_EVENT_ESTABLISHED) {
		if (ev->param.conn.private_data_len < sizeof(hello))
			ok = 0;
		else
			memcpy(&hello, ev->param.conn.private_data, sizeof(hello));
	}
	if (!ok)
		fprintf(stderr, "blockc: got %s, wanted %s (status %d)\n",
			rdma_event_str(ev->event), rdma_event_str(want), ev->status);
	rdma_ack_cm_event(ev);
	return ok ? 0 : -1;
}

/* Busy-poll one completion; 0 or -1. */
static int wait_wc(enum ibv_wc_opcode op)
{
	struct ibv_wc wc;
	int n;

	for (;;) {
		while ((n = ibv_poll_cq(cq, 1, &wc)) == 0)
			;
		if (n < 0 || wc.status != IBV_WC_SUCCESS) {
			fprintf(stderr, "blockc: completion %s\n",
				n < 0 ? "poll error" : ibv_wc_status_str(wc.status));
			return -1;
		}
		if (wc.opcode == op)
			return 0;
	}
}

static int post_recv(void)
{
	struct ibv_sge sge = { (uintptr_t)&b->rx, sizeof(b->rx), mr->lkey };
	struct ibv_recv_wr wr = { .sg_list = &sge, .num_sge = 1 }, *bad;

	return ibv_post_recv(id->qp, &wr, &bad);
}

static int rdma_op(enum ibv_wr_opcode op, uint64_t block)
{
	struct ibv_sge sge = { (uintptr_t)b->block, BD_BLOCK, mr->lkey };
	struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = op,
				  .send_flags = IBV_SEND_SIGNALED }, *bad;

	wr.wr.rdma.remote_addr = hello.addr + block * BD_BLOCK;
	wr.wr.rdma.rkey = hello.rkey;
	if (ibv_post_send(id->qp, &wr, &bad))
		return -1;
	return wait_wc(op == IBV_WR_RDMA_WRITE ? IBV_WC_RDMA_WRITE : IBV_WC_RDMA_READ);
}

/* Commit one block; the server's status (0 or errno), -1 on transport error. */
static int commit(uint64_t seq, uint64_t block)
{
	struct ibv_sge sge = { (uintptr_t)&b->tx, sizeof(b->tx), mr->lkey };
	struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
				  .send_flags = IBV_SEND_SIGNALED }, *bad;

	b->tx = (struct bd_msg){ .type = BD_COMMIT, .seq = seq, .first = block, .count = 1 };
	if (ibv_post_send(id->qp, &wr, &bad) || wait_wc(IBV_WC_SEND) || wait_wc(IBV_WC_RECV))
		return -1;
	if (b->rx.type != BD_REPLY || b->rx.seq != seq) {
		fprintf(stderr, "blockc: bad reply\n");
		return -1;
	}
	if (post_recv())
		return -1;
	return (int)b->rx.status;
}

static int connect_server(const char *addr, int port)
{
	struct rdma_event_channel *ec = rdma_create_event_channel();
	struct addrinfo *ai, hints = { .ai_family = AF_INET };
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 8, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1 },
	};
	struct rdma_conn_param cp = { .responder_resources = 4, .initiator_depth = 4,
				      .retry_count = 7 };
	struct ibv_pd *pd;
	char portstr[16];

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (!ec || getaddrinfo(addr, portstr, &hints, &ai)) {
		fprintf(stderr, "blockc: bad address %s\n", addr);
		return -1;
	}
	if (rdma_create_id(ec, &id, NULL, RDMA_PS_TCP)) {
		perror("blockc: rdma_create_id");
		return -1;
	}
	if (rdma_resolve_addr(id, NULL, ai->ai_addr, 5000)) {
		perror("blockc: rdma_resolve_addr");
		return -1;
	}
	if (cm_wait(ec, RDMA_CM_EVENT_ADDR_RESOLVED) || rdma_resolve_route(id, 5000) ||
	    cm_wait(ec, RDMA_CM_EVENT_ROUTE_RESOLVED))
		return -1;
	freeaddrinfo(ai);
	pd = ibv_alloc_pd(id->verbs);
	cq = pd ? ibv_create_cq(id->verbs, 16, NULL, NULL, 0) : NULL;
	b = aligned_alloc(BD_BLOCK, sizeof(*b));
	if (!cq || !b)
		return -1;
	qa.send_cq = qa.recv_cq = cq;
	mr = ibv_reg_mr(pd, b, sizeof(*b), IBV_ACCESS_LOCAL_WRITE);
	if (!mr || rdma_create_qp(id, pd, &qa) || post_recv() || rdma_connect(id, &cp) ||
	    cm_wait(ec, RDMA_CM_EVENT_ESTABLISHED))
		return -1;
	if (hello.block != BD_BLOCK) {
		fprintf(stderr, "blockc: server block size %u\n", hello.block);
		return -1;
	}
	return 0;
}

/* Offline: every ACK line's block is whole in FILE with gen >= the ACKed. */
static int verify_file(const char *file, const char *log)
{
	FILE *f = fopen(log, "r");
	int fd = open(file, O_RDONLY);
	unsigned long long cl, blk, gen;
	unsigned long acks = 0, bad = 0;
	unsigned char buf[BD_BLOCK];
	char line[256];

	if (!f || fd < 0) {
		perror("blockc: verify");
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		struct bd_block_hdr h;

		if (sscanf(line, "ACK %llu %llu %llu", &cl, &blk, &gen) != 3)
			continue;
		acks++;
		if (pread(fd, buf, BD_BLOCK, (off_t)(blk * BD_BLOCK)) != BD_BLOCK ||
		    bd_check(buf, blk, &h) || h.client != cl || h.gen < gen) {
			if (bad++ < 10)
				fprintf(stderr, "blockc: block %llu (client %llu gen %llu) lost or "
					"torn: magic %llx gen %llu\n", blk, cl, gen,
					(unsigned long long)h.magic, (unsigned long long)h.gen);
		}
	}
	printf("blockc: verified %lu acknowledged blocks, %lu bad\n", acks, bad);
	return bad ? 4 : 0;
}

int main(int argc, char **argv)
{
	const char *addr = NULL, *log = NULL, *vfile = NULL;
	unsigned long long client = 0, first = 0, nblk = 0, ops = 0, gen0 = 0;
	int port = BD_PORT, retries = 0, retry_ms = 200, opt, status = 0;
	uint64_t *gens;
	FILE *lf = NULL;

	while ((opt = getopt(argc, argv, "s:p:c:F:K:n:g:l:r:R:V:")) != -1) {
		switch (opt) {
		case 's': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'c': client = strtoull(optarg, NULL, 0); break;
		case 'F': first = strtoull(optarg, NULL, 0); break;
		case 'K': nblk = strtoull(optarg, NULL, 0); break;
		case 'n': ops = strtoull(optarg, NULL, 0); break;
		case 'g': gen0 = strtoull(optarg, NULL, 0); break;
		case 'l': log = optarg; break;
		case 'r': retries = atoi(optarg); break;
		case 'R': retry_ms = atoi(optarg); break;
		case 'V': vfile = optarg; break;
		default: goto usage;
		}
	}
	if (vfile)
		return log ? verify_file(vfile, log) : 2;
	if (!addr || !nblk || !ops)
		goto usage;
	if (log && !(lf = fopen(log, "a"))) {
		perror(log);
		return 1;
	}
	if (connect_server(addr, port)) {
		perror("blockc: connect");
		return 1;
	}
	if (first + nblk > hello.nblocks) {
		fprintf(stderr, "blockc: blocks [%llu, +%llu) beyond the server's %llu\n", first,
			nblk, (unsigned long long)hello.nblocks);
		return 1;
	}
	gens = calloc(nblk, sizeof(*gens));
	srand((unsigned int)(client * 7919 + (unsigned long long)time(NULL)));
	for (unsigned long long i = 0; i < ops; i++) {
		uint64_t k = (uint64_t)rand() % nblk, blk = first + k;
		uint64_t gen = gen0 + i + 1;
		int err, tries = 0;

		bd_fill(b->block, blk, gen, client);
		if (rdma_op(IBV_WR_RDMA_WRITE, blk))
			return 1;
		while ((err = commit(i, blk)) > 0) {
			fprintf(stderr, "blockc: commit of block %llu: %s\n",
				(unsigned long long)blk, strerror(err));
			if (lf) {
				fprintf(lf, "NACK %llu %llu %llu %d\n", client,
					(unsigned long long)blk, (unsigned long long)gen, err);
				fflush(lf);
			}
			if (tries++ >= retries)
				return 3;
			usleep((useconds_t)retry_ms * 1000);
		}
		if (err < 0)
			return 1;
		gens[k] = gen;
		if (lf) {
			fprintf(lf, "ACK %llu %llu %llu\n", client, (unsigned long long)blk,
				(unsigned long long)gen);
			fflush(lf);
		}
	}
	for (uint64_t k = 0; k < nblk; k++) {
		struct bd_block_hdr h;

		if (!gens[k])
			continue;
		if (rdma_op(IBV_WR_RDMA_READ, first + k))
			return 1;
		if (bd_check(b->block, first + k, &h) || h.gen != gens[k] || h.client != client) {
			fprintf(stderr, "blockc: read back block %llu: wrong content\n",
				(unsigned long long)(first + k));
			status = 4;
		}
	}
	printf("blockc %llu: %llu commits acknowledged, read back %s\n", client, ops,
	       status ? "FAILED" : "ok");
	rdma_disconnect(id);
	return status;
usage:
	fprintf(stderr, "usage: %s -s ADDR [-p PORT] -c ID -F FIRST -K BLOCKS -n OPS [-g GEN0] "
		"[-l ACKLOG] [-r RETRIES] [-R RETRY_MS]\n       %s -V FILE -l ACKLOG\n",
		argv[0], argv[0]);
	return 2;
}
