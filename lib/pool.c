/* SPDX-License-Identifier: MIT */
/*
 * The library's own worker threads: a few, started at the first job that
 * can use them, that run pure computation (page hashes) on memory the
 * engine hands them.  They never take the engine lock, never call back into
 * the application and run with every signal blocked.
 *
 * One job at a time (jobs run under the engine lock; a second is refused
 * and its caller works alone).  A job is n items; workers claim them in
 * order, but only below a limit the caller moves on (what is ready, or a
 * window ahead of what it has consumed, so that what they read is still in
 * cache when the caller uses it).  The caller runs any item nobody has
 * claimed when it needs it, so a job finishes even with every worker busy
 * or gone.
 *
 * Size: SAFE_MR_THREADS threads in all, the caller included (0 and 1: no
 * pool); by default min(4, the CPUs this process may run on), used only
 * while the load average leaves a CPU to spare.  A fork child
 * has none of its parent's threads: it starts its own when it needs them.
 * At unload (dlclose, exit) they are joined: their code is going.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#include "internal.h"
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() __asm__ volatile("" ::: "memory")
#endif

#define POOL_MAX 16	/* workers */
#define POOL_DEFAULT 4	/* threads, the caller included */

static pthread_mutex_t pm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cond = PTHREAD_COND_INITIALIZER;	/* workers wait */
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;	/* the caller waits */
static pthread_t workers[POOL_MAX];
static unsigned int nworkers;		/* started and not joined */
static unsigned int sleepers;		/* workers waiting for work */
static bool stopping;			/* workers: leave */
static bool gone;			/* unloaded: no pool, ever again */
static struct sm_job *cur;		/* the job being run, or NULL */
static _Atomic unsigned int nthreads_live;	/* workers that may exist (sm_pool_threads) */

static unsigned int affinity_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned int)CPU_COUNT(&set);
	return 1;
}

unsigned int sm_pool_size(void)
{
	static _Atomic unsigned int size;	/* 0: not computed yet */
	unsigned int n = atomic_load_explicit(&size, memory_order_relaxed);

	if (n)
		return n;
	sm_init();
	if (sm_cfg.threads >= 0) {
		n = (unsigned int)sm_cfg.threads;
	} else {
		unsigned int cpus = affinity_cpus();

		n = cpus < POOL_DEFAULT ? cpus : POOL_DEFAULT;
	}
	if (n < 1)
		n = 1;
	if (n > POOL_MAX + 1)
		n = POOL_MAX + 1;
	atomic_store_explicit(&size, n, memory_order_relaxed);
	return n;
}

/* Lock held.  Items are claimed under the lock: each is tens of µs. */
static bool claimable(const struct sm_job *j)
{
	return j->next < j->limit && j->next < j->n;
}

static void finish_item(struct sm_job *j, size_t i)
{
	atomic_store_explicit(&j->done[i], 1, memory_order_release);
	if (j->waiting)
		pthread_cond_broadcast(&done_cond);
}

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pm);
	while (!stopping) {
		struct sm_job *j = cur;

		if (j && claimable(j)) {
			size_t i = j->next++;

			j->busy++;
			pthread_mutex_unlock(&pm);
			j->fn(j->arg, i);
			pthread_mutex_lock(&pm);
			j->busy--;
			finish_item(j, i);
			continue;
		}
		sleepers++;
		pthread_cond_wait(&work_cond, &pm);
		sleepers--;
	}
	pthread_mutex_unlock(&pm);
	return NULL;
}

