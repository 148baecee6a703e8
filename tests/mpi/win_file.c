/* SPDX-License-Identifier: MIT */
/* An ordinary MPI program (it knows nothing of safe_mr), built with the
 * mpicc of Open MPI or MPICH: every rank maps a file MAP_SHARED and exposes
 * it with MPI_Win_create; each rank writes into the next rank's window with
 * MPI_Put and MPI_Accumulate in a fence epoch and in a lock/unlock epoch,
 * reads it back with MPI_Get, and the owner msync(MS_SYNC)s its file and
 * reads it back with O_DIRECT (the disk).  Between the rounds, every rank
 * also sends messages from anonymous buffers that are unmapped and mapped
 * again at the same address (a registration cache that misses the munmap
 * hands the NIC the old pages: the message arrives stale).
 *
 *   win_file PATH... [--size BYTES] [--rounds N] [--msg BYTES]
 *
 * One window per PATH: rank r uses the file PATH.r (created, removed at
 * the end).  Per round, window and rank it prints the window as the CPU
 * sees it ("memory"), what MPI_Get read, and the disk (O_DIRECT after
 * msync); per round the messages.  Rank 0 ends with one line per PATH:
 *   win_file: PATH RESULT ok        every byte in memory and on disk
 *   win_file: PATH RESULT lost      the disk misses bytes the window holds
 *   win_file: PATH RESULT corrupt   the window or an MPI_Get was wrong
 *   win_file: PATH RESULT refused   MPI_Win_create failed (the job goes on)
 * and "win_file: RESULT ok|fail" for the job (messages included).
 * Exit status 0 only for "ok".
 *
 * Right after MPI_Win_create each rank msync()s its window: a checkpoint
 * of the file before the RMA phase.  It cleans the pages the NIC will
 * write, so without safe_mr on Linux 6.1 nothing marks them dirty again and
 * the put data never reaches the disk. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <mpi.h>

static int rank, nranks;

#define die(...) do { \
	fprintf(stderr, "win_file[%d]: FAIL: ", rank); \
	fprintf(stderr, __VA_ARGS__); \
	fputc('\n', stderr); \
	MPI_Abort(MPI_COMM_WORLD, 2); \
	exit(2); \
} while (0)

static uint32_t mix(uint32_t x)
{
	x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b;
	return x ^ (x >> 16);
}
/* Word i of rank t's file: before the job, put in round k, added by the
 * accumulate of round k. */
static uint32_t old_word(int t, size_t i) { return mix((uint32_t)i * 2654435761u + (uint32_t)t); }
static uint32_t put_word(int t, size_t i, int k) { return mix((uint32_t)i ^ ((uint32_t)k << 24) ^ ((uint32_t)t << 20) ^ 0x5a5a5a5au); }
static uint32_t acc_word(int t, size_t i, int k) { return ((uint32_t)i * (uint32_t)k + (uint32_t)t) & 0xffff; }

/* The window in four quarters; in each, one region that starts and ends
 * mid-page: 0 fence put, 1 fence accumulate, 2 lock put, 3 lock accumulate. */
static size_t nwords;
static size_t reg_lo(int q) { return (size_t)q * (nwords / 4) + 37; }
static size_t reg_hi(int q) { return (size_t)(q + 1) * (nwords / 4) - 61; }
static int region_of(size_t i)
{
	for (int q = 0; q < 4; q++)
		if (i >= reg_lo(q) && i < reg_hi(q))
			return q;
	return -1;
}

/* What word i of rank t's file holds after round k (0: before any). */
static uint32_t want_word(int t, size_t i, int k)
{
	int q = region_of(i);
	uint32_t w = old_word(t, i);

	if (k == 0 || q < 0)
		return w;
	if (q == 0 || q == 2)
		return put_word(t, i, k);
	for (int j = 1; j <= k; j++)
		w += acc_word(t, i, j);
	return w;
}

/* Words of buf (the whole window of rank t) that differ from round k;
 * changed: how many words the job changed (the put/accumulate regions). */
static size_t count_bad(const uint32_t *buf, int t, int k, size_t *changed, size_t *first)
{
	size_t bad = 0;

	*changed = 0;
	*first = SIZE_MAX;
	for (size_t i = 0; i < nwords; i++) {
		if (region_of(i) >= 0)
			(*changed)++;
		if (buf[i] != want_word(t, i, k)) {
			if (!bad)
				*first = i;
			bad++;
		}
	}
	return bad;
}

