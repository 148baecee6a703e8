/* SPDX-License-Identifier: MIT */
/* The second thread: stores a few values into the mapping, one by one, with
 * random pauses between them, while the main thread registers or
 * deregisters it: some land before the call, some during it, some after.
 * Each place is written once, so each value must be in memory at the end;
 * a store the engine loses (set-up or restore racing the CPU) is visible. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#include "model.h"

static struct race_slot slots[8];
static unsigned int pause_spins[8];
static int nslots;
static pthread_t thr;
static bool started, after, idle_done;

static void *idle(void *arg)
{
	return arg;
}

/* Not instrumented by ThreadSanitizer: these stores race the engine's
 * MAP_FIXED swaps on purpose (an application may store while another
 * thread registers); what TSan is for here is the engine's own state. */
__attribute__((no_sanitize_thread)) static void *racer(void *arg)
{
	(void)arg;
	for (int k = 0; k < nslots; k++) {
		for (volatile unsigned int i = 0; i < pause_spins[k]; i++)
			;
		/* One plain store per byte: the engine cannot tell who wrote. */
		for (int i = 0; i < 8; i++)
			slots[k].addr[i] = slots[k].val[i];
	}
	return NULL;
}

void race_start(const struct race_slot *s, int n)
{
	nslots = n < 8 ? n : 8;
	memcpy(slots, s, (size_t)nslots * sizeof(*s));
	for (int k = 0; k < nslots; k++)
		pause_spins[k] = rn(4) ? rn(30000) : 0;
	/* MODEL_RACE_BEFORE: every store lands before the call;
	 * MODEL_RACE_AFTER: every store lands after it returns (timings of
	 * the race made deterministic, to reproduce a divergence). */
	after = getenv("MODEL_RACE_AFTER") != NULL;
	started = !getenv("MODEL_RACE_BEFORE") && !after;
	if (!started && !idle_done) {
		/* The engine as in a real race: its careful fills and
		 * restores start once a second thread has existed. */
		idle_done = true;
		if (pthread_create(&thr, NULL, idle, NULL) == 0)
			pthread_join(thr, NULL);
	}
	if (after)
		return;
	if (!started)
		racer(NULL);
	else if (pthread_create(&thr, NULL, racer, NULL))
		fail("pthread_create failed");
}

void race_stop(void)
{
	if (started)
		pthread_join(thr, NULL);
	else if (after)
		racer(NULL);
}
