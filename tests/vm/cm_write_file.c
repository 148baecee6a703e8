/* SPDX-License-Identifier: MIT */
/*
 * cm_write_file: a peer on another node RDMA-WRITEs into a MAP_SHARED file
 * mapping; does the file get the data?  rdma_cm connects the two (iWARP,
 * siw, needs it: no QP can be connected by hand there).
 *
 *   cm_write_file -s ADDR FILE [-p PORT] [-z BYTES]    target (server)
 *   cm_write_file -c ADDR [-p PORT]                    peer (client)
 *
 * The target makes FILE (old bytes), maps it MAP_SHARED, registers the
 * mapping with plain ibv_reg_mr, cleans it (msync+fsync, as writeback
 * would), and hands address and rkey to the peer; the peer RDMA-WRITEs
 * new bytes and then SENDs "done" (on the same RC QP, the SEND completes
 * at the target only after the WRITE was placed).  Then the target's
 * msync(MS_SYNC) and an O_DIRECT read of FILE (what the disk holds).
 * The peer speaks first (an iWARP responder must not send before the
 * initiator has).  Run the target under LD_PRELOAD=libsafe_mr_preload.so
 * to see the fix.
 *
 * Target exit: 0 PASS, 1 the file does not hold the data, 2 ibv_reg_mr
 * failed, 4 set-up error.  Peer: 0, or 4.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <rdma/rdma_cma.h>
#include <rdma/rdma_verbs.h>

enum { EXIT_DATA = 1, EXIT_REG = 2, EXIT_SETUP = 4 };

struct info {			/* target -> peer, after the peer's hello */
	uint64_t addr;
	uint32_t rkey;
	uint32_t len;		/* 0: registration refused, errno in rkey */
};

static const char *port = "7471";

#define die(code, ...) do { printf("FAIL: " __VA_ARGS__); printf("\n"); \
	fflush(stdout); exit(code); } while (0)

static uint8_t old_byte(size_t i) { return (uint8_t)('A' + (i / 4096) % 26); }
static uint8_t nic_byte(size_t i) { return (uint8_t)(0x80 ^ (i * 31 + (i >> 12))); }

static struct rdma_cm_id *endpoint(const char *addr, int passive)
{
	struct rdma_addrinfo hints = { .ai_port_space = RDMA_PS_TCP }, *res;
	struct ibv_qp_init_attr attr = {
		.cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1,
			 .max_recv_sge = 1 },
		.qp_type = IBV_QPT_RC, .sq_sig_all = 1,
	};
	struct rdma_cm_id *id;
	int err;

	if (passive)
		hints.ai_flags = RAI_PASSIVE;
	if ((err = rdma_getaddrinfo(addr, port, &hints, &res)))
		die(EXIT_SETUP, "rdma_getaddrinfo %s:%s: %s", addr, port,
		    err == -1 ? strerror(errno) : gai_strerror(err));
	if (rdma_create_ep(&id, res, NULL, &attr))
		die(EXIT_SETUP, "rdma_create_ep %s: %s", addr, strerror(errno));
	rdma_freeaddrinfo(res);
	return id;
}

static void wait_comp(struct rdma_cm_id *id, int recv, const char *what)
{
	struct ibv_wc wc;
	int n = recv ? rdma_get_recv_comp(id, &wc) : rdma_get_send_comp(id, &wc);

	if (n <= 0)
		die(EXIT_SETUP, "%s: no completion (%s)", what, strerror(errno));
	if (wc.status != IBV_WC_SUCCESS)
		die(EXIT_SETUP, "%s: %s", what, ibv_wc_status_str(wc.status));
}

