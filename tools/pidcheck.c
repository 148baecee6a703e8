/* SPDX-License-Identifier: MIT */
/* Is a running process protected?  From /proc only, no protocol:
 *  - safe_mr loaded: its maps name libsafe_mr_preload.so (the preload),
 *    libsafe_mr-fi.so (the libfabric hook) or libsafe_mr.so (linked);
 *  - the mode: SAFE_MR_MODE in its initial environment (off: nothing is
 *    shadowed);
 *  - the protector: a live process named safe_mr-guardian whose argv[1]
 *    is the pid (lib/guard.c, spawn()), or the node service safe_mrd,
 *    asked (GM_QUERY, docs/safe_mrd-protocol.md) at the socket the
 *    process's SAFE_MR_SERVICE names;
 *  - bytes shadowed: its mappings of the shadow arena (memfd
 *    "safe_mr-shadow", lib/file.c);
 *  - writeback pending: not shown.  What is pending is the pages whose
 *    contents differ from the hash of what the file holds, which only the
 *    engine and its guardian can compare; SAFE_MR_STATS and
 *    SAFE_MR_FLUSH_MS bound it.
 * Protected: safe_mr loaded, mode not off, and every shadow guarded (no
 * shadow yet, or a guardian alive: it starts with the first shadow). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pidcheck.h"
#include "svcquery.h"

struct pid_facts {
	bool preload, linked, hook;
	char mode[32];
	int guardian;			/* its pid, or 0 */
	char service[108];		/* its SAFE_MR_SERVICE socket, "" if off */
	int service_conns;		/* connections safe_mrd guards it by, -1 unknown */
	unsigned long long shadow_bytes;
	bool pid1;			/* PID 1 of its own PID namespace */
};

static int read_maps(int pid, struct pid_facts *f)
{
	char path[64], line[4096];
	FILE *m;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	if (!(m = fopen(path, "re")))
		return errno;
	while (fgets(line, sizeof(line), m)) {
		unsigned long long lo, hi;

		if (strstr(line, "/libsafe_mr_preload.so"))
			f->preload = true;
		else if (strstr(line, "/libsafe_mr-fi.so"))
			f->hook = true;
		else if (strstr(line, "/libsafe_mr.so"))
			f->linked = true;
		if (strstr(line, "/memfd:safe_mr-shadow") &&
		    sscanf(line, "%llx-%llx", &lo, &hi) == 2)
			f->shadow_bytes += hi - lo;
	}
	fclose(m);
	return 0;
}

/* The file's contents, NUL-separated as /proc gives them; length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = 0, r;

	if (fd < 0)
		return -1;
	while ((size_t)got < n - 1 && (r = read(fd, buf + got, n - 1 - (size_t)got)) > 0)
		got += r;
	close(fd);
	buf[got] = '\0';
	return got;
}

static void read_mode(int pid, struct pid_facts *f)
{
	static char env[1 << 16];
	char path[64];
	ssize_t n;

	snprintf(f->mode, sizeof(f->mode), "bounce");
	/* Unless its environment says: the service ours names. */
	smt_service_path(getenv("SAFE_MR_SERVICE"), f->service, sizeof(f->service));
	snprintf(path, sizeof(path), "/proc/%d/environ", pid);
	if ((n = slurp(path, env, sizeof(env))) < 0) {
		snprintf(f->mode, sizeof(f->mode), "unknown");
		return;
	}
	for (char *p = env; p < env + n; p += strlen(p) + 1)
		if (!strncmp(p, "SAFE_MR_MODE=", 13))
			snprintf(f->mode, sizeof(f->mode), "%s", p + 13);
		else if (!strncmp(p, "SAFE_MR_SERVICE=", 16))
			smt_service_path(p + 16, f->service, sizeof(f->service));
}

/* A live safe_mr-guardian whose argv[1] is pid. */
static int find_guardian(int pid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char want[16], path[300], buf[256];
	int found = 0;

	if (!d)
		return 0;
	snprintf(want, sizeof(want), "%d", pid);
	while (!found && (e = readdir(d))) {
		const char *base;
		ssize_t n;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		if ((n = slurp(path, buf, sizeof(buf))) <= 0)
			continue;
		base = strrchr(buf, '/');
		base = base ? base + 1 : buf;
		if (strcmp(base, "safe_mr-guardian") || (size_t)n <= strlen(buf) + 1 ||
		    strcmp(buf + strlen(buf) + 1, want))
			continue;
		/* not a zombie */
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		if (slurp(path, buf, sizeof(buf)) > 0 && strchr(buf, ')') &&
		    strchr(buf, ')')[2] != 'Z')
			found = atoi(e->d_name);
	}
	closedir(d);
	return found;
}

