/* SPDX-License-Identifier: MIT */
/* The engine across fork, over time (SAFE_MR_FLUSH_MS), at exit and at
 * unload. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "safe_mr.h"
#include "shadow.h"
#include "guard.h"
#include "vma.h"
#include "pool.h"

void sm_stats_print(void);

/* The process that owns the engine's state: a vfork child (no atfork
 * handler ran) shares it, and must not end the parent's guardian. */
static pid_t engine_pid;

/* ---------------------------------------------------------------- flusher */

static pthread_t flusher;
static bool flusher_running;
static pthread_mutex_t fl_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fl_cond;
static bool fl_stop;

static void *flusher_main(void *arg)
{
	struct timespec at;

	(void)arg;
	pthread_mutex_lock(&fl_lock);
	clock_gettime(CLOCK_MONOTONIC, &at);
	while (!fl_stop) {
		at.tv_sec += sm_cfg.flush_ms / 1000;
		at.tv_nsec += (long)(sm_cfg.flush_ms % 1000) * 1000000L;
		if (at.tv_nsec >= 1000000000L) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000L;
		}
		while (!fl_stop && pthread_cond_timedwait(&fl_cond, &fl_lock, &at) != ETIMEDOUT)
			;
		if (fl_stop)
			break;
		pthread_mutex_unlock(&fl_lock);
		sm_lock_take();
		if (sm_chunks && sm_sync_everything(0) == 0)
			sm_hold_reap();
		sm_lock_drop();
		pthread_mutex_lock(&fl_lock);
	}
	pthread_mutex_unlock(&fl_lock);
	return NULL;
}

/* Engine lock held. */
void sm_flusher_start(void)
{
	pthread_condattr_t ca;

	if (flusher_running || !sm_cfg.flush_ms)
		return;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fl_cond, &ca);
	pthread_condattr_destroy(&ca);
	fl_stop = false;
	if (pthread_create(&flusher, NULL, flusher_main, NULL) == 0)
		flusher_running = true;
	else
		sm_warn("cannot start the SAFE_MR_FLUSH_MS thread");
}

/* The thread runs our code: it must be gone before the code is (dlclose). */
static void flusher_stop(void)
{
	if (!flusher_running)
		return;
	pthread_mutex_lock(&fl_lock);
	fl_stop = true;
	pthread_cond_signal(&fl_cond);
	pthread_mutex_unlock(&fl_lock);
	pthread_join(flusher, NULL);
	flusher_running = false;
}

/* ---------------------------------------------------------------- fork */

static bool fork_locked;

/* Before fork: shadow contents go to the page cache, so the child, which
 * gets the file mappings back, sees what the parent's shadows held. */
static void fork_prepare(void)
{
	/* A fork from a signal handler that interrupted the engine in this
	 * thread: the lock is ours already and the registry mid-change. */
	fork_locked = !sm_lock_mine;
	if (!fork_locked)
		return;
	sm_lock_take();
	if (sm_chunks) {
		int err = sm_sync_everything(0);

		if (err)
			sm_warn("fork: shadowed data not written back (%s): the child sees the "
				"file as of the last sync point", strerror(err));
	}
}

static void fork_parent(void)
{
	if (fork_locked)
		sm_lock_drop();
}

/* The child does not inherit registrations (the NIC's pins stay the
 * parent's), so it gets back plain file mappings at the shadowed
 * addresses: its reads and writes go to the file like any other process's,
 * and it never shares arena memory the parent will free and reuse. */
