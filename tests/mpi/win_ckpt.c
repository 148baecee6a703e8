/* SPDX-License-Identifier: MIT */
/* An ordinary MPI program (it knows nothing of safe_mr) for the cluster
 * checks: windows on MAP_SHARED file mappings that other ranks, on other
 * nodes, write into with MPI_Put and MPI_Accumulate (fence and lock epochs)
 * and read back with MPI_Get; the window's owner msync()s after every round
 * and reads its file back with O_DIRECT (on NFS: from the server).
 *
 *   win_ckpt --owner R PATH... [--size BYTES] [--rounds N] [--keep]
 *       Rank R exposes one window per PATH (the whole file, BYTES long);
 *       every other rank writes its own slice of it.  The others expose
 *       empty windows.
 *   win_ckpt --all PATH [--size BYTES] [--rounds N] [--keep]
 *       N-to-1: every rank exposes its own region of the one file PATH
 *       (rank r: bytes [r*BYTES, (r+1)*BYTES)), written by rank r-1.
 *   win_ckpt --verify PATH --owner R|--all --ranks N [--region R] [--size..] [--rounds..]
 *       No MPI traffic: read PATH (O_DIRECT) on this node and compare it
 *       with what the job above must have left there after --rounds
 *       ("after the job, another node reads the NIC's bytes"); --region:
 *       only rank R's region.
 *   --hold SECS (jobs): after the last round's puts, before its msync,
 *       each owner prints "win_ckpt: HOLD" and waits SECS: a job killed
 *       or a server restarted in the middle of a checkpoint.
 *
 * Right after MPI_Win_create each owner msync()s its window (a checkpoint
 * before the RMA phase), which cleans the pages the NIC will write: without
 * safe_mr on Linux 6.1 nothing marks them dirty again.
 * Output, from each owner, one line per window:
 *   win_ckpt: PATH RESULT ok|lost|corrupt|refused owner=R node=HOST kernel=K ...
 * and from --verify "win_ckpt: PATH VERIFY ok|bad ...".  Exit status 0 only
 * if every line says ok. */
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
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <mpi.h>

static int rank = -1, nranks, owner = -1, rounds = 2, only_region = -1, hold = -1;
static bool all_mode, keep, verify;
static size_t size = 1 << 20, nwords;

#define die(...) do { \
	fprintf(stderr, "win_ckpt[%d]: FAIL: ", rank); \
	fprintf(stderr, __VA_ARGS__); \
	fputc('\n', stderr); \
	if (!verify) MPI_Abort(MPI_COMM_WORLD, 2); \
	exit(2); \
} while (0)

static uint32_t mix(uint32_t x)
{
	x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b;
	return x ^ (x >> 16);
}
static uint32_t old_word(int t, size_t i) { return mix((uint32_t)i * 2654435761u + (uint32_t)t); }
static uint32_t put_word(int t, size_t i, int k) { return mix((uint32_t)i ^ ((uint32_t)k << 24) ^ ((uint32_t)t << 20) ^ 0x5a5a5a5au); }
static uint32_t acc_word(int t, size_t i, int k) { return ((uint32_t)i * (uint32_t)k + (uint32_t)t) & 0xffff; }

/* Target t's window is written by norigins() ranks, each a slice of
 * slice_words() words; in each slice four regions that start and end
 * mid-page: 0 fence put, 1 fence accumulate, 2 lock put, 3 lock acc. */
static int norigins(void) { return all_mode ? 1 : nranks - 1; }
static size_t slice_words(void) { return nwords / (size_t)norigins(); }
static int origin_slice(int o, int t)
{
	if (all_mode)
		return o == (t + nranks - 1) % nranks ? 0 : -1;
	return o == t ? -1 : (o - t - 1 + nranks) % nranks;
}
static size_t reg_lo(int s, int q) { return (size_t)s * slice_words() + (size_t)q * (slice_words() / 4) + 37; }
static size_t reg_hi(int s, int q) { return (size_t)s * slice_words() + (size_t)(q + 1) * (slice_words() / 4) - 61; }
static int region_of(size_t i)
{
	size_t s = i / slice_words();

	if ((int)s >= norigins())
		return -1;
	for (int q = 0; q < 4; q++)
		if (i >= reg_lo((int)s, q) && i < reg_hi((int)s, q))
			return q;
	return -1;
}
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
static size_t count_bad(const uint32_t *buf, int t, int k)
{
	size_t bad = 0;

	for (size_t i = 0; i < nwords; i++)
		bad += buf[i] != want_word(t, i, k);
	return bad;
}
static off_t region_off(int t) { return all_mode ? (off_t)t * (off_t)size : 0; }

