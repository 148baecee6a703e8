/* SPDX-License-Identifier: MIT */
/* The effective configuration: for each setting, the value the engine uses
 * here, where it comes from (SAFE_MR_X, the libfabric hook's FI_SAFE_MR_X,
 * or the default), and the warning the engine gives for a bad value (it
 * keeps the default).  The accepted values are those of lib/config.c and
 * fabric/params.c; tests/install/info.sh checks them against the engine's
 * own warnings. */
#include <stdbool.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/auxv.h>
#include <sys/un.h>

#include "cfgshow.h"
#include "svcquery.h"

extern char **environ;

enum kind { WORDS, BOOL, MS, TEMPLATE, COUNT, SERVICE };

static const struct setting {
	const char *name;	/* after SAFE_MR_ */
	const char *fi;		/* FI_SAFE_MR_ parameter, or NULL */
	enum kind kind;
	const char *words;	/* WORDS: accepted, ", "-separated */
	const char *def;
	const char *meaning;
} settings[] = {
	{ "MODE", "FI_SAFE_MR_MODE", WORDS, "bounce, auto, off", "bounce",
	  "how file-backed registrations are made safe" },
	{ "LOG", "FI_SAFE_MR_LOG", WORDS, "error, warn, info, debug", "warn", "log level" },
	{ "LOG_FILE", NULL, TEMPLATE, NULL, "", "log lines to this file (stderr if empty)" },
	{ "STATS", "FI_SAFE_MR_STATS", BOOL, NULL, "0", "a stats line at exit" },
	{ "STATS_FILE", NULL, TEMPLATE, NULL, "", "the stats line to this file" },
	{ "FLUSH_MS", "FI_SAFE_MR_FLUSH_MS", MS, NULL, "0", "periodic writeback (0: off)" },
	{ "WRITEBACK", "FI_SAFE_MR_WRITEBACK", WORDS, "auto, io_uring, pwrite", "auto",
	  "writeback engine" },
	{ "RESERVE", "FI_SAFE_MR_RESERVE", WORDS, "auto, off", "auto",
	  "reserve blocks at registration (ext4, xfs)" },
	{ "GUARDIAN", "FI_SAFE_MR_GUARDIAN", WORDS,
	  "on, off, require, 1, yes, true, 0, no, false", "on",
	  "the crash guardian process" },
	{ "THREADS", NULL, COUNT, NULL, NULL,
	  "threads hashing a large writeback or fill, the caller included; by default "
	  "min(4, CPUs), used while the load leaves a CPU to spare" },
	{ "SERVICE", NULL, SERVICE, NULL, "auto",
	  "the node service safe_mrd as the guardian (auto, off, require, or its socket)" },
};

/* SAFE_MR_THREADS's default: min(4, the CPUs this process may use). */
static const char *default_threads(void)
{
	static char buf[16];
	cpu_set_t set;
	int n = 1;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	snprintf(buf, sizeof(buf), "%d", n < 4 ? n : 4);
	return buf;
}

static bool in_list(const char *v, const char *list)
{
	size_t len = strlen(v);

	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");

		if (n == len && !strncasecmp(p, v, n))
			return true;
		p += n;
		p += strspn(p, ", ");
	}
	return false;
}

static bool valid(const struct setting *s, const char *v, const char **accepted)
{
	char *end;

	switch (s->kind) {
	case WORDS:
		*accepted = s->words;
		return in_list(v, s->words);
	case BOOL:
		*accepted = "1, yes, true, on, 0, no, false, off";
		return in_list(v, *accepted);
	case MS:
		*accepted = "milliseconds, 0 to 3600000";
		return *v >= '0' && *v <= '9' && strtoul(v, &end, 10) <= 3600000 && !*end;
	case COUNT:
		*accepted = "threads for hashing, 0 to 17 (0 and 1: none besides the caller)";
		return *v >= '0' && *v <= '9' && strtoul(v, &end, 10) <= 17 && !*end;
	case SERVICE:
		*accepted = "auto, off, require, or the service's socket path";
		return in_list(v, "auto, off, require") ||
		       (v[0] == '/' && strlen(v) < sizeof(((struct sockaddr_un *)0)->sun_path));
	case TEMPLATE:
		*accepted = "a path; %p pid, %h host, %r MPI rank, %% a %";
		if (!*v)
			return false;
		for (const char *p = v; *p; p++)
			if (*p == '%' && (!*++p || !strchr("phr%", *p)))
				return false;
		return true;
	}
	return false;
}

