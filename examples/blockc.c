/* SPDX-License-Identifier: MIT */
/*
 * blockc: client of blockd.  Writes verifiable blocks (block number,
 * generation, client id, checksum per 4 KiB) into the server's file buffer
 * with RDMA WRITE, commits each one, and appends "ACK client block gen" to
 * a log once the server said it is durable.  At the end it reads every
 * block it wrote back with RDMA READ and checks it.
 *
 *   blockc -s ADDR [-p PORT] -c ID -F FIRST -K BLOCKS -n OPS [-g GEN0]
 *          [-l ACKLOG] [-r RETRIES] [-R RETRY_MS] [-t SECS] [-v]
 *   blockc -V FILE -l ACKLOG      offline: every ACKed block is in FILE,
 *                                 whole, with that generation or a later one
 *
 * No wait is unbounded: a CM event or a completion that has not come after
 * -t SECS (default 20) ends the program with a line saying what it was
 * waiting for.  -v logs every step with a timestamp on stderr.
 *
 * Exit: 0 ok, 1 setup/transport error, 3 a commit kept failing, 4 a
 * read-back or verification mismatch, 5 a deadline passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
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

/* Completions by kind: waits name a set and take them in any order. */
enum { W_SEND = 1, W_RECV = 2, W_WRITE = 4, W_READ = 8 };

static struct rdma_cm_id *id;
static struct ibv_comp_channel *chan;
static struct ibv_cq *cq;
static struct ibv_mr *mr;
static struct bufs *b;
static struct bd_hello hello;
static unsigned long long client;
static int deadline_ms = BD_DEADLINE_S * 1000, verbose;
static unsigned got;			/* completions arrived, not yet consumed */
static bool armed;			/* CQ notification requested */
static unsigned long early_recv;	/* replies seen before their SEND's completion */

#define EXIT_TIMEOUT 5

/* Names of the kinds in m; two calls may share one log line. */
static const char *kinds(unsigned m)
{
	static char buf[2][64];
	static int which;
	char *s = buf[which++ & 1];

	snprintf(s, sizeof(buf[0]), "%s%s%s%s", m & W_SEND ? " SEND" : "", m & W_RECV ? " RECV" : "",
		 m & W_WRITE ? " RDMA_WRITE" : "", m & W_READ ? " RDMA_READ" : "");
	return s[0] ? s + 1 : "nothing";
}

static unsigned kind_of(enum ibv_wc_opcode op)
{
	switch (op) {
	case IBV_WC_SEND: return W_SEND;
	case IBV_WC_RECV: return W_RECV;
	case IBV_WC_RDMA_WRITE: return W_WRITE;
	case IBV_WC_RDMA_READ: return W_READ;
	default: return 0;
	}
}

