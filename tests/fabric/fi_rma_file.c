/* SPDX-License-Identifier: MIT */
/* One libfabric application, two processes on one node: the server
 * registers a MAP_SHARED mapping of a file on a real filesystem as an RMA
 * target, the client changes it with fi_write / fi_read / fi_atomic, a
 * message round trip fences the RMA (tcp completes fi_write once sent),
 * then the server syncs and closes the MR and checks what the file holds
 * with O_DIRECT (the disk) and pread.
 *
 *   fi_rma_file --op write|read|atomic|regv|mixed --sync close|fi_sync
 *               --expect shadow|noshadow|nohook
 *
 * shadow:   FI_HOOK=safe_mr is active and must have shadowed the file pages:
 *           until the sync the disk keeps the old data.
 * noshadow: the hook is loaded but must not shadow (FI_SAFE_MR_MODE=off).
 * nohook:   plain libfabric; records what the provider itself does.
 * raw:      plain libfabric on a NIC that pins (verbs): only reports what
 *           the disk holds at each step ("RAW <step> old|new"), asserts
 *           nothing about it; used by the VM checks to show the loss.
 * Files go to FI_TEST_DIR (default /tmp), which must not be tmpfs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <safe_mr.h>

#include "fi_util.h"

enum op { OP_WRITE, OP_READ, OP_ATOMIC, OP_REGV, OP_MIXED };
enum expect { EXPECT_SHADOW, EXPECT_NOSHADOW, EXPECT_NOHOOK, EXPECT_RAW };

static enum op op;
static enum expect expect;
static bool use_fi_sync;
static size_t pg;
static size_t want_shadow_bytes;

#define FILE_LEN(p) (3 * (p) + 1000)	/* not page aligned on purpose */
#define NSEG_MAX 2

/* One registered piece of the server's memory. */
struct seg {
	char *addr;
	size_t len;		/* bytes registered */
	int fd;			/* file behind addr[0, file_len) */
	size_t file_len;
	char path[256];
};

/* What the client needs to reach a segment. */
struct target {
	uint64_t addr, len, key;
};

static uint8_t pattern(size_t i, unsigned int seed)
{
	return (uint8_t)(i * 131 + seed * 17 + 1);
}

static const char *test_dir(void)
{
	const char *d = getenv("FI_TEST_DIR");
	struct statfs sfs;

	d = d ? d : "/tmp";
	if (statfs(d, &sfs))
		die("statfs %s: %s", d, strerror(errno));
	if (sfs.f_type == TMPFS_MAGIC)
		die("%s is tmpfs: file pages would need no shadow, use a disk filesystem", d);
	return d;
}

/* A file of FILE_LEN bytes holding pattern(seed), mapped MAP_SHARED at
 * `where` (NULL: anywhere). */
