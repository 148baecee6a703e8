/* SPDX-License-Identifier: MIT */
/* ENOSPC before the NIC writes (SAFE_MR_RESERVE=auto, the default), on
 * real loop-mounted filesystems:
 *  - ext4, xfs: a registration whose file range lacks more blocks than the
 *    filesystem has free (statfs) fails with ENOSPC before anything is
 *    allocated: size, data and extents unchanged.  One that gets them is
 *    written back later even if another file filled the filesystem
 *    meanwhile.  The same for safe_mr_file_reg.
 *  - btrfs (copy-on-write: no promise possible): the registration succeeds,
 *    ENOSPC comes from the sync point that writes, with the data kept.
 *  - a registration that fails after reserving (a later piece without
 *    space, the registration callback, argv[2] "regfail" with
 *    FAKE_VERBS_FAIL_REG=1: the NIC registration) gives nothing back: size,
 *    data and written extents as before, the holes it filled stay unwritten
 *    extents (issue 16: giving them back could take blocks another
 *    registration of the same pages relies on, or discard what another
 *    process wrote there); free space that statfs showed but a race took:
 *    ENOSPC, what fallocate got before stays, nothing written is lost.
 *  - issue 16 as it was found: shared_pages, other_writer.
 * argv[1]: ext4, xfs or btrfs.  Needs root and loop devices. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

#define NP 64
#define HOOK __attribute__((visibility("default")))

static const char *fstype;
static bool regfail;
static char mnt[700], filler[800];

/* ---- interposed calls (libsafe_mr.so reaches libc through its PLT) ----
 * fallocate64 and FIEMAP on the test filesystem (not the shadow arena's
 * memfd): count allocations and punches, and force another writer in
 * between when armed.  fstatfs64: claim room that is not there (a race the
 * free-space check cannot see). */
static unsigned allocs, punches;
static dev_t test_dev;		/* the loop filesystem's */
static bool armed;		/* the other writer writes at the next FIEMAP or punch */
static bool fired;		/* ... and it did */
static bool fake_room;

static void other_write(void);

static bool on_test_fs(int fd)
{
	struct stat st;

	return test_dev && !fstat(fd, &st) && st.st_dev == test_dev;
}

static void interleave(void)
{
	if (armed) {
		armed = false;
		other_write();
		fired = true;
	}
}

HOOK int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	static int (*real)(int, int, off64_t, off64_t);

	if (!real)
		real = (int (*)(int, int, off64_t, off64_t))dlsym(RTLD_NEXT, "fallocate64");
	if (!on_test_fs(fd)) {
		/* not counted */
	} else if (mode & FALLOC_FL_PUNCH_HOLE) {
		punches++;
		interleave();
	} else {
		allocs++;
	}
	return real(fd, mode, off, len);
}

HOOK int ioctl(int fd, unsigned long req, ...)
{
	static int (*real)(int, unsigned long, ...);
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	if (req == FS_IOC_FIEMAP && on_test_fs(fd))
		interleave();
	return real(fd, req, arg);
}

HOOK int fstatfs64(int fd, struct statfs64 *buf)
{
	static int (*real)(int, struct statfs64 *);
	int r;

	if (!real)
		real = (int (*)(int, struct statfs64 *))dlsym(RTLD_NEXT, "fstatfs64");
	r = real(fd, buf);
	if (!r && fake_room)
		buf->f_bavail = buf->f_bfree = buf->f_blocks;
	return r;
}

/* The other writer: a process of its own with its own descriptor, which
 * writes OTHER at OTHER_OFF when asked. */
#define OTHER "the other process wrote this"
#define OTHER_OFF ((off_t)(20 * ps + 100))	/* in a hole of sparse_file */
static int wr_cmd = -1, wr_ack = -1;
static pid_t wr_pid;

static void writer_start(const char *path)
{
	int c[2], a[2];

	ck_assert_int_eq(pipe(c), 0);
	ck_assert_int_eq(pipe(a), 0);
	wr_pid = fork();
	ck_assert_int_ge(wr_pid, 0);
	if (!wr_pid) {
		int fd = open(path, O_RDWR);
		char x;

		close(c[1]);
		close(a[0]);
		while (read(c[0], &x, 1) == 1) {
			x = pwrite(fd, OTHER, strlen(OTHER), OTHER_OFF) == (ssize_t)strlen(OTHER);
			if (write(a[1], &x, 1) != 1)
				break;
		}
		_exit(0);
	}
	close(c[0]);
	close(a[1]);
	wr_cmd = c[1];
	wr_ack = a[0];
}

