/* SPDX-License-Identifier: MIT */
/* The program side of safe_mr-run's fail-closed check.  The launcher sets
 * SAFE_MR_RUN_CHECK=<fd> (the write end of a pipe it watches) and stops the
 * program if this line does not arrive: a preload that was not loaded (file
 * gone, setuid program, static binary, wrong ELF class, a wrapper that drops
 * LD_PRELOAD) cannot say so itself.  Called once, from our constructor,
 * after the engine's own constructor (libsafe_mr.so is our dependency).
 * The variable is removed so that the program's children never write into
 * whatever that descriptor number becomes later. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <safe_mr.h>

#include "run_check.h"

void sm_pl_run_check(void)
{
	const char *v = secure_getenv("SAFE_MR_RUN_CHECK");
	struct stat st;
	char buf[128], *end;
	long fd;
	int n;

	if (!v)
		return;
	fd = strtol(v, &end, 10);
	unsetenv("SAFE_MR_RUN_CHECK");
	if (end == v || *end != '\0' || fd < 3 || fd > 1 << 20)
		return;
	if (fstat((int)fd, &st) || !S_ISFIFO(st.st_mode))
		return;
	n = snprintf(buf, sizeof(buf), "safe_mr-run-check active pid=%d engine=%s\n",
		     (int)getpid(), safe_mr_version());
	if (n > 0 && write((int)fd, buf, (size_t)n) < 0) {
		/* the launcher is gone: nothing to tell */
	}
	close((int)fd);
}