/* Which round's contents a bad page of target t holds: "r0" (the old
 * data) .. "rK", "zero", or "mixed": tells a stale page from a torn one. */
static const char *page_round(const uint32_t *buf, int t, size_t pg, int k)
{
	static char what[16];
	size_t lo = pg * 1024, hi = lo + 1024 < nwords ? lo + 1024 : nwords;

	for (int r = k; r >= 0; r--) {
		size_t i = lo;

		while (i < hi && buf[i] == want_word(t, i, r))
			i++;
		if (i == hi) {
			snprintf(what, sizeof(what), "r%d", r);
			return what;
		}
	}
	for (size_t i = lo; i < hi; i++)
		if (buf[i])
			return "mixed";
	return "zero";
}

/* Target t's region of PATH as the disk (the server) has it: the number
 * of bad words, and in WHERE the first bad pages and what they hold. */
static size_t disk_bad(const char *path, int t, int k, char *where, size_t wlen)
{
	uint32_t *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open(path, O_RDONLY | O_DIRECT);
	size_t bad = 0, shown = 0, w = 0;

	if (buf == MAP_FAILED || fd < 0)
		die("O_DIRECT open %s: %s", path, strerror(errno));
	if (pread(fd, buf, size, region_off(t)) != (ssize_t)size)
		die("O_DIRECT read %s: %s", path, strerror(errno));
	close(fd);
	if (where)
		where[0] = 0;
	for (size_t pg = 0; pg * 1024 < nwords; pg++) {
		size_t pbad = 0;

		for (size_t i = pg * 1024; i < nwords && i < (pg + 1) * 1024; i++)
			pbad += buf[i] != want_word(t, i, k);
		if (pbad && where && shown++ < 4 && w < wlen)
			w += (size_t)snprintf(where + w, wlen - w, " page%zu:%zu_bad=%s", pg, pbad,
					      page_round(buf, t, pg, k));
		bad += pbad;
	}
	munmap(buf, size);
	return bad;
}

