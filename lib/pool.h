/* SPDX-License-Identifier: MIT */
/* The library's worker threads (pool.c): computation only, jobs of n
 * items claimed in order below a limit the caller moves on. */
#ifndef SAFE_MR_POOL_H
#define SAFE_MR_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef void (*sm_job_fn)(void *arg, size_t item);

/* Fields are the pool's (under its lock). */
struct sm_job {
	sm_job_fn fn;
	void *arg;
	size_t n, next, limit;
	size_t wake_batch;	/* wake sleeping workers for this many items */
	unsigned int busy;	/* workers running an item */
	bool waiting;		/* the caller sleeps on an item */
	_Atomic unsigned char *done;	/* per item */
};

/* Threads a job may use, the caller included (1: no pool). */
unsigned int sm_pool_size(void);
/* Start a job (workers started if need be).  false: no pool, another job
 * running, or no memory: the caller does the items itself.  Nothing is
 * claimed by workers before sm_pool_allow. */
bool sm_pool_begin(struct sm_job *j, size_t n, sm_job_fn fn, void *arg, size_t wake_batch);
/* Workers may claim items below `limit`. */
void sm_pool_allow(struct sm_job *j, size_t limit);
/* Item i is done when this returns (run by the caller if unclaimed). */
void sm_pool_wait(struct sm_job *j, size_t i);
/* Every item done and no worker in the job any more. */
void sm_pool_end(struct sm_job *j);
/* All n items, on the pool where there is one. */
void sm_pool_run(size_t n, sm_job_fn fn, void *arg);
/* Unload: join the workers; no pool afterwards. */
void sm_pool_stop(void);
/* Workers that may exist now. */
unsigned int sm_pool_threads(void);
/* Could a thread other than the caller and the pool's touch memory now?
 * (Engine lock held.) */
bool sm_other_threads(void);

#endif
