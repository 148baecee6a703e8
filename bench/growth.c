/* SPDX-License-Identifier: MIT */
/* (g) growth: what each sync point, a registration and a release cost
 * while N = 1, 100, 1,000, 10,000 shadowed registrations are alive (one
 * page of a file each, each its own mapping).  The sync points are called
 * on memory and a file that nothing shadows: their cost over the bare call
 * should not grow with N.  Overheads are medians of paired batches
 * (safe_mr and bare call neighbours, alternating which goes first). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <safe_mr.h>

#include "bench.h"

#define WR_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

enum { NMAX = 10000, EXTRA = 64, BATCH = 256 };
static const size_t steps[] = { 1, 100, 1000, NMAX };
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

static size_t pg;
static int gfd = -1, ufd = -1;		/* the shadowed file; an unrelated one */
static char gpath[4096], upath[4096];
static uint8_t *area;			/* a page, a gap, a page, ... */
static struct safe_mr_range *live[NMAX + EXTRA];

static void *range_addr(size_t i)
{
	return area + 2 * i * pg;
}

static int temp_file(const char *dir, char *path, size_t size)
{
	uint8_t buf[4096];
	int fd;

	snprintf(path, 4096, "%s/bench_growth.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp in %s: %s", dir, strerror(errno));
	unlink(path);	/* gone at exit, whatever happens */
	for (size_t off = 0; off < size; off += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)(off / sizeof(buf) * 7 + i);
		if (pwrite(fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf))
			die("writing %s: %s", path, strerror(errno));
	}
	if (fsync(fd))
		die("fsync %s: %s", path, strerror(errno));
	return fd;
}

/* Separate VMAs: a page of the file every other page of a reservation. */
static void map_ranges(void)
{
	size_t n = NMAX + EXTRA;

	area = mmap(NULL, 2 * n * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		    0);
	if (area == MAP_FAILED)
		die("reserving %zu pages: %s", 2 * n, strerror(errno));
	for (size_t i = 0; i < n; i++) {
		void *p = mmap(range_addr(i), pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			       gfd, (off_t)(i * pg));

		if (p == MAP_FAILED)
			die("mapping page %zu of the growth file: %s", i, strerror(errno));
		(void)*(volatile uint8_t *)p;
	}
}

static double acquire(size_t i)
{
	double t0 = now_ns(), t;
	int ret = safe_mr_range_acquire(range_addr(i), pg, WR_ACCESS, NULL, &live[i]);

	t = now_ns() - t0;
	if (ret)
		die("safe_mr_range_acquire of file page %zu: %s", i, strerror(ret));
	if (safe_mr_range_shadowed(live[i]) != pg)
		die("file page %zu was not shadowed (%zu bytes)", i,
		    safe_mr_range_shadowed(live[i]));
	return t;
}

static double release(size_t i)
{
	double t0 = now_ns();
	int ret = safe_mr_range_release(live[i]);

	if (ret)
		die("safe_mr_range_release of file page %zu: %s", i, strerror(ret));
	live[i] = NULL;
	return now_ns() - t0;
}

/* ---- one batch of BATCH calls of a sync point, safe_mr or bare ---- */

enum sp { SP_MUNMAP, SP_MSYNC, SP_MREMAP, SP_FSYNC, NSP };
static const char *const sp_name[NSP] = { "munmap", "msync", "mremap", "fsync" };
static void *pages[BATCH];
static uint8_t *anon;			/* unrelated anonymous page */

static double batch(enum sp which, bool safe)
{
	double t0 = 0;
	int bad = 0;

	if (which == SP_MUNMAP)
		for (int i = 0; i < BATCH; i++)
			pages[i] = map_anon(pg);
	t0 = now_ns();
	for (int i = 0; i < BATCH; i++) {
		switch (which) {
		case SP_MUNMAP:
			bad |= safe ? safe_mr_munmap(pages[i], pg) : munmap(pages[i], pg);
			break;
		case SP_MSYNC:
			bad |= safe ? safe_mr_msync(anon, pg, MS_SYNC) : msync(anon, pg, MS_SYNC);
			break;
		case SP_MREMAP:
			bad |= (safe ? safe_mr_mremap(anon, pg, pg, MREMAP_MAYMOVE, NULL)
				     : mremap(anon, pg, pg, MREMAP_MAYMOVE)) != anon;
			break;
		case SP_FSYNC:
			bad |= safe ? safe_mr_fsync(ufd) : fsync(ufd);
			break;
		default:
			break;
		}
	}
	t0 = (now_ns() - t0) / BATCH;
	if (bad)
		die("%s%s failed: %s", safe ? "safe_mr_" : "", sp_name[which], strerror(errno));
	return t0;
}

/* Median overhead per call (ns) and the bare call's median. */
static double overhead(enum sp which, int rounds, double *bare_out)
{
	double d[rounds], b[rounds];

	batch(which, true);
	batch(which, false);
	for (int r = 0; r < rounds; r++) {
		double s, x;

		if (r & 1) {
			s = batch(which, true);
			x = batch(which, false);
		} else {
			x = batch(which, false);
			s = batch(which, true);
		}
		d[r] = s - x;
		b[r] = x;
	}
	*bare_out = median(b, rounds);
	return median(d, rounds);
}

struct step {
	size_t n;
	double grow_acq;	/* mean acquire while growing to n */
	double acq, rel;	/* medians of EXTRA more at n */
	double over[NSP], bare[NSP];
	double sync_all;	/* nothing changed */
	double shrink_rel;	/* mean release while shrinking from n */
};

