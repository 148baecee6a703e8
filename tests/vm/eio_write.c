/* SPDX-License-Identifier: MIT */
/*
 * eio_write: a NIC RDMA-WRITEs into a MAP_SHARED file mapping, the disk
 * starts failing writes, the durable sync fails, the disk comes back, a
 * retry succeeds: does the disk then hold every byte the NIC wrote?
 *
 *   1. FILE (SIZE bytes of "old" data, fsynced) is mapped MAP_SHARED and
 *      registered with ibv_reg_mr; msync+fsync+syncfs clean it.
 *   2. A second RC QP on the same device RDMA-WRITEs all of it.
 *   3. FAILCMD (sh -c, without LD_PRELOAD) makes the device fail writes.
 *   4. The sync under test (msync MS_SYNC, fsync, fdatasync, ibv_dereg_mr)
 *      must fail.
 *   5. The NIC writes the first pages again (data written after a failed
 *      sync must be kept too), then RESTORECMD restores the device.
 *   6. The same sync is retried (up to -t times) until it returns 0.
 *   7. An O_DIRECT read must show every byte the NIC wrote.
 *
 * Built twice: plain libibverbs (run it under LD_PRELOAD=libsafe_mr_preload.so,
 * or without for the control) and with the linked C API (-DEIO_SAFE_MR_API).
 * With -V it only checks that each FILE holds the NIC's bytes (ordinary
 * reads: after a cold remount).
 *
 * Prints "RESULT key=value..." and a verdict line.  Exit: 0 PASS, 1 the disk
 * does not hold the data, 2 ibv_reg_mr failed, 3 the sync returned 0 while
 * the device failed writes, 5 no retry succeeded, 4 set-up or usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <infiniband/verbs.h>

#ifdef EIO_SAFE_MR_API
#include <safe_mr.h>
#undef ibv_reg_mr
#define ibv_reg_mr(pd, a, l, acc) safe_mr_reg_mr(pd, a, l, acc)
#define ibv_dereg_mr(mr) safe_mr_dereg_mr(mr)
#define msync(a, l, f) safe_mr_msync(a, l, f)
#define fsync(fd) safe_mr_fsync(fd)
#define fdatasync(fd) safe_mr_fdatasync(fd)
#define munmap(a, l) safe_mr_munmap(a, l)
#endif

#include "rc_loop.h"

enum { EXIT_DATA = 1, EXIT_REG = 2, EXIT_NOERR = 3, EXIT_SETUP = RC_EXIT_SETUP, EXIT_RETRY = 5 };
enum { REWRITE_PAGES = 16 };	/* NIC writes these again after the failure */

extern char **environ;

static struct {
	const char *path, *dev, *sync, *failcmd, *restorecmd;
	char **paths;		/* -V: every FILE */
	size_t size;
	int tries;
	bool verify_only;
} o = { .sync = "msync", .size = 2 << 20, .tries = 3 };

static struct rc_loop rc;

static uint8_t old_byte(size_t i) { return (uint8_t)('a' + (i / 4096) % 26); }
static uint8_t nic_byte(size_t i, unsigned round)
{
	return (uint8_t)(0x5a ^ (i * 13 + (i >> 12) * 7 + round * 101));
}
static bool rewritten;	/* step 5 happened */
/* What the file must hold in the end: round 1 over the first pages. */
static uint8_t final_byte(size_t i)
{
	return nic_byte(i, rewritten && i < REWRITE_PAGES * 4096u);
}


/* sh -c CMD without LD_PRELOAD; posix_spawn (vfork-like) runs no fork
 * handlers in this process. */
static void run_cmd(const char *what, const char *cmd)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	size_t n = 0;
	pid_t pid;
	int st;

	while (environ[n])
		n++;
	char **env = calloc(n + 1, sizeof(*env));
	size_t k = 0;
	for (size_t i = 0; env && i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11))
			env[k++] = environ[i];
	if (!env || posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, env) ||
	    waitpid(pid, &st, 0) != pid)
		die(EXIT_SETUP, "cannot run the %s command", what);
	free(env);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		die(EXIT_SETUP, "%s command failed (status %#x): %s", what, st, cmd);
}

