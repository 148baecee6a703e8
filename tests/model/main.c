/* SPDX-License-Identifier: MIT */
/*
 * test_model: random operations on registered file mappings, checked
 * against a reference model of the README's coherence model.
 *
 *   test_model [--seed N] [--ops N] [--epoch N] [--errors]
 *              [--enable=race,failed_unmap,mremap,fsyncgate,strict_errors|all]
 *              [--drop-nic-write N] [--dir D] [-v]
 *
 * The run is split into epochs of --epoch operations, each in a fresh
 * process that ends with exit() (a durable sync point) or _exit() (none,
 * but the guardian writes the shadows back: SAFE_MR_GUARDIAN); this process
 * (a child subreaper, so that the orphaned guardian is its child) waits for
 * the guardian, then checks the files against what the model expects.
 * Exit status: 0 all agreed, 1 divergence (printed with the op number and
 * the options that reproduce it), 2 the test itself could not run.
 * --drop-nic-write N: negative control, the Nth NIC write of the first
 * epoch is not done although the model records it: the run must diverge
 * (status 1); any other outcome exits 0 so that meson's should_fail sees
 * it.  Environment: TEST_TMPDIR (default /tmp) must not be tmpfs;
 * MODEL_NO_LOOP=1 keeps the files there even as root (see loop_mount);
 * MODEL_CHECK_EVERY_OP=1 reads the files back after every operation;
 * MODEL_RACE_BEFORE=1 / MODEL_RACE_AFTER=1 land every racing store before /
 * after the call (race.c); MODEL_SAVE_EPOCH=N and MODEL_START_EPOCH=N with
 * MODEL_EPOCH_DIR=D save the files epoch N starts from, and run from them
 * (epoch_files below).
 */
#include <errno.h>
#include <getopt.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state.h"

struct opts opt = { .seed = 1, .ops = 20000, .epoch = 5000, .drop_nic = -1 };

static uint64_t st[4];

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rnd(void)
{
	uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;

	st[2] ^= st[0];
	st[3] ^= st[1];
	st[1] ^= st[2];
	st[0] ^= st[3];
	st[2] ^= t;
	st[3] = rotl(st[3], 45);
	return r;
}