/* PID 1 of its PID namespace (the last NSpid is 1): when it dies the
 * kernel kills the namespace, a guardian too, so it gets none. */
static bool read_pid1(int pid)
{
	char path[64], buf[4096], *l, *end, *last = NULL;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (slurp(path, buf, sizeof(buf)) <= 0 || !(l = strstr(buf, "\nNSpid:")))
		return pid == 1;
	l += 7;
	end = strchr(l, '\n');
	if (end)
		*end = 0;
	for (char *p = l; *p; p++)
		if (isdigit((unsigned char)*p) && (p == l || !isdigit((unsigned char)p[-1])))
			last = p;
	return last && atoi(last) == 1;
}

int smt_pid_check(int pid, struct smt_json *j)
{
	struct pid_facts f = { 0 };
	const char *loaded, *why = NULL;
	char protector[128];
	int err = read_maps(pid, &f);
	bool ok;

	if (err) {
		fprintf(stderr, "safe_mr-info: --pid %d: /proc/%d/maps: %s\n", pid, pid,
			strerror(err));
		if (j) {
			smt_json_open(j, "process", '{');
			smt_json_int(j, "pid", pid);
			smt_json_str(j, "error", strerror(err));
			smt_json_close(j, '}');
		}
		return 2;
	}
	read_mode(pid, &f);
	f.guardian = find_guardian(pid);
	f.service_conns = f.service[0] ? smt_service_query(f.service, pid) : -1;
	f.pid1 = read_pid1(pid);
	loaded = f.preload ? "preload" : f.hook ? "libfabric hook" : f.linked ? "linked" : NULL;
	if (f.service_conns > 0)
		snprintf(protector, sizeof(protector), "safe_mrd at %.100s", f.service);
	else if (f.guardian)
		snprintf(protector, sizeof(protector), "guardian (pid %d)", f.guardian);
	else
		snprintf(protector, sizeof(protector), "none");
	if (!loaded)
		why = "safe_mr is not loaded in it";
	else if (!strcasecmp(f.mode, "off"))
		why = "SAFE_MR_MODE=off: registrations pass through";
	else if (f.pid1 && f.service_conns <= 0)
		why = "it is PID 1 of its PID namespace: no guardian can outlive it (the "
		      "kernel kills the namespace with it), so a crash loses what changed since "
		      "the last sync point";
	else if (f.shadow_bytes && !f.guardian && f.service_conns <= 0)
		why = "it has shadows and no guardian: a crash loses what changed since the "
		      "last sync point";
	ok = !why;
	if (j) {
		smt_json_open(j, "process", '{');
		smt_json_int(j, "pid", pid);
		smt_json_str(j, "safe_mr", loaded);
		smt_json_str(j, "mode", f.mode);
		smt_json_str(j, "protector", f.service_conns > 0 ? "service" :
			     f.guardian ? "guardian" : "none");
		if (f.guardian)
			smt_json_int(j, "guardian_pid", f.guardian);
		else
			smt_json_str(j, "guardian_pid", NULL);
		smt_json_str(j, "node_service", f.service_conns > 0 ? f.service : "none");
		smt_json_bool(j, "pid_namespace_init", f.pid1);
		smt_json_int(j, "bytes_shadowed", (long long)f.shadow_bytes);
		smt_json_str(j, "writeback_pending", NULL);
		smt_json_str(j, "writeback_pending_note", "not shown: only the engine and its "
			     "guardian can compare pages with the file's hashes");
		smt_json_str(j, "verdict", ok ? "protected" : "not protected");
		smt_json_str(j, "reason", why);
		smt_json_close(j, '}');
	} else {
		printf("process %d:\n", pid);
		printf("  safe_mr: %s\n", loaded ? loaded : "not loaded");
		printf("  mode: %s\n", f.mode);
		printf("  protector: %s; node service: %s\n", protector,
		       f.service_conns > 0 ? "guards it" : f.service_conns == 0 ?
		       "answers, does not guard it" : "none");
		printf("  bytes shadowed: %llu (its mappings of the shadow arena)\n",
		       f.shadow_bytes);
		printf("  writeback pending: not shown (only the engine and its guardian can "
		       "compare pages with the file; SAFE_MR_STATS, SAFE_MR_FLUSH_MS)\n");
		printf("  %s%s%s\n", ok ? "protected" : "not protected", why ? ": " : "",
		       why ? why : "");
	}
	return ok ? 0 : 1;
}