static void rma_round(MPI_Win win, int t, int s, int k, uint32_t *src, uint32_t *got, size_t *get_bad)
{
	size_t lo[4], n[4];

	for (int q = 0; q < 4; q++) {
		lo[q] = s < 0 ? 0 : reg_lo(s, q);
		n[q] = s < 0 ? 0 : reg_hi(s, q) - reg_lo(s, q);
	}
	for (size_t i = 0; i < nwords; i++)
		src[i] = (region_of(i) == 0 || region_of(i) == 2) ? put_word(t, i, k) : acc_word(t, i, k);
	/* Fence epochs are collective: every rank takes part, origins or not. */
	MPI_Win_fence(0, win);
	if (s >= 0) {
		MPI_Put(src + lo[0], (int)n[0], MPI_UINT32_T, t, (MPI_Aint)lo[0], (int)n[0], MPI_UINT32_T, win);
		MPI_Accumulate(src + lo[1], (int)n[1], MPI_UINT32_T, t, (MPI_Aint)lo[1], (int)n[1],
			       MPI_UINT32_T, MPI_SUM, win);
	}
	MPI_Win_fence(0, win);
	if (s >= 0)
		MPI_Get(got, (int)(lo[1] + n[1] - lo[0]), MPI_UINT32_T, t, (MPI_Aint)lo[0],
			(int)(lo[1] + n[1] - lo[0]), MPI_UINT32_T, win);
	MPI_Win_fence(0, win);
	if (s < 0)
		return;
	for (size_t i = lo[0]; i < lo[1] + n[1]; i++)
		*get_bad += got[i - lo[0]] != want_word(t, i, k);
	MPI_Win_lock(MPI_LOCK_EXCLUSIVE, t, 0, win);
	MPI_Put(src + lo[2], (int)n[2], MPI_UINT32_T, t, (MPI_Aint)lo[2], (int)n[2], MPI_UINT32_T, win);
	MPI_Accumulate(src + lo[3], (int)n[3], MPI_UINT32_T, t, (MPI_Aint)lo[3], (int)n[3],
		       MPI_UINT32_T, MPI_SUM, win);
	MPI_Win_unlock(t, win);
	MPI_Win_lock(MPI_LOCK_SHARED, t, 0, win);
	MPI_Get(got, (int)(lo[3] + n[3] - lo[2]), MPI_UINT32_T, t, (MPI_Aint)lo[2],
		(int)(lo[3] + n[3] - lo[2]), MPI_UINT32_T, win);
	MPI_Win_unlock(t, win);
	for (size_t i = lo[2]; i < lo[3] + n[3]; i++)
		*get_bad += got[i - lo[2]] != want_word(t, i, k);
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

struct window {
	const char *path;
	int fd;
	uint32_t *base;
	MPI_Win win;
	bool refused, mine;
	char why[160];
	unsigned long long bad[4];	/* memory, get (all origins), disk, after free */
};

static bool owns(int r) { return all_mode || r == owner; }

static void open_window(struct window *w)
{
	int rc;

	w->mine = owns(rank);
	if (w->mine) {
		uint32_t *old = malloc(size);

		w->fd = open(w->path, O_RDWR | O_CREAT, 0644);
		if (w->fd < 0 || !old)
			die("open %s: %s", w->path, strerror(errno));
		for (size_t i = 0; i < nwords; i++)
			old[i] = old_word(rank, i);
		if (pwrite(w->fd, old, size, region_off(rank)) != (ssize_t)size || fsync(w->fd))
			die("writing %s: %s", w->path, strerror(errno));
		free(old);
		w->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, region_off(rank));
		if (w->base == MAP_FAILED)
			die("mmap %s: %s", w->path, strerror(errno));
		rc = MPI_Win_create(w->base, (MPI_Aint)size, 4, MPI_INFO_NULL, MPI_COMM_WORLD, &w->win);
	} else {
		rc = MPI_Win_create(NULL, 0, 4, MPI_INFO_NULL, MPI_COMM_WORLD, &w->win);
	}
	int ok = rc == MPI_SUCCESS, all;
	MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
	if (!all) {
		int len = 0;

		if (rc != MPI_SUCCESS)
			MPI_Error_string(rc, w->why, &len);
		else
			MPI_Win_free(&w->win);
		w->refused = true;
		return;
	}
	if (w->mine && msync(w->base, size, MS_SYNC))
		die("msync after MPI_Win_create: %s", strerror(errno));
}

static int do_verify(const char *path)
{
	int bad_all = 0;

	for (int t = 0; t < nranks; t++) {
		if (!owns(t) || (only_region >= 0 && t != only_region))
			continue;
		char where[256];
		size_t bad = disk_bad(path, t, rounds, where, sizeof(where));

		printf("win_ckpt: %s VERIFY %s region_of_rank=%d bad_words=%zu of %zu%s\n",
		       path, bad ? "bad" : "ok", t, bad, nwords, where);
		bad_all |= bad != 0;
	}
	return bad_all;
}