static void other_write(void)
{
	char x = 'w';

	ck_assert_int_eq(write(wr_cmd, &x, 1), 1);
	ck_assert_int_eq(read(wr_ack, &x, 1), 1);
	ck_assert_msg(x == 1, "the other writer's pwrite failed");
}

static void writer_stop(void)
{
	int status;

	close(wr_cmd);
	close(wr_ack);
	ck_assert_int_eq(waitpid(wr_pid, &status, 0), wr_pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Bytes [off, +len) of the file as the disk has them (O_DIRECT: the page
 * cache is written first, then read from the device). */
static void assert_on_disk(const char *path, off_t off, const void *want, size_t len)
{
	off_t page = off & ~(off_t)(ps - 1);
	void *buf;
	int fd = open(path, O_RDONLY | O_DIRECT);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(posix_memalign(&buf, ps, ps), 0);
	ck_assert_int_eq(pread(fd, buf, ps, page), (ssize_t)ps);
	ck_assert_msg(!memcmp((char *)buf + (off - page), want, len),
		      "%s: bytes at %lld are not what the other process wrote", fstype,
		      (long long)off);
	free(buf);
	close(fd);
}

static void sh(const char *cmd)
{
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

static void make_fs(void)
{
	char img[700], cmd[2000];
	struct stat st;
	const char *mk = !strcmp(fstype, "ext4")  ? "truncate -s 8M '%s' && mkfs.ext4 -q -F -m 0 '%s'"
			 : !strcmp(fstype, "xfs") ? "truncate -s 300M '%s' && mkfs.xfs -q -f '%s'"
						  : "truncate -s 128M '%s' && mkfs.btrfs -q -f '%s'";

	snprintf(img, sizeof(img), "%s/fs.img", tu_dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", tu_dir);
	ck_assert_int_eq(mkdir(mnt, 0700), 0);
	snprintf(cmd, sizeof(cmd), mk, img, img);
	sh(cmd);
	snprintf(cmd, sizeof(cmd), "mount -o loop '%s' '%s'", img, mnt);
	sh(cmd);
	ck_assert_int_eq(stat(mnt, &st), 0);
	test_dev = st.st_dev;
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
}

/* Use up the free space; then give back `leave` bytes. */
static void fill(size_t leave)
{
	int fd = open(filler, O_RDWR | O_CREAT, 0600);
	off_t end = 0;
	static char buf[4096];

	ck_assert_int_ge(fd, 0);
	end = lseek(fd, 0, SEEK_END);
	for (off_t chunk = 64 << 20; chunk >= 4096; chunk /= 2)
		while (fallocate(fd, 0, end, chunk) == 0)
			end += chunk;
	memset(buf, 7, sizeof(buf));
	while (pwrite(fd, buf, sizeof(buf), end) > 0)
		end += (off_t)sizeof(buf);
	fsync(fd);
	if (leave)
		ck_assert_int_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					   0, (off_t)leave), 0);
	fsync(fd);
	close(fd);
	sync();
}

static int sparse_file(char *path)
{
	int fd;

	snprintf(path, 800, "%s/data", mnt);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, NP * ps), 0);
	/* Not all hole: a preallocated (unwritten) run and a written page,
	 * which a failed registration must leave allocated. */
	ck_assert_int_eq(fallocate(fd, FALLOC_FL_KEEP_SIZE, 2 * ps, 4 * ps), 0);
	ck_assert_int_eq(pwrite(fd, "written", 7, 10 * ps), 7);
	ck_assert_int_eq(fsync(fd), 0);
	return fd;
}

/* Size and data allocation (FIEMAP: bytes in extents, of them unwritten;
 * st_blocks also counts ext4's extent-tree blocks, which a punch keeps). */
struct alloc {
	off_t size;
	unsigned long long mapped, unwritten;
	blkcnt_t blocks;
};

