/* SPDX-License-Identifier: MIT */
/* Review of issue 16 (preload/wait.c): the wait functions the preload
 * interposes must keep their contract, above all for programs that never
 * register memory.
 *
 *   wait_semantics wnohang   waitpid(-1, WNOHANG) must not block: a child
 *                            whose guardian is late (stopped) made it block
 *                            until the guardian ran again.
 *   wait_semantics threads   two threads in waitpid(-1, 0), two children:
 *                            each must get one; with the preload both peek
 *                            the same zombie, one reaps it and the other
 *                            gets a spurious ECHILD while a child still runs.
 *   wait_semantics squat     a child that never used safe_mr; anyone in the
 *                            network namespace (another user too: abstract
 *                            sockets have no permissions) binds the name
 *                            "safe_mr-guardian.<pid>.<starttime>" and holds
 *                            it: the parent's waitpid never returns.
 *   wait_semantics sigsafe   waitpid(-1, WNOHANG) as a SIGCHLD handler makes
 *                            it must not allocate (waitpid is
 *                            async-signal-safe); the preload's calls
 *                            fopen() (malloc) for every exited child.
 *
 * Each fails under the preload at 048f3d4; squat and sigsafe pass without
 * it (their _premise tests). */
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "verbs_util.h"
#include "../guardian_procs.h"

/* The guardian started for pid (any parent: we are not a subreaper). */
static pid_t guardian_of(pid_t pid)
{
	pid_t g = smt_guardian_wait_for(0, pid);

	if (!g)
		die("no guardian for %d", (int)pid);
	return g;
}

typedef int (*nic_write_fn)(struct ibv_mr *, size_t, const void *, size_t);

/* ---- malloc counting (sigsafe) ----
 * Not under a sanitizer (WAIT_NO_MALLOC_HOOK): its allocator owns the
 * pointers, and glibc's would free them. */
#ifndef WAIT_NO_MALLOC_HOOK
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static atomic_int counting, allocs;
/* (The build hides symbols by default: these must interpose libc's.) */

__attribute__((visibility("default"))) void *malloc(size_t n)
{
	if (atomic_load(&counting))
		atomic_fetch_add(&allocs, 1);
	return __libc_malloc(n);
}

__attribute__((visibility("default"))) void *calloc(size_t a, size_t b)
{
	if (atomic_load(&counting))
		atomic_fetch_add(&allocs, 1);
	return __libc_calloc(a, b);
}

__attribute__((visibility("default"))) void *realloc(void *p, size_t n)
{
	if (atomic_load(&counting))
		atomic_fetch_add(&allocs, 1);
	return __libc_realloc(p, n);
}

__attribute__((visibility("default"))) void free(void *p)
{
	__libc_free(p);
}
#else
static atomic_int counting, allocs;
#endif

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}


/* A child that registers a file mapping, has the NIC write it, and waits
 * to be killed.  Returns its pid once it has registered. */
static pid_t registered_child(int fd)
{
	size_t len = PAGES * page_size();
	int up[2];
	pid_t t;
	char c;

	if (pipe(up))
		die("pipe");
	t = fork();
	if (t < 0)
		die("fork");
	if (t == 0) {
		nic_write_fn nic_write = (nic_write_fn)dlsym(RTLD_DEFAULT, "fake_nic_write");
		struct ibv_pd *pd = open_pd();
		char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		struct ibv_mr *mr;

		if (!nic_write || map == MAP_FAILED)
			die("fake_nic_write or mmap");
		mr = ibv_reg_mr(pd, map, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
		if (!mr || nic_write(mr, 0, "written by the dying child", 26))
			die("registration or NIC write: %s", strerror(errno));
		if (write(up[1], "r", 1) != 1)
			die("pipe");
		for (;;)
			pause();
	}
	if (read(up[0], &c, 1) != 1)
		die("the child did not register");
	close(up[0]);
	close(up[1]);
	return t;
}

static pid_t stopped;
static int go_after_ms;

static void *let_go(void *arg)
{
	(void)arg;
	usleep((useconds_t)go_after_ms * 1000);
	kill(stopped, SIGCONT);
	return NULL;
}

/* A late guardian (stopped: a loaded node, a frozen cgroup) must not turn
 * waitpid(WNOHANG), the call of every event loop, into a blocking one. */
static int wnohang(void)
{
	char path[4096];
	int fd = make_file(path, sizeof(path)), st;
	pthread_t th;
	double t0, took;
	pid_t t, r;

	t = registered_child(fd);
	stopped = guardian_of(t);
	kill(stopped, SIGSTOP);
	kill(t, SIGKILL);
	/* The child is a zombie once kill returns and it ran its exit. */
	{
		siginfo_t si = { 0 };

		if (waitid(P_PID, (id_t)t, &si, WEXITED | WNOWAIT))
			die("waitid peek: %s", strerror(errno));
	}
	go_after_ms = 4000;
	if (pthread_create(&th, NULL, let_go, NULL))
		die("pthread_create");
	t0 = now();
	r = waitpid(-1, &st, WNOHANG);
	took = now() - t0;
	pthread_join(th, NULL);
	close(fd);
	unlink(path);
	if (took > 1.0)
		die("waitpid(-1, WNOHANG) blocked %.1f s (until the late guardian was continued), "
		    "returned %d", took, (int)r);
	printf("ok: waitpid(WNOHANG) returned %d in %.3f s\n", (int)r, took);
	return 0;
}

/* ---- threads ---- */
static pid_t got[2];
static int got_err[2];

static void *reaper(void *arg)
{
	int i = (int)(intptr_t)arg, st;

	got[i] = waitpid(-1, &st, 0);
	got_err[i] = got[i] < 0 ? errno : 0;
	return NULL;
}

static int threads(void)
{
	char path[4096];
	int fd = make_file(path, sizeof(path));
	pthread_t th[2], g;
	pid_t x, y;

	x = registered_child(fd);
	/* y: a plain child that ends later. */
	y = fork();
	if (y < 0)
		die("fork");
	if (y == 0) {
		usleep(2000000);
		_exit(0);
	}
	stopped = guardian_of(x);
	kill(stopped, SIGSTOP);
	kill(x, SIGKILL);
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, reaper, (void *)(intptr_t)i))
			die("pthread_create");
	go_after_ms = 500;	/* both threads are in waitpid by then */
	if (pthread_create(&g, NULL, let_go, NULL))
		die("pthread_create");
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_join(g, NULL);
	close(fd);
	unlink(path);
	for (int i = 0; i < 2; i++)
		if (got[i] < 0)
			die("thread %d: waitpid(-1) failed with %s while child %d was still running "
			    "(the other thread got %d)", i, strerror(got_err[i]), (int)y,
			    (int)got[1 - i]);
	if (!((got[0] == x && got[1] == y) || (got[0] == y && got[1] == x)))
		die("threads got %d and %d, want %d and %d", (int)got[0], (int)got[1], (int)x,
		    (int)y);
	printf("ok: each thread reaped one child\n");
	return 0;
}

