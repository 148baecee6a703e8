/* SPDX-License-Identifier: MIT */
/*
 * Writeback throughput, in one run, on one file:
 *   uring  - sm_writeback with the io_uring engine
 *   pwrite - sm_writeback with the pwrite fallback
 *   plain  - plain pwrite of the same bytes from a single buffer
 * for scattered 4 KiB changes (1 page in 4; writeback gets extents sorted)
 * and for large runs (the whole file in 1 MiB
 * extents contiguous in file and memory).  Prints MB/s and the ratios:
 * targets uring/pwrite >= 1.5 (scattered), plain/uring <= 1.1 (large).
 *
 * Each on a buffered and on an O_DIRECT descriptor of the file (io_uring
 * wins where writes wait for the device; SAFE_MR_WRITEBACK=auto uses it
 * for O_DIRECT only).
 *
 * bench_writeback [--dir DIR] [--mib N] [--reps N] [--durable]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "safe_mr.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct bench {
	int fd;
	char *mem;		/* the "shadow": file image in memory */
	size_t size;
	struct sm_wb_extent *ext;
	size_t n;
	unsigned int flags;
};

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_writeback: %s: %s\n", what, strerror(err));
	exit(1);
}

static double run_engine(struct bench *b, enum sm_wb_pref pref)
{
	double t;
	int err;

	sm_cfg.writeback = pref;
	t = now();
	err = sm_writeback(b->fd, b->ext, b->n, b->flags);
	t = now() - t;
	if (err)
		die("sm_writeback", err);
	if (pref == SM_WB_PREF_URING &&
	    atomic_load(&sm_stats.writeback_engine) != SAFE_MR_WB_IO_URING)
		die("io_uring engine not available", ENOSYS);
	return t;
}

/* Plain pwrite of the same extents, straight from the buffer. */
static double run_plain(struct bench *b)
{
	double t = now();

	for (size_t i = 0; i < b->n; i++) {
		size_t done = 0;

		while (done < b->ext[i].len) {
			ssize_t r = pwrite(b->fd, (const char *)b->ext[i].buf + done,
					   b->ext[i].len - done, b->ext[i].off + (off_t)done);

			if (r < 0)
				die("pwrite", errno);
			done += (size_t)r;
		}
	}
	if ((b->flags & SM_WB_DURABLE) && fdatasync(b->fd))
		die("fdatasync", errno);
	return now() - t;
}

/* Best of `reps` for each way, interleaved so drift hits all alike. */
static void measure(const char *name, struct bench *b, int reps, double target_u_p,
		    double target_plain)
{
	double best[3] = { 1e9, 1e9, 1e9 }, bytes = 0;

	for (size_t i = 0; i < b->n; i++)
		bytes += (double)b->ext[i].len;
	for (int r = 0; r < reps + 1; r++) {
		double t[3];

		t[0] = run_engine(b, SM_WB_PREF_URING);
		t[1] = run_engine(b, SM_WB_PREF_PWRITE);
		t[2] = run_plain(b);
		if (r == 0)
			continue;	/* warm-up: allocation of the file's blocks */
		for (int k = 0; k < 3; k++)
			if (t[k] < best[k])
				best[k] = t[k];
	}
	printf("%-10s %6zu writes of %7zu B: io_uring %8.1f MB/s  pwrite-fallback %8.1f MB/s  "
	       "plain-pwrite %8.1f MB/s\n", name, b->n, b->ext[0].len, bytes / best[0] / 1e6,
	       bytes / best[1] / 1e6, bytes / best[2] / 1e6);
	printf("%-10s ratio io_uring/pwrite-fallback = %.2f (target >= %.2f)  "
	       "plain-pwrite/io_uring time = %.2f (target <= %.2f)\n", name,
	       best[1] / best[0], target_u_p, best[0] / best[2], target_plain);
}

/* One file, both patterns, the three ways. */
static void run_file(const char *dir, size_t mib, int reps, unsigned int flags, bool direct)
{
	char path[4096];
	struct bench b;

	b.size = mib << 20;
	b.flags = flags;
	snprintf(path, sizeof(path), "%s/bench_writeback.XXXXXX", dir);
	b.fd = mkstemp(path);
	if (b.fd < 0)
		die(path, errno);
	if (direct) {	/* same file, opened again with O_DIRECT */
		int dfd = open(path, O_RDWR | O_DIRECT);

		if (dfd < 0)
			die("open O_DIRECT", errno);
		close(b.fd);
		b.fd = dfd;
	}
	unlink(path);
	if (ftruncate(b.fd, (off_t)b.size))
		die("ftruncate", errno);
	b.mem = aligned_alloc(sm_page_size, b.size);
	for (size_t i = 0; i < b.size; i += 64)
		b.mem[i] = (char)(i >> 12);
	b.ext = calloc(b.size / sm_page_size, sizeof(*b.ext));

	printf("== %zu MiB file in %s, %s%s, best of %d\n", mib, dir,
	       direct ? "O_DIRECT" : "buffered", flags ? ", durable (fdatasync)" : "", reps);
	/* scattered: one page in four changed */
	b.n = 0;
	for (size_t off = 0; off < b.size; off += 4 * sm_page_size)
		b.ext[b.n++] = (struct sm_wb_extent){ b.mem + off, sm_page_size, (off_t)off, 0 };
	measure("scattered", &b, reps, 1.5, 99);
	/* large runs: 1 MiB extents covering the whole file */
	b.n = 0;
	for (size_t off = 0; off < b.size; off += 1 << 20)
		b.ext[b.n++] = (struct sm_wb_extent){ b.mem + off, 1 << 20, (off_t)off, 0 };
	measure("large", &b, reps, 0, 1.1);
	close(b.fd);
	free(b.mem);
	free(b.ext);
}

int main(int argc, char **argv)
{
	const char *dir = ".";
	size_t mib = 32;
	int reps = 5;
	unsigned int flags = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			mib = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--durable"))
			flags = SM_WB_DURABLE;
		else {
			fprintf(stderr, "usage: %s [--dir DIR] [--mib N] [--reps N] [--durable]\n",
				argv[0]);
			return 2;
		}
	}
	sm_init();
	run_file(dir, mib, reps, flags, false);
	run_file(dir, mib, reps, flags, true);
	return 0;
}