static struct alloc alloc_of(int fd)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + 256 * sizeof(struct fiemap_extent)];
	} u;
	struct alloc a = { 0 };
	struct stat st;

	ck_assert_int_eq(fsync(fd), 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	memset(&u, 0, sizeof(u));
	u.fm.fm_length = FIEMAP_MAX_OFFSET;
	u.fm.fm_extent_count = 256;
	ck_assert_int_eq(ioctl(fd, FS_IOC_FIEMAP, &u.fm), 0);
	for (unsigned i = 0; i < u.fm.fm_mapped_extents; i++) {
		a.mapped += u.fm.fm_extents[i].fe_length;
		if (u.fm.fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN)
			a.unwritten += u.fm.fm_extents[i].fe_length;
	}
	a.size = st.st_size;
	a.blocks = st.st_blocks;
	return a;
}

static void assert_alloc(int fd, struct alloc was, const char *what)
{
	struct alloc now = alloc_of(fd);

	ck_assert_msg(now.size == was.size && now.mapped == was.mapped &&
			      now.unwritten == was.unwritten,
		      "%s %s: size %lld -> %lld, bytes in extents %llu -> %llu (unwritten %llu -> "
		      "%llu; st_blocks %lld -> %lld)",
		      fstype, what, (long long)was.size, (long long)now.size, was.mapped, now.mapped,
		      was.unwritten, now.unwritten, (long long)was.blocks, (long long)now.blocks);
}

/* Nothing allocated by the failed call, and the file as before. */
static void assert_refused(int fd, struct alloc was, const char *what)
{
	ck_assert_msg(allocs == 0, "%s %s: %u fallocate calls although statfs shows too little "
		      "space", fstype, what, allocs);
	assert_alloc(fd, was, what);
}

/* A failed registration kept what it reserved: size and written extents as
 * before, every byte below the end of file in an extent (the holes now
 * unwritten ones, which read as zeros). */
static void assert_kept(int fd, struct alloc was, const char *what)
{
	struct alloc now = alloc_of(fd);

	ck_assert_msg(now.size == was.size && now.mapped - now.unwritten == was.mapped - was.unwritten &&
			      now.mapped == (unsigned long long)now.size,
		      "%s %s: size %lld -> %lld, bytes in extents %llu -> %llu (unwritten %llu -> "
		      "%llu)",
		      fstype, what, (long long)was.size, (long long)now.size, was.mapped, now.mapped,
		      was.unwritten, now.unwritten);
}

static void assert_zeros(const char *path, off_t off)
{
	static const char zeros[64];

	tu_assert_file(path, off, zeros, sizeof(zeros));
}

static void nic_all(struct ibv_mr *mr)
{
	for (size_t i = 0; i < NP; i++)
		ck_assert_int_eq(fake_nic_write(mr, i * ps, "reserved", 8), 0);
}

static void assert_all(const char *path)
{
	for (size_t i = 0; i < NP; i++)
		tu_assert_file(path, (off_t)(i * ps), "reserved", 8);
}

