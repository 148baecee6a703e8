/* SPDX-License-Identifier: MIT */
/*
 * eio_write: a NIC RDMA-WRITEs into a MAP_SHARED file mapping, the disk
 * starts failing writes, the durable sync fails, the disk comes back, a
 * retry succeeds: does the disk then hold every byte the NIC wrote?
 *
 *   1. FILE (SIZE bytes of "old" data, fsynced) is mapped MAP_SHARED and
 *      registered with ibv_reg_mr; msync+fsync+syncfs clean it.
 *   2. A second RC QP on the same device RDMA-WRITEs all of it.
 *   3. FAILCMD (sh -c, without LD_PRELOAD) makes the device fail writes.
 *   4. The sync under test (msync MS_SYNC, fsync, fdatasync, ibv_dereg_mr)
 *      must fail.
 *   5. The NIC writes the first pages again (data written after a failed
 *      sync must be kept too), then RESTORECMD restores the device.
 *   6. The same sync is retried (up to -t times) until it returns 0.
 *   7. An O_DIRECT read must show every byte the NIC wrote.
 *
 * Built twice: plain libibverbs (run it under LD_PRELOAD=libsafe_mr_preload.so,
 * or without for the control) and with the linked C API (-DEIO_SAFE_MR_API).
 * With -V it only checks that each FILE holds the NIC's bytes (ordinary
 * reads: after a cold remount).
 *
 * Prints "RESULT key=value..." and a verdict line.  Exit: 0 PASS, 1 the disk
 * does not hold the data, 2 ibv_reg_mr failed, 3 the sync returned 0 while
 * the device failed writes, 5 no retry succeeded, 4 set-up or usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <infiniband/verbs.h>

#ifdef EIO_SAFE_MR_API
#include <safe_mr.h>
#undef ibv_reg_mr
#define ibv_reg_mr(pd, a, l, acc) safe_mr_reg_mr(pd, a, l, acc)
#define ibv_dereg_mr(mr) safe_mr_dereg_mr(mr)
#define msync(a, l, f) safe_mr_msync(a, l, f)
#define fsync(fd) safe_mr_fsync(fd)
#define fdatasync(fd) safe_mr_fdatasync(fd)
#define munmap(a, l) safe_mr_munmap(a, l)
#endif

enum { EXIT_DATA = 1, EXIT_REG = 2, EXIT_NOERR = 3, EXIT_SETUP = 4, EXIT_RETRY = 5 };
enum { REWRITE_PAGES = 16 };	/* NIC writes these again after the failure */

extern char **environ;

static struct {
	const char *path, *dev, *sync, *failcmd, *restorecmd;
	char **paths;		/* -V: every FILE */
	size_t size;
	int tries;
	bool verify_only;
} o = { .sync = "msync", .size = 2 << 20, .tries = 3 };

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_cq *cq;
static struct ibv_qp *tqp, *pqp;
static union ibv_gid gid;
static int gid_idx;
static enum ibv_mtu mtu;

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

static uint8_t old_byte(size_t i) { return (uint8_t)('a' + (i / 4096) % 26); }
static uint8_t nic_byte(size_t i, unsigned round)
{
	return (uint8_t)(0x5a ^ (i * 13 + (i >> 12) * 7 + round * 101));
}
static bool rewritten;	/* step 5 happened */
/* What the file must hold in the end: round 1 over the first pages. */
static uint8_t final_byte(size_t i)
{
	return nic_byte(i, rewritten && i < REWRITE_PAGES * 4096u);
}

