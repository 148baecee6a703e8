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
 *   blockd -f FILE [-a ADDR] [-p PORT] [-t SECS] [-v]   (ADDR: of an RDMA device)
 *
 * Prints "blockd: ready" on stdout once listening.  SIGINT/SIGTERM: write
 * back, deregister, exit.  No wait on the network is unbounded: a connection
 * that is accepted but not established, or a reply whose send has not
 * completed, after -t SECS (default 20) ends the server with a line saying
 * which (exit 5).  -v logs every connection and commit with a timestamp.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <rdma/rdma_cma.h>

#include "safe_mr.h"
#include "blockd_proto.h"

#define RXN 4
#define MAXCONN 64
#define TX_SLOT 0xff	/* wr_id slot of the reply send */

/* Connections live in a table and completions name them by slot and
 * generation: a completion that outlives its connection (flushed after a
 * disconnect) is recognised and ignored instead of touching freed memory. */
struct conn {
	struct rdma_cm_id *id;
	struct ibv_mr *mr;	/* of tx and rx */
	struct bd_msg tx;
	struct bd_msg rx[RXN];
	uint32_t gen;
	bool used, established;
	int64_t accepted_ms;	/* waiting for ESTABLISHED since */
	int64_t reply_ms;	/* reply send posted, completion pending, since (0: none) */
	uint64_t reply_seq, commits;
};

static struct conn conns[MAXCONN];
static struct ibv_pd *pd;
static struct ibv_cq *cq;
static struct ibv_comp_channel *chan;
static struct safe_mr_file_region *region;
static volatile sig_atomic_t stop;
static int deadline_ms = BD_DEADLINE_S * 1000, verbose;
static uint64_t n_commits, n_failed, n_stale;
static int64_t max_sync_ms;
static unsigned long long n_dropped;


static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t wr_id(struct conn *c, unsigned slot)
{
	return (uint64_t)c->gen << 32 | (uint64_t)(c - conns) << 8 | slot;
}

/* The live connection a wr_id names, NULL if it is gone. */
static struct conn *wr_conn(uint64_t id, unsigned *slot)
{
	unsigned i = (id >> 8) & 0xffffff;

	*slot = id & 0xff;
	if (i >= MAXCONN || !conns[i].used || conns[i].gen != (uint32_t)(id >> 32))
		return NULL;
	return &conns[i];
}

static int cidx(struct conn *c)
{
	return (int)(c - conns);
}

static int post_recv(struct conn *c, unsigned slot)
{
	struct ibv_sge sge = { (uintptr_t)&c->rx[slot], sizeof(c->rx[slot]), c->mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = wr_id(c, slot), .sg_list = &sge, .num_sge = 1 }, *bad;

	return ibv_post_recv(c->id->qp, &wr, &bad);
}

static void conn_free(struct conn *c)
{
	if (c->id->qp)
		rdma_destroy_qp(c->id);
	if (c->mr)
		ibv_dereg_mr(c->mr);
	c->id->context = NULL;
	c->mr = NULL;
	c->used = false;
	c->gen++;
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
	struct conn *c = NULL;

	if (id->verbs != pd->context) {
		bd_log("blockd: connection on another device, refused");
		rdma_reject(id, NULL, 0);
		return -1;
	}
	for (int i = 0; i < MAXCONN && !c; i++)
		if (!conns[i].used)
			c = &conns[i];
	if (!c) {
		bd_log("blockd: %d connections already, refused", MAXCONN);
		rdma_reject(id, NULL, 0);
		return -1;
	}
	c->id = id;
	c->used = true;
	c->established = false;
	c->reply_ms = 0;
	c->commits = 0;
	id->context = c;
	if (rdma_create_qp(id, pd, &qa))
		goto fail;
	c->mr = ibv_reg_mr(pd, c, sizeof(*c), IBV_ACCESS_LOCAL_WRITE);
	if (!c->mr)
		goto fail;
	for (unsigned i = 0; i < RXN; i++)
		if (post_recv(c, i))
			goto fail;
	if (rdma_accept(id, &cp))
		goto fail;
	c->accepted_ms = bd_now_ms();
	if (verbose)
		bd_log("blockd: conn %d: accepted (qp %u)", cidx(c), id->qp->qp_num);
	return 0;
fail:
	bd_log("blockd: accept: %s", strerror(errno));
	conn_free(c);
	rdma_reject(id, NULL, 0);
	return -1;
}

