/* SPDX-License-Identifier: MIT */
/* Logging with one write(2) per line: no stdio locks, safe to use from
 * interposed calls and at exit.  Every line says where and when it comes
 * from, so that the logs of a job on many nodes can be merged and sorted:
 *
 *   2026-12-07T15:53:26.123Z node7 rank=3 safe_mr[1234]: warn: ...
 *
 * (UTC time, host name, MPI rank or "none", pid).  To stderr, or appended
 * to SAFE_MR_LOG_FILE (a template: %p %h %r as SAFE_MR_STATS_FILE). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "internal.h"

/* UTC from the epoch without gmtime_r (which takes glibc's tz lock: not
 * for a signal handler).  Days to civil date: H. Hinnant's algorithm. */
static int utc_stamp(char *buf, size_t n)
{
	struct timespec ts;
	long long days, secs, z, era, doe, yoe, y, doy, mp, d, m;

	clock_gettime(CLOCK_REALTIME, &ts);
	days = (long long)ts.tv_sec / 86400;
	secs = (long long)ts.tv_sec % 86400;
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	return snprintf(buf, n, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03ldZ", y, m, d,
			secs / 3600, secs / 60 % 60, secs % 60, ts.tv_nsec / 1000000);
}

int sm_log_prefix(char *buf, size_t n)
{
	char host[HOST_NAME_MAX + 1];
	const char *rank = sm_mpi_rank();
	int t;

	if (gethostname(host, sizeof(host)))
		strcpy(host, "unknown");
	host[sizeof(host) - 1] = '\0';
	t = utc_stamp(buf, n);
	if (t < 0 || (size_t)t >= n)
		return 0;
	return t + snprintf(buf + t, n - (size_t)t, " %s rank=%s", host, rank ? rank : "none");
}

/* SAFE_MR_LOG_FILE, opened per line (O_APPEND: lines of processes sharing a
 * name do not tear), so that a program closing descriptors it does not
 * know cannot make us write into its files; stderr if not set or not
 * writable. */
static int log_fd(void)
{
	const char *tmpl = sm_cfg_log_file();
	char path[PATH_MAX];
	int fd;

	if (!tmpl || sm_stats_path(tmpl, path, sizeof(path)))
		return STDERR_FILENO;
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	return fd < 0 ? STDERR_FILENO : fd;
}

void sm_log(enum sm_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	int saved_errno = errno;
	char buf[1024];
	va_list ap;
	int n, fd;

	if (level > sm_cfg.log_level)
		return;
	n = sm_log_prefix(buf, 256);
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, " safe_mr[%d]: %s: ", (int)getpid(),
		      names[level]);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	fd = log_fd();
	if (write(fd, buf, (size_t)n) < 0) {
		/* nothing sensible to do */
	}
	if (fd != STDERR_FILENO)
		close(fd);
	errno = saved_errno;
}