void rnd_seed(uint64_t s)
{
	for (int i = 0; i < 4; i++) {	/* splitmix64 */
		uint64_t z = (s += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		st[i] = z ^ (z >> 31);
	}
}

/* Durable sync points are a large part of the operations: on a real disk
 * each flush waits for it.  As root, the files live on an ext4 of their
 * own, in a loop-mounted image in memory (still ext4, still shadowed, but
 * a flush costs microseconds).  Elsewhere: the directory as it is. */
static char mnt[600];

static const char *loop_mount(const char *dir)
{
	char img[] = "/dev/shm/safe_mr_model_XXXXXX", cmd[2000];
	int fd;

	if (geteuid() != 0 || getenv("MODEL_NO_LOOP"))
		return dir;
	fd = mkstemp(img);
	if (fd < 0)
		return dir;
	close(fd);
	snprintf(mnt, sizeof(mnt), "%.580s/mnt", dir);
	snprintf(cmd, sizeof(cmd),
		 "truncate -s 32M %s && mkfs.ext4 -q -F -O ^has_journal %s >/dev/null 2>&1 && mkdir -p %s && mount -o loop %s %s",
		 img, img, mnt, img, mnt);
	if (system(cmd)) {
		fprintf(stderr, "note: no loop-mounted ext4 (%s): files on %s, durable syncs at disk speed\n",
			cmd, dir);
		unlink(img);
		mnt[0] = '\0';
		return dir;
	}
	unlink(img);	/* the loop device keeps it while mounted */
	return mnt;
}

static void loop_umount(void)
{
	char cmd[1400];

	if (!mnt[0])
		return;
	snprintf(cmd, sizeof(cmd), "umount %s 2>/dev/null || umount -l %s", mnt, mnt);
	if (system(cmd))
		fprintf(stderr, "cannot umount %s\n", mnt);
}

/* Debugging aid: an epoch depends only on the seed, its number and the
 * files it starts from.  MODEL_SAVE_EPOCH=N with MODEL_EPOCH_DIR=D copies
 * the files as epoch N starts into D and ends the run there;
 * MODEL_START_EPOCH=N (same D) skips epochs 0..N-1 and starts N from the
 * saved files: a timing-dependent divergence in epoch N is then tried again
 * in a second instead of a whole run. */
static bool copy_file(const char *from, const char *to)
{
	char cmd[1400];

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	return system(cmd) == 0;
}

/* 0: run epoch e; 1: skip it; 2: stop here (files saved); -1: failed. */
static int epoch_files(unsigned long e, unsigned long *done)
{
	const char *save = getenv("MODEL_SAVE_EPOCH"), *start = getenv("MODEL_START_EPOCH");
	const char *d = getenv("MODEL_EPOCH_DIR");
	char p[700];

	if (!d)
		return 0;
	if (save && strtoul(save, NULL, 0) == e) {
		for (int f = 0; f < NF; f++) {
			snprintf(p, sizeof(p), "%s/file%d", d, f);
			if (!copy_file(mf[f].path, p))
				return -1;
		}
		fprintf(stderr, "epoch %lu: files saved in %s\n", e, d);
		return 2;
	}
	if (start && e < strtoul(start, NULL, 0)) {
		*done += opt.epoch;
		if (e + 1 == strtoul(start, NULL, 0))
			for (int f = 0; f < NF; f++) {
				snprintf(p, sizeof(p), "%s/file%d", d, f);
				if (!copy_file(p, mf[f].path))
					return -1;
			}
		return 1;
	}
	return 0;
}

static unsigned int parse_gates(const char *s)
{
	static const struct { const char *name; unsigned int bit; } g[] = {
		{ "race", GATE_RACE }, { "failed_unmap", GATE_FAILED_UNMAP },
		{ "mremap", GATE_MREMAP }, { "fsyncgate", GATE_FSYNCGATE },
		{ "strict_errors", GATE_STRICT_ERR }, { "all", ~0u },
	};
	unsigned int bits = 0;
	char *copy = strdup(s), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		unsigned int b = 0;

		for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
			if (!strcmp(t, g[i].name))
				b = g[i].bit;
		if (!b && *t) {
			fprintf(stderr, "unknown class '%s'\n", t);
			exit(2);
		}
		bits |= b;
	}
	free(copy);
	return bits;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seed", required_argument, NULL, 's' }, { "ops", required_argument, NULL, 'n' },
		{ "epoch", required_argument, NULL, 'e' }, { "errors", no_argument, NULL, 'E' },
		{ "enable", required_argument, NULL, 'g' },
		{ "drop-nic-write", required_argument, NULL, 'd' },
		{ "dir", required_argument, NULL, 'D' }, { "verbose", no_argument, NULL, 'v' },
		{ 0 },
	};
	const char *base = getenv("TEST_TMPDIR");
	char dir[600];
	struct statfs sfs;
	bool negative, saved = false;
	int c, status = 0;

	while ((c = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
		switch (c) {
		case 's': opt.seed = strtoull(optarg, NULL, 0); break;
		case 'n': opt.ops = strtoul(optarg, NULL, 0); break;
		case 'e': opt.epoch = strtoul(optarg, NULL, 0); break;
		case 'E': opt.errors = true; break;
		case 'g': opt.gates |= parse_gates(optarg); opt.enable = optarg; break;
		case 'd': opt.drop_nic = strtol(optarg, NULL, 0); break;
		case 'D': base = optarg; break;
		case 'v': opt.verbose = true; break;
		default: return 2;
		}
	}
	negative = opt.drop_nic >= 0;
	if (!opt.epoch)
		opt.epoch = opt.ops ? opt.ops : 1;
	PS = (size_t)sysconf(_SC_PAGESIZE);
	if (PS != 4096) {
		fprintf(stderr, "test_model assumes 4 KiB pages\n");
		return negative ? 0 : 2;
	}
	snprintf(dir, sizeof(dir), "%s/modelXXXXXX", base ? base : "/tmp");
	if (!mkdtemp(dir) || statfs(dir, &sfs)) {
		fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
		return negative ? 0 : 2;
	}
	if (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC) {
		fprintf(stderr, "%s is tmpfs: safe_mr never shadows it, the test would prove nothing (set TEST_TMPDIR)\n",
			dir);
		return negative ? 0 : 2;
	}
	opt.dir = loop_mount(dir);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	rnd_seed(opt.seed);
	model_create_files();
	for (unsigned long done = 0, e = 0; done < opt.ops && !status; e++) {
		unsigned long n = opt.ops - done < opt.epoch ? opt.ops - done : opt.epoch;
		int ws, ef = epoch_files(e, &done);
		pid_t pid;

		if (ef < 0)
			status = 2;
		if (ef < 0 || ef == 2) {
			saved = ef == 2;
			break;
		}
		if (ef)
			continue;

		fflush(stderr);
		pid = fork();
		if (pid < 0) {
			perror("fork");
			status = 2;
			break;
		}
		if (pid == 0) {
			rnd_seed(opt.seed * 1000003u + e + 1);
			model_epoch(done, n, (int)e);
		}
		if (waitpid(pid, &ws, 0) != pid) {
			status = 2;
			break;
		}
		/* The epoch's guardian (and the error injector), orphaned to us. */
		while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
			;
		if (!WIFEXITED(ws) || WEXITSTATUS(ws)) {
			if (WIFSIGNALED(ws))
				fprintf(stderr, "epoch %lu (seed %llu, ops %lu..%lu) killed by signal %d\n",
					e, (unsigned long long)opt.seed, done, done + n - 1, WTERMSIG(ws));
			status = WIFEXITED(ws) && WEXITSTATUS(ws) == 1 ? 1 : 2;
			break;
		}
		status = model_check_images((int)e);
		done += n;
	}
	loop_umount();
	if (!status) {
		char cmd[700];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			fprintf(stderr, "cannot remove %s\n", dir);
	}
	if (negative) {
		if (status == 1) {
			fprintf(stderr, "negative control: the dropped NIC write was caught\n");
			return 1;
		}
		fprintf(stderr, "negative control: the dropped NIC write was NOT caught (status %d)\n",
			status);
		return 0;
	}
	if (!status && !saved)
		printf("seed %llu: %lu operations agree with the model\n",
		       (unsigned long long)opt.seed, opt.ops);
	return status;
}
