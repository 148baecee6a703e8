/* SPDX-License-Identifier: MIT */
/*
 * resv_write: ENOSPC before the NIC writes (SAFE_MR_RESERVE).  A sparse FILE
 * (page 3 written, the rest a hole) is mapped MAP_SHARED and registered
 * writable; what must happen depends on -e:
 *
 *   reg-enospc   the registration fails with ENOSPC (or EDQUOT) before
 *                anything is allocated (the caller leaves less free space
 *                than the holes: statfs refuses them; a registration that
 *                fails after allocating keeps its blocks, issue 16), so it
 *                changed nothing: size and data extents (FIEMAP) as before, the
 *                mapping at the address is still the file's (/proc/self/maps:
 *                its inode) and shows page 3.
 *   ok           it succeeds; FILLCMD (-X, another process) then fills the
 *                filesystem; the peer RDMA-WRITEs the whole range; the sync
 *                point (-y msync|dereg) returns 0; an O_DIRECT read shows
 *                every byte the NIC wrote.
 *   sync-enospc  as ok, but the sync point fails with ENOSPC (no promise:
 *                btrfs, or SAFE_MR_RESERVE=off); the NIC's bytes are still in
 *                the registered memory; FREECMD (-R) frees space, the same
 *                sync is retried and must return 0; O_DIRECT read as above.
 *
 * -L registers the file range with safe_mr_file_reg instead of a mapping
 * (linked build only).  Built twice: plain libibverbs (run under
 * LD_PRELOAD=libsafe_mr_preload.so) and with the linked C API
 * (-DRESV_SAFE_MR_API).
 *
 *   resv_write -f PATH       fill: use up the free space of PATH's filesystem
 *   resv_write -V -s N FILE...  verify: each FILE holds the NIC's bytes (plain reads)
 *
 * Prints "RESULT key=value..." and a verdict line.  Exit: 0 PASS, 1 data or
 * "changed nothing" wrong, 2 registration result not as expected, 3 sync
 * result not as expected, 4 set-up or usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <infiniband/verbs.h>

#ifdef RESV_SAFE_MR_API
#include <safe_mr.h>
#undef ibv_reg_mr
#define ibv_reg_mr(pd, a, l, acc) safe_mr_reg_mr(pd, a, l, acc)
#define ibv_dereg_mr(mr) safe_mr_dereg_mr(mr)
#define msync(a, l, f) safe_mr_msync(a, l, f)
#define munmap(a, l) safe_mr_munmap(a, l)
#endif

#include "rc_loop.h"

enum { EXIT_DATA = 1, EXIT_REG = 2, EXIT_SYNC = 3, EXIT_SETUP = RC_EXIT_SETUP };
enum { PS = 4096, MARK_PAGE = 3 };

extern char **environ;

static struct {
	const char *path, *expect, *sync, *fillcmd, *freecmd;
	size_t size;
	bool file_range, verify_only;
} o = { .sync = "msync", .size = 1 << 20 };

static struct rc_loop rc;

static uint8_t nic_byte(size_t i) { return (uint8_t)(0x3c ^ (i * 29 + (i >> 12) * 11)); }
static const char mark[] = "page three, written before the registration";

/* ---- the file ---- */

struct alloc {
	off_t size;
	unsigned long long mapped, unwritten;	/* bytes in extents (FIEMAP) */
	long long blocks;
};

static struct alloc alloc_of(int fd)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + 512 * sizeof(struct fiemap_extent)];
	} u;
	struct alloc a = { 0 };
	struct stat st;

	memset(&u, 0, sizeof(u));
	u.fm.fm_length = FIEMAP_MAX_OFFSET;
	u.fm.fm_flags = FIEMAP_FLAG_SYNC;
	u.fm.fm_extent_count = 512;
	if (fstat(fd, &st) || ioctl(fd, FS_IOC_FIEMAP, &u.fm))
		die(EXIT_SETUP, "fstat/FIEMAP: %s", strerror(errno));
	for (unsigned i = 0; i < u.fm.fm_mapped_extents; i++) {
		a.mapped += u.fm.fm_extents[i].fe_length;
		if (u.fm.fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN)
			a.unwritten += u.fm.fm_extents[i].fe_length;
	}
	a.size = st.st_size;
	a.blocks = (long long)st.st_blocks;
	return a;
}