static void measure(struct step *st, int rounds)
{
	double a[EXTRA], r[EXTRA], t0;
	int reps = quick ? 1 : 3, k = 0;
	double av[EXTRA * 3], rv[EXTRA * 3];

	for (int rep = 0; rep < reps; rep++) {
		for (size_t i = 0; i < EXTRA; i++)
			a[i] = acquire(NMAX + i);
		for (size_t i = 0; i < EXTRA; i++)
			r[i] = release(NMAX + i);
		for (size_t i = 0; i < EXTRA; i++, k++) {
			av[k] = a[i];
			rv[k] = r[i];
		}
	}
	st->acq = median(av, k);
	st->rel = median(rv, k);
	for (int w = 0; w < NSP; w++)
		st->over[w] = overhead(w, rounds, &st->bare[w]);
	t0 = now_ns();
	if (safe_mr_sync_all(0))
		fail("safe_mr_sync_all with %zu live registrations failed", st->n);
	st->sync_all = now_ns() - t0;
}

static double time_pread_page(int reps)
{
	double v[reps];
	uint8_t *buf;

	for (int i = 0; i < reps; i++) {
		double t0 = now_ns();

		buf = map_anon(pg);
		pread_all(gfd, buf, pg, (off_t)((NMAX + i % EXTRA) * pg));
		v[i] = now_ns() - t0;
		munmap(buf, pg);
	}
	return median(v, reps);
}

void bench_growth(void)
{
	struct step st[NSTEPS] = { 0 };
	int rounds = quick ? 9 : 25;
	size_t have = 0;
	struct row *rw;
	double pr;

	pg = (size_t)sysconf(_SC_PAGESIZE);
	gfd = temp_file(bench_dir, gpath, (NMAX + EXTRA) * pg);
	/* The unrelated file is on tmpfs when there is one: an fsync there is
	 * a system call, not a disk cache flush whose noise (hundreds of us)
	 * would hide the tens of ns measured. */
	ufd = temp_file(access("/dev/shm", W_OK) ? bench_dir : "/dev/shm", upath, pg);
	printf("(g) unrelated file for fsync: %s\n", upath);
	map_ranges();
	anon = map_anon(pg);
	memset(anon, 1, pg);
	for (size_t s = 0; s < NSTEPS; s++) {
		double t0 = 0;

		st[s].n = steps[s];
		for (; have < steps[s]; have++)
			t0 += acquire(have);
		st[s].grow_acq = t0 / (double)(steps[s] - (s ? steps[s - 1] : 0));
		measure(&st[s], rounds);
	}
	for (size_t s = NSTEPS; s-- > 0;) {
		size_t down = s ? steps[s - 1] : 0;
		double t = 0;

		for (; have > down; have--)
			t += release(have - 1);
		st[s].shrink_rel = t / (double)(steps[s] - down);
	}

	printf("\n(g) growth: per-call cost with N live shadowed registrations (one page each);\n"
	       "    sync points on unshadowed memory and an unshadowed file, overhead over the bare call\n");
	printf("%7s %11s %11s %11s %11s", "N", "acquire", "release", "grow acq", "shrink rel");
	for (int w = 0; w < NSP; w++)
		printf(" %10s", sp_name[w]);
	printf(" %12s\n", "sync_all");
	for (size_t s = 0; s < NSTEPS; s++) {
		printf("%7zu %8.1f us %8.1f us %8.1f us %8.1f us", st[s].n, st[s].acq / 1e3,
		       st[s].rel / 1e3, st[s].grow_acq / 1e3, st[s].shrink_rel / 1e3);
		for (int w = 0; w < NSP; w++)
			printf(" %+7.0f ns", st[s].over[w]);
		printf(" %9.2f ms\n", st[s].sync_all / 1e6);
	}
	printf("%7s %47s", "bare", "");
	for (int w = 0; w < NSP; w++)
		printf(" %7.0f ns", st[NSTEPS - 1].bare[w]);
	printf("\n");

	for (int w = 0; w < NSP; w++) {
		char what[64];

		snprintf(what, sizeof(what), "(g) %s, unshadowed, N=10000", sp_name[w]);
		rw = add_row(what, 0, 'a', 50);
		rw->value = st[NSTEPS - 1].bare[w] + st[NSTEPS - 1].over[w];
		rw->base = st[NSTEPS - 1].bare[w];
		rw->measured = true;
		rw->pass = st[NSTEPS - 1].over[w] <= rw->target;
		snprintf(rw->note, sizeof(rw->note), "%+.0f ns at N=1", st[0].over[w]);
	}
	pr = time_pread_page(101);
	rw = add_row("(g) registration fixed cost, N=10000", pg, 'a', 20000);
	rw->value = st[NSTEPS - 1].acq;
	rw->base = pr;
	rw->measured = true;
	rw->pass = rw->value - rw->base <= rw->target;
	snprintf(rw->note, sizeof(rw->note), "acquire of one page vs pread of it");
	rw = add_row("(g) registering 1000->10000, per call", 0, 'r', 1.5);
	rw->value = st[NSTEPS - 1].grow_acq;
	rw->base = st[1].grow_acq;
	rw->measured = true;
	rw->pass = rw->value <= rw->base * rw->target;
	snprintf(rw->note, sizeof(rw->note), "vs registering 1->100: linear in N if flat");
	rw = add_row("(g) releasing 10000->1000, per call", 0, 'r', 1.5);
	rw->value = st[NSTEPS - 1].shrink_rel;
	rw->base = st[1].shrink_rel;
	rw->measured = true;
	rw->pass = rw->value <= rw->base * rw->target;
	snprintf(rw->note, sizeof(rw->note), "vs releasing 100->1");

	munmap(area, 2 * (NMAX + EXTRA) * pg);
	munmap(anon, pg);
	close(gfd);
	close(ufd);
}