/* ---- squat ---- */
static unsigned long long starttime(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long t = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
		       "%*d %*d %llu", &t);
	fclose(f);
	return t;
}

static void *watchdog(void *arg)
{
	(void)arg;
	sleep(4);
	fprintf(stderr, "FAIL: waitpid for a child that never used safe_mr has not returned "
		"after 4 s: someone holds the abstract name safe_mr-guardian.<pid>.<start>\n");
	_exit(1);
}

static int squat(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int go[2], s, st, n;
	pthread_t w;
	pid_t t;
	char c;

	if (pipe(go))
		die("pipe");
	t = fork();
	if (t < 0)
		die("fork");
	if (t == 0) {
		/* Never registers anything: exits when told. */
		if (read(go[0], &c, 1) < 0)
			_exit(2);
		_exit(0);
	}
	/* Any process in the network namespace can do this, for any pid it
	 * can see (the start time is in /proc/PID/stat, readable by all). */
	n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "safe_mr-guardian.%d.%llu", (int)t,
		     starttime(t));
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a,
			  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) ||
	    listen(s, 8))
		die("squatting the name: %s", strerror(errno));
	if (write(go[1], "x", 1) != 1)
		die("pipe");
	if (pthread_create(&w, NULL, watchdog, NULL))
		die("pthread_create");
	if (waitpid(t, &st, 0) != t)
		die("waitpid: %s", strerror(errno));
	printf("ok: waitpid returned\n");
	close(s);
	return 0;
}

/* ---- sigsafe ---- */
static int sigsafe(void)
{
	int st;
	pid_t t = fork(), r;

	if (t < 0)
		die("fork");
	if (t == 0)
		_exit(0);
	/* Wait for it to be a zombie without reaping it. */
	{
		siginfo_t si = { 0 };

		if (waitid(P_PID, (id_t)t, &si, WEXITED | WNOWAIT))
			die("waitid peek: %s", strerror(errno));
	}
	/* What a SIGCHLD handler does; here counted rather than deadlocked
	 * (a handler that interrupted malloc would deadlock or corrupt). */
	atomic_store(&counting, 1);
	r = waitpid(-1, &st, WNOHANG);
	atomic_store(&counting, 0);
	if (r != t)
		die("waitpid: %d %s", (int)r, strerror(errno));
	if (atomic_load(&allocs))
		die("waitpid(-1, WNOHANG) called malloc/calloc/realloc %d time(s): not "
		    "async-signal-safe (SIGCHLD handlers call it)", atomic_load(&allocs));
	printf("ok: waitpid allocated nothing\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "";

	if (!strcmp(how, "wnohang"))
		return wnohang();
	if (!strcmp(how, "threads"))
		return threads();
	if (!strcmp(how, "squat"))
		return squat();
	if (!strcmp(how, "sigsafe"))
		return sigsafe();
	die("usage: wait_semantics wnohang|threads|squat|sigsafe");
}