static void fork_child(void)
{
	engine_pid = getpid();
	/* The parent's guardian must see the parent's end, not ours. */
	sm_guard_forget(!fork_locked);
	if (!fork_locked)
		return;		/* documented: the child keeps sharing the shadows */
	sm_vma_reset();		/* the inherited /proc/self/maps is the parent's */
	while (sm_chunks) {
		struct sm_chunk *c = sm_chunks;

		sm_chunks = c->next;
		for (size_t i = 0; i < c->npages;) {
			size_t j = i;
			int prot;

			while (j < c->npages && c->pg[j].state == PG_MAPPED)
				j++;
			if (j > i && sm_still_ours(c, i, j - i, &prot))
				sm_map_file_back(c, i, j - i, prot, true);
			i = j > i ? j : i + 1;
		}
		sm_keeper_drop(c, 0, c->npages);
		if (c->own_alias)
			sm_sys_munmap(c->alias, c->npages * sm_page_size);
		free(c);
	}
	while (sm_holds) {
		struct sm_hold *h = sm_holds;

		sm_holds = h->next;
		free(h->seg);
		free(h);
	}
	sm_nchunks = 0;
	sm_npending = 0;
	sm_registry_forget();
	flusher_running = false;
	sm_file_reset();
	sm_arena_reset();
	atomic_store(&sm_stats.shadow_bytes_now, 0);
	sm_lock_drop();
}

__attribute__((constructor)) static void lifecycle_ctor(void)
{
	engine_pid = getpid();
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---------------------------------------------------------------- exec */

/* exec ends the old image as exit does: what the shadows hold is written
 * back and made durable, and the guardian is told, so that no late
 * writeback of the old image lands after the new image wrote the file. */
SM_EXPORT int safe_mr_exec_prepare(void)
{
	int err = 0;

	if (getpid() != engine_pid)
		return 0;
	if (sm_reentered())
		return EDEADLK;
	if (atomic_load(&sm_nchunks))
		err = safe_mr_sync_all(SAFE_MR_SYNC_DURABLE);
	if (err) {
		sm_error("exec: shadowed data could not be written back (%s): the guardian "
			 "writes it after the exec", strerror(err));
		return err;
	}
	sm_lock_take();
	sm_guard_clean();
	sm_lock_drop();
	return 0;
}

SM_EXPORT void safe_mr_exec_failed(void)
{
	if (getpid() != engine_pid || sm_reentered())
		return;
	sm_lock_take();
	sm_guard_exec_failed();
	sm_lock_drop();
}

/* ------------------------------------------------------ exit and unload */

/* Everything is durable: the guardian can go without looking.  The lock
 * is not ours if a signal handler interrupted the engine here (exit from
 * a handler): then the guardian checks the shadows after we are gone. */
static void clean_exit(void)
{
	if (sm_reentered())
		return;
	sm_lock_take();
	sm_guard_clean();
	sm_lock_drop();
}

/* Nothing shadowed, nothing held: give back everything the engine opened
 * (the arena and its address-space window, /proc/self/maps, the scratch
 * buffers, this thread's ring), so that dlopen/dlclose cycles accumulate
 * nothing.  With shadows left (unload while registered) all of it stays:
 * the application's pages are arena memory. */
static void release_idle(void)
{
	if (sm_reentered())
		return;
	sm_lock_take();
	if (!atomic_load(&sm_nchunks) && !sm_holds) {
		sm_vma_reset();
		sm_file_reset();
		sm_arena_reset();
		sm_scratch_free();
		sm_wb_unload();
	}
	sm_lock_drop();
}

/* Process exit is a sync point: everything shadowed is written back and
 * made durable.  At dlclose the flusher stops first: its code is going. */
__attribute__((destructor)) static void lifecycle_fini(void)
{
	flusher_stop();
	if (!sm_reentered())
		sm_guard_thread_stop();
	if (atomic_load(&sm_nchunks)) {
		int err = sm_reentered() ? EDEADLK : safe_mr_sync_all(SAFE_MR_SYNC_DURABLE);

		if (err)
			sm_error("at exit: shadowed data could not be written back: %s",
				 strerror(err));
		else
			clean_exit();
	} else {
		clean_exit();
	}
	release_idle();
	/* After the last writeback: the workers run our code. */
	sm_pool_stop();
	sm_init();
	if (sm_cfg.stats_at_exit)
		sm_stats_print();
}
