/* SPDX-License-Identifier: MIT */
/* The library's worker threads (lib/pool.c): started at the first sync
 * large enough to use them and not before; as many as SAFE_MR_THREADS says
 * (the caller included), by default no more than the CPUs the process may
 * use; none with SAFE_MR_THREADS=0 or 1; a fork child starts its own and
 * works while the parent's keep working; and what they hash is written back
 * exactly (every changed page, nothing else).  Each case runs in a fresh
 * process (check's fork mode): the pool is per process. */
#include <dirent.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tutil.h"

/* 16 slices of 256 KiB: the smallest sync the pool is used for.  (The
 * sizes are small for ThreadSanitizer, which runs this test too.) */
#define BIG (4u << 20)

/* Threads of this process named safe_mr-pool. */
static int pool_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		char path[300], name[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f) && !strncmp(name, "safe_mr-pool", 12))
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

/* big_sync runs in a second thread and in fork children too, so it uses
 * none of check's calls: a passing ck_assert takes check's own mutex
 * (_mark_point), and a fork while another thread held it left the child
 * waiting for it forever.  It says what went wrong, or NULL. */
static __thread char why[1024];

#define NEED(cond, ...)                                                       \
	do {                                                                  \
		if (!(cond)) {                                                \
			snprintf(why, sizeof(why), __VA_ARGS__);              \
			return why;                                           \
		}                                                             \
	} while (0)

static uint64_t written_back(void)
{
	struct safe_mr_stats s;

	return safe_mr_stats(&s) == 0 ? s.bytes_written_back : UINT64_MAX;
}

/* The file holds want[0, BIG). */
static const char *file_is(const char *path, const uint8_t *want)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *got = malloc(BIG);
	size_t n = 0;
	bool same;

	NEED(fd >= 0 && got, "open %s: %s", path, strerror(errno));
	while (n < BIG) {
		ssize_t r = pread(fd, got + n, BIG - n, (off_t)n);

		if (r <= 0)
			break;
		n += (size_t)r;
	}
	same = n == BIG && !memcmp(got, want, BIG);
	free(got);
	close(fd);
	NEED(same, "%s does not hold what was synced", path);
	return NULL;
}

/* Shadow a BIG file, change every other page, sync: the file holds the
 * changes and only the changed pages were written.  (A fork by another
 * thread writes shadows back too, at any moment: the count of bytes
 * written starts before the first change.) */
static const char *big_sync_body(unsigned int seed, const char *path, uint8_t *want)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct safe_mr_range *r;
	const char *e;
	uint64_t before;
	uint8_t *p;

	NEED(fd >= 0, "open %s: %s", path, strerror(errno));
	for (size_t i = 0; i < BIG; i++)
		want[i] = tu_byte(seed, i);
	if (pwrite(fd, want, BIG, 0) != (ssize_t)BIG) {
		close(fd);
		NEED(0, "pwrite %s", path);
	}
	p = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	NEED(p != MAP_FAILED, "mmap: %s", strerror(errno));
	NEED(safe_mr_range_acquire(p, BIG, RW, NULL, &r) == 0, "acquire: %s", strerror(errno));
	NEED(safe_mr_range_shadowed(r) == BIG, "shadowed %zu of %u", safe_mr_range_shadowed(r), BIG);
	before = written_back();
	for (size_t pg = 0; pg < BIG / ps; pg += 2) {
		p[pg * ps + (pg * 13) % ps] ^= 0x5a;
		want[pg * ps + (pg * 13) % ps] ^= 0x5a;
	}
	NEED(safe_mr_range_sync(r, 0, 0, 0) == 0, "sync: %s", strerror(errno));
	NEED(written_back() - before == BIG / 2, "wrote %" PRIu64 " bytes, not %u",
	     written_back() - before, BIG / 2);
	if ((e = file_is(path, want)))
		return e;
	/* Nothing changed since: nothing written. */
	before = written_back();
	NEED(safe_mr_range_sync(r, 0, 0, 0) == 0, "sync: %s", strerror(errno));
	NEED(written_back() == before, "an unchanged range was written back");
	/* One page changed, the last: found by whoever hashed it. */
	p[BIG - 1] ^= 1;
	want[BIG - 1] ^= 1;
	NEED(safe_mr_range_sync(r, 0, 0, 0) == 0, "sync: %s", strerror(errno));
	NEED(written_back() - before == ps, "wrote %" PRIu64 " bytes for one page",
	     written_back() - before);
	NEED(safe_mr_range_release(r) == 0, "release: %s", strerror(errno));
	if ((e = file_is(path, want)))
		return e;
	munmap(p, BIG);
	return NULL;
}

static const char *try_big_sync(unsigned int seed)
{
	static _Atomic unsigned int n;
	char path[600];
	uint8_t *want = malloc(BIG);
	const char *e;

	snprintf(path, sizeof(path), "%s/big%u-%d-%u", tu_dir, seed, getpid(), n++);
	e = want ? big_sync_body(seed, path, want) : "out of memory";
	unlink(path);
	free(want);
	return e;
}

