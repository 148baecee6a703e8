/* SPDX-License-Identifier: MIT */
/*
 * rdma_write_file: a NIC writes into a MAP_SHARED file mapping; does the
 * file get the data?
 *
 * One process, two RC QPs on the same RDMA device connected to each other
 * (Soft-RoCE on lo in the test VM).  The "target" registers a MAP_SHARED
 * mapping of FILE with plain ibv_reg_mr; the "peer" RDMA-WRITEs (and READs,
 * and does atomics) into it from anonymous memory.  Then the sync call under
 * test (msync(MS_SYNC), fsync or ibv_dereg_mr), then an O_DIRECT read of the
 * file, which bypasses the page cache and shows what is on disk.
 *
 * Built without any safe_mr header: run it as is to see the kernel's own
 * behaviour, or with LD_PRELOAD=libsafe_mr_preload.so to see the fix.
 *
 * Exit: 0 PASS, 1 the file does not hold the data, 2 ibv_reg_mr failed,
 * 3 the O_DIRECT read failed (EIO), 4 set-up or usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <infiniband/verbs.h>

#ifdef RWF_SAFE_MR_API
/* The linked-API variant: the same program calling safe_mr explicitly. */
#include <safe_mr.h>
#undef ibv_reg_mr
#define ibv_reg_mr(pd, a, l, acc) safe_mr_reg_mr(pd, a, l, acc)
#define ibv_dereg_mr(mr) safe_mr_dereg_mr(mr)
#define msync(a, l, f) safe_mr_msync(a, l, f)
#define fsync(fd) safe_mr_fsync(fd)
#define munmap(a, l) safe_mr_munmap(a, l)
#endif

enum { EXIT_DATA = 1, EXIT_REG = 2, EXIT_EIO = 3, EXIT_SETUP = 4 };

struct opts {
	const char *path;
	const char *dev;
	int gid_index;		/* -1: find ::ffff:127.0.0.1 (or any IPv4 GID) */
	size_t size;
	bool op_read, op_write, op_atomic;
	const char *sync;	/* msync | fsync | dereg | none */
	bool clean;
	unsigned race_ms;	/* btrfs race: writes racing an fsync loop */
	bool cpu;		/* race/write with the CPU instead of the NIC */
	bool hold;		/* after the verdict, stay alive (power-cut tests) */
	const char *expect_out;	/* -E: write what the file must hold here */
	const char *death;	/* -D: in the hold, SIGUSR1 ends us this way */
	bool verbose;
};

struct ep {
	struct ibv_cq *cq;
	struct ibv_qp *qp;
};

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ep tgt, peer;
static union ibv_gid gid;
static int gid_idx;
static enum ibv_mtu mtu;
static struct opts o = {
	.gid_index = -1, .size = 64 * 1024, .sync = "msync", .clean = true,
};

static void die(int code, const char *fmt, ...)
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

static void info(const char *fmt, ...)
{
	va_list ap;

	if (!o.verbose)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* The byte the file holds before the NIC writes, and the NIC's bytes. */
static uint8_t old_byte(size_t i) { return (uint8_t)('A' + (i / 4096) % 26); }
static uint8_t nic_byte(size_t i, unsigned round)
{
	return (uint8_t)(0x80 ^ (i * 31 + (i >> 12) + round * 7));
}

static int pick_gid(void)
{
	struct ibv_port_attr pa;

	if (ibv_query_port(ctx, 1, &pa))
		die(EXIT_SETUP, "ibv_query_port: %s", strerror(errno));
	if (pa.state != IBV_PORT_ACTIVE)
		die(EXIT_SETUP, "port 1 of %s is not ACTIVE", ibv_get_device_name(ctx->device));
	mtu = pa.active_mtu;
	if (o.gid_index >= 0) {
		if (ibv_query_gid(ctx, 1, o.gid_index, &gid))
			die(EXIT_SETUP, "ibv_query_gid %d: %s", o.gid_index, strerror(errno));
		return o.gid_index;
	}
	/* RoCEv2 over IPv4: ::ffff:a.b.c.d; prefer 127.0.0.1 (rxe on lo). */
	int found = -1;
	for (int i = 0; i < pa.gid_tbl_len; i++) {
		union ibv_gid g;
		static const uint8_t v4[12] = { [10] = 0xff, [11] = 0xff };

		if (ibv_query_gid(ctx, 1, i, &g) || memcmp(g.raw, v4, 12))
			continue;
		if (found < 0 || (g.raw[12] == 127 && g.raw[15] == 1)) {
			found = i;
			gid = g;
		}
	}
	if (found < 0)
		die(EXIT_SETUP, "no IPv4 RoCE GID on %s (give -g)", ibv_get_device_name(ctx->device));
	return found;
}

static void ep_create(struct ep *e)
{
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 64, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1 },
	};

	e->cq = ibv_create_cq(ctx, 128, NULL, NULL, 0);
	if (!e->cq)
		die(EXIT_SETUP, "ibv_create_cq: %s", strerror(errno));
	qa.send_cq = qa.recv_cq = e->cq;
	e->qp = ibv_create_qp(pd, &qa);
	if (!e->qp)
		die(EXIT_SETUP, "ibv_create_qp: %s", strerror(errno));
}

