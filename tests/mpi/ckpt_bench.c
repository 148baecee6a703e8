/* SPDX-License-Identifier: MIT */
/* ckpt_bench: the MPI checkpoint loop a user writes, timed two ways, in one
 * two-rank job (an ordinary MPI program: it knows nothing of safe_mr).
 *
 *   ckpt_bench --dir DIR [--sizes 1M,64M,256M] [--rounds 9,4,2] [--warmup 1,0,0]
 *
 * Rank 0 is the origin, rank 1 owns the windows.  Per size, rank 1 exposes
 * two windows of that size:
 *   safe_mr  a MAP_SHARED mapping of DIR/ckpt_bench.safe_mr; a checkpoint
 *            is the puts, then msync(MS_SYNC) of the window (the job runs
 *            under LD_PRELOAD=libsafe_mr_preload.so: the window must be
 *            shadowed, or it is a failure);
 *   byhand   anonymous memory; a checkpoint is the puts, then pwrite of the
 *            whole window to DIR/ckpt_bench.byhand and fdatasync: what a
 *            user writes without safe_mr.
 * Both files exist with their blocks written before the first checkpoint,
 * so neither variant allocates.  A checkpoint: barrier, clock starts on
 * rank 1, fence, rank 0 MPI_Puts the whole window (every page changes:
 * each checkpoint has its own contents), fence, rank 1's sync, clock
 * stops.  The variants alternate (ABAB..., the first of each pair
 * alternating too); the first --warmup checkpoints of each are not timed
 * (per size, or one number for all; by default 1 for the first size, where
 * the library's lazy set-up happens, 0 for the others).
 * After every checkpoint, untimed, rank 1 reads the file with O_DIRECT
 * and compares every word: a wrong file ends the job with a FAIL line.
 * (O_DIRECT writes back dirty page-cache pages of the range first: the
 * read shows what the file holds, not whether the sync made it durable.)
 *
 * Output (rank 1), one line per checkpoint and one per size:
 *   ckpt_bench: CKPT size=B variant=V round=K warmup=0|1 total_ns=T put_ns=P sync_ns=S file=ok
 *   ckpt_bench: RESULT size=B rounds=N safe_mr_ns=T byhand_ns=T ratio=R
 *       safe_mr_put_ns= safe_mr_sync_ns= byhand_put_ns= byhand_sync_ns=
 *       safe_mr_min_ns= safe_mr_max_ns= byhand_min_ns= byhand_max_ns=
 *       pair_ratio=R create_safe_mr_ns= create_byhand_ns= file=ok
 * (medians; ratio = median safe_mr / median byhand; pair_ratio = median
 * of the ratios of neighbouring checkpoints), then "ckpt_bench: DONE ok".
 * A wrong file, a window not shadowed or any failed call: a "FAIL" line
 * and MPI_Abort. */
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
#include <time.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <mpi.h>

enum { SAFE_MR, BYHAND, NVAR };
static const char *const var_name[NVAR] = { "safe_mr", "byhand" };
static int rank = -1;

#define die(...) do { \
	printf("ckpt_bench[%d]: FAIL: ", rank); \
	printf(__VA_ARGS__); \
	putchar('\n'); \
	fflush(stdout); \
	MPI_Abort(MPI_COMM_WORLD, 2); \
	exit(2); \
} while (0)

/* Word i of checkpoint k: every word changes from one checkpoint to the
 * next, and a page in the wrong place or from another checkpoint shows. */
static inline uint64_t word(size_t i, int k)
{
	return (uint64_t)i * 0x9e3779b97f4a7c15ull + (uint64_t)k * 0xc2b2ae3d27d4eb4full + 1;
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	double *s = malloc(sizeof(*s) * (size_t)n), m;

	if (!s)
		die("malloc");
	memcpy(s, v, sizeof(*s) * (size_t)n);
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	free(s);
	return m;
}

static double vmin(const double *v, int n) { double m = v[0]; for (int i = 1; i < n; i++) m = v[i] < m ? v[i] : m; return m; }
static double vmax(const double *v, int n) { double m = v[0]; for (int i = 1; i < n; i++) m = v[i] > m ? v[i] : m; return m; }