static void open_device(void)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_port_attr pa;

	for (int i = 0; list && list[i] && !ctx; i++)
		if (!o.dev || !strcmp(o.dev, ibv_get_device_name(list[i])))
			ctx = ibv_open_device(list[i]);
	if (!ctx)
		die(EXIT_SETUP, "cannot open RDMA device %s", o.dev ? o.dev : "(first)");
	ibv_free_device_list(list);
	if (ibv_query_port(ctx, 1, &pa) || pa.state != IBV_PORT_ACTIVE)
		die(EXIT_SETUP, "port 1 is not ACTIVE");
	mtu = pa.active_mtu;
	gid_idx = -1;
	for (int i = 0; i < pa.gid_tbl_len; i++) {	/* RoCEv2 IPv4 GID */
		static const uint8_t v4[12] = { [10] = 0xff, [11] = 0xff };
		union ibv_gid g;

		if (ibv_query_gid(ctx, 1, i, &g) || memcmp(g.raw, v4, 12))
			continue;
		if (gid_idx < 0 || (g.raw[12] == 127 && g.raw[15] == 1)) {
			gid_idx = i;
			gid = g;
		}
	}
	if (gid_idx < 0)
		die(EXIT_SETUP, "no IPv4 RoCE GID");
	pd = ibv_alloc_pd(ctx);
	cq = pd ? ibv_create_cq(ctx, 16, NULL, NULL, 0) : NULL;
	if (!cq)
		die(EXIT_SETUP, "ibv_alloc_pd/ibv_create_cq: %s", strerror(errno));
}

static struct ibv_qp *qp_create(void)
{
	struct ibv_qp_init_attr qa = {
		.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 4, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1 },
	};
	struct ibv_qp *qp = ibv_create_qp(pd, &qa);

	if (!qp)
		die(EXIT_SETUP, "ibv_create_qp: %s", strerror(errno));
	return qp;
}

static void qp_connect(struct ibv_qp *qp, uint32_t remote)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_INIT, .port_num = 1,
		.qp_access_flags = IBV_ACCESS_REMOTE_WRITE,
	};

	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			  IBV_QP_ACCESS_FLAGS))
		die(EXIT_SETUP, "modify_qp INIT: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = mtu;
	a.dest_qp_num = remote;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = gid;
	a.ah_attr.grh.sgid_index = (uint8_t)gid_idx;
	a.ah_attr.grh.hop_limit = 64;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		die(EXIT_SETUP, "modify_qp RTR: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		die(EXIT_SETUP, "modify_qp RTS: %s", strerror(errno));
}

/* RDMA WRITE from the peer QP; an RC completion means the data is placed. */
static void nic_write(struct ibv_mr *lmr, void *src, size_t len, void *dst, uint32_t rkey)
{
	struct ibv_sge sge = { (uintptr_t)src, (uint32_t)len, lmr->lkey };
	struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
				  .send_flags = IBV_SEND_SIGNALED }, *bad;
	struct ibv_wc wc;
	int n;

	wr.wr.rdma.remote_addr = (uintptr_t)dst;
	wr.wr.rdma.rkey = rkey;
	if ((n = ibv_post_send(pqp, &wr, &bad)))
		die(EXIT_SETUP, "ibv_post_send: %s", strerror(n));
	while ((n = ibv_poll_cq(cq, 1, &wc)) == 0)
		;
	if (n < 0 || wc.status != IBV_WC_SUCCESS)
		die(EXIT_SETUP, "RDMA WRITE completion: %s",
		    n < 0 ? "poll failed" : ibv_wc_status_str(wc.status));
}

/* sh -c CMD without LD_PRELOAD; posix_spawn (vfork-like) runs no fork
 * handlers in this process. */
static void run_cmd(const char *what, const char *cmd)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	size_t n = 0;
	pid_t pid;
	int st;

	while (environ[n])
		n++;
	char **env = calloc(n + 1, sizeof(*env));
	size_t k = 0;
	for (size_t i = 0; env && i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11))
			env[k++] = environ[i];
	if (!env || posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, env) ||
	    waitpid(pid, &st, 0) != pid)
		die(EXIT_SETUP, "cannot run the %s command", what);
	free(env);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		die(EXIT_SETUP, "%s command failed (status %#x): %s", what, st, cmd);
}

