/* SPDX-License-Identifier: MIT */
/* Logging to stderr with one write(2) per line: no stdio locks, safe to use
 * from interposed calls and at exit. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "internal.h"

void sm_log(enum sm_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	int saved_errno = errno;
	char buf[1024];
	va_list ap;
	int n;

	if (level > sm_cfg.log_level)
		return;
	n = snprintf(buf, sizeof(buf), "safe_mr[%d]: %s: ", (int)getpid(), names[level]);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nothing sensible to do */
	}
	errno = saved_errno;
}