START_TEST(mapped)
{
	char path[800];
	int fd;
	uint8_t *p;
	struct ibv_mr *mr;
	bool promise = strcmp(fstype, "btrfs") != 0;

	struct alloc was;

	make_fs();
	fd = sparse_file(path);
	p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	fill(16 * ps);		/* less free space than the range lacks */
	was = alloc_of(fd);
	errno = 0;
	allocs = 0;
	mr = safe_mr_reg_mr(tu_pd, p, NP * ps, RW);
	if (promise) {
		ck_assert_msg(mr == NULL && errno == ENOSPC,
			      "%s: registration with too little space: %p, errno %s", fstype,
			      (void *)mr, strerror(errno));
		ck_assert(!tu_shadowed(p));
		ck_assert_uint_eq(fake_nic_mr_count(), 0);
		/* refused from statfs: nothing allocated, nothing changed */
		assert_refused(fd, was, "failed registration");
		ck_assert_mem_eq(p + 10 * ps, "written", 7);
		/* with the space back, the blocks are reserved ... */
		ck_assert_int_eq(unlink(filler), 0);
		sync();
		mr = safe_mr_reg_mr(tu_pd, p, NP * ps, RW);
		ck_assert_msg(mr != NULL, "registration with space: %s", strerror(errno));
		/* ... so another file filling the filesystem cannot take them */
		fill(0);
		nic_all(mr);
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
		assert_all(path);
	} else {
		/* btrfs: no reservation; the writeback reports ENOSPC, data kept */
		ck_assert_msg(mr != NULL, "btrfs registration: %s", strerror(errno));
		fill(0);
		nic_all(mr);
		ck_assert_int_eq(safe_mr_dereg_mr(mr), ENOSPC);
		ck_assert_mem_eq(p + 5 * ps, "reserved", 8);
		ck_assert_int_eq(unlink(filler), 0);
		sync();
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
		assert_all(path);
	}
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

START_TEST(file_range)
{
	char path[800];
	int fd;
	struct safe_mr_file_region *r;

	if (!strcmp(fstype, "btrfs"))
		return;	/* no promise there: covered by `mapped` */
	struct alloc was;

	make_fs();
	fd = sparse_file(path);
	fill(16 * ps);
	was = alloc_of(fd);
	errno = 0;
	allocs = 0;
	r = safe_mr_file_reg(tu_pd, fd, 0, NP * ps, RW);
	ck_assert_msg(r == NULL && errno == ENOSPC, "file_reg with too little space: errno %s",
		      strerror(errno));
	assert_refused(fd, was, "failed file_reg");
	ck_assert_int_eq(unlink(filler), 0);
	sync();
	r = safe_mr_file_reg(tu_pd, fd, 0, NP * ps, RW);
	ck_assert_ptr_nonnull(r);
	fill(0);
	nic_all(r->mr);
	ck_assert_int_eq(safe_mr_file_dereg(r), 0);
	assert_all(path);
	close(fd);
}
END_TEST

/* The range API (the libfabric hook's and the IBVERBS_1.0 wrapper's path):
 * an acquire without space fails with ENOSPC and allocates nothing. */
START_TEST(range_api)
{
	char path[800];
	int fd;
	uint8_t *p;
	struct safe_mr_range *r = NULL;
	struct alloc was;

	if (!strcmp(fstype, "btrfs"))
		return;	/* nothing reserved there */
	make_fs();
	fd = sparse_file(path);
	p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	fill(16 * ps);
	was = alloc_of(fd);
	allocs = 0;
	ck_assert_int_eq(safe_mr_range_acquire(p, NP * ps, RW, NULL, &r), ENOSPC);
	ck_assert_ptr_null(r);
	ck_assert(!tu_shadowed(p));
	assert_refused(fd, was, "failed range acquire");
	ck_assert_int_eq(unlink(filler), 0);
	sync();
	ck_assert_int_eq(safe_mr_range_acquire(p, NP * ps, RW, NULL, &r), 0);
	ck_assert(tu_shadowed(p));
	ck_assert_int_eq(safe_mr_range_release(r), 0);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* One registration over two files mapped side by side: the first gets its
 * blocks, the second cannot (refused from statfs).  The first file keeps
 * its blocks (unwritten, zeros), the second is unchanged. */
START_TEST(two_files)
{
	char a_path[800], b_path[800];
	int a, b;
	uint8_t *p;
	struct alloc a_was, b_was;

	if (!strcmp(fstype, "btrfs"))
		return;	/* nothing reserved there */
	make_fs();
	snprintf(a_path, sizeof(a_path), "%s/a", mnt);
	a = open(a_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(a, 0);
	ck_assert_int_eq(ftruncate(a, 8 * ps), 0);
	b = sparse_file(b_path);
	p = tu_map(-1, (8 + NP) * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, 0);
	ck_assert_ptr_eq(mmap(p, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, a, 0), p);
	ck_assert_ptr_eq(mmap(p + 8 * ps, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			      b, 0), p + 8 * ps);
	fill(16 * ps);		/* room for a's 8 pages, not for b's holes */
	a_was = alloc_of(a);
	b_was = alloc_of(b);
	errno = 0;
	ck_assert_ptr_null(safe_mr_reg_mr(tu_pd, p, (8 + NP) * ps, RW));
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert(!tu_shadowed(p) && !tu_shadowed(p + 8 * ps));
	assert_kept(a, a_was, "first file of a failed registration");
	ck_assert_uint_eq(alloc_of(a).unwritten, 8 * ps);
	assert_zeros(a_path, 3 * ps);
	assert_alloc(b, b_was, "second file of a failed registration");
	munmap(p, (8 + NP) * ps);
	close(a);
	close(b);
}
END_TEST

/* The protocol of the libfabric hook and the IBVERBS_1.0 wrapper
 * (safe_mr_register): the caller's registration fails after the blocks
 * were reserved, or the second iovec of one registration (fi_mr_regv)
 * cannot get its blocks after the first got them: nothing stays shadowed,
 * the blocks reserved stay (unwritten), nothing else changes. */
static int reg_fails(void *arg, void **handle)
{
	(void)arg;
	(void)handle;
	return ENOMEM;
}

START_TEST(protocol_doors)
{
	char a_path[800], b_path[800];
	int a, b;
	uint8_t *pa, *pb;
	struct alloc a_was, b_was;
	struct iovec iov[2];
	void *h;

	if (!strcmp(fstype, "btrfs"))
		return;	/* nothing reserved there */
	make_fs();
	snprintf(a_path, sizeof(a_path), "%s/a", mnt);
	a = open(a_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(a, 0);
	ck_assert_int_eq(ftruncate(a, 8 * ps), 0);
	b = sparse_file(b_path);
	pa = tu_map(a, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	pb = tu_map(b, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	iov[0] = (struct iovec){ pa, 8 * ps };
	iov[1] = (struct iovec){ pb, NP * ps };
	a_was = alloc_of(a);
	ck_assert_int_eq(safe_mr_register(iov, 1, RW, reg_fails, NULL, &h, NULL), ENOMEM);
	assert_kept(a, a_was, "reservation before a failed registration callback");
	assert_zeros(a_path, 0);
	ck_assert(!tu_shadowed(pa));
	fill(16 * ps);		/* room for a's 8 pages, not for b's holes */
	a_was = alloc_of(a);
	b_was = alloc_of(b);
	ck_assert_int_eq(safe_mr_register(iov, 2, RW, reg_fails, NULL, &h, NULL), ENOSPC);
	/* a has all its blocks since the first attempt: nothing to do there */
	assert_alloc(a, a_was, "first iovec of a registration whose second had no space");
	assert_alloc(b, b_was, "second iovec without space");
	ck_assert(!tu_shadowed(pa) && !tu_shadowed(pb));
	munmap(pa, 8 * ps);
	munmap(pb, NP * ps);
	close(a);
	close(b);
}
END_TEST

/* FAKE_VERBS_FAIL_REG=1: the reservation succeeds, the NIC registration
 * after it fails: the blocks stay, unwritten (C API, and safe_mr_file_reg);
 * the data is as before. */
START_TEST(nic_fails)
{
	char path[800];
	int fd;
	uint8_t *p;
	struct alloc was;

	make_fs();
	fd = sparse_file(path);
	p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	was = alloc_of(fd);
	errno = 0;
	if (_i == 0)
		ck_assert_ptr_null(safe_mr_reg_mr(tu_pd, p, NP * ps, RW));
	else
		ck_assert_ptr_null(safe_mr_file_reg(tu_pd, fd, 0, NP * ps, RW));
	ck_assert_int_eq(errno, ENOMEM);
	assert_kept(fd, was, "failed NIC registration");
	ck_assert(!tu_shadowed(p));
	ck_assert_mem_eq(p + 10 * ps, "written", 7);
	tu_assert_file(path, 10 * ps, "written", 7);
	assert_zeros(path, 20 * ps);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* statfs showed room that was gone when fallocate ran (another writer, or
 * here an interposed fstatfs): ENOSPC, and what fallocate got before it ran
 * out stays, as unwritten extents; size and data as before. */
START_TEST(race_partial)
{
	char path[800];
	struct alloc was, now;
	uint8_t *p;
	int fd;

	if (!strcmp(fstype, "btrfs"))
		return;	/* nothing reserved there */
	make_fs();
	fd = sparse_file(path);
	p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	fill(16 * ps);
	was = alloc_of(fd);
	allocs = 0;
	fake_room = true;
	errno = 0;
	ck_assert_ptr_null(safe_mr_reg_mr(tu_pd, p, NP * ps, RW));
	fake_room = false;
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_uint_ge(allocs, 1);
	ck_assert(!tu_shadowed(p));
	now = alloc_of(fd);
	ck_assert_msg(now.size == was.size && now.mapped - now.unwritten == was.mapped - was.unwritten &&
			      now.mapped >= was.mapped && now.mapped < (unsigned long long)now.size,
		      "%s: size %lld -> %lld, bytes in extents %llu -> %llu (unwritten %llu -> %llu)",
		      fstype, (long long)was.size, (long long)now.size, was.mapped, now.mapped,
		      was.unwritten, now.unwritten);
	ck_assert_mem_eq(p + 10 * ps, "written", 7);
	tu_assert_file(path, 10 * ps, "written", 7);
	assert_zeros(path, 20 * ps);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* Issue 16 (2): registration B of the same pages, made while A is shadowed
 * (inside A's registration callback), finds them shadowed and reserves
 * nothing of its own; A's registration then fails.  B's range must keep its
 * blocks: a filesystem filled afterwards cannot fail B's writeback. */
static struct ibv_mr *b_mr;

static int reg_b_then_fail(void *arg, void **handle)
{
	(void)handle;
	b_mr = safe_mr_reg_mr(tu_pd, arg, NP * ps, RW);
	return ENOMEM;
}

START_TEST(shared_pages)
{
	char path[800];
	struct iovec iov;
	uint8_t *p;
	void *h;
	int fd;

	if (!strcmp(fstype, "btrfs"))
		return;	/* nothing reserved there */
	make_fs();
	fd = sparse_file(path);
	p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	iov = (struct iovec){ p, NP * ps };
	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, reg_b_then_fail, p, &h, NULL), ENOMEM);
	ck_assert_msg(b_mr != NULL, "registration B: %s", strerror(errno));
	ck_assert(tu_shadowed(p));	/* B holds the pages */
	fill(0);
	nic_all(b_mr);
	ck_assert_int_eq(safe_mr_dereg_mr(b_mr), 0);
	assert_all(path);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

/* Issue 16 (3): another process writes into the reserved range while the
 * failed registration is being undone (forced: at the library's first FIEMAP
 * or punch after the NIC registration failed, or right after the failure if
 * the undo makes neither).  Its bytes must reach the disk, and the undo must
 * not punch. */
static int reg_fails_armed(void *arg, void **handle)
{
	(void)arg;
	(void)handle;
	punches = 0;
	armed = true;
	return ENOMEM;
}

START_TEST(other_writer)
{
	char path[800];
	struct iovec iov;
	struct alloc was;
	uint8_t *p;
	void *h;
	int fd;

	if (!strcmp(fstype, "btrfs"))
		return;	/* nothing reserved there */
	make_fs();
	fd = sparse_file(path);
	p = tu_map(fd, NP * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	writer_start(path);
	was = alloc_of(fd);
	iov = (struct iovec){ p, NP * ps };
	ck_assert_int_eq(safe_mr_register(&iov, 1, RW, reg_fails_armed, NULL, &h, NULL), ENOMEM);
	if (!fired)
		interleave();
	writer_stop();
	ck_assert(!tu_shadowed(p));
	assert_on_disk(path, OTHER_OFF, OTHER, strlen(OTHER));
	ck_assert_mem_eq(p + OTHER_OFF, OTHER, strlen(OTHER));
	ck_assert_int_eq(tu_file_size(path), was.size);
	tu_assert_file(path, 10 * ps, "written", 7);
	ck_assert_msg(punches == 0, "the undo punched %u times", punches);
	munmap(p, NP * ps);
	close(fd);
}
END_TEST

static void cleanup(void)
{
	if (mnt[0])
		umount2(mnt, MNT_DETACH);
	tu_teardown();
}

int main(int argc, char **argv)
{
	Suite *s = suite_create("reserve");
	TCase *tc = tcase_create("reserve");
	char probe[200];

	fstype = argc > 1 ? argv[1] : "ext4";
	regfail = argc > 2 && !strcmp(argv[2], "regfail");
	snprintf(probe, sizeof(probe),
		 "command -v mkfs.%s >/dev/null && losetup -f >/dev/null 2>&1 && grep -qw %s /proc/filesystems",
		 fstype, fstype);
	char what[200];
	int need;

	snprintf(what, sizeof(what), "the %s reservation test needs root, mkfs.%s and a loop device",
		 fstype, fstype);
	need = tu_require_root(what, probe);
	if (need)
		return need;
	tcase_add_checked_fixture(tc, tu_setup, cleanup);
	tcase_set_timeout(tc, 120);
	if (regfail) {
		tcase_add_loop_test(tc, nic_fails, 0, 2);
	} else {
		tcase_add_test(tc, mapped);
		tcase_add_test(tc, file_range);
		tcase_add_test(tc, two_files);
		tcase_add_test(tc, range_api);
		tcase_add_test(tc, protocol_doors);
		tcase_add_test(tc, race_partial);
		tcase_add_test(tc, shared_pages);
		tcase_add_test(tc, other_writer);
	}
	suite_add_tcase(s, tc);
	return tu_run(s);
}
