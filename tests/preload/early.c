/* SPDX-License-Identifier: MIT */
/* Early and concurrent use of the interposed libc calls must neither
 * deadlock nor misbehave: a library constructor (early_lib.c) and this
 * program's constructor use them before main, then THREADS threads use
 * them at once.  meson runs it with a timeout. */
#include <pthread.h>

#include "early.h"

int early_lib_report(unsigned out[5], const char *const **names);

#define THREADS 8
#define ROUNDS 50

__attribute__((constructor)) static void early_main_init(void)
{
	early_exercise("program constructor");
}

static void *worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++)
		early_exercise("worker thread");
	return NULL;
}

int main(int argc, char **argv)
{
	int spy = argc > 1 && !strcmp(argv[1], "spy");
	const char *const *names;
	unsigned counts[5];
	pthread_t t[THREADS];
	int got = early_lib_report(counts, &names);

	/* 1: the library constructor ran; 2: and a spy counted its calls. */
	if (got != 1 + spy)
		die("early_lib_report: %d, want %d", got, 1 + spy);
	for (int i = 0; spy && i < 5; i++) {
		printf("library constructor: the spy saw %u of 1 %s\n", counts[i], names[i]);
		if (counts[i] != 1)
			die("a call made before safe_mr's constructor did not reach the next definition once");
	}

	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, worker, NULL))
			die("pthread_create");
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	printf("ok: constructors and %d threads x %d rounds of msync/mremap/munmap/fsync/fdatasync\n",
	       THREADS, ROUNDS);
	return 0;
}
