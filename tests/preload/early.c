/* SPDX-License-Identifier: MIT */
/* Early and concurrent use of the interposed libc calls must neither
 * deadlock nor misbehave: a library constructor (early_lib.c) and this
 * program's constructor use them before main, then THREADS threads use
 * them at once.  meson runs it with a timeout. */
#include <pthread.h>

#include "early.h"

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

int main(void)
{
	pthread_t t[THREADS];

	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, worker, NULL))
			die("pthread_create");
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	printf("ok: constructors and %d threads x %d rounds of msync/mremap/munmap/fsync/fdatasync\n",
	       THREADS, ROUNDS);
	return 0;
}