/* Lock held.  Start the workers (all signals blocked in them). */
static void pool_start(void)
{
	unsigned int want = sm_pool_size() - 1;
	sigset_t all, old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (nworkers < want) {
		/* Counted before it exists: sm_pool_threads never says fewer
		 * than there are. */
		atomic_fetch_add(&nthreads_live, 1);
		if (pthread_create(&workers[nworkers], NULL, worker_main, NULL)) {
			atomic_fetch_sub(&nthreads_live, 1);
			sm_debug("pool: cannot start a worker thread: %u running", nworkers);
			break;
		}
		pthread_setname_np(workers[nworkers], "safe_mr-pool");
		nworkers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* With the default size, workers only while the machine has a CPU to
 * spare: a 1-minute load average at or above the CPUs this process may use
 * means the workers would take turns with the caller (and with other
 * processes) on the same CPUs.  Measured on 2 busy CPUs (load 6-7,
 * bench_core (c) 64 MiB): 1.34x pwrite with the worker, 1.21x without.
 * SAFE_MR_THREADS set: as many as it says, always. */
static bool cpus_to_spare(void)
{
	struct sysinfo si;

	if (sm_cfg.threads >= 0)
		return true;
	/* The tests of the default size, on busy test machines. */
	if (secure_getenv("SAFE_MR_TEST_IGNORE_LOAD"))
		return true;
	if (sysinfo(&si))
		return true;
	return si.loads[0] < (unsigned long)affinity_cpus() << SI_LOAD_SHIFT;
}

bool sm_pool_begin(struct sm_job *j, size_t n, sm_job_fn fn, void *arg, size_t wake_batch)
{
	if (sm_pool_size() < 2 || n < 2 || !cpus_to_spare())
		return false;
	j->done = calloc(n, sizeof(*j->done));
	if (!j->done)
		return false;
	j->n = n;
	j->fn = fn;
	j->arg = arg;
	j->next = 0;
	j->limit = 0;
	j->busy = 0;
	j->waiting = false;
	j->wake_batch = wake_batch ? wake_batch : 1;
	pthread_mutex_lock(&pm);
	if (gone || cur) {
		pthread_mutex_unlock(&pm);
		free((void *)j->done);
		return false;
	}
	if (!nworkers)
		pool_start();
	if (!nworkers) {
		pthread_mutex_unlock(&pm);
		free((void *)j->done);
		return false;
	}
	cur = j;
	pthread_mutex_unlock(&pm);
	return true;
}

/* Sleeping workers are woken when there is enough for them to do (a
 * wake-up per item would cost the caller a system call each time). */
void sm_pool_allow(struct sm_job *j, size_t limit)
{
	pthread_mutex_lock(&pm);
	if (limit > j->limit) {
		j->limit = limit;
		if (sleepers && (limit >= j->n || limit - j->next >= j->wake_batch))
			pthread_cond_broadcast(&work_cond);
	}
	pthread_mutex_unlock(&pm);
}

/* Lock held: item i is done when this returns.  Meanwhile the caller
 * works rather than sleeps: unclaimed items up to i in order, then any
 * item workers may claim; a short spin before sleeping, since an item is
 * a few µs of work and a sleep costs a wake-up of about as much. */
static void wait_locked(struct sm_job *j, size_t i)
{
	while (!atomic_load_explicit(&j->done[i], memory_order_acquire)) {
		if (j->next < j->n && (j->next <= i || j->next < j->limit)) {
			size_t k = j->next++;

			pthread_mutex_unlock(&pm);
			j->fn(j->arg, k);
			pthread_mutex_lock(&pm);
			atomic_store_explicit(&j->done[k], 1, memory_order_release);
			continue;
		}
		pthread_mutex_unlock(&pm);
		for (int spin = 0; spin < 200 &&
				   !atomic_load_explicit(&j->done[i], memory_order_acquire);
		     spin++)
			cpu_relax();
		pthread_mutex_lock(&pm);
		if (atomic_load_explicit(&j->done[i], memory_order_acquire))
			break;
		j->waiting = true;
		pthread_cond_wait(&done_cond, &pm);
		j->waiting = false;
	}
}

void sm_pool_wait(struct sm_job *j, size_t i)
{
	pthread_mutex_lock(&pm);
	wait_locked(j, i);
	pthread_mutex_unlock(&pm);
}

void sm_pool_end(struct sm_job *j)
{
	pthread_mutex_lock(&pm);
	/* Unclaimed items run here; then no worker may still be inside. */
	for (size_t i = 0; i < j->n; i++)
		wait_locked(j, i);
	while (j->busy) {
		j->waiting = true;
		pthread_cond_wait(&done_cond, &pm);
		j->waiting = false;
	}
	cur = NULL;
	pthread_mutex_unlock(&pm);
	free((void *)j->done);
	j->done = NULL;
}

void sm_pool_run(size_t n, sm_job_fn fn, void *arg)
{
	struct sm_job j;

	if (!sm_pool_begin(&j, n, fn, arg, 1)) {
		for (size_t i = 0; i < n; i++)
			fn(arg, i);
		return;
	}
	sm_pool_allow(&j, n);
	sm_pool_end(&j);
}

/* Unload: the workers run our code, so they must be gone first.  Only
 * waits for them to finish their item: a job left by a caller that will
 * never return (exit from a signal handler) is not waited for. */
void sm_pool_stop(void)
{
	unsigned int n;

	pthread_mutex_lock(&pm);
	gone = true;
	stopping = true;
	n = nworkers;
	pthread_cond_broadcast(&work_cond);
	pthread_mutex_unlock(&pm);
	for (unsigned int i = 0; i < n; i++)
		pthread_join(workers[i], NULL);
	pthread_mutex_lock(&pm);
	nworkers = 0;
	atomic_store(&nthreads_live, 0);
	pthread_mutex_unlock(&pm);
}

unsigned int sm_pool_threads(void)
{
	return atomic_load(&nthreads_live);
}

/* The child of a fork has only the thread that forked: the parent's
 * workers (and a job of theirs) are not there.  The lock may have been held
 * by one of them at the fork: made anew. */
static void pool_atfork_child(void)
{
	pthread_mutex_init(&pm, NULL);
	pthread_cond_init(&work_cond, NULL);
	pthread_cond_init(&done_cond, NULL);
	nworkers = 0;
	sleepers = 0;
	stopping = false;
	cur = NULL;
	atomic_store(&nthreads_live, 0);
}

__attribute__((constructor)) static void pool_ctor(void)
{
	pthread_atfork(NULL, NULL, pool_atfork_child);
}

/* Could a thread other than the caller (and the pool's) touch memory?
 * glibc clears __libc_single_threaded at the first pthread_create, the
 * pool's included, and never sets it again; when the pool has threads, the
 * kernel's count of the process's threads (the link count of
 * /proc/self/task is 2 + threads) tells whether anyone else is there.  Any
 * doubt (no /proc) says yes.  Called under the engine lock, which the pool
 * is started under too, so no worker is being created meanwhile. */
bool sm_other_threads(void)
{
	unsigned int mine;
	struct stat st;

	if (__libc_single_threaded)
		return false;
	mine = sm_pool_threads();
	if (!mine)
		return true;
	if (stat("/proc/self/task", &st) || st.st_nlink < 3)
		return true;
	return st.st_nlink - 2 > 1 + mine;
}