/* Block on fd for at most until end_ms; 1 readable, 0 deadline, -1 error. */
static int wait_fd(int fd, int64_t end_ms)
{
	for (;;) {
		int64_t left = end_ms - bd_now_ms();
		struct pollfd p = { fd, POLLIN, 0 };
		int r;

		if (left <= 0)
			return 0;
		r = poll(&p, 1, left > 1000 ? 1000 : (int)left);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/*
 * Wait until every completion in want has arrived, whatever their order:
 * a reply's RECV may be reported before the completion of the SEND that
 * asked for it (Soft-RoCE on 7.x does so: the ACK of our SEND and the
 * server's reply are handled by different rxe tasks).  A completion of
 * another kind is kept for a later wait, never dropped.  0, -1 on a failed
 * completion, -EXIT_TIMEOUT after the deadline.
 */
static int wait_wc(unsigned want, const char *what)
{
	int64_t end = bd_now_ms() + deadline_ms;

	for (;;) {
		struct ibv_wc wc[8];
		int n;

		while ((n = ibv_poll_cq(cq, 8, wc)) > 0) {
			for (int i = 0; i < n; i++) {
				unsigned k = kind_of(wc[i].opcode);

				if (wc[i].status != IBV_WC_SUCCESS) {
					bd_log("blockc %llu: %s: completion %s (opcode %d, vendor_err %u) "
					       "while waiting for %s", client, what,
					       ibv_wc_status_str(wc[i].status), wc[i].opcode,
					       wc[i].vendor_err, kinds(want & ~got));
					return -1;
				}
				if (k == W_RECV && (want & W_SEND) && !(got & W_SEND)) {
					if (verbose || !early_recv)
						bd_log("blockc %llu: %s: reply RECV completed before its "
						       "SEND", client, what);
					early_recv++;
				}
				got |= k;
			}
		}
		if (n < 0) {
			bd_log("blockc %llu: %s: ibv_poll_cq failed", client, what);
			return -1;
		}
		if ((got & want) == want) {
			got &= ~want;
			return 0;
		}
		if (!armed) {	/* arm, then poll once more: nothing slips between */
			if (ibv_req_notify_cq(cq, 0)) {
				bd_log("blockc %llu: ibv_req_notify_cq failed", client);
				return -1;
			}
			armed = true;
			continue;
		}
		n = wait_fd(chan->fd, end);
		if (n <= 0) {
			bd_log("blockc %llu: %s: %s after %d s waiting for the completion of %s "
			       "(have %s)", client, what, n ? "poll error" : "TIMEOUT",
			       deadline_ms / 1000, kinds(want & ~got), kinds(got));
			return n ? -1 : -EXIT_TIMEOUT;
		}
		{
			struct ibv_cq *ev_cq;
			void *ctx;

			if (ibv_get_cq_event(chan, &ev_cq, &ctx) == 0) {
				ibv_ack_cq_events(ev_cq, 1);
				armed = false;
			}
		}
	}
}

/* Next CM event within the deadline; 0 when it is want. */
static int cm_wait(struct rdma_event_channel *ec, enum rdma_cm_event_type want)
{
	struct rdma_cm_event *ev;
	int ok, r = wait_fd(ec->fd, bd_now_ms() + deadline_ms);

	if (r <= 0) {
		bd_log("blockc %llu: %s after %d s waiting for the CM event %s", client,
		       r ? "poll error" : "TIMEOUT", deadline_ms / 1000, rdma_event_str(want));
		return r ? -1 : -EXIT_TIMEOUT;
	}
	if (rdma_get_cm_event(ec, &ev)) {
		bd_log("blockc %llu: rdma_get_cm_event: %s", client, strerror(errno));
		return -1;
	}
	ok = ev->event == want;
	if (ok && want == RDMA_CM_EVENT_ESTABLISHED) {
		if (ev->param.conn.private_data_len < sizeof(hello))
			ok = 0;
		else
			memcpy(&hello, ev->param.conn.private_data, sizeof(hello));
	}
	if (!ok)
		bd_log("blockc %llu: got %s, wanted %s (status %d)", client,
		       rdma_event_str(ev->event), rdma_event_str(want), ev->status);
	else if (verbose)
		bd_log("blockc %llu: %s", client, rdma_event_str(want));
	rdma_ack_cm_event(ev);
	return ok ? 0 : -1;
}

static int post_recv(void)
{
	struct ibv_sge sge = { (uintptr_t)&b->rx, sizeof(b->rx), mr->lkey };
	struct ibv_recv_wr wr = { .sg_list = &sge, .num_sge = 1 }, *bad;

	return ibv_post_recv(id->qp, &wr, &bad);
}

static void rdma_wr(struct ibv_send_wr *wr, struct ibv_sge *sge, enum ibv_wr_opcode op,
		    uint64_t block)
{
	*sge = (struct ibv_sge){ (uintptr_t)b->block, BD_BLOCK, mr->lkey };
	*wr = (struct ibv_send_wr){ .sg_list = sge, .num_sge = 1, .opcode = op };
	wr->wr.rdma.remote_addr = hello.addr + block * BD_BLOCK;
	wr->wr.rdma.rkey = hello.rkey;
}

/* RDMA READ one block into b->block; 0 or an exit status. */
static int read_block(uint64_t block)
{
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad;
	char what[64];
	int r;

	rdma_wr(&wr, &sge, IBV_WR_RDMA_READ, block);
	wr.send_flags = IBV_SEND_SIGNALED;
	if (ibv_post_send(id->qp, &wr, &bad)) {
		bd_log("blockc %llu: post RDMA READ: %s", client, strerror(errno));
		return 1;
	}
	snprintf(what, sizeof(what), "RDMA READ of block %llu", (unsigned long long)block);
	r = wait_wc(W_READ, what);
	return r == -EXIT_TIMEOUT ? EXIT_TIMEOUT : r ? 1 : 0;
}

/*
 * Commit one block (after an RDMA WRITE of b->block when write is set: RC
 * places the WRITE before the SEND is delivered, so one signaled SEND covers
 * both).  The server's status (0 or errno) in *status; 0 or an exit status.
 */
static int commit(uint64_t seq, uint64_t block, bool write, int *status)
{
	struct ibv_sge wsge, sge = { (uintptr_t)&b->tx, sizeof(b->tx), mr->lkey };
	struct ibv_send_wr wwr, wr = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
				       .send_flags = IBV_SEND_SIGNALED }, *bad;
	char what[64];
	int r;

	b->tx = (struct bd_msg){ .type = BD_COMMIT, .seq = seq, .first = block, .count = 1 };
	if (write) {
		rdma_wr(&wwr, &wsge, IBV_WR_RDMA_WRITE, block);
		wwr.next = &wr;
	}
	if (ibv_post_send(id->qp, write ? &wwr : &wr, &bad)) {
		bd_log("blockc %llu: post WRITE+SEND: %s", client, strerror(errno));
		return 1;
	}
	snprintf(what, sizeof(what), "commit seq %llu block %llu", (unsigned long long)seq,
		 (unsigned long long)block);
	r = wait_wc(W_SEND | W_RECV, what);
	if (r)
		return r == -EXIT_TIMEOUT ? EXIT_TIMEOUT : 1;
	if (b->rx.type != BD_REPLY || b->rx.seq != seq) {
		bd_log("blockc %llu: %s: bad reply (type %u seq %llu)", client, what, b->rx.type,
		       (unsigned long long)b->rx.seq);
		return 1;
	}
	*status = (int)b->rx.status;
	if (post_recv()) {
		bd_log("blockc %llu: post_recv: %s", client, strerror(errno));
		return 1;
	}
	return 0;
}

/* 0 or an exit status. */
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
	int r;

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (!ec || getaddrinfo(addr, portstr, &hints, &ai)) {
		bd_log("blockc %llu: bad address %s", client, addr);
		return 1;
	}
	/* non-blocking: every wait is a poll with a deadline */
	fcntl(ec->fd, F_SETFL, fcntl(ec->fd, F_GETFL) | O_NONBLOCK);
	if (rdma_create_id(ec, &id, NULL, RDMA_PS_TCP) ||
	    rdma_resolve_addr(id, NULL, ai->ai_addr, 5000)) {
		bd_log("blockc %llu: rdma_create_id/resolve_addr: %s", client, strerror(errno));
		return 1;
	}
	freeaddrinfo(ai);
	if ((r = cm_wait(ec, RDMA_CM_EVENT_ADDR_RESOLVED)))
		return r == -EXIT_TIMEOUT ? EXIT_TIMEOUT : 1;
	if (rdma_resolve_route(id, 5000)) {
		bd_log("blockc %llu: rdma_resolve_route: %s", client, strerror(errno));
		return 1;
	}
	if ((r = cm_wait(ec, RDMA_CM_EVENT_ROUTE_RESOLVED)))
		return r == -EXIT_TIMEOUT ? EXIT_TIMEOUT : 1;
	pd = ibv_alloc_pd(id->verbs);
	chan = pd ? ibv_create_comp_channel(id->verbs) : NULL;
	cq = chan ? ibv_create_cq(id->verbs, 16, NULL, chan, 0) : NULL;
	b = aligned_alloc(BD_BLOCK, sizeof(*b));
	if (!cq || !b) {
		bd_log("blockc %llu: pd/cq: %s", client, strerror(errno));
		return 1;
	}
	fcntl(chan->fd, F_SETFL, fcntl(chan->fd, F_GETFL) | O_NONBLOCK);
	qa.send_cq = qa.recv_cq = cq;
	mr = ibv_reg_mr(pd, b, sizeof(*b), IBV_ACCESS_LOCAL_WRITE);
	if (!mr || rdma_create_qp(id, pd, &qa) || post_recv() || rdma_connect(id, &cp)) {
		bd_log("blockc %llu: mr/qp/connect: %s", client, strerror(errno));
		return 1;
	}
	if ((r = cm_wait(ec, RDMA_CM_EVENT_ESTABLISHED)))
		return r == -EXIT_TIMEOUT ? EXIT_TIMEOUT : 1;
	if (hello.block != BD_BLOCK) {
		bd_log("blockc %llu: server block size %u", client, hello.block);
		return 1;
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
	unsigned long long first = 0, nblk = 0, ops = 0, gen0 = 0;
	int port = BD_PORT, retries = 0, retry_ms = 200, opt, status = 0, r;
	int64_t t0;
	uint64_t *gens;
	FILE *lf = NULL;

	while ((opt = getopt(argc, argv, "s:p:c:F:K:n:g:l:r:R:t:vV:")) != -1) {
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
		case 't': deadline_ms = atoi(optarg) * 1000; break;
		case 'v': verbose = 1; break;
		case 'V': vfile = optarg; break;
		default: goto usage;
		}
	}
	if (vfile)
		return log ? verify_file(vfile, log) : 2;
	if (!addr || !nblk || !ops || deadline_ms <= 0)
		goto usage;
	if (log && !(lf = fopen(log, "a"))) {
		perror(log);
		return 1;
	}
	t0 = bd_now_ms();
	if ((r = connect_server(addr, port)))
		return r;
	if (verbose)
		bd_log("blockc %llu: connected to %s port %d in %lld ms", client, addr, port,
		       (long long)(bd_now_ms() - t0));
	if (first + nblk > hello.nblocks) {
		bd_log("blockc %llu: blocks [%llu, +%llu) beyond the server's %llu", client, first,
		       nblk, (unsigned long long)hello.nblocks);
		return 1;
	}
	gens = calloc(nblk, sizeof(*gens));
	srand((unsigned int)(client * 7919 + (unsigned long long)time(NULL)));
	for (unsigned long long i = 0; i < ops; i++) {
		uint64_t k = (uint64_t)rand() % nblk, blk = first + k;
		uint64_t gen = gen0 + i + 1;
		int64_t t1 = bd_now_ms();
		int err, tries = 0;

		bd_fill(b->block, blk, gen, client);
		while ((r = commit(i, blk, tries == 0, &err)) == 0 && err > 0) {
			bd_log("blockc %llu: commit of block %llu: %s", client,
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
		if (r)
			return r;
		gens[k] = gen;
		if (lf) {
			fprintf(lf, "ACK %llu %llu %llu\n", client, (unsigned long long)blk,
				(unsigned long long)gen);
			fflush(lf);
		}
		if (verbose)
			bd_log("blockc %llu: seq %llu block %llu gen %llu acknowledged in %lld ms",
			       client, i, (unsigned long long)blk, (unsigned long long)gen,
			       (long long)(bd_now_ms() - t1));
	}
	for (uint64_t k = 0; k < nblk; k++) {
		struct bd_block_hdr h;

		if (!gens[k])
			continue;
		if ((r = read_block(first + k)))
			return r;
		if (bd_check(b->block, first + k, &h) || h.gen != gens[k] || h.client != client) {
			bd_log("blockc %llu: read back block %llu: wrong content", client,
			       (unsigned long long)(first + k));
			status = 4;
		}
	}
	printf("blockc %llu: %llu commits acknowledged, read back %s, %lld ms, "
	       "%lu replies before their SEND's completion\n", client, ops,
	       status ? "FAILED" : "ok", (long long)(bd_now_ms() - t0), early_recv);
	rdma_disconnect(id);
	return status;
usage:
	fprintf(stderr, "usage: %s -s ADDR [-p PORT] -c ID -F FIRST -K BLOCKS -n OPS [-g GEN0] "
		"[-l ACKLOG] [-r RETRIES] [-R RETRY_MS] [-t SECS] [-v]\n"
		"       %s -V FILE -l ACKLOG\n", argv[0], argv[0]);
	return 2;
}
