/* SPDX-License-Identifier: MIT */
/* A thread keeps writing a file mapping while another registers it
 * (the shadow is swapped in) and deregisters it (the file mapping comes
 * back).  Every word the writer stored must be in memory and in the file
 * at the end: a store that lands on the old side of a swap is merged into
 * the new side, not overwritten.  (The engine once lost the stores made
 * to a page between the shadow's fill and its swap, and at deregistration
 * wrote a stale shadow page over stores made to the restored mapping.) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tutil.h"

#define LEN (16u << 20)
#define WORDS (LEN / 8)
#define TRIALS 6

struct writer {
	uint64_t *p;
	atomic_bool stop;
	uint64_t pass, pos;	/* where it stopped */
};

static inline uint64_t val(uint64_t pass, uint64_t j)
{
	return pass << 32 | j;
}

/* Sweeps the mapping, storing val(pass, j) at word j, pass after pass. */
static void *sweep(void *arg)
{
	struct writer *w = arg;

	for (uint64_t pass = 1;; pass++) {
		for (uint64_t j = 0; j < WORDS; j++) {
			if ((j & 1023) == 0 && atomic_load_explicit(&w->stop, memory_order_relaxed)) {
				w->pass = pass;
				w->pos = j;
				return NULL;
			}
			__atomic_store_n(&w->p[j], val(pass, j), __ATOMIC_RELAXED);
		}
	}
}

static uint64_t expected(const struct writer *w, uint64_t j)
{
	return j < w->pos ? val(w->pass, j) : w->pass > 1 ? val(w->pass - 1, j) : 0;
}

static void settle(unsigned int ms)
{
	struct timespec ts = { 0, (long)ms * 1000000L };

	nanosleep(&ts, NULL);
}

static void run_trial(unsigned int trial, bool through_dereg)
{
	char path[600];
	int fd = tu_file(LEN, 0, path, sizeof(path));
	struct writer w = { 0 };
	struct ibv_mr *mr;
	pthread_t t;
	uint64_t *disk, bad = 0, first_bad = 0;

	/* start from zeros: expected() of a word never written is 0 */
	ck_assert_int_eq(ftruncate(fd, 0), 0);
	ck_assert_int_eq(ftruncate(fd, LEN), 0);
	w.p = tu_map(fd, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, sweep, &w), 0);
	settle(1 + trial % 3);
	mr = safe_mr_reg_mr(tu_pd, w.p, LEN, RW);
	ck_assert_ptr_nonnull(mr);
	if (through_dereg) {
		settle(2 + trial % 5);
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
		settle(2);
	}
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	if (!through_dereg)
		ck_assert_int_eq(safe_mr_dereg_mr(mr), 0);
	/* memory (now the file mapping again) and the file itself */
	for (uint64_t j = 0; j < WORDS; j++)
		if (w.p[j] != expected(&w, j) && !bad++)
			first_bad = j;
	ck_assert_msg(!bad, "trial %u: %llu words lost in memory, first at word %llu: %#llx, want %#llx",
		      trial, (unsigned long long)bad, (unsigned long long)first_bad,
		      (unsigned long long)w.p[first_bad],
		      (unsigned long long)expected(&w, first_bad));
	disk = malloc(LEN);
	ck_assert_int_eq(pread(fd, disk, LEN, 0), (ssize_t)LEN);
	for (uint64_t j = 0; j < WORDS; j++)
		if (disk[j] != expected(&w, j) && !bad++)
			first_bad = j;
	ck_assert_msg(!bad, "trial %u: %llu words lost in the file, first at word %llu",
		      trial, (unsigned long long)bad, (unsigned long long)first_bad);
	free(disk);
	munmap(w.p, LEN);
	close(fd);
	unlink(path);
}

START_TEST(writes_racing_setup)
{
	for (unsigned int i = 0; i < TRIALS; i++)
		run_trial(i, false);
}
END_TEST

START_TEST(writes_racing_restore)
{
	for (unsigned int i = 0; i < TRIALS; i++)
		run_trial(i, true);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("races");
	TCase *tc = tu_tcase("races");

	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, writes_racing_setup);
	tcase_add_test(tc, writes_racing_restore);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
