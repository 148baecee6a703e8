/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>

#include "fi_util.h"

void fi_util_die(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL [%d] %s:%d: ", (int)getpid(), file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void oob_send(int sock, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(sock, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("oob write: %s", strerror(errno));
		p += n;
		len -= n;
	}
}

void oob_recv(int sock, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(sock, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("oob read: %s", n ? strerror(errno) : "peer went away");
		p += n;
		len -= n;
	}
}

void rdm_open(struct rdm *r, uint64_t caps, int sock)
{
	struct fi_info *hints = fi_allocinfo();
	const char *node = getenv("FI_RMA_NODE");
	struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_CONTEXT };
	struct fi_av_attr av_attr = { .type = FI_AV_TABLE };

	memset(r, 0, sizeof(*r));
	r->sock = sock;
	if (!hints)
		die("fi_allocinfo");
	hints->caps = caps;
	hints->ep_attr->type = FI_EP_RDM;
	hints->addr_format = FI_SOCKADDR_IN;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
				      FI_MR_PROV_KEY;
	hints->domain_attr->threading = FI_THREAD_DOMAIN;
	hints->tx_attr->msg_order = FI_ORDER_SAS;
	/* FI_RMA_NODE="" lets the provider pick its own source address. */
	if (!node)
		node = "127.0.0.1";
	CHECK_FI(fi_getinfo(FI_VERSION(1, 17), *node ? node : NULL, NULL, *node ? FI_SOURCE : 0,
			    hints, &r->info));
	fi_freeinfo(hints);

	CHECK_FI(fi_fabric(r->info->fabric_attr, &r->fabric, NULL));
	CHECK_FI(fi_domain(r->fabric, r->info, &r->domain, NULL));
	CHECK_FI(fi_cq_open(r->domain, &cq_attr, &r->cq, NULL));
	CHECK_FI(fi_av_open(r->domain, &av_attr, &r->av, NULL));
	CHECK_FI(fi_endpoint(r->domain, r->info, &r->ep, NULL));
	CHECK_FI(fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV));
	CHECK_FI(fi_ep_bind(r->ep, &r->av->fid, 0));
	CHECK_FI(fi_enable(r->ep));
}

void rdm_connect(struct rdm *r)
{
	char mine[128], theirs[128];
	size_t len = sizeof(mine);

	CHECK_FI(fi_getname(&r->ep->fid, mine, &len));
	oob_send(r->sock, &len, sizeof(len));
	oob_send(r->sock, mine, len);
	oob_recv(r->sock, &len, sizeof(len));
	if (len > sizeof(theirs))
		die("peer address too long: %zu", len);
	oob_recv(r->sock, theirs, len);
	if (fi_av_insert(r->av, theirs, 1, &r->peer, 0, NULL) != 1)
		die("fi_av_insert failed");
}

void rdm_close(struct rdm *r)
{
	CHECK_FI(fi_close(&r->ep->fid));
	CHECK_FI(fi_close(&r->av->fid));
	CHECK_FI(fi_close(&r->cq->fid));
	CHECK_FI(fi_close(&r->domain->fid));
	CHECK_FI(fi_close(&r->fabric->fid));
	fi_freeinfo(r->info);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void peer_alive(struct rdm *r, const char *what)
{
	char c;

	if (recv(r->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
		die("%s: the peer process went away", what);
}

void rdm_progress(struct rdm *r)
{
	struct fi_cq_entry e;
	ssize_t n = fi_cq_read(r->cq, &e, 1);

	if (n == 1)
		r->early++;
	else if (n != -FI_EAGAIN && n != -FI_EAVAIL)
		die("fi_cq_read %zd (%s)", n, fi_strerror((int)-n));
	peer_alive(r, "post");
}

void rdm_wait(struct rdm *r, const char *what)
{
	const char *t = getenv("FI_TEST_TIMEOUT");
	double deadline = now() + (t ? atof(t) : 60.0);
	struct fi_cq_entry e;

	if (r->early) {
		r->early--;
		return;
	}
	for (;;) {
		ssize_t n = fi_cq_read(r->cq, &e, 1);

		if (n == 1)
			return;
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry err = { 0 };

			fi_cq_readerr(r->cq, &err, 0);
			die("%s: error completion %d (%s), prov_errno %d", what, err.err,
			    fi_strerror(err.err), err.prov_errno);
		}
		if (n != -FI_EAGAIN)
			die("%s: fi_cq_read %zd (%s)", what, n, fi_strerror((int)-n));
		if (now() > deadline)
			die("%s: no completion within the timeout", what);
		peer_alive(r, what);
	}
}

uint64_t rdm_key(struct rdm *r)
{
	if (r->info->domain_attr->mr_mode & FI_MR_PROV_KEY)
		return 0;
	return ++r->next_key;
}

struct fid_mr *rdm_reg(struct rdm *r, void *buf, size_t len, uint64_t access)
{
	struct fid_mr *mr;

	CHECK_FI(fi_mr_reg(r->domain, buf, len, access, 0, rdm_key(r), 0, &mr, NULL));
	return mr;
}
