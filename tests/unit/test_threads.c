/* SPDX-License-Identifier: MIT */
/* Concurrency: threads registering, deregistering and syncing overlapping
 * ranges of one file for a few seconds; then the file holds, in every
 * page, each thread's last value. */
#include <stdatomic.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tutil.h"

#define NTHREADS 6
#define NPAGES 32

static uint8_t *base;
static char fpath[600];
static double deadline;
/* Registrations made by all workers: the test runs for its time and for
 * at least MIN_REGS of them, however slow the machine (sanitizers, load). */
#define MIN_REGS 101
static _Atomic unsigned long nregs;

struct worker {
	int id;
	unsigned int seed;
	uint64_t last[NPAGES];	/* value this thread last stored per page, 0 = none */
	char err[256];
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Each thread owns 8 bytes of every page (offset 64 * id). */
static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t seq = 0;

	while (now() < deadline || atomic_load(&nregs) < MIN_REGS) {
		size_t first = rand_r(&w->seed) % NPAGES;
		size_t n = 1 + rand_r(&w->seed) % (NPAGES - first);
		struct ibv_mr *mr = safe_mr_reg_mr(tu_pd, base + first * ps, n * ps, RW);
		int rounds = 1 + rand_r(&w->seed) % 4, rc;

		if (!mr) {
			snprintf(w->err, sizeof(w->err), "reg [%zu,+%zu): %s", first, n, strerror(errno));
			return NULL;
		}
		atomic_fetch_add(&nregs, 1);
		for (int r = 0; r < rounds; r++) {
			size_t pg = rand_r(&w->seed) % n;
			uint64_t v = ((uint64_t)(w->id + 1) << 48) | ++seq;

			rc = fake_nic_write(mr, pg * ps + 64 * (size_t)w->id, &v, sizeof(v));
			if (rc) {
				snprintf(w->err, sizeof(w->err), "nic write page %zu: %s", first + pg,
					 strerror(rc));
				return NULL;
			}
			w->last[first + pg] = v;
			if (rand_r(&w->seed) % 3 == 0 &&
			    (rc = safe_mr_sync(mr, 0, 0, rand_r(&w->seed) % 2))) {
				snprintf(w->err, sizeof(w->err), "sync: %s", strerror(rc));
				return NULL;
			}
		}
		rc = safe_mr_dereg_mr(mr);
		if (rc) {
			snprintf(w->err, sizeof(w->err), "dereg: %s", strerror(rc));
			return NULL;
		}
	}
	return NULL;
}

START_TEST(concurrent_overlapping)
{
	int fd = tu_file(NPAGES * ps, 91, fpath, sizeof(fpath));
	static struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	const char *secs = getenv("TEST_THREADS_SECONDS");

	base = tu_map(fd, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	deadline = now() + (secs ? atof(secs) : 3.0);
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .id = i, .seed = 1000u + (unsigned int)i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_msg(w[i].err[0] == 0, "thread %d: %s", i, w[i].err);
	ck_assert_uint_eq(fake_nic_mr_count(), 0);
	ck_assert_uint_eq(tu_stats().shadow_bytes_now, 0);
	fprintf(stderr, "threads: %d threads, %llu registrations, %llu bytes written back\n",
		NTHREADS, (unsigned long long)tu_stats().registrations,
		(unsigned long long)tu_stats().bytes_written_back);
	ck_assert_uint_ge(tu_stats().registrations, atomic_load(&nregs));
	ck_assert_uint_ge(atomic_load(&nregs), MIN_REGS);
	tu_assert_shadow_mask(base, NPAGES, 0);
	for (size_t pg = 0; pg < NPAGES; pg++) {
		for (int i = 0; i < NTHREADS; i++) {
			off_t off = (off_t)(pg * ps + 64 * (size_t)i);

			if (w[i].last[pg])
				tu_assert_file(fpath, off, &w[i].last[pg], 8);
			else
				tu_assert_file_pattern(fpath, off, 8, 91);
		}
	}
	/* The restored mapping agrees with the file. */
	tu_assert_file(fpath, 0, base, NPAGES * ps);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("threads");
	TCase *tc = tu_tcase("threads");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, concurrent_overlapping);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
