/* SPDX-License-Identifier: MIT */
/*
 * bench_core (r): what the block reservation at registration costs
 * (SAFE_MR_RESERVE=auto, the default, vs off), for a file whose blocks
 * are all allocated and for a sparse one, and what it changes for the
 * writeback that follows.  The setting is read once per process, so each
 * configuration runs in a child (this program again, --reserve-child),
 * the children alternating; the rows show medians over all of them.
 *
 * Measured: safe_mr_range_acquire of a faulted-in MAP_SHARED mapping with
 * write access (where the reservation happens), and a durable
 * safe_mr_range_sync of the whole range after every byte changed; and,
 * because a registration's own noise (the shadow copy) can hide a few
 * microseconds, the calls the reservation makes, timed alone: FIEMAP, and
 * for the sparse file the fallocate(FALLOC_FL_KEEP_SIZE) of its hole.  A
 * sparse file is punched back to one hole before every repetition.  The
 * children check that the setting took effect (blocks reserved with auto,
 * none with off).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <safe_mr.h>

#include "bench.h"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif
#define WR_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

enum { CHILD_PAIRS = 3 };

/* ---- the child: one configuration, `reps` repetitions ---- */

/* What the reservation does for this file, timed alone (then undone). */
static double reserve_calls(int fd, size_t size, bool sparse)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + 32 * sizeof(struct fiemap_extent)];
	} u;
	double t0 = now_ns(), t;

	memset(&u, 0, sizeof(u));
	u.fm.fm_length = size;
	u.fm.fm_extent_count = 32;
	if (ioctl(fd, FS_IOC_FIEMAP, &u.fm))
		die("FIEMAP: %s", strerror(errno));
	if (sparse && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size))
		die("fallocate: %s", strerror(errno));
	t = now_ns() - t0;
	if (sparse && (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size) ||
		       fsync(fd)))
		die("punch: %s", strerror(errno));
	return t;
}

static void child_file(const char *path, size_t size, bool sparse, int *fdp)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	char *buf;

	if (fd < 0 || ftruncate(fd, (off_t)size))
		die("create %s: %s", path, strerror(errno));
	if (!sparse) {
		buf = map_anon(size);
		memset(buf, 0x5a, size);
		if (pwrite(fd, buf, size, 0) != (ssize_t)size || fsync(fd))
			die("write %s: %s", path, strerror(errno));
		munmap(buf, size);
	}
	*fdp = fd;
}

int bench_reserve_child(int argc, char **argv)
{
	size_t size;
	bool sparse;
	int reps, fd;
	char path[4096];

	if (argc != 6)
		die("--reserve-child DIR SIZE sparse|allocated REPS");
	size = strtoull(argv[3], NULL, 0);
	sparse = !strcmp(argv[4], "sparse");
	reps = atoi(argv[5]);
	snprintf(path, sizeof(path), "%s/bench_reserve.%d", argv[2], (int)getpid());
	child_file(path, size, sparse, &fd);
	for (int i = 0; i < reps; i++) {
		struct safe_mr_range *r;
		struct stat st;
		double t0, acq, sync;
		char *p;
		int ret;

		double calls;

		if (sparse && (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
					 (off_t)size) || fsync(fd)))
			die("punch %s: %s", path, strerror(errno));
		calls = reserve_calls(fd, size, sparse);
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			die("mmap %s: %s", path, strerror(errno));
		for (size_t o = 0; o < size; o += 4096)	/* faulted in, as in use */
			(void)*(volatile char *)(p + o);
		t0 = now_ns();
		ret = safe_mr_range_acquire(p, size, WR_ACCESS, NULL, &r);
		acq = now_ns() - t0;
		if (ret || safe_mr_range_shadowed(r) != size)
			die("safe_mr_range_acquire: %s, %zu bytes shadowed", strerror(ret),
			    ret ? 0 : safe_mr_range_shadowed(r));
		if (fstat(fd, &st))
			die("fstat: %s", strerror(errno));
		memset(p, 0x10 + i, size);	/* what a NIC would have written */
		t0 = now_ns();
		ret = safe_mr_range_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE);
		sync = now_ns() - t0;
		if (ret || safe_mr_range_release(r))
			die("sync/release: %s", strerror(ret));
		munmap(p, size);
		/* blocks right after the acquire: what the reservation did */
		printf("T %.0f %.0f %lld %.0f\n", acq, sync, (long long)st.st_blocks, calls);
	}
	close(fd);
	unlink(path);
	return 0;
}

/* ---- the parent: children alternating auto/off, rows ---- */

struct samples {
	double acq[64], sync[64], calls[64];
	int n;
	long long min_blocks, max_blocks;
};

static int run_child(const char *self, const char *mode, size_t size, bool sparse, int reps,
		     struct samples *s)
{
	char cmd[8192], line[256];
	FILE *f;
	int got = 0;

