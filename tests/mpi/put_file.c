/* SPDX-License-Identifier: MIT */
/* An ordinary MPI one-sided program (it knows nothing of safe_mr): rank 0
 * maps a file MAP_SHARED and exposes it with MPI_Win_create, rank 1
 * MPI_Put's a pattern into it between two MPI_Win_fence calls, rank 0
 * msync(MS_SYNC)s and checks what the file holds on disk (O_DIRECT) and
 * through the page cache (pread).  Run it under mpirun with two ranks.
 *
 *   put_file PATH --expect nohook|shadow|shadow-msync
 *
 * nohook:       no safe_mr: the window is the file mapping itself and the
 *               data is in the file after msync.
 * shadow:       FI_HOOK=safe_mr only: the window pages must be shadowed
 *               (/proc/self/maps no longer shows the file there); msync is
 *               not interposed, so the disk keeps the old data until the
 *               MR is closed (MPI_Win_free / MPI_Finalize).
 * shadow-msync: FI_HOOK=safe_mr plus LD_PRELOAD=libsafe_mr_preload.so:
 *               shadowed, and msync writes the put data back.
 * In every mode the file holds the put data after MPI_Finalize.
 * PATH must not be on tmpfs (tmpfs needs no shadow). */
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
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <mpi.h>

enum expect { EXPECT_NOHOOK, EXPECT_SHADOW, EXPECT_SHADOW_MSYNC };

static int rank;
static size_t pg;
static size_t file_len;

/* Two puts: a small one inside page 0 and a large one across pages 1..N-2
 * that starts and ends mid-page; everything else keeps the old bytes. */
#define NPAGES 8
#define SMALL_OFF 8
#define SMALL_LEN 16

static size_t big_off(void) { return pg + 100; }
static size_t big_len(void) { return (NPAGES - 3) * pg + 200; }

static uint8_t old_byte(size_t i) { return (uint8_t)(i * 7 + 3); }
static uint8_t new_byte(size_t i) { return (uint8_t)(i * 131 + 77); }

static bool is_put(size_t i)
{
	return (i >= SMALL_OFF && i < SMALL_OFF + SMALL_LEN) ||
	       (i >= big_off() && i < big_off() + big_len());
}

static uint8_t want_byte(size_t i) { return is_put(i) ? new_byte(i) : old_byte(i); }

#define die(...) do { \
	fprintf(stderr, "put_file[%d]: FAIL: ", rank); \
	fprintf(stderr, __VA_ARGS__); \
	fputc('\n', stderr); \
	int fin_ = 1; \
	MPI_Finalized(&fin_); \
	if (!fin_) \
		MPI_Abort(MPI_COMM_WORLD, 1); \
	exit(1); \
} while (0)

/* "new" if every byte is what the puts left, "old" if every put byte is
 * still old, else "mixed" (with the first difference printed). */
static const char *classify(const uint8_t *buf, size_t len, const char *what)
{
	bool all_new = true, all_old = true;
	size_t first_bad = SIZE_MAX;

	if (len != file_len)
		die("%s: got %zu bytes, file has %zu", what, len, file_len);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != want_byte(i)) {
			all_new = false;
			if (first_bad == SIZE_MAX)
				first_bad = i;
		}
		if (buf[i] != old_byte(i))
			all_old = false;
	}
	if (all_new)
		return "new";
	if (all_old)
		return "old";
	fprintf(stderr, "put_file[0]: %s: byte %zu is 0x%02x, want 0x%02x\n", what,
		first_bad, buf[first_bad], want_byte(first_bad));
	return "mixed";
}

/* What the disk holds: O_DIRECT bypasses the page cache (after the kernel
 * wrote back whatever is dirty in it). */
static const char *disk_state(const char *path)
{
	size_t cap = (file_len + pg - 1) / pg * pg;
	void *buf;
	int fd = open(path, O_RDONLY | O_DIRECT);

	if (fd < 0)
		die("open O_DIRECT %s: %s", path, strerror(errno));
	if (posix_memalign(&buf, pg, cap))
		die("posix_memalign");
	ssize_t n = pread(fd, buf, cap, 0);
	if (n < 0)
		die("O_DIRECT pread: %s", strerror(errno));
	const char *s = classify(buf, (size_t)n, "O_DIRECT read");
	free(buf);
	close(fd);
	return s;
}

/* What read() sees: the page cache. */
static const char *cache_state(int fd)
{
	uint8_t *buf = malloc(file_len + 1);

	if (!buf)
		die("malloc");
	ssize_t n = pread(fd, buf, file_len + 1, 0);
	if (n < 0)
		die("pread: %s", strerror(errno));
	const char *s = classify(buf, (size_t)n, "pread");
	free(buf);
	return s;
}

/* The backing of the page at addr in /proc/self/maps: the file's path when
 * it is the file mapping, something else (the shadow arena) otherwise. */