/* A commit: durable first, reply after. */
static void on_commit(struct conn *c, unsigned slot)
{
	struct bd_msg m = c->rx[slot];
	size_t nblocks = region->length / BD_BLOCK;
	int64_t t0 = bd_now_ms(), dt;
	int err;

	if (m.type != BD_COMMIT || m.first >= nblocks || !m.count || m.count > nblocks - m.first)
		err = EINVAL;
	else
		err = safe_mr_file_sync(region, m.first * BD_BLOCK, m.count * BD_BLOCK,
					SAFE_MR_SYNC_DURABLE);
	dt = bd_now_ms() - t0;
	if (dt > max_sync_ms)
		max_sync_ms = dt;
	n_commits++;
	c->commits++;
	if (err) {
		n_failed++;
		bd_log("blockd: commit [%llu, +%llu) failed: %s (data kept)",
		       (unsigned long long)m.first, (unsigned long long)m.count, strerror(err));
	}
	/* the next commit may come as soon as the reply is read: repost first */
	if (post_recv(c, slot))
		bd_log("blockd: conn %d: post_recv: %s", cidx(c), strerror(errno));
	if (c->reply_ms)	/* one commit at a time per client: tx is free */
		bd_log("blockd: conn %d: seq %llu while the reply to seq %llu is unfinished",
		       cidx(c), (unsigned long long)m.seq, (unsigned long long)c->reply_seq);
	c->tx = (struct bd_msg){ .type = BD_REPLY, .status = (uint32_t)err, .seq = m.seq,
				 .first = m.first, .count = m.count };
	{
		struct ibv_sge sge = { (uintptr_t)&c->tx, sizeof(c->tx), c->mr->lkey };
		struct ibv_send_wr wr = { .wr_id = wr_id(c, TX_SLOT), .sg_list = &sge,
					  .num_sge = 1, .opcode = IBV_WR_SEND,
					  .send_flags = IBV_SEND_SIGNALED }, *bad;

		if (ibv_post_send(c->id->qp, &wr, &bad)) {
			bd_log("blockd: conn %d: post_send: %s", cidx(c), strerror(errno));
		} else {
			c->reply_ms = bd_now_ms();
			c->reply_seq = m.seq;
		}
	}
	if (verbose)
		bd_log("blockd: conn %d: seq %llu block %llu+%llu synced in %lld ms, status %d",
		       cidx(c), (unsigned long long)m.seq, (unsigned long long)m.first,
		       (unsigned long long)m.count, (long long)dt, err);
}