/* The VMA at addr, from /proc/self/maps: does it cover [addr, +len) and
 * map inode ino? */
static bool mapping_is_file(const void *addr, size_t len, ino_t ino, char *line, size_t n)
{
	FILE *f = fopen("/proc/self/maps", "r");
	bool ok = false;

	line[0] = 0;
	while (f && fgets(line, (int)n, f)) {
		uintptr_t s, e;
		unsigned long long inode;

		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %llu", &s, &e, &inode) != 3)
			continue;
		if (s <= (uintptr_t)addr && (uintptr_t)addr < e) {
			ok = e >= (uintptr_t)addr + len && inode == (unsigned long long)ino;
			break;
		}
	}
	if (f)
		fclose(f);
	line[strcspn(line, "\n")] = 0;
	return ok;
}

/* Another process, without the preload: sh -c CMD; 0 if it exits 0. */
static int run_cmd(const char *cmd)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	char **env;
	size_t n = 0, k = 0;
	pid_t pid;
	int st;

	while (environ[n])
		n++;
	env = calloc(n + 1, sizeof(*env));
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11))
			env[k++] = environ[i];
	if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, env) ||
	    waitpid(pid, &st, 0) != pid)
		die(EXIT_SETUP, "cannot run '%s'", cmd);
	free(env);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static unsigned long long free_bytes(const char *path)
{
	struct statfs s;

	return statfs(path, &s) ? 0 : (unsigned long long)s.f_bavail * s.f_bsize;
}

/* -f: use up the free space of PATH's filesystem (fallocate, halving the
 * step, then 4 KiB writes until ENOSPC). */
static int fill(const char *path)
{
	static char buf[PS];
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	off_t end;

	if (fd < 0)
		die(EXIT_SETUP, "open %s: %s", path, strerror(errno));
	end = lseek(fd, 0, SEEK_END);
	for (off_t step = 64 << 20; step >= PS; step /= 2)
		while (fallocate(fd, 0, end, step) == 0)
			end += step;
	memset(buf, 0xf1, sizeof(buf));
	while (pwrite(fd, buf, sizeof(buf), end) == (ssize_t)sizeof(buf))
		end += PS;
	fsync(fd);
	close(fd);
	printf("filled: %s is %lld bytes, %llu bytes left\n", path, (long long)end,
	       free_bytes(path));
	return 0;
}

static int verify(const char *path, size_t size, bool direct)
{
	uint8_t *buf = aligned_alloc(PS, size);
	int fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
	ssize_t n;

	if (!buf || fd < 0)
		die(EXIT_SETUP, "open %s: %s", path, strerror(errno));
	n = pread(fd, buf, size, 0);
	if (n != (ssize_t)size)
		die(EXIT_DATA, "%sread of %s: %zd bytes (%s)", direct ? "O_DIRECT " : "", path, n,
		    n < 0 ? strerror(errno) : "short");
	for (size_t i = 0; i < size; i++)
		if (buf[i] != nic_byte(i))
			die(EXIT_DATA, "%s byte %zu: %#x, the NIC wrote %#x", path, i, buf[i],
			    nic_byte(i));
	close(fd);
	free(buf);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: resv_write -e reg-enospc|ok|sync-enospc [-s BYTES] [-y msync|dereg]\n"
		"                  [-X FILLCMD] [-R FREECMD] [-L] FILE\n"
		"       resv_write -f PATH\n"
		"       resv_write -V [-s BYTES] FILE...\n");
	exit(EXIT_SETUP);
}

/* The registration under test: a mapping, or (-L) the file range. */
struct reg {
	uint8_t *map;		/* what the NIC writes: the mapping or the region */
	struct ibv_mr *mr;
#ifdef RESV_SAFE_MR_API
	struct safe_mr_file_region *fr;
#endif
};