static bool backed_by_file(const void *addr, const char *path)
{
	char line[4096], real[4096];
	bool found = false, file = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		die("/proc/self/maps: %s", strerror(errno));
	if (!realpath(path, real))
		die("realpath %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		int off = 0;

		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) < 2 || !off)
			continue;
		if ((uintptr_t)addr < lo || (uintptr_t)addr >= hi)
			continue;
		line[strcspn(line, "\n")] = '\0';
		printf("put_file[0]: window page %p: %s\n", addr, line + off);
		found = true;
		file = strcmp(line + off, real) == 0;
		break;
	}
	fclose(f);
	if (!found)
		die("%p is not mapped", addr);
	return file;
}

static void check(const char *step, const char *got, const char *want)
{
	printf("put_file[0]: %s: %s\n", step, got);
	if (strcmp(got, want))
		die("%s: file holds %s data, expected %s", step, got, want);
}

int main(int argc, char **argv)
{
	enum expect expect;
	const char *path;
	uint8_t *base = NULL;
	int fd = -1, size;
	MPI_Win win;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 4 || strcmp(argv[2], "--expect"))
		die("usage: put_file PATH --expect nohook|shadow|shadow-msync");
	path = argv[1];
	if (!strcmp(argv[3], "nohook"))
		expect = EXPECT_NOHOOK;
	else if (!strcmp(argv[3], "shadow"))
		expect = EXPECT_SHADOW;
	else if (!strcmp(argv[3], "shadow-msync"))
		expect = EXPECT_SHADOW_MSYNC;
	else
		die("unknown --expect %s", argv[3]);
	if (size != 2)
		die("needs exactly 2 ranks, got %d", size);
	pg = (size_t)sysconf(_SC_PAGESIZE);
	file_len = NPAGES * pg + 1000;	/* the last page is partly past EOF */

	if (rank == 0) {
		struct statfs sfs;
		uint8_t *old = malloc(file_len);

		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0)
			die("open %s: %s", path, strerror(errno));
		if (fstatfs(fd, &sfs) || sfs.f_type == TMPFS_MAGIC)
			die("%s is on tmpfs (or fstatfs failed): use a real filesystem", path);
		if (!old)
			die("malloc");
		for (size_t i = 0; i < file_len; i++)
			old[i] = old_byte(i);
		if (pwrite(fd, old, file_len, 0) != (ssize_t)file_len || fsync(fd))
			die("writing %s: %s", path, strerror(errno));
		free(old);
		base = mmap(NULL, file_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (base == MAP_FAILED)
			die("mmap: %s", strerror(errno));
	}

	/* Rank 1 exposes nothing. */
	MPI_Win_create(base, rank == 0 ? (MPI_Aint)file_len : 0, 1, MPI_INFO_NULL,
		       MPI_COMM_WORLD, &win);

	MPI_Win_fence(0, win);
	if (rank == 1) {
		size_t n = big_off() + big_len();
		uint8_t *src = malloc(n);

		if (!src)
			die("malloc");
		for (size_t i = 0; i < n; i++)
			src[i] = new_byte(i);
		MPI_Put(src + SMALL_OFF, SMALL_LEN, MPI_BYTE, 0, SMALL_OFF, SMALL_LEN,
			MPI_BYTE, win);
		MPI_Put(src + big_off(), (int)big_len(), MPI_BYTE, 0, (MPI_Aint)big_off(),
			(int)big_len(), MPI_BYTE, win);
		MPI_Win_fence(0, win);
		free(src);
	} else {
		MPI_Win_fence(0, win);
		/* The window itself must always show the put data. */
		check("window after fence", classify(base, file_len, "window"), "new");
		bool file = backed_by_file(base + pg, path);
		if (expect == EXPECT_NOHOOK && !file)
			die("window is not the file mapping, but no hook was expected");
		if (expect != EXPECT_NOHOOK && file)
			die("window pages are still the file mapping: not shadowed");
		if (msync(base, file_len, MS_SYNC))
			die("msync: %s", strerror(errno));
		const char *want = expect == EXPECT_SHADOW ? "old" : "new";
		check("disk after fence+msync", disk_state(path), want);
		check("page cache after fence+msync", cache_state(fd), want);
	}

	MPI_Win_free(&win);
	if (rank == 0) {
		printf("put_file[0]: after MPI_Win_free: disk %s\n", disk_state(path));
		if (munmap(base, file_len))
			die("munmap: %s", strerror(errno));
		printf("put_file[0]: after munmap: disk %s\n", disk_state(path));
	}
	MPI_Finalize();
	if (rank == 0) {
		check("disk after MPI_Finalize", disk_state(path), "new");
		check("page cache after MPI_Finalize", cache_state(fd), "new");
		close(fd);
		unlink(path);
		printf("put_file[0]: PASS (%s)\n", argv[3]);
	}
	return 0;
}