/* The sync under test; 0 or an errno. */
static int do_sync(int fd, void *map, struct ibv_mr **mr)
{
	if (!strcmp(o.sync, "msync"))
		return msync(map, o.size, MS_SYNC) ? errno : 0;
	if (!strcmp(o.sync, "fsync"))
		return fsync(fd) ? errno : 0;
	if (!strcmp(o.sync, "fdatasync"))
		return fdatasync(fd) ? errno : 0;
	int err = ibv_dereg_mr(*mr);	/* durable; on failure the MR stays */
	if (!err)
		*mr = NULL;
	return err;
}

static const char *ename(int err) { return err ? strerrorname_np(err) : "0"; }

/* Compare FILE with the NIC's bytes: O_DIRECT (the disk) or ordinary reads. */
static void compare(const char *path, bool direct, size_t *bad, size_t *old)
{
	uint8_t *buf = aligned_alloc(4096, o.size);
	int fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
	ssize_t n;

	if (!buf || fd < 0)
		die(EXIT_SETUP, "open %s: %s", path, strerror(errno));
	n = pread(fd, buf, o.size, 0);
	if (n != (ssize_t)o.size)
		die(EXIT_DATA, "%s read of %s: %s", direct ? "O_DIRECT" : "cold", path,
		    n < 0 ? strerror(errno) : "short read");
	*bad = *old = 0;
	for (size_t i = 0; i < o.size; i++) {
		*bad += buf[i] != final_byte(i);
		*old += buf[i] != final_byte(i) && buf[i] == old_byte(i);
	}
	close(fd);
	free(buf);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: eio_write [-d DEV] [-s BYTES] [-y msync|fsync|fdatasync|dereg] [-t TRIES]\n"
		"                 -F FAILCMD -R RESTORECMD FILE\n"
		"       eio_write -V [-s BYTES] FILE...  (check each FILE holds the NIC's bytes)\n");
	exit(EXIT_SETUP);
}

static void parse(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "d:s:y:t:F:R:V")) != -1) {
		switch (c) {
		case 'd': o.dev = optarg; break;
		case 's': o.size = strtoull(optarg, NULL, 0); break;
		case 'y': o.sync = optarg; break;
		case 't': o.tries = atoi(optarg); break;
		case 'F': o.failcmd = optarg; break;
		case 'R': o.restorecmd = optarg; break;
		case 'V': o.verify_only = true; break;
		default: usage();
		}
	}
	if (optind >= argc || (optind != argc - 1 && !o.verify_only) ||
	    o.size < REWRITE_PAGES * 4096u || o.size % 4096 || o.tries < 1)
		usage();
	if (strcmp(o.sync, "msync") && strcmp(o.sync, "fsync") && strcmp(o.sync, "fdatasync") &&
	    strcmp(o.sync, "dereg"))
		usage();
	if (!o.verify_only && (!o.failcmd || !o.restorecmd))
		usage();
	o.path = argv[optind];
	o.paths = argv + optind;
}

