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
 *   fi_rma_file --op rereg|overlap|cache [--rounds N] [--cache hit|miss]
 *               --expect shadow|noshadow|nohook
 *
 * rereg/overlap register the same file range again and again (see
 * "rounds" below): a provider's MR cache must not hand back a
 * registration of an old shadow.  --cache asserts what a probe finds
 * (an anonymous buffer registered twice gets the same key: cache hit).
 * --self-swap raw|libc (control, no hook): the test swaps the pages the
 * way the engine does, through a raw mmap syscall or libc's mmap, to show
 * what a swap the cache's monitor does not see costs.
 *
 * shadow:   FI_HOOK=safe_mr is active and must have shadowed the file pages:
 *           until the sync the disk keeps the old data.
 * noshadow: the hook is loaded but must not shadow (FI_SAFE_MR_MODE=off).
 * nohook:   plain libfabric; records what the provider itself does.
 * raw:      plain libfabric on a NIC that pins (verbs): only reports what
 *           the disk holds at each step ("RAW <step> old|new"), asserts
 *           nothing about it; used by the VM checks to show the loss.
 * Files go to FI_TEST_DIR (default /tmp), which must not be tmpfs.
 *
 * Two nodes: --listen PORT runs the server only and takes the client's
 * out-of-band connection on TCP PORT; --connect HOST:PORT runs the client
 * only (the VM cluster's siw check).  FI_RMA_NODE is each side's own
 * address. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <safe_mr.h>

#include "fi_util.h"

enum op { OP_WRITE, OP_READ, OP_ATOMIC, OP_REGV, OP_MIXED, OP_REREG, OP_OVERLAP, OP_CACHE };
enum expect { EXPECT_SHADOW, EXPECT_NOSHADOW, EXPECT_NOHOOK, EXPECT_RAW };
enum swap { SWAP_NONE, SWAP_RAW, SWAP_LIBC };

static enum op op;
static enum expect expect;
static bool use_fi_sync;
static size_t pg;
static size_t want_shadow_bytes;
static enum swap self_swap;

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

/* What a file (or memory) should hold: pattern(s0) before byte `split`,
 * pattern(s1) from there on. */
struct want {
	size_t split;
	unsigned int s0, s1;
};

static unsigned int want_seed(const struct want *w, size_t i)
{
	return i < w->split ? w->s0 : w->s1;
}

static bool bytes_hold(const uint8_t *b, size_t from, size_t to, const struct want *w)
{
	for (size_t i = from; i < to; i++)
		if (b[i] != pattern(i, want_seed(w, i)))
			return false;
	return true;
}

/* Bytes [from, to) of the file as the disk has it (O_DIRECT) or as
 * read() has it. */
static bool file_range_holds(const struct seg *s, size_t from, size_t to,
			     const struct want *w, bool direct)
{
	size_t cap = (s->file_len + pg - 1) / pg * pg;
	uint8_t *buf;
	struct stat st;
	ssize_t n;
	bool ok;
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
	ok = bytes_hold(buf, from, to, w);
	free(buf);
	return ok;
}

static bool file_holds(const struct seg *s, unsigned int seed, bool direct)
{
	struct want w = { 0, seed, seed };

	return file_range_holds(s, 0, s->file_len, &w, direct);
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

/* ---- rounds: the same file range registered again and again ----
 *
 * A provider's MR cache (verbs: ofi_mr_cache) keeps a registration after
 * fi_close(mr) and hands it back to a later fi_mr_reg of a range it
 * covers.  Under the hook every registration gets a fresh shadow at the
 * same addresses, and fi_close puts the file pages back: a cached
 * registration still pins the OLD shadow, so the peer's writes through
 * it would land in orphaned pages and be lost.  The engine's page swaps
 * must be seen by the cache's monitor (memhooks, userfaultfd), which then
 * drops the entry.  Each round the peer writes new data and the server
 * checks its memory (the NIC wrote where the CPU looks) and, after
 * fi_close, the disk (O_DIRECT).
 *
 *   rereg:   register the whole file, peer writes, close; N times.
 *   overlap: A = pages [0,2), peer writes A; B = [1 page, EOF) while A is
 *            open, peer writes B; close A; peer writes B again; close B.
 *   cache:   N rereg rounds, then N overlap rounds on the same mapping
 *            (one process: the cache keeps entries of both kinds).
 */

/* What the server asks the client to do over the socketpair. */
struct wreq {
	uint64_t addr, len, key;
	uint64_t off;		/* file offset of addr: pattern index */
	uint32_t seed;
	uint32_t stop;
};

static struct fid_mr *round_reg(struct rdm *r, void *addr, size_t len)
{
	struct fid_mr *mr;

	CHECK_FI(fi_mr_reg(r->domain, addr, len, FI_REMOTE_READ | FI_REMOTE_WRITE, 0,
			   rdm_key(r), 0, &mr, NULL));
	return mr;
}

/* The peer fi_writes pattern(seed) into [off, off + len) of the file
 * mapping through mr, which starts at file offset off (without
 * FI_MR_VIRT_ADDR the address is an offset into the MR: 0); returns when
 * the data landed (the fence message). */
static void round_write(struct rdm *r, const struct seg *s, struct fid_mr *mr,
			struct fid_mr *fence_mr, char *fence, size_t off, size_t len,
			unsigned int seed)
{
	struct wreq q = {
		.addr = r->info->domain_attr->mr_mode & FI_MR_VIRT_ADDR
				? (uintptr_t)s->addr + off : 0,
		.len = len, .key = fi_mr_key(mr), .off = off, .seed = seed,
	};

	POST(r, fi_recv(r->ep, fence, 64, fi_mr_desc(fence_mr), r->peer, NULL));
	oob_send(r->sock, &q, sizeof(q));
	rdm_wait(r, "fence message");
}

/* The server's memory must show what the NIC wrote: if it does not, the
 * write went to pages the CPU no longer sees. */
static void round_check_mem(const struct seg *s, const struct want *w, const struct want *before,
			    int round, const char *step, uint64_t key)
{
	if (bytes_hold((const uint8_t *)s->addr, 0, s->file_len, w))
		return;
	die("round %d %s: the server's memory lacks the peer's fi_write (rkey %#llx)%s", round,
	    step, (unsigned long long)key,
	    bytes_hold((const uint8_t *)s->addr, 0, s->file_len, before)
		    ? ": it still holds the old data, so the NIC wrote into other pages "
		      "(a cached registration of an old shadow?) -- DATA LOST"
		    : "");
}

/* After a close: the disk (O_DIRECT), read() and the mapping agree. */
static void round_check_file(const struct seg *s, size_t from, size_t to, const struct want *w,
			     int round, const char *step)
{
	if (!file_range_holds(s, from, to, w, true))
		die("round %d %s: the disk (O_DIRECT) lacks the data in [%zu, %zu)%s", round, step,
		    from, to, bytes_hold((const uint8_t *)s->addr, from, to, w)
				      ? " although the memory has it" : " -- DATA LOST");
	if (!file_range_holds(s, from, to, w, false))
		die("round %d %s: read() lacks the data in [%zu, %zu)", round, step, from, to);
	if (!bytes_hold((const uint8_t *)s->addr, from, to, w))
		die("round %d %s: the mapping lacks the data in [%zu, %zu)", round, step, from, to);
}

/* Before any close in a round the disk must still hold what the previous
 * round left (shadow) or already the new data (no shadow). */
static void round_check_disk_before(const struct seg *s, const struct want *old,
				    const struct want *now, int round)
{
	bool shadowed = expect == EXPECT_SHADOW || self_swap;
	bool is_old = file_range_holds(s, 0, s->file_len, old, true);
	bool is_new = file_range_holds(s, 0, s->file_len, now, true);

	if (shadowed && !is_old)
		die("round %d: the disk changed before fi_close: the pages were not shadowed", round);
	if (!shadowed && !is_new)
		die("round %d: without a shadow the mapping should have carried the data", round);
}

/* libfabric's userfaultfd monitor holds a userfaultfd; memhooks does not. */
static bool have_userfaultfd(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	bool found = false;

	if (!d)
		die("opendir /proc/self/fd: %s", strerror(errno));
	while (!found && (e = readdir(d))) {
		char path[300], link[64];
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = 0;
			found = strstr(link, "userfaultfd") != NULL;
		}
	}
	closedir(d);
	return found;
}

/* --self-swap raw|libc (a control, without the hook): the test swaps the
 * pages itself, as the engine does -- a memfd copy of the file mapped
 * MAP_FIXED over the file pages before fi_mr_reg, written back and the
 * file mapped again after fi_close -- through a raw mmap syscall (that
 * libfabric's memhooks monitor cannot see) or libc's mmap. */
static void swap_map(void *addr, size_t len, int fd)
{
	int prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED | MAP_FIXED;
	void *p = self_swap == SWAP_RAW ? (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, 0)
					: mmap(addr, len, prot, flags, fd, 0);

	if (p != addr)
		die("MAP_FIXED swap at %p: %s", addr, strerror(errno));
}

static int self_shadow_on(const struct seg *s)
{
	int fd = memfd_create("fi_rma_file-swap", MFD_CLOEXEC);
	char *buf = malloc(s->file_len);

	if (fd < 0 || !buf || ftruncate(fd, (s->len + pg - 1) / pg * pg))
		die("memfd: %s", strerror(errno));
	if (pread(s->fd, buf, s->file_len, 0) != (ssize_t)s->file_len ||
	    pwrite(fd, buf, s->file_len, 0) != (ssize_t)s->file_len)
		die("copy to memfd: %s", strerror(errno));
	free(buf);
	swap_map(s->addr, s->len, fd);
	return fd;
}

static void self_shadow_off(const struct seg *s, int fd)
{
	if (pwrite(s->fd, s->addr, s->file_len, 0) != (ssize_t)s->file_len || fsync(s->fd))
		die("write back: %s", strerror(errno));
	swap_map(s->addr, s->len, s->fd);
	close(fd);
}

/* Cache probe: register an anonymous buffer twice; the same key back
 * means the provider's MR cache served the second registration. */
static void cache_probe(struct rdm *r, const char *want)
{
	char *buf = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fid_mr *mr;
	uint64_t k1, k2;
	bool hit;

	if (buf == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	memset(buf, 1, 2 * pg);
	mr = round_reg(r, buf, 2 * pg);
	k1 = fi_mr_key(mr);
	CHECK_FI(fi_close(&mr->fid));
	mr = round_reg(r, buf, 2 * pg);
	k2 = fi_mr_key(mr);
	CHECK_FI(fi_close(&mr->fid));
	hit = k1 == k2;
	printf("server: MR cache probe: %s (anonymous buffer registered twice: rkey %#llx, %#llx; "
	       "userfaultfd open: %s)\n", hit ? "hit" : "miss", (unsigned long long)k1,
	       (unsigned long long)k2, have_userfaultfd() ? "yes" : "no");
	if (want && strcmp(want, hit ? "hit" : "miss"))
		die("MR cache probe: %s, want %s (is the provider's MR cache %s?)",
		    hit ? "hit" : "miss", want, hit ? "disabled" : "enabled");
	munmap(buf, 2 * pg);
}

static void server_rounds(int sock, int rounds, const char *cache_want)
{
	struct seg s = { 0 };
	struct rdm r;
	struct fid_mr *fence_mr;
	char fence[64];
	struct wreq stop = { .stop = 1 };
	/* What the file holds at the start of a round. */
	struct want file = { 0, SEED_FILE, SEED_FILE };
	uint64_t prev_key = 0, prev_key_b = 0;
	unsigned int hits = 0;

	rdm_open(&r, FI_MSG | FI_RMA, sock);
	rdm_connect(&r);
	cache_probe(&r, cache_want);
	file_seg(&s, "rounds", SEED_FILE, NULL);
	want_shadow_bytes = 0;
	fence_mr = rdm_reg(&r, fence, sizeof(fence), FI_RECV);

	for (int k = 1; k <= (op == OP_CACHE ? 2 * rounds : rounds); k++) {
		unsigned int seed = 10 + 3 * k;
		bool rereg = op == OP_REREG || (op == OP_CACHE && k <= rounds);

		if (rereg) {
			int sfd = self_swap ? self_shadow_on(&s) : -1;
			struct fid_mr *mr = round_reg(&r, s.addr, s.len);
			struct want now = { 0, seed, seed };
			uint64_t key = fi_mr_key(mr);

			want_shadow_bytes += (s.len + pg - 1) / pg * pg;
			hits += key == prev_key;
			round_write(&r, &s, mr, fence_mr, fence, 0, s.file_len, seed);
			round_check_mem(&s, &now, &file, k, "after fi_write", key);
			round_check_disk_before(&s, &file, &now, k);
			CHECK_FI(fi_close(&mr->fid));
			if (self_swap)
				self_shadow_off(&s, sfd);
			round_check_file(&s, 0, s.file_len, &now, k, "after fi_close");
			printf("server: round %d: rkey %#llx%s, data in memory, on disk after fi_close\n",
			       k, (unsigned long long)key, key == prev_key ? " (same as before)" : "");
			file = now;
			prev_key = key;
			continue;
		}

		/* overlap */
		struct fid_mr *a, *b;
		uint64_t ka, kb;
		/* A covers [0, 2 pages); past it the file's data stays. */
		struct want w1 = { 2 * pg, seed, file.s1 };
		struct want w2 = { pg, seed, seed + 1 };	/* then B */
		struct want w3 = { pg, seed, seed + 2 };	/* B again, A closed */

		a = round_reg(&r, s.addr, 2 * pg);
		ka = fi_mr_key(a);
		round_write(&r, &s, a, fence_mr, fence, 0, 2 * pg, seed);
		round_check_mem(&s, &w1, &file, k, "after fi_write through A", ka);
		b = round_reg(&r, s.addr + pg, s.len - pg);
		kb = fi_mr_key(b);
		hits += kb == prev_key_b;
		round_write(&r, &s, b, fence_mr, fence, pg, s.file_len - pg, seed + 1);
		round_check_mem(&s, &w2, &w1, k, "after fi_write through B", kb);
		round_check_disk_before(&s, &file, &w2, k);
		CHECK_FI(fi_close(&a->fid));
		/* Page 0 only A had: back in the file now. */
		round_check_file(&s, 0, pg, &w2, k, "after fi_close(A)");
		round_write(&r, &s, b, fence_mr, fence, pg, s.file_len - pg, seed + 2);
		round_check_mem(&s, &w3, &w2, k, "after fi_write through B, A closed", kb);
		CHECK_FI(fi_close(&b->fid));
		round_check_file(&s, 0, s.file_len, &w3, k, "after fi_close(B)");
		want_shadow_bytes += (s.len + pg - 1) / pg * pg;
		printf("server: round %d: rkeys A %#llx B %#llx%s, data in memory, on disk after "
		       "each fi_close\n", k, (unsigned long long)ka, (unsigned long long)kb,
		       kb == prev_key_b ? " (B same as before)" : "");
		file = w3;
		prev_key_b = kb;
	}
	printf("server: %d rounds, %u registrations with the previous round's rkey\n",
	       op == OP_CACHE ? 2 * rounds : rounds, hits);
	check_engine_stats("server");
	oob_send(sock, &stop, sizeof(stop));
	CHECK_FI(fi_close(&fence_mr->fid));
	rdm_close(&r);
	munmap(s.addr, s.len);
	close(s.fd);
	unlink(s.path);
}

static void client_rounds(int sock)
{
	struct rdm r;
	struct fid_mr *mr, *fence_mr;
	char fence[8] = "fence";
	size_t max = FILE_LEN(pg);
	char *buf = malloc(max);
	struct wreq q;

	rdm_open(&r, FI_MSG | FI_RMA, sock);
	rdm_connect(&r);
	mr = rdm_reg(&r, buf, max, FI_WRITE);
	fence_mr = rdm_reg(&r, fence, sizeof(fence), FI_SEND);
	for (;;) {
		oob_recv(sock, &q, sizeof(q));
		if (q.stop)
			break;
		if (q.len > max)
			die("bad request length %llu", (unsigned long long)q.len);
		for (size_t j = 0; j < q.len; j++)
			buf[j] = (char)pattern(q.off + j, q.seed);
		POST(&r, fi_write(r.ep, buf, q.len, fi_mr_desc(mr), r.peer, q.addr, q.key, NULL));
		rdm_wait(&r, "fi_write");
		/* Fence: the server sees this message only after the write landed. */
		POST(&r, fi_send(r.ep, fence, sizeof(fence), fi_mr_desc(fence_mr), r.peer, NULL));
		rdm_wait(&r, "fence send");
	}
	CHECK_FI(fi_close(&fence_mr->fid));
	CHECK_FI(fi_close(&mr->fid));
	rdm_close(&r);
	free(buf);
}

/* --listen PORT: one TCP connection from the client, as the socketpair. */
static int oob_listen(const char *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(port)) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), s;

	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1))
		die("listen on TCP port %s: %s", port, strerror(errno));
	printf("server: waiting for the client on TCP port %s\n", port);
	s = accept(l, NULL, NULL);
	if (s < 0)
		die("accept: %s", strerror(errno));
	close(l);
	return s;
}

