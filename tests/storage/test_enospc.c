/* SPDX-License-Identifier: MIT */
/* ENOSPC on a filesystem too small for the data: sync fails with ENOSPC,
 * the data stays in the region, and once space is freed a retry writes it.
 *
 * The filesystem: a loop-mounted 8 MiB ext4 image when running as root
 * with loop devices, else a 1 MiB tmpfs in a private user+mount namespace.
 * If neither can be had the test FAILS (it never skips). */
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fake_nic.h"
#include "st_util.h"

static char dir[256];

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* A private small filesystem at `dir`; a string naming it, or NULL. */
static const char *small_fs(void)
{
	char cmd[1024];
	uid_t uid = getuid();
	gid_t gid = getgid();

	snprintf(dir, sizeof(dir), "%s/st_enospc_XXXXXX", st_dir());
	if (!mkdtemp(dir))
		return NULL;
	if (uid == 0 && unshare(CLONE_NEWNS) == 0 &&
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0) {
		snprintf(cmd, sizeof(cmd),
			 "set -e; img=%s.img; truncate -s 8M $img; "
			 "PATH=$PATH:/sbin:/usr/sbin mkfs.ext4 -q -F -m 0 $img >/dev/null; "
			 "mount -o loop $img %s; rm -f $img", dir, dir);
		if (system(cmd) == 0)
			return "ext4 (loop, 8 MiB)";
		fprintf(stderr, "loop-mounted ext4 failed, trying tmpfs\n");
	}
	if (uid != 0 || unshare(CLONE_NEWNS) != 0) {
		char map[64];

		if (unshare(CLONE_NEWUSER | CLONE_NEWNS))
			return NULL;
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
		if (write_file("/proc/self/uid_map", map))
			return NULL;
		snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
		if (write_file("/proc/self/gid_map", map))
			return NULL;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("st_enospc", dir, "tmpfs", 0, "size=1m"))
		return NULL;
	return "tmpfs (1 MiB, user namespace)";
}

/* Fill the filesystem; the filler's path is returned in `path`. */
static void fill_fs(char *path, size_t size)
{
	char *buf = calloc(1, 64 * 1024);
	int fd;

	snprintf(path, size, "%s/filler", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	for (;;) {
		ssize_t n = write(fd, buf, 64 * 1024);

		if (n < 0) {
			ck_assert_int_eq(errno, ENOSPC);
			break;
		}
	}
	/* the last blocks: small writes until not a byte fits */
	while (write(fd, buf, 512) > 0)
		;
	ck_assert_int_eq(fsync(fd), 0);
	close(fd);
	free(buf);
}

START_TEST(enospc_then_retry)
{
	const char *fs = small_fs();
	size_t len = 64 * PS;
	char path[512], filler[512];
	struct safe_mr_file_region *r;
	char *pat = malloc(len);
	int fd, err;
	struct safe_mr_stats s;

	ck_assert_msg(fs, "no small filesystem: need root with loop devices, or user "
		      "namespaces for tmpfs (%s)", strerror(errno));
	fprintf(stderr, "enospc: on %s at %s\n", fs, dir);
	/* the data file is sparse: its blocks are allocated at writeback */
	snprintf(path, sizeof(path), "%s/data", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
	r = safe_mr_file_reg(pd, fd, 0, len, RW_ACCESS);
	ck_assert_ptr_nonnull(r);
	fill_fs(filler, sizeof(filler));

	st_fill(pat, 0, len, 3);
	ck_assert_int_eq(fake_nic_write(r->mr, 0, pat, len), 0);
	err = safe_mr_file_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE);
	ck_assert_int_eq(err, ENOSPC);
	s = st_stats();
	ck_assert_uint_ge(s.sync_errors, 1);
	/* dereg refuses too, and keeps everything */
	ck_assert_int_eq(safe_mr_file_dereg(r), ENOSPC);
	ck_assert_uint_eq(fake_nic_mr_count(), 1);
	ck_assert(!memcmp(r->addr, pat, len));

	ck_assert_int_eq(unlink(filler), 0);
	ck_assert_int_eq(safe_mr_file_sync(r, 0, 0, SAFE_MR_SYNC_DURABLE), 0);
	ck_assert(st_file_is(fd, 0, len, 3));
	ck_assert_int_eq(st_size(fd), len);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
	close(fd);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	free(pat);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("enospc");
	TCase *tc = tcase_create("enospc");

	tcase_add_checked_fixture(tc, st_setup, st_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, enospc_then_retry);
	suite_add_tcase(s, tc);
	return st_run(s);
}