static int target(const char *addr, const char *path, size_t size)
{
	struct rdma_cm_id *lid = endpoint(addr, 1), *id;
	struct info *inf = aligned_alloc(64, 64);
	char *msg = aligned_alloc(64, 64);
	uint8_t *buf = aligned_alloc(4096, size), *disk = aligned_alloc(4096, size);
	struct ibv_mr *imr, *mmr, *mr;
	size_t bad = 0, old = 0;
	int fd;

	if (rdma_listen(lid, 1))
		die(EXIT_SETUP, "rdma_listen: %s", strerror(errno));
	printf("target: listening on %s:%s\n", addr, port);
	fflush(stdout);
	if (rdma_get_request(lid, &id))
		die(EXIT_SETUP, "rdma_get_request: %s", strerror(errno));
	printf("target: device %s\n", ibv_get_device_name(id->verbs->device));

	for (size_t i = 0; i < size; i++)
		buf[i] = old_byte(i);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || pwrite(fd, buf, size, 0) != (ssize_t)size || fsync(fd))
		die(EXIT_SETUP, "create %s: %s", path, strerror(errno));
	uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die(EXIT_SETUP, "mmap %s: %s", path, strerror(errno));

	imr = ibv_reg_mr(id->pd, inf, 64, IBV_ACCESS_LOCAL_WRITE);
	mmr = ibv_reg_mr(id->pd, msg, 64, IBV_ACCESS_LOCAL_WRITE);
	if (!imr || !mmr)
		die(EXIT_SETUP, "ibv_reg_mr (messages): %s", strerror(errno));
	mr = ibv_reg_mr(id->pd, map, size, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	int reg_errno = errno;

	/* Clean the pages: the NIC's writes come after writeback. */
	if (msync(map, size, MS_SYNC) || fsync(fd))
		die(EXIT_SETUP, "cleaning msync/fsync: %s", strerror(errno));

	if (rdma_post_recv(id, NULL, msg, 64, mmr) || rdma_accept(id, NULL))
		die(EXIT_SETUP, "rdma_accept: %s", strerror(errno));
	wait_comp(id, 1, "hello");
	*inf = (struct info){ (uintptr_t)map, mr ? mr->rkey : (uint32_t)reg_errno,
			      mr ? (uint32_t)size : 0 };
	if (rdma_post_recv(id, NULL, msg, 64, mmr) ||
	    rdma_post_send(id, NULL, inf, sizeof(*inf), imr, 0))
		die(EXIT_SETUP, "post: %s", strerror(errno));
	wait_comp(id, 0, "send info");
	if (!mr)
		die(EXIT_REG, "ibv_reg_mr: %s (errno %d)", strerror(reg_errno), reg_errno);
	wait_comp(id, 1, "done message");

	for (size_t i = 0; i < size; i++)
		buf[i] = nic_byte(i);
	if (memcmp(map, buf, size))
		die(EXIT_DATA, "the mapping does not hold the peer's data");
	if (msync(map, size, MS_SYNC))
		die(EXIT_DATA, "msync(MS_SYNC): %s", strerror(errno));
	int dfd = open(path, O_RDONLY | O_DIRECT);
	if (dfd < 0 || pread(dfd, disk, size, 0) != (ssize_t)size)
		die(EXIT_SETUP, "O_DIRECT read: %s", strerror(errno));
	close(dfd);
	for (size_t i = 0; i < size; i++) {
		bad += disk[i] != buf[i];
		old += disk[i] != buf[i] && disk[i] == old_byte(i);
	}
	rdma_disconnect(id);
	ibv_dereg_mr(mr);
	if (bad)
		die(EXIT_DATA, "file does not hold the peer's RDMA WRITE after msync returned 0: "
		    "%zu of %zu bytes differ%s", bad, size, old == bad ? " (old data on disk)" : "");
	printf("PASS: file holds the peer's RDMA WRITE (%zu bytes over %s, sync by msync)\n", size,
	       ibv_get_device_name(id->verbs->device));
	return 0;
}

static int peer(const char *addr)
{
	struct rdma_cm_id *id = endpoint(addr, 0);
	struct info *inf = aligned_alloc(64, 64);
	char *msg = aligned_alloc(64, 64);
	struct ibv_mr *imr, *mmr, *mr;
	uint8_t *buf;

	printf("peer: route to %s over %s\n", addr, ibv_get_device_name(id->verbs->device));

	imr = ibv_reg_mr(id->pd, inf, 64, IBV_ACCESS_LOCAL_WRITE);
	mmr = ibv_reg_mr(id->pd, msg, 64, IBV_ACCESS_LOCAL_WRITE);
	if (!imr || !mmr)
		die(EXIT_SETUP, "ibv_reg_mr (messages): %s", strerror(errno));
	if (rdma_post_recv(id, NULL, inf, 64, imr))
		die(EXIT_SETUP, "rdma_post_recv: %s", strerror(errno));
	if (rdma_connect(id, NULL))
		die(EXIT_SETUP, "rdma_connect %s: %s", addr, strerror(errno));
	strcpy(msg, "hello");
	if (rdma_post_send(id, NULL, msg, 8, mmr, 0))
		die(EXIT_SETUP, "send hello: %s", strerror(errno));
	wait_comp(id, 0, "send hello");
	wait_comp(id, 1, "info");
	if (!inf->len) {
		printf("peer: the target could not register its file: %s\n", strerror(inf->rkey));
		rdma_disconnect(id);
		return 0;
	}
	buf = aligned_alloc(4096, inf->len);
	for (size_t i = 0; i < inf->len; i++)
		buf[i] = nic_byte(i);
	mr = ibv_reg_mr(id->pd, buf, inf->len, IBV_ACCESS_LOCAL_WRITE);
	if (!mr)
		die(EXIT_SETUP, "ibv_reg_mr (source): %s", strerror(errno));
	if (rdma_post_write(id, NULL, buf, inf->len, mr, 0, inf->addr, inf->rkey))
		die(EXIT_SETUP, "rdma_post_write: %s", strerror(errno));
	wait_comp(id, 0, "RDMA WRITE");
	strcpy(msg, "done");
	if (rdma_post_send(id, NULL, msg, 8, mmr, 0))
		die(EXIT_SETUP, "send done: %s", strerror(errno));
	wait_comp(id, 0, "send done");
	printf("peer: wrote %u bytes at %#llx rkey %#x\n", inf->len,
	       (unsigned long long)inf->addr, inf->rkey);
	rdma_disconnect(id);
	return 0;
}

int main(int argc, char **argv)
{
	const char *srv = NULL, *cli = NULL;
	size_t size = 64 * 1024;
	int c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt(argc, argv, "s:c:p:z:")) != -1) {
		switch (c) {
		case 's': srv = optarg; break;
		case 'c': cli = optarg; break;
		case 'p': port = optarg; break;
		case 'z': size = strtoull(optarg, NULL, 0); break;
		default: goto usage;
		}
	}
	if (srv && !cli && optind == argc - 1 && size && size % 4096 == 0)
		return target(srv, argv[optind], size);
	if (cli && !srv && optind == argc)
		return peer(cli);
usage:
	fprintf(stderr, "usage: cm_write_file -s ADDR FILE [-p PORT] [-z BYTES]\n"
			"       cm_write_file -c ADDR [-p PORT]\n");
	return EXIT_SETUP;
}
