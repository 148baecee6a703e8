/* SPDX-License-Identifier: MIT */
/* ENOSPC on a real full ext4 (a loop-mounted 2 MiB image): dereg returns
 * ENOSPC and keeps MR and data; after space is freed a sync succeeds.
 * Needs root and loop devices: without them it exits 77 (meson: SKIP)
 * saying why. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

static char img[700], mnt[700];

static int sh(const char *fmt, const char *a, const char *b)
{
	char cmd[2000];

	snprintf(cmd, sizeof(cmd), fmt, a, b);
	return system(cmd);
}

START_TEST(enospc)
{
	char path[800], filler[800];
	uint8_t *p, buf[4096];
	int fd, ff;
	struct ibv_mr *mr;
	int rc;

	snprintf(img, sizeof(img), "%s/fs.img", tu_dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", tu_dir);
	ck_assert_int_eq(mkdir(mnt, 0700), 0);
	ck_assert_int_eq(sh("truncate -s 2M '%s' && mkfs.ext4 -q -F -m 0 -b 1024 '%s'", img, img), 0);
	ck_assert_int_eq(sh("mount -o loop '%s' '%s'", img, mnt), 0);
	snprintf(path, sizeof(path), "%s/data", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	/* A sparse file: writing back into its holes needs new blocks. */
	fd = open(path, O_RDWR | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 64 * ps), 0);
	p = tu_map(fd, 64 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	mr = safe_mr_reg_mr(tu_pd, p, 64 * ps, RW);
	ck_assert_ptr_nonnull(mr);
	ck_assert(tu_shadowed(p));
	/* Fill the filesystem. */
	ff = open(filler, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(ff, 0);
	memset(buf, 1, sizeof(buf));
	while (write(ff, buf, sizeof(buf)) > 0)
		;
	ck_assert_int_eq(errno, ENOSPC);
	fsync(ff);
	close(ff);
	for (size_t i = 0; i < 64; i++)
		ck_assert_int_eq(fake_nic_write(mr, i * ps, "full", 4), 0);
	rc = safe_mr_dereg_mr(mr);
	ck_assert_msg(rc == ENOSPC, "dereg on a full filesystem returned %d (%s), want ENOSPC", rc,
		      strerror(rc));
	ck_assert_uint_eq(fake_nic_mr_count(), 1);
	ck_assert(tu_shadowed(p + 63 * ps));
	ck_assert_mem_eq(p + 63 * ps, "full", 4);
	ck_assert_int_eq(unlink(filler), 0);
	rc = safe_mr_sync(mr, 0, 0, SAFE_MR_SYNC_DURABLE);
	ck_assert_msg(rc == 0, "sync after freeing space: %s", strerror(rc));
	ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	for (size_t i = 0; i < 64; i++)
		tu_assert_file(path, (off_t)(i * ps), "full", 4);
	munmap(p, 64 * ps);
	close(fd);
	ck_assert_int_eq(umount(mnt), 0);
}
END_TEST

static void cleanup(void)
{
	if (mnt[0])
		umount2(mnt, MNT_DETACH);
	tu_teardown();
}

int main(void)
{
	Suite *s = suite_create("enospc");
	TCase *tc = tcase_create("enospc");

	int need = tu_require_root("the ENOSPC test needs root, mkfs.ext4 and a free loop device "
				   "(RLIMIT_FSIZE failure is tested in test_errors)",
				   "command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null && losetup -f >/dev/null 2>&1");

	if (need)
		return need;
	tcase_add_checked_fixture(tc, tu_setup, cleanup);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, enospc);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
