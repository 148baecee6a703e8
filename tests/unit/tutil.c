/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "tutil.h"

size_t ps;
struct ibv_context *tu_ctx;
struct ibv_pd *tu_pd;
char tu_dir[512];

void tu_setup(void)
{
	struct ibv_device **l = ibv_get_device_list(NULL);
	const char *base = getenv("TEST_TMPDIR");
	struct statfs sfs;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	ck_assert_msg(l && l[0], "no device: is the fake libibverbs on LD_LIBRARY_PATH?");
	tu_ctx = ibv_open_device(l[0]);
	ck_assert_ptr_nonnull(tu_ctx);
	ck_assert_str_eq(ibv_get_device_name(l[0]), "fake0");
	ibv_free_device_list(l);
	tu_pd = ibv_alloc_pd(tu_ctx);
	ck_assert_ptr_nonnull(tu_pd);
	snprintf(tu_dir, sizeof(tu_dir), "%s/smXXXXXX", base ? base : "/tmp");
	ck_assert_msg(mkdtemp(tu_dir) != NULL, "mkdtemp %s: %s", tu_dir, strerror(errno));
	ck_assert_int_eq(statfs(tu_dir, &sfs), 0);
	ck_assert_msg(sfs.f_type != TMPFS_MAGIC && sfs.f_type != RAMFS_MAGIC,
		      "%s is on tmpfs/ramfs, which safe_mr never shadows: run the tests on a writeback filesystem (TEST_TMPDIR)",
		      tu_dir);
}

void tu_teardown(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tu_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tu_dir);
}

int tu_file_in(const char *dir, size_t len, unsigned int seed, char *path, size_t pathlen)
{
	static unsigned int n;
	char p[600];
	uint8_t *buf = malloc(len ? len : 1);
	int fd;

	ck_assert_ptr_nonnull(buf);
	snprintf(p, sizeof(p), "%s/file%u-%d-%u", dir, seed, getpid(), n++);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_msg(fd >= 0, "open %s: %s", p, strerror(errno));
	for (size_t i = 0; i < len; i++)
		buf[i] = tu_byte(seed, i);
	ck_assert_int_eq(pwrite(fd, buf, len, 0), (ssize_t)len);
	free(buf);
	if (path)
		snprintf(path, pathlen, "%s", p);
	return fd;
}

int tu_file(size_t len, unsigned int seed, char *path, size_t pathlen)
{
	return tu_file_in(tu_dir, len, seed, path, pathlen);
}

void *tu_map(int fd, size_t len, int prot, int flags, off_t off)
{
	void *p = mmap(NULL, len, prot, flags, fd, off);

	ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

void *tu_map_at(void *addr, int fd, size_t len, int prot, int flags, off_t off)
{
	void *p = mmap(addr, len, prot, flags | MAP_FIXED, fd, off);

	ck_assert_msg(p == addr, "mmap fixed: %s", strerror(errno));
	return p;
}

void tu_assert_file(const char *path, off_t off, const void *want, size_t len)
{
	uint8_t *got = malloc(len ? len : 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, got, len, off), (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		ck_assert_msg(got[i] == ((const uint8_t *)want)[i],
			      "%s: byte at offset %lld is %#x, want %#x", path,
			      (long long)(off + (off_t)i), got[i], ((const uint8_t *)want)[i]);
	free(got);
	close(fd);
}

void tu_assert_file_pattern(const char *path, off_t off, size_t len, unsigned int seed)
{
	uint8_t *want = malloc(len ? len : 1);

	for (size_t i = 0; i < len; i++)
		want[i] = tu_byte(seed, (size_t)off + i);
	tu_assert_file(path, off, want, len);
	free(want);
}

void tu_assert_mem_pattern(const void *p, off_t file_off, size_t len, unsigned int seed)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		ck_assert_msg(b[i] == tu_byte(seed, (size_t)file_off + i),
			      "memory at file offset %lld is %#x, want %#x",
			      (long long)(file_off + (off_t)i), b[i],
			      tu_byte(seed, (size_t)file_off + i));
}

off_t tu_file_size(const char *path)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_size;
}

bool tu_maps_at(const void *addr, char *path, size_t pathlen, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[1024];
	bool found = false;

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char pm[8];
		int pos = 0;

		if (sscanf(line, "%lx-%lx %7s %*x %*x:%*x %*u %n", &s, &e, pm, &pos) < 3)
			continue;
		if ((uintptr_t)addr < s || (uintptr_t)addr >= e)
			continue;
		found = true;
		if (perms) {
			memcpy(perms, pm, 4);
			perms[4] = '\0';
		}
		if (path) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, pathlen, "%s", pos > 0 ? line + pos : "");
		}
		break;
	}
	fclose(f);
	return found;
}

bool tu_shadowed(const void *addr)
{
	char path[512];

	if (!tu_maps_at(addr, path, sizeof(path), NULL))
		return false;
	return strncmp(path, "/memfd:safe_mr", 14) == 0;
}

bool tu_mapped_from(const void *addr, const char *file)
{
	char path[512];

	if (!tu_maps_at(addr, path, sizeof(path), NULL))
		return false;
	return strcmp(path, file) == 0;
}

void tu_assert_shadow_mask(const void *addr, size_t npages, uint64_t mask)
{
	for (size_t i = 0; i < npages; i++) {
		const char *p = (const char *)addr + i * ps;
		char path[512] = "";

		tu_maps_at(p, path, sizeof(path), NULL);
		if (mask & (1ull << i))
			ck_assert_msg(tu_shadowed(p), "page %zu should be shadowed, maps shows '%s'",
				      i, path);
		else
			ck_assert_msg(!tu_shadowed(p), "page %zu should not be shadowed, maps shows '%s'",
				      i, path);
	}
}

struct safe_mr_stats tu_stats(void)
{
	struct safe_mr_stats s;

	ck_assert_int_eq(safe_mr_stats(&s), 0);
	return s;
}

TCase *tu_tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
	tcase_set_timeout(tc, 60);
	return tc;
}

int tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int tu_require_root(const char *what, const char *probe)
{
	bool ci = getenv("CI") && *getenv("CI");

	if (geteuid() == 0 && system(probe) == 0)
		return 0;
	fprintf(stderr, "%s: %s\n", ci ? "FAIL" : "SKIP", what);
	return ci ? 1 : 77;
}
