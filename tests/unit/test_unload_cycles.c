/* SPDX-License-Identifier: MIT */
/* dlopen / shadow / release / dlclose, twenty times: with everything
 * released, an unload gives back what the engine opened (the arena memfd,
 * its address-space window, /proc/self/maps, the guardian and its state).
 * 0.2.0 kept 2 descriptors and 64 GiB of address space per cycle.  With
 * argv[2] "pool" the region is 16 MiB and SAFE_MR_THREADS=2: the release's
 * writeback starts the library's worker thread, which the unload must join
 * (a thread left running code that dlclose unmapped crashes the process).
 * The program does not link libsafe_mr; argv[1] is its path. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define IBV_ACCESS_LOCAL_WRITE 1
#define CYCLES 20

typedef int (*acquire_fn)(void *, size_t, unsigned int, const void *, void **);
typedef int (*release_fn)(void *);
typedef size_t (*shadowed_fn)(const void *);

static void die(const char *what)
{
	fprintf(stderr, "FAIL: %s\n", what);
	exit(1);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		die("/proc/self/fd");
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;	/* the directory's own */
}

static unsigned long vm_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long kb = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %lu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* Guardians started for this process that still run. */
static int guardians(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char me[32];
	int n = 0;

	snprintf(me, sizeof(me), "%d", (int)getpid());
	while (d && (e = readdir(d))) {
		char path[300], buf[256] = "";
		FILE *f;
		size_t r;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		r = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		/* argv: safe_mr-guardian PID LEVEL */
		if (r > 17 && !strcmp(buf, "safe_mr-guardian") && !strcmp(buf + 17, me))
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

/* Threads of this process, and of them those named safe_mr-pool. */
static int threads(int *pool)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	*pool = 0;
	while (d && (e = readdir(d))) {
		char path[300], name[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		n++;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		if ((f = fopen(path, "r"))) {
			if (fgets(name, sizeof(name), f) && !strncmp(name, "safe_mr-pool", 12))
				(*pool)++;
			fclose(f);
		}
	}
	if (d)
		closedir(d);
	return n;
}

static bool with_pool;

static void cycle(const char *lib_path, void *p, size_t len)
{
	int pool;

	void *lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL), *range;
	acquire_fn acquire;
	release_fn release;
	shadowed_fn shadowed;

	if (!lib)
		die(dlerror());
	acquire = (acquire_fn)dlsym(lib, "safe_mr_range_acquire");
	release = (release_fn)dlsym(lib, "safe_mr_range_release");
	shadowed = (shadowed_fn)dlsym(lib, "safe_mr_range_shadowed");
	if (!acquire || !release || !shadowed)
		die("symbols");
	if (acquire(p, len, IBV_ACCESS_LOCAL_WRITE, NULL, &range))
		die("safe_mr_range_acquire");
	if (shadowed(range) != len)
		die("not shadowed: the cycle proves nothing");
	memcpy(p, "cycle", 5);
	if (release(range))
		die("safe_mr_range_release");
	threads(&pool);
	if (with_pool && pool != 1)
		die("the release did not start the pool: the cycle proves nothing");
	if (dlclose(lib))
		die(dlerror());
	threads(&pool);
	if (pool)
		die("worker threads outlive the unload");
	if (dlopen(lib_path, RTLD_NOW | RTLD_NOLOAD))
		die("libsafe_mr.so is still loaded after dlclose: the test proves nothing");
}

int main(int argc, char **argv)
{
	const char *dir = getenv("TEST_TMPDIR");
	char path[4096];
	size_t len = 16 * 4096;
	int fd, fds1, fdsN, th1, thN, g = 0;
	unsigned long vm1, vmN;
	void *p;

	if ((argc != 2 && argc != 3) || !dir)
		die("usage: test_unload_cycles LIBSAFE_MR [pool] (TEST_TMPDIR set)");
	if (argc == 3 && !strcmp(argv[2], "pool")) {
		with_pool = true;
		len = 16u << 20;
		setenv("SAFE_MR_THREADS", "2", 1);
	}
	snprintf(path, sizeof(path), "%s/cycles-%d", dir, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)len))
		die("file");
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	/* The first cycle loads what stays loaded (libibverbs, its providers;
	 * a sanitizer's runtime may start a thread of its own). */
	cycle(argv[1], p, len);
	fds1 = count_fds();
	vm1 = vm_kb();
	th1 = threads(&g);
	for (int i = 1; i < CYCLES; i++)
		cycle(argv[1], p, len);
	fdsN = count_fds();
	vmN = vm_kb();
	thN = threads(&g);
	for (int i = 0; i < 500 && (g = guardians()); i++)
		usleep(10000);
	printf("after 1 cycle: %d fds, %lu kB, %d threads; after %d: %d fds, %lu kB, %d threads; "
	       "guardians left: %d\n", fds1, vm1, th1, CYCLES, fdsN, vmN, thN, g);
	if (fdsN != fds1)
		die("descriptors accumulate across dlopen/dlclose cycles");
	if (thN != th1)
		die("threads accumulate across dlopen/dlclose cycles");
#ifndef __SANITIZE_THREAD__	/* ThreadSanitizer maps shadow memory for each load */
	if (vmN > vm1 + 64 * 1024)
		die("address space accumulates across dlopen/dlclose cycles");
#endif
	if (g)
		die("guardians outlive the unload");
	if (memcmp(p, "cycle", 5))
		die("the data did not come back to the file mapping");
	munmap(p, len);
	close(fd);
	unlink(path);
	printf("ok: %d load/shadow/unload cycles, nothing accumulates\n", CYCLES);
	return 0;
}
