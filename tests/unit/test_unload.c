/* SPDX-License-Identifier: MIT */
/* dlclose of libsafe_mr.so (libfabric unloads providers; a provider may
 * pull the engine in) with SAFE_MR_FLUSH_MS set: the flusher thread must
 * be gone before the code it runs.  (It once kept running unloaded code:
 * SIGSEGV.)  The program does not link libsafe_mr; argv[1] is its path. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define IBV_ACCESS_LOCAL_WRITE 1

typedef int (*acquire_fn)(void *, size_t, unsigned int, const void *, void **);
typedef int (*release_fn)(void *);

static void die(const char *what)
{
	fprintf(stderr, "FAIL: %s\n", what);
	exit(1);
}

int main(int argc, char **argv)
{
	const char *dir = getenv("TEST_TMPDIR");
	char path[4096];
	struct timespec ts = { 0, 300 * 1000000L };
	size_t len = 16 * 4096;
	acquire_fn acquire;
	release_fn release;
	void *lib, *range, *p;
	int fd;

	if (argc != 2 || !dir)
		die("usage: test_unload LIBSAFE_MR (TEST_TMPDIR set)");
	snprintf(path, sizeof(path), "%s/unload-%d", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)len))
		die("file");
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	for (int round = 0; round < 3; round++) {
		lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
		if (!lib)
			die(dlerror());
		acquire = (acquire_fn)dlsym(lib, "safe_mr_range_acquire");
		release = (release_fn)dlsym(lib, "safe_mr_range_release");
		if (!acquire || !release)
			die("symbols");
		if (acquire(p, len, IBV_ACCESS_LOCAL_WRITE, NULL, &range))
			die("safe_mr_range_acquire");
		memcpy(p, "unload", 6);
		nanosleep(&ts, NULL);	/* the flusher runs a few times */
		if (release(range))
			die("safe_mr_range_release");
		if (dlclose(lib))
			die(dlerror());
		nanosleep(&ts, NULL);	/* a flusher left behind would crash now */
	}
	if (!dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD) == 0)
		die("libsafe_mr.so is still loaded after dlclose: the test proves nothing");
	unlink(path);
	printf("ok: 3 load/flush/unload rounds\n");
	return 0;
}
