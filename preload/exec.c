/* SPDX-License-Identifier: MIT */
/* exec functions: a sync point.  The old image's shadows are written back
 * durably and its guardian is told before the exec (safe_mr_exec_prepare),
 * so the new image never meets a late writeback of the old one; if the exec
 * fails, guarding resumes.  Then each call goes on to the next definition.
 *
 * The execl family is variadic: its arguments are gathered into a vector
 * and passed to the next execv, execve or execvp, which is what libc's own
 * execl* do.  (posix_spawn, system and popen start another process: the
 * calling image goes on, nothing to do.) */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>
#include <safe_mr.h>

#include "preload.h"

#define SM_PL_API __attribute__((visibility("default")))

typedef int (*execv_fn)(const char *, char *const[]);
typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);

extern char **environ;

/* The next definitions, resolved at load: an exec after fork in a
 * threaded program (the common case) must not take the loader's lock,
 * which another thread may have held at the fork. */
enum { N_EXECVE, N_EXECV, N_EXECVP, N_EXECVPE, N_FEXECVE, N_COUNT };
static void *nexts[N_COUNT];
static const char *const next_names[N_COUNT] = {
	[N_EXECVE] = "execve", [N_EXECV] = "execv", [N_EXECVP] = "execvp",
	[N_EXECVPE] = "execvpe", [N_FEXECVE] = "fexecve",
};

__attribute__((constructor)) static void exec_next_init(void)
{
	for (size_t i = 0; i < N_COUNT; i++)
		nexts[i] = dlsym(RTLD_NEXT, next_names[i]);
}

/* Called before our constructor ran (another library's): look it up now. */
static void *next_of(size_t i)
{
	return nexts[i] ? nexts[i] : dlsym(RTLD_NEXT, next_names[i]);
}

/* Around the next definition's call: ret is what it returned (it returns
 * only on failure). */
static void before(void)
{
	if (!sm_pl_bypass()) {
		sm_pl_busy = true;
		safe_mr_exec_prepare();
		sm_pl_busy = false;
	}
}

static int after(int ret)
{
	int err = errno;

	if (!sm_pl_bypass()) {
		sm_pl_busy = true;
		safe_mr_exec_failed();
		sm_pl_busy = false;
	}
	errno = err;
	return ret;
}

static int no_next(void)
{
	errno = ENOSYS;
	return -1;
}

SM_PL_API int execve(const char *path, char *const argv[], char *const envp[])
{
	execve_fn next = (execve_fn)next_of(N_EXECVE);

	if (!next)
		return no_next();
	before();
	return after(next(path, argv, envp));
}

SM_PL_API int execv(const char *path, char *const argv[])
{
	execv_fn next = (execv_fn)next_of(N_EXECV);

	if (!next)
		return no_next();
	before();
	return after(next(path, argv));
}

SM_PL_API int execvp(const char *file, char *const argv[])
{
	execv_fn next = (execv_fn)next_of(N_EXECVP);

	if (!next)
		return no_next();
	before();
	return after(next(file, argv));
}

SM_PL_API int execvpe(const char *file, char *const argv[], char *const envp[])
{
	execve_fn next = (execve_fn)next_of(N_EXECVPE);

	if (!next)
		return no_next();
	before();
	return after(next(file, argv, envp));
}

SM_PL_API int fexecve(int fd, char *const argv[], char *const envp[])
{
	fexecve_fn next = (fexecve_fn)next_of(N_FEXECVE);

	if (!next)
		return no_next();
	before();
	return after(next(fd, argv, envp));
}

/* The arguments after arg0 up to the NULL, counted first. */
#define GATHER(arg0, ap, argv, n)                                   \
	do {                                                        \
		va_start(ap, arg0);                                 \
		for (n = 1; va_arg(ap, char *); n++)                \
			;                                           \
		va_end(ap);                                         \
	} while (0)

SM_PL_API int execl(const char *path, const char *arg0, ...)
{
	va_list ap;
	size_t n;

	GATHER(arg0, ap, argv, n);
	{
		char *argv[n + 1];

		argv[0] = (char *)arg0;
		va_start(ap, arg0);
		for (size_t i = 1; i <= n; i++)
			argv[i] = va_arg(ap, char *);
		va_end(ap);
		return execv(path, argv);
	}
}

SM_PL_API int execlp(const char *file, const char *arg0, ...)
{
	va_list ap;
	size_t n;

	GATHER(arg0, ap, argv, n);
	{
		char *argv[n + 1];

		argv[0] = (char *)arg0;
		va_start(ap, arg0);
		for (size_t i = 1; i <= n; i++)
			argv[i] = va_arg(ap, char *);
		va_end(ap);
		return execvp(file, argv);
	}
}

SM_PL_API int execle(const char *path, const char *arg0, ...)
{
	va_list ap;
	size_t n;

	GATHER(arg0, ap, argv, n);
	{
		char *argv[n + 1];
		char *const *envp;

		argv[0] = (char *)arg0;
		va_start(ap, arg0);
		for (size_t i = 1; i <= n; i++)
			argv[i] = va_arg(ap, char *);
		envp = va_arg(ap, char *const *);
		va_end(ap);
		return execve(path, argv, envp);
	}
}