static size_t disk_bad(const char *path, int k, size_t *changed, size_t *first)
{
	size_t len = nwords * 4;
	uint32_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open(path, O_RDONLY | O_DIRECT);
	struct statfs sfs;

	/* tmpfs before Linux 6.6 has no O_DIRECT; its page cache is the file. */
	if (fd < 0 && errno == EINVAL && !statfs(path, &sfs) && sfs.f_type == TMPFS_MAGIC)
		fd = open(path, O_RDONLY);
	if (buf == MAP_FAILED || fd < 0)
		die("O_DIRECT open %s: %s", path, strerror(errno));
	if (pread(fd, buf, len, 0) != (ssize_t)len)
		die("O_DIRECT read %s: %s", path, strerror(errno));
	close(fd);
	size_t bad = count_bad(buf, rank, k, changed, first);
	munmap(buf, len);
	return bad;
}

/* Origin side of one round into target t's window. */
static void rma_round(MPI_Win win, int t, int k, uint32_t *src, uint32_t *got, size_t *get_bad)
{
	for (size_t i = 0; i < nwords; i++)
		src[i] = (region_of(i) == 0 || region_of(i) == 2) ? put_word(t, i, k) : acc_word(t, i, k);

	/* Fence epoch: put and accumulate, then a get in the next epoch. */
	MPI_Win_fence(0, win);
	MPI_Put(src + reg_lo(0), (int)(reg_hi(0) - reg_lo(0)), MPI_UINT32_T, t,
		(MPI_Aint)reg_lo(0), (int)(reg_hi(0) - reg_lo(0)), MPI_UINT32_T, win);
	MPI_Accumulate(src + reg_lo(1), (int)(reg_hi(1) - reg_lo(1)), MPI_UINT32_T, t,
		       (MPI_Aint)reg_lo(1), (int)(reg_hi(1) - reg_lo(1)), MPI_UINT32_T, MPI_SUM, win);
	MPI_Win_fence(0, win);
	MPI_Get(got, (int)(reg_hi(1) - reg_lo(0)), MPI_UINT32_T, t, (MPI_Aint)reg_lo(0),
		(int)(reg_hi(1) - reg_lo(0)), MPI_UINT32_T, win);
	MPI_Win_fence(0, win);
	for (size_t i = reg_lo(0); i < reg_hi(1); i++)
		if (got[i - reg_lo(0)] != want_word(t, i, k))
			(*get_bad)++;

	/* Passive target: exclusive lock for the writes, shared for the get. */
	MPI_Win_lock(MPI_LOCK_EXCLUSIVE, t, 0, win);
	MPI_Put(src + reg_lo(2), (int)(reg_hi(2) - reg_lo(2)), MPI_UINT32_T, t,
		(MPI_Aint)reg_lo(2), (int)(reg_hi(2) - reg_lo(2)), MPI_UINT32_T, win);
	MPI_Accumulate(src + reg_lo(3), (int)(reg_hi(3) - reg_lo(3)), MPI_UINT32_T, t,
		       (MPI_Aint)reg_lo(3), (int)(reg_hi(3) - reg_lo(3)), MPI_UINT32_T, MPI_SUM, win);
	MPI_Win_unlock(t, win);
	MPI_Win_lock(MPI_LOCK_SHARED, t, 0, win);
	MPI_Get(got, (int)(reg_hi(3) - reg_lo(2)), MPI_UINT32_T, t, (MPI_Aint)reg_lo(2),
		(int)(reg_hi(3) - reg_lo(2)), MPI_UINT32_T, win);
	MPI_Win_unlock(t, win);
	for (size_t i = reg_lo(2); i < reg_hi(3); i++)
		if (got[i - reg_lo(2)] != want_word(t, i, k))
			(*get_bad)++;
}

/* Messages from and into anonymous buffers that are unmapped after every
 * round and mapped again at the same addresses: round k's payload differs
 * from every other round's.  Returns the words that arrived wrong. */