static size_t parse_size(const char *s, char **end)
{
	unsigned long long v = strtoull(s, end, 0);

	if (**end == 'k' || **end == 'K')
		v <<= 10, (*end)++;
	else if (**end == 'm' || **end == 'M')
		v <<= 20, (*end)++;
	else if (**end == 'g' || **end == 'G')
		v <<= 30, (*end)++;
	return (size_t)v;
}

/* Fills the file with checkpoint 0's contents and makes it durable. */
static int make_file(const char *path, size_t size, uint64_t *buf, size_t buflen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	for (size_t off = 0; off < size; off += buflen) {
		size_t n = size - off < buflen ? size - off : buflen;

		for (size_t i = 0; i < n / 8; i++)
			buf[i] = word(off / 8 + i, 0);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			die("write %s: %s", path, strerror(errno));
	}
	if (fsync(fd))
		die("fsync %s: %s", path, strerror(errno));
	return fd;
}

/* The file as the disk has it (O_DIRECT) against checkpoint k: the number
 * of wrong words; the first wrong page in *first. */
static size_t file_bad(const char *path, size_t size, int k, uint64_t *buf, size_t buflen, long *first)
{
	int fd = open(path, O_RDONLY | O_DIRECT);
	size_t bad = 0;

	*first = -1;
	if (fd < 0)
		die("O_DIRECT open %s: %s", path, strerror(errno));
	for (size_t off = 0; off < size; off += buflen) {
		size_t n = size - off < buflen ? size - off : buflen;

		if (pread(fd, buf, n, (off_t)off) != (ssize_t)n)
			die("O_DIRECT read %s: %s", path, strerror(errno));
		for (size_t i = 0; i < n / 8; i++)
			if (buf[i] != word(off / 8 + i, k)) {
				if (*first < 0)
					*first = (long)((off + i * 8) / 4096);
				bad++;
			}
	}
	close(fd);
	return bad;
}

/* Is the page at addr still the mapping of path (not shadowed)? */
static bool backed_by_file(const void *addr, const char *path)
{
	char line[4096], real[4096];
	bool file = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f || !realpath(path, real))
		die("/proc/self/maps or realpath %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		int off = 0;

		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) < 2)
			continue;
		if ((uintptr_t)addr < lo || (uintptr_t)addr >= hi)
			continue;
		line[strcspn(line, "\n")] = '\0';
		file = off && strcmp(line + off, real) == 0;
		break;
	}
	fclose(f);
	return file;
}

struct win {
	int fd;
	uint64_t *base;
	MPI_Win win;
	char path[4096];
};