static void ep_connect(struct ep *e, uint32_t remote_qpn)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_INIT, .port_num = 1, .pkey_index = 0,
		.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
				   IBV_ACCESS_REMOTE_ATOMIC,
	};

	if (ibv_modify_qp(e->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			  IBV_QP_ACCESS_FLAGS))
		die(EXIT_SETUP, "modify_qp INIT: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = mtu;
	a.dest_qp_num = remote_qpn;
	a.rq_psn = 0;
	a.max_dest_rd_atomic = 16;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = gid;
	a.ah_attr.grh.sgid_index = gid_idx;
	a.ah_attr.grh.hop_limit = 64;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(e->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			  IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
			  IBV_QP_MIN_RNR_TIMER))
		die(EXIT_SETUP, "modify_qp RTR: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.sq_psn = 0;
	a.max_rd_atomic = 16;
	if (ibv_modify_qp(e->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		die(EXIT_SETUP, "modify_qp RTS: %s", strerror(errno));
}

/* Post one one-sided operation from the peer and wait for its completion:
 * for RC the requester's completion means the target has placed the data. */
static void peer_op(enum ibv_wr_opcode opc, struct ibv_mr *lmr, void *laddr, size_t len,
		    uint64_t raddr, uint32_t rkey, uint64_t a0, uint64_t a1)
{
	struct ibv_sge sge = { .addr = (uintptr_t)laddr, .length = (uint32_t)len,
			       .lkey = lmr->lkey };
	struct ibv_send_wr wr = { .wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = opc,
				  .send_flags = IBV_SEND_SIGNALED }, *bad;
	struct ibv_wc wc;
	int n;

	if (opc == IBV_WR_ATOMIC_FETCH_AND_ADD || opc == IBV_WR_ATOMIC_CMP_AND_SWP) {
		wr.wr.atomic.remote_addr = raddr;
		wr.wr.atomic.rkey = rkey;
		wr.wr.atomic.compare_add = a0;
		wr.wr.atomic.swap = a1;
	} else {
		wr.wr.rdma.remote_addr = raddr;
		wr.wr.rdma.rkey = rkey;
	}
	if ((n = ibv_post_send(peer.qp, &wr, &bad)))
		die(EXIT_SETUP, "ibv_post_send: %s", strerror(n));
	while ((n = ibv_poll_cq(peer.cq, 1, &wc)) == 0)
		;
	if (n < 0)
		die(EXIT_SETUP, "ibv_poll_cq failed");
	if (wc.status != IBV_WC_SUCCESS)
		die(EXIT_SETUP, "work completion: %s (opcode %d)", ibv_wc_status_str(wc.status), opc);
}

static void file_create(const char *path, size_t size)
{
	uint8_t *b = malloc(size);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (!b || fd < 0)
		die(EXIT_SETUP, "create %s: %s", path, strerror(errno));
	for (size_t i = 0; i < size; i++)
		b[i] = old_byte(i);
	if (pwrite(fd, b, size, 0) != (ssize_t)size || fsync(fd))
		die(EXIT_SETUP, "write %s: %s", path, strerror(errno));
	close(fd);
	free(b);
}

/* What is on disk: O_DIRECT bypasses (and does not refresh) the page cache. */
static int read_direct(const char *path, uint8_t *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_DIRECT);

	if (fd < 0)
		return -errno;
	ssize_t n = pread(fd, buf, size, 0);
	int err = n < 0 ? -errno : 0;
	close(fd);
	if (!err && (size_t)n != size)
		err = -ENODATA;
	return err;
}

struct race {
	volatile uint8_t *map;
	size_t size;
	int fd;
	volatile bool stop;
	unsigned loops;
};

/* Dirty an eighth of the pages with the CPU and fsync, over and over: pages
 * go through writeback (and btrfs checksumming) while the NIC keeps writing.
 * A stripe at a time, so most pages' last write happened during the race
 * (rewriting every page each round would COW away earlier damage). */
static void *fsync_loop(void *arg)
{
	struct race *r = arg;

	while (!r->stop) {
		for (size_t i = (r->loops % 8) * 4096; i < r->size; i += 8 * 4096)
			r->map[i] = r->map[i];
		if (fsync(r->fd))
			die(EXIT_SETUP, "fsync in the race loop: %s", strerror(errno));
		r->loops++;
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile sig_atomic_t usr1;
static void on_usr1(int sig) { (void)sig; usr1 = 1; }

static void usage(void)
{
	fprintf(stderr,
		"usage: rdma_write_file [options] FILE\n"
		"  -d DEV        RDMA device (default: the first)\n"
		"  -g IDX        GID index (default: the IPv4 GID, 127.0.0.1 preferred)\n"
		"  -s BYTES      file size, multiple of 4096 (default 65536)\n"
		"  -o OPS        comma list of read,write,atomic (default write)\n"
		"  -y SYNC       sync point: msync (MS_SYNC), fsync, dereg, none (default msync)\n"
		"  -n            do not clean the pages (msync+fsync) before the NIC writes\n"
		"  -r MS         race: NIC writes for MS ms against a dirty+fsync loop\n"
		"  -c            write with the CPU through the mapping instead of the NIC\n"
		"  -H            hold: after the verdict, print HOLD and wait (power cut)\n"
		"  -E PATH       write the bytes the file must hold to PATH (before the sync)\n"
		"  -D HOW        in the hold, SIGUSR1 makes us die: segv, exit (_exit) or exec\n"
		"  -v            verbose\n");
	exit(EXIT_SETUP);
}

static void parse(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "d:g:s:o:y:nr:cHE:D:vh")) != -1) {
		switch (c) {
		case 'd': o.dev = optarg; break;
		case 'g': o.gid_index = atoi(optarg); break;
		case 's': o.size = strtoull(optarg, NULL, 0); break;
		case 'o':
			o.op_read = strstr(optarg, "read") != NULL;
			o.op_write = strstr(optarg, "write") != NULL;
			o.op_atomic = strstr(optarg, "atomic") != NULL;
			break;
		case 'y': o.sync = optarg; break;
		case 'n': o.clean = false; break;
		case 'r': o.race_ms = atoi(optarg); break;
		case 'c': o.cpu = true; break;
		case 'H': o.hold = true; break;
		case 'E': o.expect_out = optarg; break;
		case 'D': o.death = optarg; break;
		case 'v': o.verbose = true; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || !o.size || o.size % 4096)
		usage();
	if (!o.op_read && !o.op_atomic)
		o.op_write = true;
	if (strcmp(o.sync, "msync") && strcmp(o.sync, "fsync") && strcmp(o.sync, "dereg") &&
	    strcmp(o.sync, "none"))
		usage();
	o.path = argv[optind];
	if (o.death) {
		if (strcmp(o.death, "segv") && strcmp(o.death, "exit") && strcmp(o.death, "exec"))
			usage();
		signal(SIGUSR1, on_usr1);
	}
}

static void open_device(void)
{
	int n;
	struct ibv_device **list = ibv_get_device_list(&n);

	if (!list || !n)
		die(EXIT_SETUP, "no RDMA device (ibv_get_device_list: %s)",
		    list ? "empty" : strerror(errno));
	for (int i = 0; i < n; i++)
		if (!o.dev || !strcmp(o.dev, ibv_get_device_name(list[i]))) {
			ctx = ibv_open_device(list[i]);
			break;
		}
	if (!ctx)
		die(EXIT_SETUP, "cannot open RDMA device %s", o.dev ? o.dev : "(first)");
	ibv_free_device_list(list);
	pd = ibv_alloc_pd(ctx);
	if (!pd)
		die(EXIT_SETUP, "ibv_alloc_pd: %s", strerror(errno));
	gid_idx = pick_gid();
	ep_create(&tgt);
	ep_create(&peer);
	ep_connect(&tgt, peer.qp->qp_num);
	ep_connect(&peer, tgt.qp->qp_num);
}

int main(int argc, char **argv)
{
	size_t size;
	uint8_t *expect, *disk, *pbuf;
	struct ibv_mr *mr, *pmr;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv);
	size = o.size;
	open_device();

	file_create(o.path, size);
	fd = open(o.path, O_RDWR);
	if (fd < 0)
		die(EXIT_SETUP, "open %s: %s", o.path, strerror(errno));
	uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die(EXIT_SETUP, "mmap %s: %s", o.path, strerror(errno));

	/* Peer side: ordinary anonymous memory. */
	pbuf = aligned_alloc(4096, size);
	expect = aligned_alloc(4096, size);
	disk = aligned_alloc(4096, size);
	if (!pbuf || !expect || !disk)
		die(EXIT_SETUP, "out of memory");
	pmr = ibv_reg_mr(pd, pbuf, size, IBV_ACCESS_LOCAL_WRITE);
	if (!pmr)
		die(EXIT_SETUP, "ibv_reg_mr (anonymous peer buffer): %s", strerror(errno));

	mr = ibv_reg_mr(pd, map, size, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
			IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC);
	if (!mr)
		die(EXIT_REG, "ibv_reg_mr: %s (errno %d)", strerror(errno), errno);
	info("registered %zu bytes of %s: lkey %#x rkey %#x\n", size, o.path, mr->lkey, mr->rkey);

	for (size_t i = 0; i < size; i++)
		expect[i] = old_byte(i);

	/* Clean: write back and write-protect the pages, as writeback does on
	 * its own sooner or later; the NIC's writes then come "after". */
	if (o.clean && (msync(map, size, MS_SYNC) || fsync(fd)))
		die(EXIT_SETUP, "cleaning msync/fsync: %s", strerror(errno));

	if (o.op_read) {
		memset(pbuf, 0, size);
		peer_op(IBV_WR_RDMA_READ, pmr, pbuf, size, (uintptr_t)map, mr->rkey, 0, 0);
		if (memcmp(pbuf, expect, size))
			die(EXIT_DATA, "RDMA READ of the registered file range returned wrong bytes");
		info("RDMA READ: %zu bytes match the file\n", size);
	}

	if (o.race_ms) {
		struct race r = { .map = map, .size = size, .fd = fd };
		pthread_t th;
		unsigned round = 0;
		double end = now() + o.race_ms / 1000.0;

		if (pthread_create(&th, NULL, fsync_loop, &r))
			die(EXIT_SETUP, "pthread_create");
		while (now() < end) {
			round++;
			for (size_t i = 0; i < size; i++)
				pbuf[i] = nic_byte(i, round);
			if (o.cpu)
				memcpy(map, pbuf, size);
			else
				peer_op(IBV_WR_RDMA_WRITE, pmr, pbuf, size, (uintptr_t)map, mr->rkey, 0, 0);
		}
		r.stop = true;
		pthread_join(th, NULL);
		info("race: %u write rounds, %u fsync loops\n", round, r.loops);
		/* What the file must hold after the sync: the last round, as the
		 * CPU sees it.  The disk must also read back without EIO. */
		memcpy(expect, map, size);
	}

	if (o.op_write && !o.race_ms) {
		for (size_t i = 0; i < size; i++)
			expect[i] = pbuf[i] = nic_byte(i, 0);
		if (o.cpu)
			memcpy(map, pbuf, size);
		else
			peer_op(IBV_WR_RDMA_WRITE, pmr, pbuf, size, (uintptr_t)map, mr->rkey, 0, 0);
		info("RDMA WRITE: %zu bytes\n", size);
	}

	if (o.op_atomic && !o.race_ms) {
		uint64_t v0, v8, *res = (uint64_t *)pbuf;
		const uint64_t add = 0x0101010101010101ull, swap = 0x5afe5afe5afe5afeull;

		memcpy(&v0, expect, 8);
		memcpy(&v8, expect + 8, 8);
		peer_op(IBV_WR_ATOMIC_FETCH_AND_ADD, pmr, res, 8, (uintptr_t)map, mr->rkey, add, 0);
		if (*res != v0)
			die(EXIT_DATA, "fetch-add returned %#" PRIx64 ", the file held %#" PRIx64, *res, v0);
		peer_op(IBV_WR_ATOMIC_CMP_AND_SWP, pmr, res, 8, (uintptr_t)map + 8, mr->rkey, v8, swap);
		if (*res != v8)
			die(EXIT_DATA, "cmp-swap returned %#" PRIx64 ", the file held %#" PRIx64, *res, v8);
		v0 += add;
		memcpy(expect, &v0, 8);
		memcpy(expect + 8, &swap, 8);
		info("atomics: fetch-add and cmp-swap returned the file's values\n");
	}

	/* The CPU sees what the NIC wrote (same memory). */
	if (memcmp(map, expect, size))
		die(EXIT_DATA, "the mapping does not hold the NIC's data");

	if (o.expect_out) {
		FILE *e = fopen(o.expect_out, "w");

		if (!e || fwrite(expect, 1, size, e) != size || fclose(e))
			die(EXIT_SETUP, "writing %s: %s", o.expect_out, strerror(errno));
	}

	/* The sync point under test; each must return success. */
	if (!strcmp(o.sync, "msync") && msync(map, size, MS_SYNC))
		die(EXIT_DATA, "msync(MS_SYNC): %s", strerror(errno));
	if (!strcmp(o.sync, "fsync") && fsync(fd))
		die(EXIT_DATA, "fsync: %s", strerror(errno));
	if (!strcmp(o.sync, "dereg")) {
		int err = ibv_dereg_mr(mr);
		if (err)
			die(EXIT_DATA, "ibv_dereg_mr: %s", strerror(err));
		mr = NULL;
		/* ibv_dereg_mr makes the data visible; make it durable too */
		if (fsync(fd))
			die(EXIT_DATA, "fsync after ibv_dereg_mr: %s", strerror(errno));
	}

	int err = read_direct(o.path, disk, size);
	if (err == -EIO)
		die(EXIT_EIO, "O_DIRECT read: %s (after %s returned 0)", strerror(EIO), o.sync);
	if (err)
		die(EXIT_SETUP, "O_DIRECT read: %s", strerror(-err));

	size_t bad = 0, old = 0;
	for (size_t i = 0; i < size; i++) {
		bad += disk[i] != expect[i];
		old += disk[i] != expect[i] && disk[i] == old_byte(i);
	}
	if (bad) {
		printf("FAIL: file does not hold the NIC's data after %s returned 0: "
		       "%zu of %zu bytes differ%s\n", o.sync, bad, size,
		       old == bad ? " (old data on disk)" : "");
		fflush(stdout);
		if (o.hold)
			goto hold;
		return EXIT_DATA;
	}
	printf("PASS: file holds the NIC's data (%s, %zu bytes, sync by %s)\n",
	       o.cpu ? "CPU" : o.op_read || o.op_atomic ? "RDMA read/write/atomic" : "RDMA write",
	       size, o.sync);
	if (o.hold)
		goto hold;

	if (mr && (err = ibv_dereg_mr(mr)))
		die(EXIT_DATA, "ibv_dereg_mr: %s", strerror(err));
	ibv_dereg_mr(pmr);
	munmap(map, size);
	close(fd);
	ibv_destroy_qp(tgt.qp);
	ibv_destroy_qp(peer.qp);
	ibv_destroy_cq(tgt.cq);
	ibv_destroy_cq(peer.cq);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	return 0;

hold:
	/* Power-cut tests: the host kills the machine while we sit here, so
	 * no deregistration or exit path writes anything after the sync. */
	printf("HOLD\n");
	fflush(stdout);
	for (;;) {
		pause();
		if (!usr1)
			continue;
		/* Die without any exit path of the libraries (guardian tests). */
		if (!strcmp(o.death, "segv"))
			*(volatile int *)(uintptr_t)atoi("8") = 1;
		if (!strcmp(o.death, "exec"))
			execl("/bin/true", "true", (char *)NULL);
		_exit(0);
	}
}