static size_t p2p_round(int k, size_t msg, void **sbuf_at, void **rbuf_at)
{
	int to = (rank + 1) % nranks, from = (rank + nranks - 1) % nranks;
	size_t n = msg / 4, bad = 0;
	int fl = MAP_PRIVATE | MAP_ANONYMOUS | (*sbuf_at ? MAP_FIXED_NOREPLACE : 0);
	uint32_t *s = mmap(*sbuf_at, msg, PROT_READ | PROT_WRITE, fl, -1, 0);
	uint32_t *r = mmap(*rbuf_at, msg, PROT_READ | PROT_WRITE, fl, -1, 0);

	if (s == MAP_FAILED || r == MAP_FAILED)
		die("p2p round %d: mmap at the old address: %s", k, strerror(errno));
	if ((*sbuf_at && (void *)s != *sbuf_at) || (*rbuf_at && (void *)r != *rbuf_at))
		die("p2p round %d: buffers not at the old addresses", k);
	*sbuf_at = s;
	*rbuf_at = r;
	for (size_t i = 0; i < n; i++)
		s[i] = mix((uint32_t)i ^ ((uint32_t)k << 26) ^ ((uint32_t)rank << 22));
	/* Several messages per round, both directions, the buffers reused. */
	for (int m = 0; m < 3; m++) {
		MPI_Sendrecv(s, (int)n, MPI_UINT32_T, to, m, r, (int)n, MPI_UINT32_T, from, m,
			     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		for (size_t i = 0; i < n; i++)
			if (r[i] != mix((uint32_t)i ^ ((uint32_t)k << 26) ^ ((uint32_t)from << 22)))
				bad++;
		memset(r, 0, msg);
	}
	if (munmap(s, msg) || munmap(r, msg))
		die("munmap: %s", strerror(errno));
	return bad;
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	if (*end || !v)
		die("bad size %s", s);
	return (size_t)v;
}

/* One window per PATH argument. */
struct win_file {
	const char *arg;
	char path[4096];
	int fd;
	uint32_t *base;
	MPI_Win win;
	bool refused;
	unsigned long long bad[5];	/* memory, get, disk, -, after free */
};

/* Map PATH.rank and expose it.  MPI_ERRORS_RETURN: a window the MPI
 * library cannot register (every rank's file is on the same filesystem,
 * so all ranks fail alike) is reported, and the job goes on with the
 * other windows. */
static void open_window(struct win_file *w, size_t size)
{
	uint32_t *old = malloc(size);

	snprintf(w->path, sizeof(w->path), "%s.%d", w->arg, rank);
	w->fd = open(w->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (w->fd < 0 || !old)
		die("open %s: %s", w->path, strerror(errno));
	for (size_t i = 0; i < nwords; i++)
		old[i] = old_word(rank, i);
	if (pwrite(w->fd, old, size, 0) != (ssize_t)size || fsync(w->fd))
		die("writing %s: %s", w->path, strerror(errno));
	free(old);
	w->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
	if (w->base == MAP_FAILED)
		die("mmap %s: %s", w->path, strerror(errno));
	int rc = MPI_Win_create(w->base, (MPI_Aint)size, 4, MPI_INFO_NULL, MPI_COMM_WORLD, &w->win);
	int mine = rc == MPI_SUCCESS, all;
	MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
	if (!all) {
		char msg[MPI_MAX_ERROR_STRING] = "";
		int len = 0;

		if (rc != MPI_SUCCESS)
			MPI_Error_string(rc, msg, &len);
		printf("win_file[%d]: %s: MPI_Win_create refused: %s\n", rank, w->path,
		       rc == MPI_SUCCESS ? "(on another rank)" : msg);
		if (rc == MPI_SUCCESS)
			MPI_Win_free(&w->win);
		w->refused = true;
		return;
	}
	/* A checkpoint before the RMA phase (see the top of the file). */
	if (msync(w->base, size, MS_SYNC))
		die("msync after MPI_Win_create: %s", strerror(errno));
	printf("win_file[%d]: window %zu bytes on %s\n", rank, size, w->path);
}

int main(int argc, char **argv)
{
	size_t size = 1 << 20, msg = 256 << 10;
	int rounds = 3, nwin = 0;
	struct win_file wins[16];

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int a = 1; a < argc; a++) {
		if (a + 1 < argc && !strcmp(argv[a], "--size"))
			size = parse_size(argv[++a]);
		else if (a + 1 < argc && !strcmp(argv[a], "--rounds"))
			rounds = atoi(argv[++a]);
		else if (a + 1 < argc && !strcmp(argv[a], "--msg"))
			msg = parse_size(argv[++a]);
		else if (argv[a][0] == '-' || nwin == 16)
			die("usage: win_file PATH... [--size BYTES] [--rounds N] [--msg BYTES]");
		else
			wins[nwin++] = (struct win_file){ .arg = argv[a] };
	}
	if (!nwin || nranks < 2 || rounds < 1 || size % 4096 || size < 65536 || msg % 4096)
		die("needs a PATH, 2+ ranks, --rounds >= 1, --size a multiple of 4096 >= 64 KiB, --msg of 4096");
	nwords = size / 4;
	for (int w = 0; w < nwin; w++)
		open_window(&wins[w], size);
	printf("win_file[%d]: %d ranks, %d rounds, messages %zu bytes\n", rank, nranks, rounds, msg);

	int t = (rank + 1) % nranks;
	uint32_t *src = malloc(size), *got = malloc(size);
	size_t changed = 0, first, get_bad;
	unsigned long long msg_bad = 0;
	void *sbuf_at = NULL, *rbuf_at = NULL;
	if (!src || !got)
		die("malloc");
	for (int k = 1; k <= rounds; k++) {
		for (int i = 0; i < nwin; i++) {
			struct win_file *w = &wins[i];

			if (w->refused)
				continue;
			get_bad = 0;
			rma_round(w->win, t, k, src, got, &get_bad);
			/* The owner looks at its window after every origin is done. */
			MPI_Barrier(MPI_COMM_WORLD);
			MPI_Win_lock(MPI_LOCK_SHARED, rank, 0, w->win);
			MPI_Win_sync(w->win);
			size_t m = count_bad(w->base, rank, k, &changed, &first);
			MPI_Win_unlock(rank, w->win);
			if (msync(w->base, size, MS_SYNC))
				die("msync: %s", strerror(errno));
			size_t d = disk_bad(w->path, k, &changed, &first);
			printf("win_file[%d]: %s round %d: memory %zu bad words, MPI_Get %zu bad, disk after msync %zu of %zu changed words missing\n",
			       rank, w->path, k, m, get_bad, d, changed);
			w->bad[0] += m;
			w->bad[1] += get_bad;
			w->bad[2] += d;
		}
		size_t p = p2p_round(k, msg, &sbuf_at, &rbuf_at);
		printf("win_file[%d]: round %d: p2p 3 messages of %zu bytes at %p/%p: %zu bad words\n",
		       rank, k, msg, sbuf_at, rbuf_at, p);
		msg_bad += p;
		MPI_Barrier(MPI_COMM_WORLD);
	}
	for (int i = 0; i < nwin; i++) {
		struct win_file *w = &wins[i];

		if (!w->refused) {
			MPI_Win_free(&w->win);
			if (munmap(w->base, size))
				die("munmap: %s", strerror(errno));
			w->bad[4] = disk_bad(w->path, rounds, &changed, &first);
		}
	}

	/* Rank 0 reports for everyone: one line per PATH, then the job. */
	unsigned long long all[5], total = 0, p2p_all;
	bool ok = true;
	MPI_Reduce(&msg_bad, &p2p_all, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
	for (int i = 0; i < nwin; i++) {
		struct win_file *w = &wins[i];

		MPI_Reduce(w->bad, all, 5, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
		close(w->fd);
		unlink(w->path);
		if (rank)
			continue;
		const char *v = w->refused ? "refused" : all[0] || all[1] ? "corrupt" : all[2] ? "lost" : "ok";
		printf("win_file: %s RESULT %s memory_bad=%llu get_bad=%llu disk_missing=%llu after_free_missing=%llu\n",
		       w->arg, v, all[0], all[1], all[2], all[4]);
		ok = ok && !strcmp(v, "ok");
		total += all[0] + all[1] + all[2];
	}
	MPI_Finalize();
	if (rank)
		return 0;
	printf("win_file: RESULT %s (%d windows, %llu bad words) p2p_bad=%llu\n",
	       ok && !p2p_all ? "ok" : "fail", nwin, total, p2p_all);
	return ok && !p2p_all ? 0 : 1;
}