int main(int argc, char **argv)
{
	struct window wins[8];
	int nwin = 0;
	struct utsname u;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--verify"))
			verify = true;
		else if (!strcmp(argv[a], "--all"))
			all_mode = true;
		else if (!strcmp(argv[a], "--keep"))
			keep = true;
		else if (a + 1 < argc && !strcmp(argv[a], "--owner"))
			owner = atoi(argv[++a]);
		else if (a + 1 < argc && !strcmp(argv[a], "--size"))
			size = parse_size(argv[++a]);
		else if (a + 1 < argc && !strcmp(argv[a], "--rounds"))
			rounds = atoi(argv[++a]);
		else if (a + 1 < argc && !strcmp(argv[a], "--ranks"))
			nranks = atoi(argv[++a]);
		else if (a + 1 < argc && !strcmp(argv[a], "--region"))
			only_region = atoi(argv[++a]);
		else if (a + 1 < argc && !strcmp(argv[a], "--hold"))
			hold = atoi(argv[++a]);
		else if (argv[a][0] == '-' || nwin == 8)
			die("usage: win_ckpt --owner R|--all PATH... [--size B] [--rounds N] [--keep] [--verify --ranks N]");
		else
			wins[nwin++] = (struct window){ .path = argv[a], .fd = -1 };
	}
	if (size % 65536 || rounds < (verify ? 0 : 1) || !nwin || (owner < 0) == !all_mode)
		die("needs PATH, --owner R or --all, --size a multiple of 64 KiB, --rounds >= 1 (--verify: 0 is the file before the job)");
	nwords = size / 4;
	if (verify) {
		if (nranks < 2)
			die("--verify needs --ranks N (the job's size)");
		int bad = 0;
		for (int i = 0; i < nwin; i++)
			bad |= do_verify(wins[i].path);
		return bad;
	}

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	if (nranks < 2 || owner >= nranks)
		die("needs 2+ ranks and --owner below the job's size");
	uname(&u);
	for (int i = 0; i < nwin; i++)
		open_window(&wins[i]);

	uint32_t *src = malloc(size), *got = malloc(size);
	if (!src || !got)
		die("malloc");
	for (int k = 1; k <= rounds; k++) {
		for (int i = 0; i < nwin; i++) {
			struct window *w = &wins[i];

			if (w->refused)
				continue;
			/* One pass per target: every rank takes part in the fences. */
			for (int t = 0; t < nranks; t++) {
				size_t get_bad = 0;

				if (!owns(t))
					continue;
				rma_round(w->win, t, origin_slice(rank, t), k, src, got, &get_bad);
				w->bad[1] += get_bad;
			}
			MPI_Barrier(MPI_COMM_WORLD);
			if (!w->mine)
				continue;
			if (k == rounds && hold >= 0 && i == nwin - 1) {
				printf("win_ckpt: HOLD %d s before the last msync\n", hold);
				sleep((unsigned)hold);
			}
			MPI_Win_lock(MPI_LOCK_SHARED, rank, 0, w->win);
			MPI_Win_sync(w->win);
			w->bad[0] += count_bad(w->base, rank, k);
			MPI_Win_unlock(rank, w->win);
			if (msync(w->base, size, MS_SYNC))
				die("msync %s: %s", w->path, strerror(errno));
			w->bad[2] += disk_bad(w->path, rank, k, NULL, 0);
		}
	}
	for (int i = 0; i < nwin; i++) {
		struct window *w = &wins[i];
		unsigned long long gets = 0;

		if (!w->refused) {
			MPI_Win_free(&w->win);
			if (w->mine) {
				munmap(w->base, size);
				w->bad[3] = disk_bad(w->path, rank, rounds, NULL, 0);
			}
		}
		MPI_Allreduce(&w->bad[1], &gets, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
		w->bad[1] = gets;
	}
	MPI_Barrier(MPI_COMM_WORLD);
	bool ok = true;
	for (int i = 0; i < nwin; i++) {
		struct window *w = &wins[i];

		if (!w->mine)
			continue;
		const char *v = w->refused ? "refused" : w->bad[0] || w->bad[1] ? "corrupt" :
				w->bad[2] || w->bad[3] ? "lost" : "ok";
		printf("win_ckpt: %s RESULT %s owner=%d node=%s kernel=%s memory_bad=%llu get_bad=%llu disk_missing=%llu after_free_missing=%llu%s%s\n",
		       w->path, v, rank, u.nodename, u.release, w->bad[0], w->bad[1], w->bad[2], w->bad[3],
		       w->refused ? " why=" : "", w->refused ? (w->why[0] ? w->why : "(another rank)") : "");
		ok = ok && !strcmp(v, "ok");
		if (w->fd >= 0)
			close(w->fd);
		if (!keep && (!all_mode || rank == 0))
			unlink(w->path);
	}
	/* The cluster checks tell a job that hangs in MPI_Finalize (after its
	 * verdict) from one that hangs before. */
	printf("win_ckpt[%d]: entering MPI_Finalize\n", rank);
	MPI_Finalize();
	printf("win_ckpt[%d]: left MPI_Finalize\n", rank);
	/* The file again, after MPI_Finalize (the MPI library's registration
	 * caches are gone): a region that was right after MPI_Win_free and is
	 * wrong now was changed by the teardown.  Printed only: the checks
	 * judge the file after the job. */
	for (int i = 0; i < nwin && keep; i++) {
		struct window *w = &wins[i];
		char where[256];
		size_t bad;

		if (!w->mine || w->refused)
			continue;
		bad = disk_bad(w->path, rank, rounds, where, sizeof(where));
		printf("win_ckpt: %s AFTER_FINALIZE %s owner=%d bad_words=%zu%s\n", w->path,
		       bad ? "bad" : "ok", rank, bad, where);
	}
	return ok ? 0 : 1;
}