/* The sync under test; 0 or an errno. */
static int do_sync(int fd, void *map, struct ibv_mr **mr)
{
	if (!strcmp(o.sync, "msync"))
		return msync(map, o.size, MS_SYNC) ? errno : 0;
	if (!strcmp(o.sync, "fsync"))
		return fsync(fd) ? errno : 0;
	if (!strcmp(o.sync, "fdatasync"))
		return fdatasync(fd) ? errno : 0;
	int err = ibv_dereg_mr(*mr);	/* durable; on failure the MR stays */
	if (!err)
		*mr = NULL;
	return err;
}

static const char *ename(int err) { return err ? strerrorname_np(err) : "0"; }

/* Compare FILE with the NIC's bytes: O_DIRECT (the disk) or ordinary reads. */
static void compare(const char *path, bool direct, size_t *bad, size_t *old)
{
	uint8_t *buf = aligned_alloc(4096, o.size);
	int fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
	ssize_t n;

	if (!buf || fd < 0)
		die(EXIT_SETUP, "open %s: %s", path, strerror(errno));
	n = pread(fd, buf, o.size, 0);
	if (n != (ssize_t)o.size)
		die(EXIT_DATA, "%s read of %s: %s", direct ? "O_DIRECT" : "cold", path,
		    n < 0 ? strerror(errno) : "short read");
	*bad = *old = 0;
	for (size_t i = 0; i < o.size; i++) {
		*bad += buf[i] != final_byte(i);
		*old += buf[i] != final_byte(i) && buf[i] == old_byte(i);
	}
	close(fd);
	free(buf);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: eio_write [-d DEV] [-s BYTES] [-y msync|fsync|fdatasync|dereg] [-t TRIES]\n"
		"                 -F FAILCMD -R RESTORECMD FILE\n"
		"       eio_write -V [-s BYTES] FILE...  (check each FILE holds the NIC's bytes)\n");
	exit(EXIT_SETUP);
}

static void parse(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "d:s:y:t:F:R:V")) != -1) {
		switch (c) {
		case 'd': o.dev = optarg; break;
		case 's': o.size = strtoull(optarg, NULL, 0); break;
		case 'y': o.sync = optarg; break;
		case 't': o.tries = atoi(optarg); break;
		case 'F': o.failcmd = optarg; break;
		case 'R': o.restorecmd = optarg; break;
		case 'V': o.verify_only = true; break;
		default: usage();
		}
	}
	if (optind >= argc || (optind != argc - 1 && !o.verify_only) ||
	    o.size < REWRITE_PAGES * 4096u || o.size % 4096 || o.tries < 1)
		usage();
	if (strcmp(o.sync, "msync") && strcmp(o.sync, "fsync") && strcmp(o.sync, "fdatasync") &&
	    strcmp(o.sync, "dereg"))
		usage();
	if (!o.verify_only && (!o.failcmd || !o.restorecmd))
		usage();
	o.path = argv[optind];
	o.paths = argv + optind;
}

