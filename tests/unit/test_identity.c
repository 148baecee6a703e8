/* SPDX-License-Identifier: MIT */
/* The file behind a mapping is reopened to fill and write back its shadow;
 * it must be proven to be that file.  Here another filesystem is mounted
 * over the directory after mmap, holding a file of the same name and the
 * same inode number: the registration shadows the mapped file (reached
 * through /proc/self/map_files, root), or, without the capability for
 * that, fails with ESTALE - never the other file.  (The engine once
 * compared inode numbers only and wrote the NIC's data into the other
 * file.)  Needs root, mkfs.ext4 and loop devices; runs in a mount
 * namespace of its own. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tutil.h"

static char mnt[700];

static void sh(const char *cmd)
{
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* dir/data: 4 pages of pattern `seed`, the first file of a fresh ext4. */
static void make_fs(const char *img, unsigned int seed)
{
	char cmd[2000], path[800];
	int fd;

	snprintf(cmd, sizeof(cmd), "truncate -s 8M '%s' && mkfs.ext4 -q -F '%s' && mount -o loop '%s' '%s'",
		 img, img, img, mnt);
	sh(cmd);
	snprintf(path, sizeof(path), "%s/data", mnt);
	fd = open(path, O_RDWR | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	for (size_t i = 0; i < 4 * ps; i++)
		ck_assert_int_eq(pwrite(fd, &(uint8_t){ tu_byte(seed, i) }, 1, (off_t)i), 1);
	close(fd);
}

static uint8_t *setup_shadowed_mount(int *fdp, char *img2)
{
	char img1[800], path[800], cmd[2000];
	struct stat a, b;
	uint8_t *p;
	int fd;

	ck_assert_int_eq(unshare(CLONE_NEWNS), 0);
	ck_assert_int_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	snprintf(mnt, sizeof(mnt), "%s/mnt", tu_dir);
	snprintf(img1, sizeof(img1), "%s/one.img", tu_dir);
	snprintf(img2, 800, "%s/two.img", tu_dir);
	ck_assert_int_eq(mkdir(mnt, 0700), 0);
	/* the other filesystem first, then unmounted */
	make_fs(img2, 52);
	snprintf(cmd, sizeof(cmd), "umount '%s'", mnt);
	sh(cmd);
	make_fs(img1, 51);
	snprintf(path, sizeof(path), "%s/data", mnt);
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	p = tu_map(fd, 4 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	/* now the same path names the other filesystem's file */
	snprintf(cmd, sizeof(cmd), "mount -o loop '%s' '%s'", img2, mnt);
	sh(cmd);
	ck_assert_int_eq(fstat(fd, &a), 0);
	ck_assert_int_eq(stat(path, &b), 0);
	ck_assert_msg(a.st_ino == b.st_ino && a.st_dev != b.st_dev,
		      "premise: same inode number (%llu, %llu) on another device",
		      (unsigned long long)a.st_ino, (unsigned long long)b.st_ino);
	*fdp = fd;
	return p;
}

static void assert_other_untouched(void)
{
	char path[800];

	snprintf(path, sizeof(path), "%s/data", mnt);
	tu_assert_file_pattern(path, 0, 4 * ps, 52);
}

START_TEST(mounted_over_root)
{
	char img2[800], got[8];
	int fd;
	uint8_t *p = setup_shadowed_mount(&fd, img2);
	struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);

	ck_assert_msg(mr != NULL, "registration: %s", strerror(errno));
	ck_assert(tu_shadowed(p));
	tu_assert_mem_pattern(p, 0, 4 * ps, 51);
	ck_assert_int_eq(fake_nic_write(mr, ps, "nicdata", 7), 0);
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	ck_assert_int_eq(pread(fd, got, 7, (off_t)ps), 7);
	ck_assert_mem_eq(got, "nicdata", 7);
	assert_other_untouched();
}
END_TEST

/* Without CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE /proc/self/map_files is
 * closed: the mapped file cannot be reached, so the registration fails. */
START_TEST(mounted_over_unprivileged)
{
	char img2[800];
	int fd;
	uint8_t *p = setup_shadowed_mount(&fd, img2);
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	struct ibv_mr *mr;

	ck_assert_int_eq(syscall(SYS_capget, &h, d), 0);
	d[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
	d[CAP_CHECKPOINT_RESTORE / 32].effective &= ~(1u << (CAP_CHECKPOINT_RESTORE % 32));
	ck_assert_int_eq(syscall(SYS_capset, &h, d), 0);
	errno = 0;
	mr = safe_mr_reg_mr(tu_pd, p, 4 * ps, RW);
	ck_assert_ptr_null(mr);
	ck_assert_int_eq(errno, ESTALE);
	ck_assert(!tu_shadowed(p));
	tu_assert_mem_pattern(p, 0, 4 * ps, 51);
	assert_other_untouched();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("identity");
	TCase *tc = tcase_create("identity");

	int need = tu_require_root("the identity test needs root, mkfs.ext4 and a free loop device",
				   "command -v mkfs.ext4 >/dev/null && losetup -f >/dev/null 2>&1");

	if (need)
		return need;
	tcase_add_checked_fixture(tc, tu_setup, tu_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, mounted_over_root);
	tcase_add_test(tc, mounted_over_unprivileged);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