static bool do_register(struct reg *r, int fd)
{
	unsigned int acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;

#ifdef RESV_SAFE_MR_API
	if (o.file_range) {
		r->fr = safe_mr_file_reg(rc.pd, fd, 0, o.size, acc);
		if (r->fr) {
			r->map = r->fr->addr;
			r->mr = r->fr->mr;
		}
		return r->fr != NULL;
	}
#endif
	(void)fd;
	r->mr = ibv_reg_mr(rc.pd, r->map, o.size, acc);
	return r->mr != NULL;
}

/* The sync point under test: 0 or an errno. */
static int do_sync(struct reg *r, bool *gone)
{
	int err;

	*gone = false;
#ifdef RESV_SAFE_MR_API
	if (o.file_range) {
		if (!strcmp(o.sync, "dereg")) {
			err = safe_mr_file_dereg(r->fr);
			*gone = !err;
			return err;
		}
		return safe_mr_file_sync(r->fr, 0, 0, SAFE_MR_SYNC_DURABLE);
	}
#endif
	if (!strcmp(o.sync, "dereg")) {
		err = ibv_dereg_mr(r->mr);
		*gone = !err;
		return err;
	}
	return msync(r->map, o.size, MS_SYNC) ? errno : 0;
}

int main(int argc, char **argv)
{
	struct alloc was, now;
	struct ibv_mr *pmr;
	struct reg r = { 0 };
	uint8_t *pbuf;
	char line[512];
	struct stat st;
	bool gone;
	int c, fd, err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((c = getopt(argc, argv, "e:s:y:X:R:LVf:")) != -1) {
		switch (c) {
		case 'e': o.expect = optarg; break;
		case 's': o.size = strtoull(optarg, NULL, 0); break;
		case 'y': o.sync = optarg; break;
		case 'X': o.fillcmd = optarg; break;
		case 'R': o.freecmd = optarg; break;
		case 'L': o.file_range = true; break;
		case 'V': o.verify_only = true; break;
		case 'f': return fill(optarg);
		default: usage();
		}
	}
	if (optind >= argc || !o.size || o.size % PS || o.size <= (MARK_PAGE + 1) * PS)
		usage();
	if (o.verify_only) {
		for (int i = optind; i < argc; i++)
			verify(argv[i], o.size, false);
		printf("PASS: %d file(s) hold the NIC's bytes\n", argc - optind);
		return 0;
	}
	if (optind != argc - 1)
		usage();
	o.path = argv[optind];
	if (!o.expect || (strcmp(o.expect, "reg-enospc") && strcmp(o.expect, "ok") &&
			  strcmp(o.expect, "sync-enospc")))
		usage();
	if (strcmp(o.sync, "msync") && strcmp(o.sync, "dereg"))
		usage();
#ifndef RESV_SAFE_MR_API
	if (o.file_range)
		die(EXIT_SETUP, "-L needs the linked build");
#endif

	rc_open(&rc, NULL);
	pbuf = aligned_alloc(PS, o.size);
	if (!pbuf)
		die(EXIT_SETUP, "out of memory");
	for (size_t i = 0; i < o.size; i++)
		pbuf[i] = nic_byte(i);
	pmr = ibv_reg_mr(rc.pd, pbuf, o.size, IBV_ACCESS_LOCAL_WRITE);
	if (!pmr)
		die(EXIT_SETUP, "ibv_reg_mr (peer buffer): %s", strerror(errno));

	/* Sparse: one written page, the rest a hole. */
	fd = open(o.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)o.size) ||
	    pwrite(fd, mark, sizeof(mark), MARK_PAGE * PS) != (ssize_t)sizeof(mark) || fsync(fd) ||
	    fstat(fd, &st))
		die(EXIT_SETUP, "create %s: %s", o.path, strerror(errno));
	if (!o.file_range) {
		r.map = mmap(NULL, o.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (r.map == MAP_FAILED)
			die(EXIT_SETUP, "mmap: %s", strerror(errno));
	}
	was = alloc_of(fd);
	printf("RESULT before size=%lld extents=%llu unwritten=%llu blocks=%lld free=%llu\n",
	       (long long)was.size, was.mapped, was.unwritten, was.blocks, free_bytes(o.path));

	errno = 0;
	bool ok = do_register(&r, fd);
	err = errno;
	printf("RESULT reg=%s errno=%d (%s)\n", ok ? "ok" : "failed", ok ? 0 : err,
	       ok ? "-" : strerror(err));
	if (!strcmp(o.expect, "reg-enospc")) {
		if (ok || (err != ENOSPC && err != EDQUOT))
			die(EXIT_REG, "expected the registration to fail with ENOSPC: %s",
			    ok ? "it succeeded" : strerror(err));
		now = alloc_of(fd);
		printf("RESULT after size=%lld extents=%llu unwritten=%llu blocks=%lld free=%llu\n",
		       (long long)now.size, now.mapped, now.unwritten, now.blocks,
		       free_bytes(o.path));
		if (now.size != was.size || now.mapped != was.mapped || now.unwritten != was.unwritten)
			die(EXIT_DATA, "the failed registration changed the file's allocation");
		if (!o.file_range) {
			if (!mapping_is_file(r.map, o.size, st.st_ino, line, sizeof(line)))
				die(EXIT_DATA, "the mapping is not the file's any more: %s", line);
			if (memcmp(r.map + MARK_PAGE * PS, mark, sizeof(mark)))
				die(EXIT_DATA, "the mapping does not show the file's page %d",
				    MARK_PAGE);
		}
		printf("PASS: ENOSPC at registration, file and mapping unchanged%s\n",
		       o.file_range ? " (file range)" : "");
		return 0;
	}
	if (!ok)
		die(EXIT_REG, "registration failed: %s", strerror(err));
	now = alloc_of(fd);
	printf("RESULT registered extents=%llu unwritten=%llu free=%llu\n", now.mapped,
	       now.unwritten, free_bytes(o.path));
	if (o.fillcmd && run_cmd(o.fillcmd))
		die(EXIT_SETUP, "fill command failed: %s", o.fillcmd);
	printf("RESULT filled free=%llu\n", free_bytes(o.path));

	rc_write(&rc, pmr, pbuf, o.size, r.map, r.mr->rkey);
	err = do_sync(&r, &gone);
	printf("RESULT sync=%s errno=%d (%s)\n", o.sync, err, err ? strerror(err) : "-");
	if (!strcmp(o.expect, "ok")) {
		if (err)
			die(EXIT_SYNC, "%s after the NIC wrote the range: %s", o.sync, strerror(err));
	} else {
		if (err != ENOSPC)
			die(EXIT_SYNC, "expected %s to fail with ENOSPC: %s", o.sync,
			    err ? strerror(err) : "it returned 0");
		/* Not written, not lost: still in the registered memory. */
		for (size_t i = 0; i < o.size; i++)
			if (r.map[i] != nic_byte(i))
				die(EXIT_DATA, "after the failed %s byte %zu is %#x, not the NIC's",
				    o.sync, i, r.map[i]);
		if (o.freecmd && run_cmd(o.freecmd))
			die(EXIT_SETUP, "free command failed: %s", o.freecmd);
		err = do_sync(&r, &gone);
		printf("RESULT retry sync=%s errno=%d (%s) free=%llu\n", o.sync, err,
		       err ? strerror(err) : "-", free_bytes(o.path));
		if (err)
			die(EXIT_SYNC, "%s retried after space was freed: %s", o.sync, strerror(err));
	}
	if (!gone) {
		bool dummy;

		o.sync = "dereg";
		if ((err = do_sync(&r, &dummy)))
			die(EXIT_SYNC, "deregistration: %s", strerror(err));
	}
	if (!o.file_range && munmap(r.map, o.size))
		die(EXIT_SETUP, "munmap: %s", strerror(errno));
	close(fd);
	verify(o.path, o.size, true);
	printf("PASS: %s, every byte the NIC wrote is on disk (O_DIRECT)\n",
	       strcmp(o.expect, "ok") ? "ENOSPC at the sync point, retry succeeded"
				      : "sync point succeeded");
	return 0;
}