int main(int argc, char **argv)
{
	size_t bad, old;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv);
	if (o.verify_only) {
		int ret = 0;

		rewritten = true;
		for (char **p = o.paths; *p; p++) {
			compare(*p, false, &bad, &old);
			if (bad)
				printf("FAIL: %s: %zu of %zu bytes are not the NIC's (%zu old)\n",
				       *p, bad, o.size, old);
			else
				printf("PASS: %s holds the NIC's %zu bytes\n", *p, o.size);
			ret |= bad ? EXIT_DATA : 0;
		}
		return ret;
	}
	open_device();
	tqp = qp_create();
	pqp = qp_create();
	qp_connect(tqp, pqp->qp_num);
	qp_connect(pqp, tqp->qp_num);

	uint8_t *src = aligned_alloc(4096, o.size);
	if (!src)
		die(EXIT_SETUP, "out of memory");
	for (size_t i = 0; i < o.size; i++)
		src[i] = old_byte(i);
	fd = open(o.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || pwrite(fd, src, o.size, 0) != (ssize_t)o.size || fsync(fd))
		die(EXIT_SETUP, "create %s: %s", o.path, strerror(errno));
	uint8_t *map = mmap(NULL, o.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die(EXIT_SETUP, "mmap: %s", strerror(errno));
	struct ibv_mr *smr = ibv_reg_mr(pd, src, o.size, IBV_ACCESS_LOCAL_WRITE);
	if (!smr)
		die(EXIT_SETUP, "ibv_reg_mr (anonymous source): %s", strerror(errno));
	struct ibv_mr *mr = ibv_reg_mr(pd, map, o.size,
				       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr)
		die(EXIT_REG, "ibv_reg_mr of the file mapping: %s (errno %d)", strerror(errno), errno);
	/* Everything durable before the failure, the file's creation too:
	 * the only writes in the failure window are the sync's own (btrfs
	 * commits the whole transaction on some fsyncs).  The first syncfs
	 * may report an earlier run's error not yet seen on this fs. */
	if (msync(map, o.size, MS_SYNC) || fsync(fd) || (syncfs(fd) && syncfs(fd)))
		die(EXIT_SETUP, "cleaning msync/fsync/syncfs: %s", strerror(errno));

	for (size_t i = 0; i < o.size; i++)
		src[i] = nic_byte(i, 0);
	nic_write(smr, src, o.size, map, mr->rkey);

	run_cmd("fail", o.failcmd);
	int fail_err = do_sync(fd, map, &mr);

	/* More NIC writes after the failed sync (the MR is still there if
	 * the sync was a deregistration that failed). */
	if (mr) {
		for (size_t i = 0; i < REWRITE_PAGES * 4096u; i++)
			src[i] = nic_byte(i, 1);
		nic_write(smr, src, REWRITE_PAGES * 4096u, map, mr->rkey);
		rewritten = true;
	}
	run_cmd("restore", o.restorecmd);

	int tries = 0, err = EINVAL;
	while (tries < o.tries && err) {
		tries++;
		err = mr || strcmp(o.sync, "dereg") ? do_sync(fd, map, &mr) : 0;
	}
	compare(o.path, true, &bad, &old);
	printf("RESULT sync=%s size=%zu failing=%s rewritten=%s retries=%d retry=%s disk_bad=%zu disk_old=%zu\n",
	       o.sync, o.size, ename(fail_err), rewritten ? "yes" : "no",
	       tries, ename(err), bad, old);
	if (!fail_err)
		die(EXIT_NOERR, "%s returned 0 while the device failed writes (disk: %zu of %zu bytes wrong)",
		    o.sync, bad, o.size);
	if (err)
		die(EXIT_RETRY, "%s failed during the failure (%s), and %d retries failed: %s",
		    o.sync, ename(fail_err), tries, ename(err));
	if (bad)
		die(EXIT_DATA, "%s: %s during the failure, 0 on retry %d, but the disk lacks %zu of %zu "
		    "bytes the NIC wrote (%zu hold the old data)", o.sync, ename(fail_err), tries,
		    bad, o.size, old);
	printf("PASS: %s failed (%s) while the device failed writes, retry %d returned 0, "
	       "the disk holds all %zu bytes the NIC wrote\n", o.sync, ename(fail_err), tries, o.size);
	/* Nothing is pending now: an error here was already reported (and
	 * the data is on disk), so it must not come back. */
	if (mr && (err = ibv_dereg_mr(mr)))
		die(EXIT_DATA, "ibv_dereg_mr after the retried %s returned 0 and the disk held every "
		    "byte: %s", o.sync, ename(err));
	ibv_dereg_mr(smr);
	munmap(map, o.size);
	close(fd);
	return 0;
}