int main(int argc, char **argv)
{
	size_t bad, old;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv);
	if (o.verify_only) {
		int ret = 0;

		rewritten = true;
		for (char **p = o.paths; *p; p++) {
			compare(*p, false, &bad, &old);
			if (bad)
				printf("FAIL: %s: %zu of %zu bytes are not the NIC's (%zu old)\n",
				       *p, bad, o.size, old);
			else
				printf("PASS: %s holds the NIC's %zu bytes\n", *p, o.size);
			ret |= bad ? EXIT_DATA : 0;
		}
		return ret;
	}
	rc_open(&rc, o.dev);

	uint8_t *src = aligned_alloc(4096, o.size);
	if (!src)
		die(EXIT_SETUP, "out of memory");
	for (size_t i = 0; i < o.size; i++)
		src[i] = old_byte(i);
	fd = open(o.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || pwrite(fd, src, o.size, 0) != (ssize_t)o.size || fsync(fd))
		die(EXIT_SETUP, "create %s: %s", o.path, strerror(errno));
	uint8_t *map = mmap(NULL, o.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die(EXIT_SETUP, "mmap: %s", strerror(errno));
	struct ibv_mr *smr = ibv_reg_mr(rc.pd, src, o.size, IBV_ACCESS_LOCAL_WRITE);
	if (!smr)
		die(EXIT_SETUP, "ibv_reg_mr (anonymous source): %s", strerror(errno));
	struct ibv_mr *mr = ibv_reg_mr(rc.pd, map, o.size,
				       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr)
		die(EXIT_REG, "ibv_reg_mr of the file mapping: %s (errno %d)", strerror(errno), errno);
	/* Everything durable before the failure, the file's creation too:
	 * the only writes in the failure window are the sync's own (btrfs
	 * commits the whole transaction on some fsyncs).  The first syncfs
	 * may report an earlier run's error not yet seen on this fs. */
	if (msync(map, o.size, MS_SYNC) || fsync(fd) || (syncfs(fd) && syncfs(fd)))
		die(EXIT_SETUP, "cleaning msync/fsync/syncfs: %s", strerror(errno));

	for (size_t i = 0; i < o.size; i++)
		src[i] = nic_byte(i, 0);
	rc_write(&rc, smr, src, o.size, map, mr->rkey);

	run_cmd("fail", o.failcmd);
	int fail_err = do_sync(fd, map, &mr);

	/* More NIC writes after the failed sync (the MR is still there if
	 * the sync was a deregistration that failed). */
	if (mr) {
		for (size_t i = 0; i < REWRITE_PAGES * 4096u; i++)
			src[i] = nic_byte(i, 1);
		rc_write(&rc, smr, src, REWRITE_PAGES * 4096u, map, mr->rkey);
		rewritten = true;
	}
	run_cmd("restore", o.restorecmd);

	int tries = 0, err = EINVAL;
	while (tries < o.tries && err) {
		tries++;
		err = mr || strcmp(o.sync, "dereg") ? do_sync(fd, map, &mr) : 0;
	}
	compare(o.path, true, &bad, &old);
	printf("RESULT sync=%s size=%zu failing=%s rewritten=%s retries=%d retry=%s disk_bad=%zu disk_old=%zu\n",
	       o.sync, o.size, ename(fail_err), rewritten ? "yes" : "no",
	       tries, ename(err), bad, old);
	if (!fail_err)
		die(EXIT_NOERR, "%s returned 0 while the device failed writes (disk: %zu of %zu bytes wrong)",
		    o.sync, bad, o.size);
	if (err)
		die(EXIT_RETRY, "%s failed during the failure (%s), and %d retries failed: %s",
		    o.sync, ename(fail_err), tries, ename(err));
	if (bad)
		die(EXIT_DATA, "%s: %s during the failure, 0 on retry %d, but the disk lacks %zu of %zu "
		    "bytes the NIC wrote (%zu hold the old data)", o.sync, ename(fail_err), tries,
		    bad, o.size, old);
	printf("PASS: %s failed (%s) while the device failed writes, retry %d returned 0, "
	       "the disk holds all %zu bytes the NIC wrote\n", o.sync, ename(fail_err), tries, o.size);
	/* Nothing is pending now: an error here was already reported (and
	 * the data is on disk), so it must not come back. */
	if (mr && (err = ibv_dereg_mr(mr)))
		die(EXIT_DATA, "ibv_dereg_mr after the retried %s returned 0 and the disk held every "
		    "byte: %s", o.sync, ename(err));
	ibv_dereg_mr(smr);
	munmap(map, o.size);
	close(fd);
	return 0;
}
