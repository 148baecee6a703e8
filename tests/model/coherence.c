/* SPDX-License-Identifier: MIT */
/*
 * Model test of MAP_SHARED coherence between mappings (issue 18): two
 * files, each mapped up to three times (MAP_SHARED, at random offsets and
 * lengths), a seeded stream of registrations of parts of any mapping, NIC
 * writes and reads through any MR, CPU stores and loads through any
 * mapping, sync points (msync, fsync, deregistration) and unmap/remap.
 *
 * The reference is MAP_SHARED itself: one byte array per file.  Every
 * mapping and every MR must show it at every moment; at a sync point of a
 * range the file holds it there (read through a descriptor); at the end,
 * all deregistered, the file holds all of it.
 *
 * Run with SAFE_MR_MODE=off on the fake's 6.1 kernel (a plain registration
 * of the file pages: coherent by construction) it checks the model; run
 * with safe_mr it checks the shadows against it.
 *
 * A mapping made while its file has live registrations is not shadowed
 * (safe_mr does not interpose mmap: README, Limits): remaps happen only
 * while the file has none.
 *
 *   test_model_coherence --seed N --ops N [--verbose]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include "safe_mr.h"
#include "fake_nic.h"

#define NF 2
#define NMAP 3
#define NMR 6
#define MAXPG 12
#define RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

static size_t ps;
static uint64_t rs;
static unsigned long op;
static bool verbose;

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (rs += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
static size_t rn(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

struct map {
	uint8_t *p;		/* NULL: unmapped */
	size_t off, len;	/* file range, bytes */
};

struct file {
	char path[600];
	int fd;
	size_t size;
	uint8_t truth[MAXPG * 4096 * 4];	/* MAP_SHARED: what every view shows */
	struct map m[NMAP];
};

struct mr {
	struct ibv_mr *mr;	/* NULL: free slot */
	int f, m;
	size_t foff;		/* file offset of mr->addr */
};

static struct file fs[NF];
static struct mr mrs[NMR];
static struct ibv_pd *pd;

static void __attribute__((format(printf, 1, 2), noreturn)) fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "op %lu: ", op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (verbose) {
		char line[512];
		FILE *m = fopen("/proc/self/maps", "r");

		for (int f = 0; f < NF; f++)
			for (int k = 0; k < NMAP; k++)
				fprintf(stderr, "f%d m%d at %p file %zu+%zu\n", f, k, (void *)fs[f].m[k].p,
					fs[f].m[k].off, fs[f].m[k].len);
		while (m && fgets(line, sizeof(line), m))
			fputs(line, stderr);
		if (m)
			fclose(m);
	}
	exit(1);
}