static void poll_cq(void)
{
	struct ibv_wc wc[16];
	int n;

	while ((n = ibv_poll_cq(cq, 16, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			unsigned slot;
			struct conn *c = wr_conn(wc[i].wr_id, &slot);

			if (!c) {
				n_stale++;
				continue;
			}
			if (slot == TX_SLOT)
				c->reply_ms = 0;
			if (wc[i].status != IBV_WC_SUCCESS) {
				if (wc[i].status != IBV_WC_WR_FLUSH_ERR)
					bd_log("blockd: conn %d: completion %s (opcode %d, vendor_err %u)",
					       cidx(c), ibv_wc_status_str(wc[i].status),
					       wc[i].opcode, wc[i].vendor_err);
				continue;
			}
			if (wc[i].opcode == IBV_WC_RECV && slot < RXN)
				on_commit(c, slot);
		}
	}
}

static void drain_cq(void)
{
	struct ibv_cq *ev_cq;
	void *ctx;

	if (ibv_get_cq_event(chan, &ev_cq, &ctx) == 0)
		ibv_ack_cq_events(ev_cq, 1);
	/* poll, arm, poll again: a completion between the two is not missed */
	poll_cq();
	ibv_req_notify_cq(cq, 0);
	poll_cq();
}

static void on_cm_event(struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	struct conn *c = id->context;
	enum rdma_cm_event_type type = ev->event;
	int status = ev->status;

	rdma_ack_cm_event(ev);
	if (verbose || (type != RDMA_CM_EVENT_CONNECT_REQUEST &&
			type != RDMA_CM_EVENT_ESTABLISHED && type != RDMA_CM_EVENT_DISCONNECTED &&
			type != RDMA_CM_EVENT_TIMEWAIT_EXIT))
		bd_log("blockd: conn %d: %s (status %d)", c ? cidx(c) : -1, rdma_event_str(type),
		       status);
	switch (type) {
	case RDMA_CM_EVENT_CONNECT_REQUEST:
		if (on_connect(id))
			rdma_destroy_id(id);
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		if (c)
			c->established = true;
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_REJECTED:
		if (c) {
			poll_cq();	/* what this connection still has queued */
			if (verbose)
				bd_log("blockd: conn %d: closed after %llu commits", cidx(c),
				       (unsigned long long)c->commits);
			conn_free(c);
			rdma_destroy_id(id);
		}
		break;
	default:
		break;
	}
}

/* A connection stuck past the deadline: say on what, and drop it.  One
 * client that stops answering must not take the server (and everyone
 * else's service) down with it. */
static void drop_overdue(void)
{
	int64_t now = bd_now_ms();

	for (int i = 0; i < MAXCONN; i++) {
		struct conn *c = &conns[i];
		struct rdma_cm_id *id = c->id;

		if (!c->used)
			continue;
		if (!c->established && now - c->accepted_ms > deadline_ms)
			bd_log("blockd: conn %d: TIMEOUT after %d s waiting for the CM event "
			       "ESTABLISHED: dropping it", i, deadline_ms / 1000);
		else if (c->reply_ms && now - c->reply_ms > deadline_ms)
			bd_log("blockd: conn %d: TIMEOUT after %d s waiting for the completion of "
			       "the reply SEND of seq %llu: dropping it", i, deadline_ms / 1000,
			       (unsigned long long)c->reply_seq);
		else
			continue;
		n_dropped++;
		rdma_disconnect(id);
		poll_cq();
		conn_free(c);
		rdma_destroy_id(id);
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

	while ((opt = getopt(argc, argv, "f:a:p:t:v")) != -1) {
		switch (opt) {
		case 'f': file = optarg; break;
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 't': deadline_ms = atoi(optarg) * 1000; break;
		case 'v': verbose = 1; break;
		default: goto usage;
		}
	}
	if (!file || deadline_ms <= 0)
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
	/* non-blocking: the loop polls both with a timeout */
	fcntl(ec->fd, F_SETFL, fcntl(ec->fd, F_GETFL) | O_NONBLOCK);
	fcntl(chan->fd, F_SETFL, fcntl(chan->fd, F_GETFL) | O_NONBLOCK);
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
		int n = poll(pfd, 2, 500);

		if (n > 0 && (pfd[1].revents & POLLIN))
			drain_cq();
		if (n > 0 && (pfd[0].revents & POLLIN))
			while (!rdma_get_cm_event(ec, &ev))
				on_cm_event(ev);
		drop_overdue();
	}
	bd_log("blockd: %llu commits (%llu failed), longest sync %lld ms, %llu stale completions, "
	       "%llu connections dropped at their deadline",
	       (unsigned long long)n_commits, (unsigned long long)n_failed,
	       (long long)max_sync_ms, (unsigned long long)n_stale, (unsigned long long)n_dropped);
	err = safe_mr_file_dereg(region);
	if (err)
		bd_log("blockd: final writeback failed: %s", strerror(err));
	return err ? 1 : 0;
usage:
	fprintf(stderr, "usage: %s -f FILE [-a ADDR] [-p PORT] [-t SECS] [-v]\n", argv[0]);
	return 2;
}