/* --connect HOST:PORT, retried for 30 s (the server may start later). */
static int oob_connect(const char *hostport)
{
	char host[256], *colon;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;

	snprintf(host, sizeof(host), "%s", hostport);
	colon = strrchr(host, ':');
	if (!colon)
		die("--connect HOST:PORT");
	*colon = 0;
	if (getaddrinfo(host, colon + 1, &hints, &res))
		die("getaddrinfo %s", hostport);
	for (int i = 0; i < 300; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);

		if (s >= 0 && !connect(s, res->ai_addr, res->ai_addrlen)) {
			freeaddrinfo(res);
			return s;
		}
		close(s);
		usleep(100000);
	}
	die("connect to %s: %s", hostport, strerror(errno));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "op", required_argument, NULL, 'o' },
		{ "sync", required_argument, NULL, 's' },
		{ "expect", required_argument, NULL, 'e' },
		{ "rounds", required_argument, NULL, 'n' },
		{ "cache", required_argument, NULL, 'c' },
		{ "self-swap", required_argument, NULL, 'w' },
		{ "listen", required_argument, NULL, 'L' },
		{ "connect", required_argument, NULL, 'C' },
		{ 0 },
	};
	const char *ops[] = { "write", "read", "atomic", "regv", "mixed", "rereg", "overlap", "cache" };
	const char *cache_want = NULL, *listen_port = NULL, *connect_to = NULL;
	int c, sv[2], status, rounds = 4;
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
		case 'n':
			rounds = atoi(optarg);
			if (rounds < 1)
				die("--rounds N: N >= 1");
			break;
		case 'c':
			if (strcmp(optarg, "hit") && strcmp(optarg, "miss"))
				die("--cache hit|miss");
			cache_want = optarg;
			break;
		case 'w':
			self_swap = !strcmp(optarg, "raw") ? SWAP_RAW
				    : !strcmp(optarg, "libc") ? SWAP_LIBC : SWAP_NONE;
			if (!self_swap)
				die("--self-swap raw|libc");
			break;
		case 'L':
			listen_port = optarg;
			break;
		case 'C':
			connect_to = optarg;
			break;
		default:
			die("usage: %s --op write|read|atomic|regv|mixed --sync close|fi_sync "
			    "--expect shadow|noshadow|nohook|raw\n"
			    "       %s --op rereg|overlap|cache [--rounds N] [--cache hit|miss] "
			    "--expect shadow|noshadow|nohook\n"
			    "       %s --op rereg --self-swap raw|libc --expect nohook", argv[0], argv[0],
			    argv[0]);
		}
	}
	if ((int)op < 0)
		die("--op is required");
	if (op >= OP_REREG && (use_fi_sync || expect == EXPECT_RAW))
		die("--op rereg|overlap|cache: fi_close is the sync point; --expect raw is not supported");
	if (self_swap && (op != OP_REREG || expect != EXPECT_NOHOOK))
		die("--self-swap goes with --op rereg --expect nohook (no hook)");
	if (cache_want && op < OP_REREG)
		die("--cache goes with --op rereg|overlap|cache");
	setvbuf(stdout, NULL, _IONBF, 0);
	if (connect_to) {
		int s = oob_connect(connect_to);

		if (op >= OP_REREG)
			client_rounds(s);
		else
			client(s);
		printf("PASS: client op=%s\n", ops[op]);
		return 0;
	}
	if (listen_port) {
		pid = 0;
		sv[0] = oob_listen(listen_port);
		goto serve;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair: %s", strerror(errno));
	setvbuf(stdout, NULL, _IONBF, 0);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sv[0]);
		if (op >= OP_REREG)
			client_rounds(sv[1]);
		else
			client(sv[1]);
		exit(0);
	}
	close(sv[1]);
serve:
	if (op >= OP_REREG)
		server_rounds(sv[0], rounds, cache_want);
	else
		server(sv[0]);
	if (pid && (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)))
		die("client failed (status %#x)", status);
	printf("PASS: op=%s sync=%s expect=%s provider=%s\n", ops[op],
	       use_fi_sync ? "fi_sync" : "close",
	       expect == EXPECT_SHADOW ? "shadow" : expect == EXPECT_NOSHADOW ? "noshadow"
		     : expect == EXPECT_RAW ? "raw" : "nohook",
	       getenv("FI_PROVIDER") ? getenv("FI_PROVIDER") : "(any)");
	return 0;
}
