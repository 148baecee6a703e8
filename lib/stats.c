/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "guard.h"
#include "internal.h"
#include "safe_mr.h"

struct sm_counters sm_stats;

/* guard.c's counter; weak so that the programs built from a few of the
 * engine's objects (bench, storage tests) link without the guardian. */
#pragma weak sm_guard_failures

#define LOAD(f) atomic_load_explicit(&sm_stats.f, memory_order_relaxed)

SM_EXPORT int safe_mr_stats(struct safe_mr_stats *st)
{
	if (!st)
		return EINVAL;
	memset(st, 0, sizeof(*st));
	st->registrations = LOAD(registrations);
	st->shadowed = LOAD(shadowed);
	st->odp = LOAD(odp);
	st->bytes_shadowed = LOAD(bytes_shadowed);
	st->bytes_written_back = LOAD(bytes_written_back);
	st->write_calls = LOAD(write_calls);
	st->sync_errors = LOAD(sync_errors);
	st->shadow_bytes_now = LOAD(shadow_bytes_now);
	st->writeback_engine = LOAD(writeback_engine);
	return 0;
}

/* Where the line goes: SAFE_MR_STATS_FILE (appended: one write per line,
 * so processes sharing a name do not tear each other's lines), else stderr. */
static int stats_fd(void)
{
	const char *tmpl = sm_cfg_stats_file();
	char path[PATH_MAX];
	int fd, err;

	if (!tmpl)
		return STDERR_FILENO;
	if ((err = sm_stats_path(tmpl, path, sizeof(path)))) {
		sm_warn("SAFE_MR_STATS_FILE=%s: %s; stats on stderr", tmpl, strerror(err));
		return STDERR_FILENO;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		sm_warn("SAFE_MR_STATS_FILE: cannot open %s: %s; stats on stderr", path,
			strerror(errno));
		return STDERR_FILENO;
	}
	return fd;
}

/* The SAFE_MR_STATS=1 summary: one line, stable keys, easy to grep.  Only
 * from processes that registered something (or tried to): under LD_PRELOAD
 * every shell, helper and launcher daemon of a job loads the engine too.
 * registrations= counts those that succeeded, failed_registrations= the
 * others; guard_failures= the guardians that could not be started or died
 * (guard.h); host=, rank= and time= say which process of a job it is. */
void sm_stats_print(void)
{
	static const char *const engines[] = { "none", "pwrite", "io_uring" };
	struct safe_mr_stats st;
	unsigned long long failed, ok;
	char buf[768], where[320], host[HOST_NAME_MAX + 1];
	const char *rank = sm_mpi_rank();
	int n, fd;

	safe_mr_stats(&st);
	if (!st.registrations)
		return;
	failed = LOAD(reg_failed);
	ok = st.registrations > failed ? st.registrations - failed : 0;
	if (gethostname(host, sizeof(host)))
		strcpy(host, "unknown");
	host[sizeof(host) - 1] = '\0';
	/* The same time stamp as the log lines: the head of the prefix. */
	if (sm_log_prefix(where, sizeof(where)) <= 0)
		where[0] = '\0';
	where[strcspn(where, " ")] = '\0';
	n = snprintf(buf, sizeof(buf),
		     "safe_mr: stats pid=%d registrations=%llu shadowed=%llu odp=%llu "
		     "bytes_shadowed=%llu bytes_written_back=%llu write_calls=%llu "
		     "sync_errors=%llu failed_registrations=%llu guard_failures=%llu "
		     "writeback=%s host=%s rank=%s time=%s\n",
		     (int)getpid(), ok,
		     (unsigned long long)st.shadowed, (unsigned long long)st.odp,
		     (unsigned long long)st.bytes_shadowed,
		     (unsigned long long)st.bytes_written_back,
		     (unsigned long long)st.write_calls, (unsigned long long)st.sync_errors, failed,
		     (unsigned long long)(&sm_guard_failures ? atomic_load(&sm_guard_failures) : 0),
		     engines[st.writeback_engine < 3 ? st.writeback_engine : 0], host,
		     rank ? rank : "none", where);
	if (n <= 0)
		return;
	if (n >= (int)sizeof(buf))
		n = (int)sizeof(buf) - 1;
	fd = stats_fd();
	if (write(fd, buf, (size_t)n) < 0) {
		/* nothing sensible to do */
	}
	if (fd != STDERR_FILENO)
		close(fd);
}