static void file_seg(struct seg *s, const char *name, unsigned int seed, void *where)
{
	size_t len = FILE_LEN(pg);
	uint8_t *buf = malloc(len);
	int flags = MAP_SHARED | (where ? MAP_FIXED : 0);

	snprintf(s->path, sizeof(s->path), "%s/fi_rma_file.%d.%s", test_dir(), (int)getpid(),
		 name);
	s->fd = open(s->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (s->fd < 0)
		die("open %s: %s", s->path, strerror(errno));
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern(i, seed);
	if (pwrite(s->fd, buf, len, 0) != (ssize_t)len || fsync(s->fd))
		die("fill %s: %s", s->path, strerror(errno));
	free(buf);
	s->file_len = len;
	s->len = len;
	want_shadow_bytes += (len + pg - 1) / pg * pg;
	s->addr = mmap(where, len, PROT_READ | PROT_WRITE, flags, s->fd, 0);
	if (s->addr == MAP_FAILED)
		die("mmap %s: %s", s->path, strerror(errno));
}

/* Compare the file as the disk has it (O_DIRECT) and as read() has it. */
static bool file_holds(const struct seg *s, unsigned int seed, bool direct)
{
	size_t cap = (s->file_len + pg - 1) / pg * pg;
	uint8_t *buf;
	struct stat st;
	ssize_t n;
	int fd = open(s->path, O_RDONLY | (direct ? O_DIRECT : 0));

	if (fd < 0)
		die("open %s%s: %s", s->path, direct ? " O_DIRECT" : "", strerror(errno));
	if (posix_memalign((void **)&buf, pg, cap))
		die("posix_memalign");
	n = pread(fd, buf, cap, 0);
	if (n != (ssize_t)s->file_len)
		die("pread %s: %zd of %zu bytes: %s", s->path, n, s->file_len, strerror(errno));
	if (fstat(fd, &st) || (size_t)st.st_size != s->file_len)
		die("%s: size changed to %lld", s->path, (long long)st.st_size);
	close(fd);
	for (size_t i = 0; i < s->file_len; i++) {
		if (buf[i] != pattern(i, seed)) {
			free(buf);
			return false;
		}
	}
	free(buf);
	return true;
}

/* Which seed each byte of the file should end up with. */
#define SEED_FILE 1
#define SEED_NEW 2

/* The atomic test adds to one uint64 per page. */
static uint64_t atomic_addend(size_t k) { return 0x1000 + k; }

static bool atomic_done(const struct seg *s, const uint8_t *mem)
{
	for (size_t k = 0; k * pg + 8 <= s->file_len; k++) {
		uint64_t was, now;

		for (size_t b = 0; b < 8; b++)
			((uint8_t *)&was)[b] = pattern(k * pg + b, SEED_FILE);
		memcpy(&now, mem + k * pg, 8);
		if (now != was + atomic_addend(k))
			return false;
	}
	return true;
}

static bool atomic_file_done(const struct seg *s)
{
	uint8_t *buf = malloc(s->file_len);
	bool ok;

	if (pread(s->fd, buf, s->file_len, 0) != (ssize_t)s->file_len)
		die("pread: %s", strerror(errno));
	ok = atomic_done(s, buf);
	free(buf);
	return ok;
}

static bool mem_holds(const char *mem, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		if ((uint8_t)mem[i] != pattern(i, seed))
			return false;
	return true;
}

/* ---- the engine, if the hook loaded it ---- */
static void *engine(void)
{
	return dlopen("libsafe_mr.so.0", RTLD_NOW | RTLD_NOLOAD);
}

static int engine_fi_sync(struct fid_mr *mr)
{
	void *h = engine();
	int (*fn)(struct fid_mr *, unsigned int) = h ? dlsym(h, "safe_mr_fi_sync") : NULL;

	if (!fn)
		die("safe_mr_fi_sync not found: is FI_HOOK=safe_mr active?");
	return fn(mr, SAFE_MR_SYNC_DURABLE);
}

static void check_engine_stats(const char *who)
{
	void *h = engine();
	int (*fn)(struct safe_mr_stats *) = h ? dlsym(h, "safe_mr_stats") : NULL;
	struct safe_mr_stats st;

	if (expect == EXPECT_NOHOOK || expect == EXPECT_RAW) {
		if (h)
			die("%s: libsafe_mr is loaded although no hook was asked for", who);
		printf("%s: no hook, engine not loaded\n", who);
		return;
	}
	if (!fn)
		die("%s: libsafe_mr not loaded: FI_HOOK=safe_mr / FI_PROVIDER_PATH wrong?", who);
	if (fn(&st))
		die("safe_mr_stats failed");
	printf("%s: registrations=%llu shadowed=%llu bytes_shadowed=%llu "
	       "bytes_written_back=%llu\n", who, (unsigned long long)st.registrations,
	       (unsigned long long)st.shadowed, (unsigned long long)st.bytes_shadowed,
	       (unsigned long long)st.bytes_written_back);
	if (expect == EXPECT_SHADOW && !st.shadowed)
		die("%s: the hook shadowed nothing", who);
	/* Each file page exactly once, however many layers (ofi_rxm over
	 * tcp/verbs, the LD_PRELOAD library) saw the registration. */
	if (expect == EXPECT_SHADOW && st.bytes_shadowed != want_shadow_bytes)
		die("%s: %llu bytes shadowed, want %zu (double shadowing?)", who,
		    (unsigned long long)st.bytes_shadowed, want_shadow_bytes);
	if (expect == EXPECT_NOSHADOW && st.shadowed)
		die("%s: shadowed although FI_SAFE_MR_MODE=off", who);
}

/* ---- server ---- */
static void server(int sock)
{
	struct seg seg[NSEG_MAX] = { 0 };
	struct target tgt[NSEG_MAX];
	struct rdm r;
	struct fid_mr *mr, *fence_mr;
	char fence[64];
	int nseg = 1, ret;
	unsigned int want = op == OP_READ ? SEED_FILE : SEED_NEW;
	uint64_t access = FI_REMOTE_READ | FI_REMOTE_WRITE;
	size_t tail_len = 0;

	rdm_open(&r, FI_MSG | FI_RMA | (op == OP_ATOMIC ? FI_ATOMIC : 0), sock);
	rdm_connect(&r);

	if (op == OP_MIXED) {
		/* 4 pages of file, then 4 anonymous pages, one VA range. */
		char *base = mmap(NULL, 8 * pg, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (base == MAP_FAILED)
			die("mmap: %s", strerror(errno));
		file_seg(&seg[0], "mixed", SEED_FILE, base);
		seg[0].len = 8 * pg;
		tail_len = 4 * pg;
	} else {
		file_seg(&seg[0], "a", SEED_FILE, NULL);
	}
	if (op == OP_REGV) {
		struct iovec iov[2];

		file_seg(&seg[1], "b", SEED_FILE, NULL);
		nseg = 2;
		iov[0] = (struct iovec){ seg[0].addr, seg[0].len };
		iov[1] = (struct iovec){ seg[1].addr, seg[1].len };
		CHECK_FI(fi_mr_regv(r.domain, iov, 2, access, 0, rdm_key(&r), 0, &mr, NULL));
	} else {
		CHECK_FI(fi_mr_reg(r.domain, seg[0].addr, seg[0].len, access, 0, rdm_key(&r),
				   0, &mr, NULL));
	}
	if (op == OP_REGV) {
		/* libfabric's util MR map (tcp;ofi_rxm) accepts RMA only into
		 * the first iovec of an MR; the second one is changed by the
		 * CPU here, through the registered (shadowed) pages. */
		for (size_t i = 0; i < seg[1].file_len; i++)
			seg[1].addr[i] = (char)pattern(i, SEED_NEW);
	}
	if (op == OP_READ) {
		/* A CPU store after registration: the peer must read it, and
		 * it must reach the file too. */
		seg[0].addr[pg + 5] = (char)pattern(pg + 5, SEED_NEW);
	}

	fence_mr = rdm_reg(&r, fence, sizeof(fence), FI_RECV);
	POST(&r, fi_recv(r.ep, fence, sizeof(fence), fi_mr_desc(fence_mr), r.peer, NULL));
	/* Without FI_MR_VIRT_ADDR, RMA addresses are offsets into the MR,
	 * counted across its iovecs. */
	for (int i = 0, off = 0; i < nseg; off += seg[i].len, i++)
		tgt[i] = (struct target){
			r.info->domain_attr->mr_mode & FI_MR_VIRT_ADDR ? (uintptr_t)seg[i].addr
								      : (uint64_t)off,
			seg[i].len, fi_mr_key(mr) };
	{
		int nsent = op == OP_REGV ? 1 : nseg;

		oob_send(sock, &nsent, sizeof(nsent));
		oob_send(sock, tgt, sizeof(tgt[0]) * nsent);
	}

	rdm_wait(&r, "fence message");

	/* What the application sees at once. */
	for (int i = 0; i < nseg; i++) {
		bool ok;

		if (op == OP_ATOMIC)
			ok = atomic_done(&seg[i], (uint8_t *)seg[i].addr);
		else if (op == OP_READ)
			ok = (uint8_t)seg[i].addr[pg + 5] == pattern(pg + 5, SEED_NEW);
		else
			ok = mem_holds(seg[i].addr, seg[i].file_len, want) &&
			     mem_holds(seg[i].addr + 4 * pg, tail_len, SEED_NEW + 10);
		if (!ok)
			die("server memory does not hold what the peer did (op %d)", op);
	}
	/* What the disk has before any sync. */
	if (op != OP_ATOMIC && op != OP_READ) {
		bool on_disk = file_holds(&seg[0], want, true);

		if (nseg > 1 && file_holds(&seg[1], want, true) != on_disk)
			die("the two iovecs of the MR disagree about shadowing");

		printf("server: before sync the disk has the %s data\n", on_disk ? "new" : "old");
		if (expect == EXPECT_RAW)
			printf("RAW before-sync %s\n", on_disk ? "new" : "old");
		if (expect == EXPECT_SHADOW && on_disk)
			die("new data on disk before any sync: the pages were not shadowed");
		if ((expect == EXPECT_NOHOOK || expect == EXPECT_NOSHADOW) && !on_disk)
			die("without a shadow the mapping should have carried the data");
	}

	if (use_fi_sync && expect == EXPECT_RAW && op != OP_ATOMIC && op != OP_READ) {
		for (int i = 0; i < nseg; i++)
			if (msync(seg[i].addr, seg[i].file_len, MS_SYNC) || fsync(seg[i].fd))
				die("msync/fsync: %s", strerror(errno));
		printf("RAW after-msync %s\n", file_holds(&seg[0], want, true) ? "new" : "old");
	} else if (use_fi_sync) {
		if (expect == EXPECT_NOHOOK) {
			for (int i = 0; i < nseg; i++)
				if (msync(seg[i].addr, seg[i].file_len, MS_SYNC))
					die("msync: %s", strerror(errno));
		} else if ((ret = engine_fi_sync(mr))) {
			die("safe_mr_fi_sync: %s", strerror(ret));
		}
		for (int i = 0; i < nseg && op != OP_ATOMIC; i++) {
			uint8_t c = 0;

			if (op == OP_READ ? pread(seg[i].fd, &c, 1, pg + 5) != 1 ||
					      c != pattern(pg + 5, SEED_NEW)
					  : !file_holds(&seg[i], want, true))
				die("after the sync the file lacks the data (segment %d)", i);
		}
		if (op == OP_ATOMIC && !atomic_file_done(&seg[0]))
			die("after the sync the file lacks the atomic results");
		printf("server: after %s the disk has the new data\n",
		       expect == EXPECT_NOHOOK ? "msync" : "safe_mr_fi_sync");
	}

	CHECK_FI(fi_close(&mr->fid));
	CHECK_FI(fi_close(&fence_mr->fid));
	if (expect == EXPECT_RAW) {
		printf("RAW after-close %s\n", op == OP_WRITE || op == OP_MIXED ?
		       (file_holds(&seg[0], want, true) ? "new" : "old") : "unchecked");
		goto out;
	}

	for (int i = 0; i < nseg; i++) {
		if (op == OP_ATOMIC) {
			if (!atomic_file_done(&seg[i]))
				die("after fi_close the file lacks the atomic results");
			continue;
		}
		if (op == OP_READ) {
			uint8_t c;

			if (pread(seg[i].fd, &c, 1, pg + 5) != 1 || c != pattern(pg + 5, SEED_NEW))
				die("after fi_close the file lacks the CPU store");
			continue;
		}
		if (!file_holds(&seg[i], want, true) || !file_holds(&seg[i], want, false))
			die("after fi_close the file lacks the data (segment %d)", i);
	}
	printf("server: after fi_close the file holds the data (O_DIRECT and pread)\n");
out:
	check_engine_stats("server");

	oob_send(sock, "D", 1);
	rdm_close(&r);
	for (int i = 0; i < nseg; i++) {
		munmap(seg[i].addr, seg[i].len);
		close(seg[i].fd);
		unlink(seg[i].path);
	}
}

/* ---- client ---- */
static void client(int sock)
{
	struct target tgt[NSEG_MAX];
	struct rdm r;
	struct fid_mr *mr, *fence_mr;
	struct seg local = { 0 };
	char fence[8] = "fence";
	char *buf;
	int nseg;
	char done;

	rdm_open(&r, FI_MSG | FI_RMA | (op == OP_ATOMIC ? FI_ATOMIC : 0), sock);
	rdm_connect(&r);
	oob_recv(sock, &nseg, sizeof(nseg));
	if (nseg < 1 || nseg > NSEG_MAX)
		die("bad segment count %d", nseg);
	oob_recv(sock, tgt, sizeof(tgt[0]) * nseg);

	if (op == OP_READ) {
		/* Read into a file mapping of our own, registered FI_READ:
		 * the provider writes into it, so it needs a shadow too. */
		file_seg(&local, "client", SEED_FILE + 5, NULL);
		if (tgt[0].len != local.len)
			die("length mismatch");
		buf = local.addr;
		mr = rdm_reg(&r, buf, local.len, FI_READ);
		POST(&r, fi_read(r.ep, buf, tgt[0].len, fi_mr_desc(mr), r.peer, tgt[0].addr,
				 tgt[0].key, NULL));
		rdm_wait(&r, "fi_read");
		for (size_t i = 0; i < local.len; i++) {
			unsigned int seed = i == pg + 5 ? SEED_NEW : SEED_FILE;

			if ((uint8_t)buf[i] != pattern(i, seed))
				die("fi_read: byte %zu is %#x, want %#x", i, (uint8_t)buf[i],
				    pattern(i, seed));
		}
		CHECK_FI(fi_close(&mr->fid));
		/* Our file now holds what we read (the shadow went back). */
		for (size_t i = 0; i < local.len; i++)
			if (i != pg + 5 && (uint8_t)buf[i] != pattern(i, SEED_FILE))
				die("fi_read: buffer changed after close");
		local.file_len = local.len;
		{
			uint8_t *chk = malloc(local.len);

			if (pread(local.fd, chk, local.len, 0) != (ssize_t)local.len ||
			    memcmp(chk, buf, local.len))
				die("client file does not hold what fi_read brought");
			free(chk);
		}
		printf("client: fi_read data correct, and in the client's own file\n");
		mr = NULL;
	} else if (op == OP_ATOMIC) {
		uint64_t *ops = calloc(64, sizeof(*ops));

		mr = rdm_reg(&r, ops, 64 * sizeof(*ops), FI_WRITE | FI_READ);
		for (size_t k = 0; k * pg + 8 <= FILE_LEN(pg); k++) {
			ops[k] = atomic_addend(k);
			POST(&r, fi_atomic(r.ep, &ops[k], 1, fi_mr_desc(mr), r.peer,
					   tgt[0].addr + k * pg, tgt[0].key, FI_UINT64, FI_SUM,
					   NULL));
			rdm_wait(&r, "fi_atomic");
		}
		buf = (char *)ops;
	} else {
		size_t max = 0;

		for (int i = 0; i < nseg; i++)
			max = tgt[i].len > max ? tgt[i].len : max;
		buf = malloc(max);
		mr = rdm_reg(&r, buf, max, FI_WRITE);
		for (int i = 0; i < nseg; i++) {
			for (size_t j = 0; j < tgt[i].len; j++)
				buf[j] = (char)(j < FILE_LEN(pg) || op != OP_MIXED ||
						j < 4 * pg ? pattern(j, SEED_NEW)
							   : pattern(j - 4 * pg, SEED_NEW + 10));
			POST(&r, fi_write(r.ep, buf, tgt[i].len, fi_mr_desc(mr), r.peer,
					  tgt[i].addr, tgt[i].key, NULL));
			rdm_wait(&r, "fi_write");
		}
	}

	/* Fence: the server sees this message only after the RMA landed. */
	fence_mr = rdm_reg(&r, fence, sizeof(fence), FI_SEND);
	POST(&r, fi_send(r.ep, fence, sizeof(fence), fi_mr_desc(fence_mr), r.peer, NULL));
	rdm_wait(&r, "fence send");
	oob_recv(sock, &done, 1);
	CHECK_FI(fi_close(&fence_mr->fid));
	if (mr)
		CHECK_FI(fi_close(&mr->fid));
	rdm_close(&r);
	if (op != OP_READ)
		free(buf);
	if (local.addr) {
		munmap(local.addr, local.len);
		close(local.fd);
		unlink(local.path);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "op", required_argument, NULL, 'o' },
		{ "sync", required_argument, NULL, 's' },
		{ "expect", required_argument, NULL, 'e' },
		{ 0 },
	};
	const char *ops[] = { "write", "read", "atomic", "regv", "mixed" };
	int c, sv[2], status;
	pid_t pid;

	pg = sysconf(_SC_PAGESIZE);
	op = -1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
				if (!strcmp(optarg, ops[i]))
					op = i;
			break;
		case 's':
			use_fi_sync = !strcmp(optarg, "fi_sync");
			if (!use_fi_sync && strcmp(optarg, "close"))
				die("--sync close|fi_sync");
			break;
		case 'e':
			if (!strcmp(optarg, "shadow"))
				expect = EXPECT_SHADOW;
			else if (!strcmp(optarg, "noshadow"))
				expect = EXPECT_NOSHADOW;
			else if (!strcmp(optarg, "nohook"))
				expect = EXPECT_NOHOOK;
			else if (!strcmp(optarg, "raw"))
				expect = EXPECT_RAW;
			else
				die("--expect shadow|noshadow|nohook|raw");
			break;
		default:
			die("usage: %s --op write|read|atomic|regv|mixed --sync close|fi_sync "
			    "--expect shadow|noshadow|nohook|raw", argv[0]);
		}
	}
	if ((int)op < 0)
		die("--op is required");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair: %s", strerror(errno));
	setvbuf(stdout, NULL, _IONBF, 0);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sv[0]);
		client(sv[1]);
		exit(0);
	}
	close(sv[1]);
	server(sv[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("client failed (status %#x)", status);
	printf("PASS: op=%s sync=%s expect=%s provider=%s\n", ops[op],
	       use_fi_sync ? "fi_sync" : "close",
	       expect == EXPECT_SHADOW ? "shadow" : expect == EXPECT_NOSHADOW ? "noshadow"
		     : expect == EXPECT_RAW ? "raw" : "nohook",
	       getenv("FI_PROVIDER") ? getenv("FI_PROVIDER") : "(any)");
	return 0;
}