static void say(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	fprintf(stderr, "%lu: ", op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
}

static bool file_registered(int f)
{
	for (int k = 0; k < NMR; k++)
		if (mrs[k].mr && mrs[k].f == f)
			return true;
	return false;
}

static bool map_registered(int f, int m)
{
	for (int k = 0; k < NMR; k++)
		if (mrs[k].mr && mrs[k].f == f && mrs[k].m == m)
			return true;
	return false;
}

static void do_map(int f, int m)
{
	struct map *x = &fs[f].m[m];
	size_t np = fs[f].size / ps;
	size_t first = rn(np), n = 1 + rn(np - first);

	x->off = first * ps;
	x->len = n * ps;
	x->p = mmap(NULL, x->len, PROT_READ | PROT_WRITE, MAP_SHARED, fs[f].fd, (off_t)x->off);
	if (x->p == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	say("map f%d m%d: pages %zu+%zu at %p", f, m, first, n, (void *)x->p);
}

static void check_map(int f, int m)
{
	struct map *x = &fs[f].m[m];

	if (!x->p)
		return;
	for (size_t i = 0; i < x->len; i++)
		if (x->p[i] != fs[f].truth[x->off + i])
			fail("f%d m%d: file offset %zu (page %zu) shows %#x, MAP_SHARED says %#x", f, m,
			     x->off + i, (x->off + i) / ps, x->p[i], fs[f].truth[x->off + i]);
}

static void check_mr(int k)
{
	struct mr *r = &mrs[k];
	uint8_t buf[MAXPG * 4096 * 4];

	if (fake_nic_read(r->mr, 0, buf, r->mr->length))
		fail("MR %d: NIC read failed", k);
	if (memcmp(buf, fs[r->f].truth + r->foff, r->mr->length))
		for (size_t i = 0; i < r->mr->length; i++)
			if (buf[i] != fs[r->f].truth[r->foff + i])
				fail("MR %d (f%d m%d): NIC reads %#x at file offset %zu, MAP_SHARED says %#x",
				     k, r->f, r->m, buf[i], r->foff + i, fs[r->f].truth[r->foff + i]);
}

/* The file itself (through its descriptor) holds the truth in [off, +len). */
static void check_file(int f, size_t off, size_t len, const char *after)
{
	uint8_t buf[MAXPG * 4096 * 4];

	if (pread(fs[f].fd, buf, len, (off_t)off) != (ssize_t)len)
		fail("pread: %s", strerror(errno));
	for (size_t i = 0; i < len; i++)
		if (buf[i] != fs[f].truth[off + i])
			fail("after %s: f%d offset %zu holds %#x, MAP_SHARED says %#x", after, f,
			     off + i, buf[i], fs[f].truth[off + i]);
}

static void check_all(void)
{
	for (int f = 0; f < NF; f++)
		for (int m = 0; m < NMAP; m++)
			check_map(f, m);
	for (int k = 0; k < NMR; k++)
		if (mrs[k].mr)
			check_mr(k);
}

static void op_reg(void)
{
	int f = (int)rn(NF), m = (int)rn(NMAP), k;
	struct map *x = &fs[f].m[m];
	size_t off, len;

	for (k = 0; k < NMR && mrs[k].mr; k++)
		;
	if (k == NMR || !x->p)
		return;
	/* Not page aligned: any part of the mapping. */
	off = rn(x->len);
	len = 1 + rn(x->len - off);
	mrs[k].mr = safe_mr_reg_mr(pd, x->p + off, len, RW);
	if (!mrs[k].mr)
		fail("reg f%d m%d +%zu len %zu: %s", f, m, off, len, strerror(errno));
	mrs[k].f = f;
	mrs[k].m = m;
	mrs[k].foff = x->off + off;
	say("reg %d: f%d m%d file %zu+%zu", k, f, m, x->off + off, len);
}

static void op_dereg(void)
{
	int k = (int)rn(NMR);
	struct mr *r = &mrs[k];
	size_t off, len;
	int err;

	if (!r->mr)
		return;
	off = r->foff;
	len = r->mr->length;
	err = safe_mr_dereg_mr(r->mr);
	if (err)
		fail("dereg %d: %s", k, strerror(err));
	r->mr = NULL;
	say("dereg %d: f%d m%d file %zu+%zu", k, r->f, r->m, off, len);
	/* A sync point of what it covered. */
	check_file(r->f, off, len, "dereg");
}

static void op_nic_write(void)
{
	int k = (int)rn(NMR);
	struct mr *r = &mrs[k];
	uint8_t buf[64];
	size_t off, len;

	if (!r->mr)
		return;
	off = rn(r->mr->length);
	len = 1 + rn(r->mr->length - off < sizeof(buf) ? r->mr->length - off : sizeof(buf));
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)rnd();
	if (fake_nic_write(r->mr, off, buf, len))
		fail("NIC write into MR %d failed", k);
	memcpy(fs[r->f].truth + r->foff + off, buf, len);
	say("nic write %d: file %zu+%zu", k, r->foff + off, len);
}

static void op_store(void)
{
	int f = (int)rn(NF), m = (int)rn(NMAP);
	struct map *x = &fs[f].m[m];
	size_t off, len;

	if (!x->p)
		return;
	off = rn(x->len);
	len = 1 + rn(x->len - off < 64 ? x->len - off : 64);
	for (size_t i = 0; i < len; i++) {
		uint8_t b = (uint8_t)rnd();

		x->p[off + i] = b;
		fs[f].truth[x->off + off + i] = b;
	}
	say("store f%d m%d: file %zu+%zu", f, m, x->off + off, len);
}

static void op_sync(void)
{
	int f = (int)rn(NF), m = (int)rn(NMAP);
	struct map *x = &fs[f].m[m];

	if (rn(2)) {
		if (safe_mr_fsync(fs[f].fd))
			fail("fsync f%d: %s", f, strerror(errno));
		say("fsync f%d", f);
		check_file(f, 0, fs[f].size, "fsync");
	} else if (x->p) {
		if (safe_mr_msync(x->p, x->len, MS_SYNC))
			fail("msync f%d m%d: %s", f, m, strerror(errno));
		say("msync f%d m%d", f, m);
		check_file(f, x->off, x->len, "msync");
	}
}

/* Unmap a mapping no MR covers (the fake NIC refuses MRs whose pages are
 * gone); map one again while its file has no registration. */
static void op_remap(void)
{
	int f = (int)rn(NF), m = (int)rn(NMAP);
	struct map *x = &fs[f].m[m];

	if (x->p && !map_registered(f, m)) {
		if (safe_mr_munmap(x->p, x->len))
			fail("munmap: %s", strerror(errno));
		say("unmap f%d m%d", f, m);
		x->p = NULL;
		check_file(f, x->off, x->len, "munmap");
	} else if (!x->p && !file_registered(f)) {
		do_map(f, m);
	}
}

int main(int argc, char **argv)
{
	unsigned long ops = 20000, seed = 1;
	const char *dir = getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp";
	struct ibv_device **devs;
	struct ibv_context *ctx;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
			ops = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--verbose"))
			verbose = true;
		else
			return fprintf(stderr, "usage: %s [--seed N] [--ops N] [--verbose]\n", argv[0]), 2;
	}
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (ps > 4096 * 4)
		return fprintf(stderr, "page size %zu too large\n", ps), 77;
	rs = seed;
	devs = ibv_get_device_list(NULL);
	if (!devs || !devs[0] || !(ctx = ibv_open_device(devs[0])) || !(pd = ibv_alloc_pd(ctx)))
		return fprintf(stderr, "no (fake) device\n"), 1;
	for (int f = 0; f < NF; f++) {
		snprintf(fs[f].path, sizeof(fs[f].path), "%s/coherence-%d-%lu-%d", dir, (int)getpid(),
			 seed, f);
		fs[f].fd = open(fs[f].path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fs[f].fd < 0)
			return perror(fs[f].path), 1;
		fs[f].size = (4 + rn(MAXPG - 3)) * ps;
		for (size_t i = 0; i < fs[f].size; i++)
			fs[f].truth[i] = (uint8_t)rnd();
		if (pwrite(fs[f].fd, fs[f].truth, fs[f].size, 0) != (ssize_t)fs[f].size)
			return perror("pwrite"), 1;
		for (int m = 0; m < NMAP; m++)
			do_map(f, m);
	}
	for (op = 1; op <= ops; op++) {
		switch (rn(20)) {
		case 0: case 1: case 2: op_reg(); break;
		case 3: case 4: op_dereg(); break;
		case 5: case 6: case 7: case 8: op_nic_write(); break;
		case 9: case 10: case 11: case 12: op_store(); break;
		case 13: case 14: op_sync(); break;
		case 15: op_remap(); break;
		default: check_all(); break;
		}
	}
	for (int k = 0; k < NMR; k++)
		if (mrs[k].mr) {
			int err = safe_mr_dereg_mr(mrs[k].mr);

			if (err)
				fail("final dereg %d: %s", k, strerror(err));
			mrs[k].mr = NULL;
		}
	check_all();
	for (int f = 0; f < NF; f++) {
		if (safe_mr_fsync(fs[f].fd))
			fail("final fsync: %s", strerror(errno));
		check_file(f, 0, fs[f].size, "the end");
		/* Not before: an unlinked file cannot be shadowed (README, Limits). */
		unlink(fs[f].path);
	}
	{
		struct safe_mr_stats st;

		safe_mr_stats(&st);
		if (st.shadow_bytes_now)
			fail("%llu bytes still shadowed with nothing registered",
			     (unsigned long long)st.shadow_bytes_now);
	}
	printf("seed %lu: %lu operations coherent with MAP_SHARED\n", seed, ops);
	return 0;
}