int smt_config_show(struct smt_json *j)
{
	bool secure = getauxval(AT_SECURE) != 0;
	int bad = 0;

	if (j)
		smt_json_open(j, "config", '[');
	else
		printf("safe_mr configuration (environment of this process%s):\n",
		       secure ? "; secure execution: all ignored" : "");
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const struct setting *s = &settings[i];
		char var[64], from[64], warn[256] = "";
		const char *v, *fv = s->fi ? getenv(s->fi) : NULL, *accepted = "", *value;

		snprintf(var, sizeof(var), "SAFE_MR_%s", s->name);
		v = getenv(var);
		value = s->def ? s->def : default_threads();
		snprintf(from, sizeof(from), "default");
		if (v && !secure) {
			if (valid(s, v, &accepted)) {
				value = v;
				snprintf(from, sizeof(from), "%s", var);
			} else {
				snprintf(warn, sizeof(warn), "ignoring %s=%s: not a valid value "
					 "(accepted: %s); the default stays", var, v, accepted);
			}
		} else if (fv && !secure) {
			if (valid(s, fv, &accepted)) {
				value = fv;
				snprintf(from, sizeof(from), "%s (libfabric hook only)", s->fi);
			} else {
				snprintf(warn, sizeof(warn), "ignoring %s=%s: not a valid value "
					 "(accepted: %s)", s->fi, fv, accepted);
			}
		}
		bad += warn[0] != '\0';
		if (j) {
			smt_json_open(j, NULL, '{');
			smt_json_str(j, "name", var);
			smt_json_str(j, "value", value);
			smt_json_str(j, "from", from);
			smt_json_str(j, "fabric_parameter", s->fi);
			smt_json_str(j, "warning", warn[0] ? warn : NULL);
			smt_json_close(j, '}');
		} else {
			printf("  %s=%s\t(%s; %s)\n", var, value[0] ? value : "\"\"", from,
			       s->meaning);
			if (warn[0])
				printf("    warning: %s\n", warn);
		}
	}
	if (j)
		smt_json_close(j, ']');
	smt_service_show(j, secure ? NULL : getenv("SAFE_MR_SERVICE"));
	/* Names that are no setting (the engine says so at start too). */
	if (j)
		smt_json_open(j, "unknown", '[');
	for (char **e = environ; e && *e && !secure; e++) {
		const char *name = *e + 8;
		size_t len = strcspn(name, "=");
		bool known = !strncmp(name, "RUN_", 4) || !strncmp(name, "TEST_", 5) ||
			     (len == 5 && !strncmp(name, "BUILD", 5)) ||
			     (len == 3 && !strncmp(name, "SRC", 3));

		if (strncmp(*e, "SAFE_MR_", 8))
			continue;
		for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
			known |= strlen(settings[i].name) == len &&
				 !strncmp(settings[i].name, name, len);
		if (known)
			continue;
		bad++;
		if (j) {
			char n[128];

			snprintf(n, sizeof(n), "SAFE_MR_%.*s", (int)len, name);
			smt_json_str(j, NULL, n);
		} else {
			printf("  warning: unknown variable SAFE_MR_%.*s ignored\n", (int)len, name);
		}
	}
	if (j)
		smt_json_close(j, ']');
	return bad;
}