	if (!s->n) {
		s->min_blocks = LLONG_MAX;
		s->max_blocks = -1;
	}
	snprintf(cmd, sizeof(cmd), "SAFE_MR_RESERVE=%s '%s' --reserve-child '%s' %zu %s %d", mode,
		 self, bench_dir, size, sparse ? "sparse" : "allocated", reps);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		double a, y, k;
		long long b;

		if (sscanf(line, "T %lf %lf %lld %lf", &a, &y, &b, &k) != 4 || s->n >= 64)
			continue;
		s->calls[s->n] = k;
		s->acq[s->n] = a;
		s->sync[s->n++] = y;
		got++;
		s->min_blocks = b < s->min_blocks ? b : s->min_blocks;
		s->max_blocks = b > s->max_blocks ? b : s->max_blocks;
	}
	return pclose(f) == 0 && got == reps ? 0 : -1;
}

static void reserve_rows(const char *self, size_t size, bool sparse, int reps)
{
	char what[64];
	struct row *ra, *rs, *rc;
	struct samples on = { .n = 0 }, off = { .n = 0 };
	long long want = (long long)(size / 512);

	snprintf(what, sizeof(what), "(r) register, auto/off, %s",
		 sparse ? "sparse" : "allocated");
	/* Informational: a registration's own noise (the shadow copy) is larger
	 * than what the reservation adds; the row below times that alone. */
	ra = add_row(what, size, 'n', 0);
	snprintf(what, sizeof(what), "(r) then writeback, auto/off, %s",
		 sparse ? "sparse" : "allocated");
	rs = add_row(what, size, sparse ? 'r' : 'n', sparse ? 1.10 : 0);
	snprintf(what, sizeof(what), "(r) reserve calls alone, %s",
		 sparse ? "sparse" : "allocated");
	rc = add_row(what, size, 'n', 0);
	for (int i = 0; i < CHILD_PAIRS; i++) {
		bool first_on = !(i & 1);

		if (run_child(self, first_on ? "auto" : "off", size, sparse, reps,
			      first_on ? &on : &off) ||
		    run_child(self, first_on ? "off" : "auto", size, sparse, reps,
			      first_on ? &off : &on)) {
			fail("bench_core --reserve-child failed (see above)");
			not_run(ra, "child failed");
			not_run(rs, "child failed");
			not_run(rc, "child failed");
			return;
		}
	}
	/* The setting took effect: sparse + auto reserves every block, off none. */
	if (sparse && (on.min_blocks < want || off.max_blocks > 0)) {
		fail("reservation not as configured: auto %lld..%lld blocks, off %lld..%lld "
		     "(want %lld and 0)", on.min_blocks, on.max_blocks, off.min_blocks,
		     off.max_blocks, want);
		not_run(ra, "reservation not as configured");
		not_run(rs, "reservation not as configured");
		not_run(rc, "reservation not as configured");
		return;
	}
	ra->value = median(on.acq, on.n);
	ra->base = median(off.acq, off.n);
	ra->measured = true;
	snprintf(ra->note, sizeof(ra->note), "%+.1f us per registration (%+.1f us/MiB)",
		 (ra->value - ra->base) / 1e3, (ra->value - ra->base) / 1e3 / ((double)size / MiB));
	rs->value = median(on.sync, on.n);
	rs->base = median(off.sync, off.n);
	rs->measured = true;
	rs->pass = !sparse || rs->value <= rs->base * rs->target;
	snprintf(rs->note, sizeof(rs->note), "durable sync of the changed range: %+.1f us",
		 (rs->value - rs->base) / 1e3);
	/* all children: the calls do not depend on the setting */
	double all[128];
	int n = 0;

	for (int i = 0; i < on.n; i++)
		all[n++] = on.calls[i];
	for (int i = 0; i < off.n; i++)
		all[n++] = off.calls[i];
	rc->value = median(all, n);
	rc->base = ra->base;
	rc->measured = true;
	snprintf(rc->note, sizeof(rc->note), "FIEMAP%s: %.1f us, %.2f%% of a registration",
		 sparse ? " + fallocate of the hole" : "", rc->value / 1e3,
		 100 * rc->value / rc->base);
}

void bench_reserve(void)
{
	char self[4096];
	struct statfs sfs;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int reps = quick ? 7 : 21;

	if (n <= 0 || statfs(bench_dir, &sfs)) {
		fail("bench_reserve: /proc/self/exe or statfs %s: %s", bench_dir, strerror(errno));
		return;
	}
	self[n] = 0;
	if (sfs.f_type != EXT4_SUPER_MAGIC && sfs.f_type != XFS_SUPER_MAGIC) {
		not_run(add_row("(r) register, auto/off", 0, 'n', 0),
			"the reservation applies on ext4/xfs only: --dir on one");
		return;
	}
	reserve_rows(self, 1 * MiB, false, reps);
	reserve_rows(self, 1 * MiB, true, reps);
	reserve_rows(self, 64 * MiB, false, quick ? 3 : 5);
	reserve_rows(self, 64 * MiB, true, quick ? 3 : 5);
}
