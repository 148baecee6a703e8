/* SPDX-License-Identifier: MIT */
/* A tracer in the style of Darshan: an LD_PRELOAD library that counts
 * msync, munmap, mremap, fsync and fdatasync and forwards each to the next
 * definition.  Preloaded after safe_mr, it must see exactly the calls the
 * application made.  The program asks through dlsym: sm_spy_watch() names
 * the addresses and descriptor to count, sm_spy_count() reads a count,
 * sm_spy_unwatch() stops counting. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPY_API __attribute__((visibility("default")))
#define WATCH_MAX 8

enum { SPY_MSYNC, SPY_MUNMAP, SPY_MREMAP, SPY_FSYNC, SPY_FDATASYNC, SPY_N };
static const char *const names[SPY_N] = { "msync", "munmap", "mremap", "fsync", "fdatasync" };

static void *_Atomic watched[WATCH_MAX];
static atomic_int watched_fd = -1;
static atomic_uint counts[SPY_N];
static void *_Atomic next[SPY_N];

SPY_API void sm_spy_watch(void *addr, int fd)
{
	if (fd >= 0)
		atomic_store(&watched_fd, fd);
	for (int i = 0; addr && i < WATCH_MAX; i++) {
		void *expected = NULL;

		if (atomic_compare_exchange_strong(&watched[i], &expected, addr))
			break;
	}
}

SPY_API void sm_spy_unwatch(void)
{
	atomic_store(&watched_fd, -1);
	for (int i = 0; i < WATCH_MAX; i++)
		atomic_store(&watched[i], NULL);
}

SPY_API unsigned sm_spy_count(const char *name)
{
	for (int i = 0; i < SPY_N; i++)
		if (!strcmp(name, names[i]))
			return atomic_load(&counts[i]);
	return ~0u;
}

static void count_addr(int fn, void *addr)
{
	for (int i = 0; addr && i < WATCH_MAX; i++) {
		if (atomic_load(&watched[i]) == addr) {
			atomic_fetch_add(&counts[fn], 1);
			return;
		}
	}
}

static void count_fd(int fn, int fd)
{
	if (fd >= 0 && atomic_load(&watched_fd) == fd)
		atomic_fetch_add(&counts[fn], 1);
}

/* NULL while dlsym itself is running (it may allocate, and free may
 * unmap): the caller then makes the system call. */
static void *next_fn(int fn)
{
	static __thread int resolving;
	void *f = atomic_load(&next[fn]);

	if (f || resolving)
		return f;
	resolving = 1;
	f = dlsym(RTLD_NEXT, names[fn]);
	resolving = 0;
	atomic_store(&next[fn], f);
	return f;
}

__attribute__((constructor)) static void spy_init(void)
{
	for (int i = 0; i < SPY_N; i++)
		next_fn(i);
}

SPY_API int msync(void *addr, size_t length, int flags)
{
	int (*f)(void *, size_t, int) = (int (*)(void *, size_t, int))next_fn(SPY_MSYNC);

	count_addr(SPY_MSYNC, addr);
	return f ? f(addr, length, flags) : (int)syscall(SYS_msync, addr, length, flags);
}

SPY_API int munmap(void *addr, size_t length)
{
	int (*f)(void *, size_t) = (int (*)(void *, size_t))next_fn(SPY_MUNMAP);

	count_addr(SPY_MUNMAP, addr);
	return f ? f(addr, length) : (int)syscall(SYS_munmap, addr, length);
}

SPY_API void *mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...)
{
	void *(*f)(void *, size_t, size_t, int, ...) =
		(void *(*)(void *, size_t, size_t, int, ...))next_fn(SPY_MREMAP);
	void *new_address = NULL;

	if (flags & MREMAP_FIXED) {
		va_list ap;

		va_start(ap, flags);
		new_address = va_arg(ap, void *);
		va_end(ap);
	}
	count_addr(SPY_MREMAP, old_address);
	if (f)
		return f(old_address, old_size, new_size, flags, new_address);
	return (void *)syscall(SYS_mremap, old_address, old_size, new_size, flags, new_address);
}

SPY_API int fsync(int fd)
{
	int (*f)(int) = (int (*)(int))next_fn(SPY_FSYNC);

	count_fd(SPY_FSYNC, fd);
	return f ? f(fd) : (int)syscall(SYS_fsync, fd);
}

SPY_API int fdatasync(int fd)
{
	int (*f)(int) = (int (*)(int))next_fn(SPY_FDATASYNC);

	count_fd(SPY_FDATASYNC, fd);
	return f ? f(fd) : (int)syscall(SYS_fdatasync, fd);
}
