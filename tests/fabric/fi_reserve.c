/* SPDX-License-Identifier: MIT */
/* The libfabric hook's fi_mr_reg and SAFE_MR_RESERVE, on a small ext4 made
 * here (loop device; needs root): a writable registration of a sparse
 * MAP_SHARED file mapping with less free space than the range lacks.
 *
 *   fi_reserve --expect enospc   fi_mr_reg fails with -FI_ENOSPC before
 *                                anything is allocated (statfs shows the
 *                                holes cannot fit), and the file (size, data
 *                                extents) and the mapping (still the file's,
 *                                at the same address) are unchanged; with
 *                                the space back the same
 *                                registration succeeds and holds the blocks.
 *   fi_reserve --expect ok       (FI_SAFE_MR_RESERVE=off, the control) the
 *                                registration succeeds, nothing reserved.
 *
 * Exit 0 PASS, 1 FAIL, 77 SKIP (not root or no loop device; FAIL with CI
 * set, as the unit tests do). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <rdma/fi_errno.h>

#include "fi_util.h"

enum { PS = 4096, NP = 64 };

static char dir[] = "/tmp/fi_reserve.XXXXXX";
static char mnt[600];

static void sh(const char *cmd)
{
	if (system(cmd))
		die("%s failed", cmd);
}

static void cleanup(void)
{
	char cmd[1400];

	if (mnt[0])
		umount2(mnt, MNT_DETACH);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "fi_reserve: could not remove %s\n", dir);
}

/* Use up the free space, then give back `leave` bytes. */
static void fill(const char *path, off_t leave)
{
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	off_t end = 0;
	static char buf[PS];

	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	for (off_t step = 16 << 20; step >= PS; step /= 2)
		while (fallocate(fd, 0, end, step) == 0)
			end += step;
	while (pwrite(fd, buf, sizeof(buf), end) > 0)
		end += PS;
	if (leave && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, leave))
		die("punch: %s", strerror(errno));
	fsync(fd);
	close(fd);
	sync();
}

struct alloc {
	off_t size;
	unsigned long long mapped, unwritten;
};

static struct alloc alloc_of(int fd)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + 256 * sizeof(struct fiemap_extent)];
	} u;
	struct alloc a = { 0 };
	struct stat st;

	memset(&u, 0, sizeof(u));
	u.fm.fm_length = FIEMAP_MAX_OFFSET;
	u.fm.fm_flags = FIEMAP_FLAG_SYNC;
	u.fm.fm_extent_count = 256;
	if (fstat(fd, &st) || ioctl(fd, FS_IOC_FIEMAP, &u.fm))
		die("fstat/FIEMAP: %s", strerror(errno));
	for (unsigned i = 0; i < u.fm.fm_mapped_extents; i++) {
		a.mapped += u.fm.fm_extents[i].fe_length;
		if (u.fm.fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN)
			a.unwritten += u.fm.fm_extents[i].fe_length;
	}
	a.size = st.st_size;
	return a;
}

/* Is the VMA at p the file's (inode ino), all of [p, +len)? */
static bool mapping_is_file(const void *p, size_t len, ino_t ino)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool ok = false;

	while (f && fgets(line, sizeof(line), f)) {
		uintptr_t s, e;
		unsigned long long inode;

		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %llu", &s, &e, &inode) == 3 &&
		    s <= (uintptr_t)p && (uintptr_t)p < e) {
			ok = e >= (uintptr_t)p + len && inode == (unsigned long long)ino;
			break;
		}
	}
	if (f)
		fclose(f);
	return ok;
}

int main(int argc, char **argv)
{
	bool want_enospc;
	char img[700], path[700], filler[700], cmd[3200];
	struct alloc was, now;
	struct fid_mr *mr = NULL;
	struct stat st;
	struct rdm r;
	int sv[2], fd, ret;
	uint8_t *p;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 3 || strcmp(argv[1], "--expect") ||
	    (strcmp(argv[2], "enospc") && strcmp(argv[2], "ok")))
		die("usage: fi_reserve --expect enospc|ok");
	want_enospc = !strcmp(argv[2], "enospc");
	if (geteuid() != 0 || system("losetup -f >/dev/null 2>&1 && command -v mkfs.ext4 >/dev/null")) {
		bool ci = getenv("CI") && *getenv("CI");

		fprintf(stderr, "%s: fi_reserve needs root, mkfs.ext4 and a loop device\n",
			ci ? "FAIL" : "SKIP");
		return ci ? 1 : 77;
	}
	if (!mkdtemp(dir))
		die("mkdtemp: %s", strerror(errno));
	atexit(cleanup);
	snprintf(img, sizeof(img), "%s/fs.img", dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	snprintf(path, sizeof(path), "%s/data", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	if (mkdir(mnt, 0700))
		die("mkdir: %s", strerror(errno));
	snprintf(cmd, sizeof(cmd), "truncate -s 8M '%s' && mkfs.ext4 -q -F -m 0 '%s' && "
		 "mount -o loop '%s' '%s'", img, img, img, mnt);
	sh(cmd);

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair: %s", strerror(errno));
	rdm_open(&r, FI_MSG | FI_RMA, sv[0]);

	/* Sparse, but for one written page. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, NP * PS) || pwrite(fd, "written", 7, 3 * PS) != 7 ||
	    fsync(fd) || fstat(fd, &st))
		die("create %s: %s", path, strerror(errno));
	p = mmap(NULL, NP * PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	fill(filler, 16 * PS);
	was = alloc_of(fd);

	ret = fi_mr_reg(r.domain, p, NP * PS, FI_REMOTE_READ | FI_REMOTE_WRITE, 0, rdm_key(&r), 0,
			&mr, NULL);
	printf("fi_mr_reg with 16 of %d pages free: %d (%s)\n", NP, ret, fi_strerror(-ret));
	if (!want_enospc) {
		if (ret)
			die("FI_SAFE_MR_RESERVE=off: fi_mr_reg failed: %s", fi_strerror(-ret));
		CHECK_FI(fi_close(&mr->fid));
		munmap(p, NP * PS);
		close(fd);
		rdm_close(&r);
		printf("PASS: without the reservation the registration succeeds\n");
		return 0;
	}
	if (ret != -FI_ENOSPC)
		die("fi_mr_reg returned %d (%s), not -FI_ENOSPC", ret, fi_strerror(-ret));
	now = alloc_of(fd);
	if (now.size != was.size || now.mapped != was.mapped || now.unwritten != was.unwritten)
		die("the failed fi_mr_reg changed the file: size %lld -> %lld, extents %llu -> %llu, "
		    "unwritten %llu -> %llu", (long long)was.size, (long long)now.size, was.mapped,
		    now.mapped, was.unwritten, now.unwritten);
	if (!mapping_is_file(p, NP * PS, st.st_ino) || memcmp(p + 3 * PS, "written", 7))
		die("after the failed fi_mr_reg the mapping is not the file's");

	if (unlink(filler))
		die("unlink: %s", strerror(errno));
	sync();
	CHECK_FI(fi_mr_reg(r.domain, p, NP * PS, FI_REMOTE_READ | FI_REMOTE_WRITE, 0, rdm_key(&r),
			   0, &mr, NULL));
	now = alloc_of(fd);
	if (now.mapped != NP * PS)
		die("registered with space: %llu of %d bytes allocated", now.mapped, NP * PS);
	CHECK_FI(fi_close(&mr->fid));
	munmap(p, NP * PS);
	close(fd);
	rdm_close(&r);
	printf("PASS: -FI_ENOSPC, file and mapping unchanged; with space, every block reserved\n");
	return 0;
}