int main(int argc, char **argv)
{
	const char *dir = NULL;
	size_t sizes[8] = { 1 << 20, 64 << 20, 256 << 20 };
	int rounds[8] = { 9, 4, 2 }, warmups[8] = { 1, 0, 0 }, nsizes = 3, nrounds = 3, nwarm = 0, nranks;
	const size_t buflen = 4 << 20;

	setvbuf(stdout, NULL, _IOLBF, 0);
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	for (int a = 1; a < argc; a++) {
		char *end;

		if (a + 1 < argc && !strcmp(argv[a], "--dir")) {
			dir = argv[++a];
		} else if (a + 1 < argc && !strcmp(argv[a], "--sizes")) {
			end = argv[++a];
			for (nsizes = 0; *end && nsizes < 8; nsizes++) {
				sizes[nsizes] = parse_size(end, &end);
				if (*end == ',')
					end++;
			}
			if (*end)
				die("bad --sizes %s", argv[a]);
		} else if (a + 1 < argc && !strcmp(argv[a], "--rounds")) {
			end = argv[++a];
			for (nrounds = 0; *end && nrounds < 8; nrounds++) {
				rounds[nrounds] = (int)strtol(end, &end, 10);
				if (*end == ',')
					end++;
			}
			if (*end)
				die("bad --rounds %s", argv[a]);
		} else if (a + 1 < argc && !strcmp(argv[a], "--warmup")) {
			end = argv[++a];
			for (nwarm = 0; *end && nwarm < 8; nwarm++) {
				warmups[nwarm] = (int)strtol(end, &end, 10);
				if (*end == ',')
					end++;
			}
			if (*end)
				die("bad --warmup %s", argv[a]);
		} else {
			die("usage: ckpt_bench --dir DIR [--sizes 1M,64M,256M] [--rounds 9,4,2] [--warmup 1,0,0]");
		}
	}
	if (nwarm == 1)
		for (int s = 1; s < nsizes; s++)
			warmups[s] = warmups[0];
	if (!dir || nranks != 2 || nrounds != nsizes || (nwarm > 1 && nwarm != nsizes))
		die("needs --dir, 2 ranks, as many --rounds (and --warmup, or one) as --sizes");
	for (int s = 0; s < nsizes; s++)
		if (!sizes[s] || sizes[s] % 4096 || sizes[s] > (size_t)1 << 30 || rounds[s] < 1 || warmups[s] < 0)
			die("sizes: multiples of 4 KiB up to 1 GiB; rounds >= 1, warmup >= 0");
	if (rank == 1) {
		struct statfs sf;

		if (statfs(dir, &sf) || sf.f_type == TMPFS_MAGIC)
			die("%s: not a disk filesystem (tmpfs needs no shadow)", dir);
	}

	uint64_t *buf = mmap(NULL, buflen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	int k = 0;	/* checkpoint number: contents differ in every one */

	for (int s = 0; s < nsizes; s++) {
		size_t size = sizes[s], nw = size / 8;
		int warmup = warmups[s], n = warmup + rounds[s];
		struct win w[NVAR] = { 0 };
		double create_ns[NVAR] = { 0 };
		uint64_t *src = NULL;

		if (rank == 0) {
			src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (src == MAP_FAILED)
				die("mmap %zu: %s", size, strerror(errno));
		}
		for (int v = 0; v < NVAR; v++) {
			int rc;

			if (rank == 1) {
				snprintf(w[v].path, sizeof(w[v].path), "%s/ckpt_bench.%s", dir, var_name[v]);
				w[v].fd = make_file(w[v].path, size, buf, buflen);
				if (v == SAFE_MR) {
					w[v].base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, w[v].fd, 0);
				} else {
					w[v].base = mmap(NULL, size, PROT_READ | PROT_WRITE,
							 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
					for (size_t i = 0; w[v].base != MAP_FAILED && i < nw; i++)
						w[v].base[i] = word(i, 0);
				}
				if (w[v].base == MAP_FAILED)
					die("mmap %s: %s", var_name[v], strerror(errno));
			}
			MPI_Barrier(MPI_COMM_WORLD);
			double t0 = now_ns();
			rc = MPI_Win_create(rank == 1 ? w[v].base : NULL, rank == 1 ? (MPI_Aint)size : 0, 8,
					    MPI_INFO_NULL, MPI_COMM_WORLD, &w[v].win);
			create_ns[v] = now_ns() - t0;
			if (rc != MPI_SUCCESS) {
				char why[MPI_MAX_ERROR_STRING];
				int len = 0;

				MPI_Error_string(rc, why, &len);
				die("MPI_Win_create (%s, %zu bytes): %s", var_name[v], size, why);
			}
		}
		if (rank == 1 && backed_by_file(w[SAFE_MR].base, w[SAFE_MR].path))
			die("the safe_mr window is still the file mapping: not shadowed (no LD_PRELOAD?)");

		double tot[NVAR][64], put[NVAR][64], syn[NVAR][64];
		int got[NVAR] = { 0 }, last_k[NVAR] = { 0 };

		if (n > 64)
			die("at most 64 checkpoints per variant");
		for (int i = 0; i < n; i++) {
			for (int j = 0; j < NVAR; j++) {
				int v = (i % 2) ? NVAR - 1 - j : j;	/* AB BA AB ... */
				double t0, t1, t2;

				last_k[v] = ++k;
				if (rank == 0)
					for (size_t x = 0; x < nw; x++)
						src[x] = word(x, k);
				MPI_Barrier(MPI_COMM_WORLD);
				t0 = now_ns();
				MPI_Win_fence(MPI_MODE_NOPRECEDE, w[v].win);
				if (rank == 0 &&
				    MPI_Put(src, (int)nw, MPI_UINT64_T, 1, 0, (int)nw, MPI_UINT64_T, w[v].win) != MPI_SUCCESS)
					die("MPI_Put");
				MPI_Win_fence(MPI_MODE_NOSUCCEED, w[v].win);
				t1 = now_ns();
				if (rank == 1 && v == SAFE_MR) {
					if (msync(w[v].base, size, MS_SYNC))
						die("msync: %s", strerror(errno));
				} else if (rank == 1) {
					for (size_t off = 0; off < size;) {
						ssize_t r = pwrite(w[v].fd, (char *)w[v].base + off, size - off, (off_t)off);

						if (r <= 0)
							die("pwrite: %s", strerror(errno));
						off += (size_t)r;
					}
					if (fdatasync(w[v].fd))
						die("fdatasync: %s", strerror(errno));
				}
				t2 = now_ns();
				if (rank != 1)
					continue;
				long first;
				size_t bad = file_bad(w[v].path, size, k, buf, buflen, &first);

				printf("ckpt_bench: CKPT size=%zu variant=%s round=%d warmup=%d total_ns=%.0f put_ns=%.0f sync_ns=%.0f file=%s",
				       size, var_name[v], i, i < warmup, t2 - t0, t1 - t0, t2 - t1, bad ? "BAD" : "ok");
				if (bad)
					printf(" bad_words=%zu first_bad_page=%ld\n", bad, first);
				else
					putchar('\n');
				if (bad)
					die("%s: the file after checkpoint %d of %s has %zu wrong words",
					    w[v].path, k, var_name[v], bad);
				if (i >= warmup) {
					tot[v][got[v]] = t2 - t0;
					put[v][got[v]] = t1 - t0;
					syn[v][got[v]++] = t2 - t1;
				}
			}
		}
		for (int v = 0; v < NVAR; v++)
			MPI_Win_free(&w[v].win);
		if (rank == 1) {
			double pr[64];
			int m = got[SAFE_MR];
			long first;

			/* The file again once the window is gone (safe_mr's last writeback
			 * at deregistration must not undo the checkpoint). */
			munmap(w[SAFE_MR].base, size);
			if (file_bad(w[SAFE_MR].path, size, last_k[SAFE_MR], buf, buflen, &first))
				die("%s after MPI_Win_free: not the last checkpoint (first bad page %ld)",
				    w[SAFE_MR].path, first);
			munmap(w[BYHAND].base, size);
			for (int i = 0; i < m; i++)
				pr[i] = tot[SAFE_MR][i] / tot[BYHAND][i];
			double a = median(tot[SAFE_MR], m), b = median(tot[BYHAND], m);
			printf("ckpt_bench: RESULT size=%zu rounds=%d safe_mr_ns=%.0f byhand_ns=%.0f ratio=%.4f"
			       " safe_mr_put_ns=%.0f safe_mr_sync_ns=%.0f byhand_put_ns=%.0f byhand_sync_ns=%.0f"
			       " safe_mr_min_ns=%.0f safe_mr_max_ns=%.0f byhand_min_ns=%.0f byhand_max_ns=%.0f"
			       " pair_ratio=%.4f create_safe_mr_ns=%.0f create_byhand_ns=%.0f file=ok\n",
			       size, m, a, b, a / b, median(put[SAFE_MR], m), median(syn[SAFE_MR], m),
			       median(put[BYHAND], m), median(syn[BYHAND], m), vmin(tot[SAFE_MR], m),
			       vmax(tot[SAFE_MR], m), vmin(tot[BYHAND], m), vmax(tot[BYHAND], m),
			       median(pr, m), create_ns[SAFE_MR], create_ns[BYHAND]);
			for (int v = 0; v < NVAR; v++) {
				close(w[v].fd);
				unlink(w[v].path);
			}
		} else {
			munmap(src, size);
		}
	}
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 1)
		printf("ckpt_bench: DONE ok\n");
	MPI_Finalize();
	return 0;
}