static void big_sync(unsigned int seed)
{
	const char *e = try_big_sync(seed);

	ck_assert_msg(!e, "%s", e);
}

/* SAFE_MR_THREADS=3: two workers, started by the first big sync only. */
START_TEST(lazy_and_sized)
{
	char path[600];
	int fd = tu_file(16 * ps, 1, path, sizeof(path));
	uint8_t *p = tu_map(fd, 16 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	struct safe_mr_range *r;

	setenv("SAFE_MR_THREADS", "3", 1);
	/* A small registration and sync: no pool. */
	ck_assert_int_eq(safe_mr_range_acquire(p, 16 * ps, RW, NULL, &r), 0);
	p[0] ^= 1;
	ck_assert_int_eq(safe_mr_range_sync(r, 0, 0, 0), 0);
	ck_assert_int_eq(safe_mr_range_release(r), 0);
	ck_assert_int_eq(pool_threads(), 0);
	big_sync(2);
	ck_assert_int_eq(pool_threads(), 2);
	big_sync(3);	/* the same workers again */
	ck_assert_int_eq(pool_threads(), 2);
	munmap(p, 16 * ps);
	close(fd);
	unlink(path);
}
END_TEST

static void no_pool_with(const char *v)
{
	setenv("SAFE_MR_THREADS", v, 1);
	big_sync(4);
	ck_assert_int_eq(pool_threads(), 0);
}

START_TEST(threads_0_no_pool)
{
	no_pool_with("0");
}
END_TEST

START_TEST(threads_1_no_pool)
{
	no_pool_with("1");
}
END_TEST

/* The default never exceeds the CPUs the process may run on: on one CPU,
 * no workers at all. */
START_TEST(default_one_cpu)
{
	cpu_set_t one;

	unsetenv("SAFE_MR_THREADS");
	setenv("SAFE_MR_TEST_IGNORE_LOAD", "1", 1);
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	big_sync(5);
	ck_assert_int_eq(pool_threads(), 0);
}
END_TEST

/* The default on this machine: min(4, CPUs) threads, workers one fewer
 * (used only while the load average leaves a CPU to spare: told to ignore
 * the load here, since test machines are busy). */
START_TEST(default_size)
{
	cpu_set_t set;
	int cpus, want;

	unsetenv("SAFE_MR_THREADS");
	setenv("SAFE_MR_TEST_IGNORE_LOAD", "1", 1);
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	cpus = CPU_COUNT(&set);
	want = (cpus < 4 ? cpus : 4) - 1;
	big_sync(6);
	ck_assert_int_eq(pool_threads(), want);
}
END_TEST

/* A thread that forks while the main thread syncs with the pool: the
 * child, with none of the parent's workers (nor the pool's lock as a
 * worker may have held it), syncs with workers of its own; the parent's
 * keep working. */
static _Atomic int stop_syncing;

static void *syncer(void *arg)
{
	const char *e = NULL;
	static char failed[sizeof(why)];	/* why is gone with this thread */

	(void)arg;
	for (unsigned int s = 10; !stop_syncing && !e; s++)
		e = try_big_sync(s);
	if (!e)
		return NULL;
	snprintf(failed, sizeof(failed), "%s", e);
	return failed;
}

START_TEST(fork_with_pool)
{
	pthread_t t;
	void *e;

	setenv("SAFE_MR_THREADS", "2", 1);
	big_sync(7);
	ck_assert_int_eq(pool_threads(), 1);
	ck_assert_int_eq(pthread_create(&t, NULL, syncer, NULL), 0);
	for (int k = 0; k < 4; k++) {
		pid_t pid;
		int st;

		usleep(20000 * k);
		pid = fork();
		if (pid == 0) {
			/* No check calls here: see big_sync. */
			int before = pool_threads();
			const char *err = try_big_sync(20 + k);

			if (err)
				dprintf(2, "child: %s\n", err);
			/* exit codes: 2 inherited workers, 3 none of its own, 4 the sync failed */
			_exit(err ? 4 : before != 0 ? 2 : pool_threads() != 1 ? 3 : 0);
		}
		ck_assert_int_ge(pid, 0);
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFEXITED(st), "child died: status %#x", st);
		ck_assert_msg(WEXITSTATUS(st) == 0, "child: exit %d (2: saw the parent's "
			      "workers, 3: started none, 4: its sync failed)", WEXITSTATUS(st));
	}
	stop_syncing = 1;
	ck_assert_int_eq(pthread_join(t, &e), 0);
	ck_assert_msg(!e, "the syncing thread: %s", (const char *)e);
	big_sync(30);
	ck_assert_int_eq(pool_threads(), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tu_tcase("pool");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, lazy_and_sized);
	tcase_add_test(tc, threads_0_no_pool);
	tcase_add_test(tc, threads_1_no_pool);
	tcase_add_test(tc, default_one_cpu);
	tcase_add_test(tc, default_size);
	tcase_add_test(tc, fork_with_pool);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
