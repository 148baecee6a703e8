/* SPDX-License-Identifier: MIT */
/* Helpers shared by the preload test programs.  Deliberately no safe_mr
 * header: these programs stand for unmodified applications. */
#ifndef SM_PL_TEST_UTIL_H
#define SM_PL_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/magic.h>

#define PAGES 4

static inline void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("FAIL: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static inline size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* A file of PAGES pages, page i filled with 'a' + i, on a filesystem with
 * writeback (the premise: tmpfs pages may be pinned anyway). */
static inline int make_file(char *path, size_t pathlen)
{
	const char *dir = getenv("SAFE_MR_TEST_DIR");
	size_t ps = page_size();
	struct statfs sfs;
	char *buf;
	int fd;

	snprintf(path, pathlen, "%s/sm_pl_XXXXXX", dir ? dir : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp %s: %s", path, strerror(errno));
	if (fstatfs(fd, &sfs) || sfs.f_type == TMPFS_MAGIC)
		die("%s is on tmpfs: set SAFE_MR_TEST_DIR to a writeback filesystem", path);
	buf = malloc(ps);
	for (int i = 0; i < PAGES; i++) {
		memset(buf, 'a' + i, ps);
		if (pwrite(fd, buf, ps, (off_t)(i * ps)) != (ssize_t)ps)
			die("pwrite: %s", strerror(errno));
	}
	free(buf);
	if (fsync(fd))
		die("fsync: %s", strerror(errno));
	return fd;
}

static inline void expect_pread(int fd, off_t off, const char *want, const char *what)
{
	size_t len = strlen(want);
	char got[256];

	if (pread(fd, got, len, off) != (ssize_t)len)
		die("%s: pread: %s", what, strerror(errno));
	if (memcmp(got, want, len))
		die("%s: file at %lld has \"%.*s\", want \"%s\"", what, (long long)off,
		    (int)len, got, want);
}

/* The same through O_DIRECT: what the filesystem wrote to (or will write
 * from its dirty page cache to) the disk, not a pinned page nobody marked. */
static inline void expect_direct(const char *path, off_t off, const char *want,
				 const char *what)
{
	size_t ps = page_size(), len = strlen(want);
	off_t base = off & ~(off_t)(ps - 1);
	void *buf;
	int fd = open(path, O_RDONLY | O_DIRECT);

	if (fd < 0)
		die("%s: open O_DIRECT: %s", what, strerror(errno));
	if (posix_memalign(&buf, ps, ps))
		die("posix_memalign");
	if (pread(fd, buf, ps, base) != (ssize_t)ps)
		die("%s: O_DIRECT pread: %s", what, strerror(errno));
	if (memcmp((char *)buf + (off - base), want, len))
		die("%s: O_DIRECT read at %lld has \"%.*s\", want \"%s\"", what,
		    (long long)off, (int)len, (char *)buf + (off - base), want);
	free(buf);
	close(fd);
}

/* The /proc/self/maps line whose range contains addr: its start address
 * and path ("" for anonymous).  0 if found. */
static inline int maps_at(const void *addr, uintptr_t *start, char *path, size_t pathlen)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	int ret = -1;

	if (!f)
		die("open /proc/self/maps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		int n = 0;

		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &n) < 2)
			continue;
		if ((uintptr_t)addr < lo || (uintptr_t)addr >= hi)
			continue;
		*start = lo;
		snprintf(path, pathlen, "%s", n ? line + n : "");
		path[strcspn(path, "\n")] = '\0';
		ret = 0;
		break;
	}
	fclose(f);
	return ret;
}

/* The mapping at addr is (not) the file `path`, starting at addr. */
static inline void expect_mapping(const void *addr, const char *path, int is_file,
				  const char *what)
{
	char got[4096];
	uintptr_t start;

	if (maps_at(addr, &start, got, sizeof(got)))
		die("%s: nothing mapped at %p", what, addr);
	if (is_file && (strcmp(got, path) || start != (uintptr_t)addr))
		die("%s: at %p maps \"%s\" from %#lx, want \"%s\" from %p", what, addr, got,
		    (unsigned long)start, path, addr);
	if (!is_file && !strcmp(got, path))
		die("%s: %p still maps the file itself, not a shadow", what, addr);
}

#endif
