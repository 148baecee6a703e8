/* SPDX-License-Identifier: MIT */
/* SAFE_MR_* settings: read once, with secure_getenv so that setuid
 * processes ignore them.  Checked when the library is loaded, so that a
 * misspelt name or a bad value is reported when the program starts (with
 * what is accepted), not after the job ran with the defaults; used from the
 * first call on. */
#include <ctype.h>
#include <errno.h>
#include <link.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "config.h"
#include "internal.h"

struct sm_config sm_cfg = {
	.mode = SM_MODE_BOUNCE,
	.reserve = true,
	.guardian = SM_GUARD_ON,
	.service = SM_SVC_AUTO,
	.service_path = SMD_DEFAULT_SOCKET,
	.log_level = SM_LOG_WARN,
	.threads = -1,
};
size_t sm_page_size = 4096;

static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static char stats_file[PATH_MAX];
static char log_file[PATH_MAX];

extern char **environ;

const char *sm_cfg_stats_file(void)
{
	return stats_file[0] ? stats_file : NULL;
}

const char *sm_cfg_log_file(void)
{
	return log_file[0] ? log_file : NULL;
}

static int parse_word(const char *value, const char *const *words, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcasecmp(value, words[i]))
			return i;
	return -1;
}

static int parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	if (parse_word(value, yes, 4) >= 0)
		*out = true;
	else if (parse_word(value, no, 4) >= 0)
		*out = false;
	else
		return EINVAL;
	return 0;
}

const char *sm_mpi_rank(void)
{
	static const char *const vars[] = { "OMPI_COMM_WORLD_RANK", "PMI_RANK",
					    "PMIX_RANK", "SLURM_PROCID" };

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);

		if (v && *v && strspn(v, "0123456789") == strlen(v))
			return v;
	}
	return NULL;
}

int sm_stats_path(const char *tmpl, char *out, size_t n)
{
	size_t len = 0;

	for (const char *s = tmpl; *s; s++) {
		char num[24], host[HOST_NAME_MAX + 1];
		const char *piece = num;
		size_t plen;

		if (*s != '%') {
			num[0] = *s;
			num[1] = '\0';
		} else {
			switch (*++s) {
			case 'p':
				snprintf(num, sizeof(num), "%d", (int)getpid());
				break;
			case 'h':
				if (gethostname(host, sizeof(host)))
					strcpy(host, "unknown");
				host[sizeof(host) - 1] = '\0';
				piece = host;
				break;
			case 'r':
				piece = sm_mpi_rank();
				if (!piece)
					piece = "norank";
				break;
			case '%':
				strcpy(num, "%");
				break;
			default:	/* another letter, or the end */
				return EINVAL;
			}
		}
		plen = strlen(piece);
		if (len + plen + 1 > n)
			return ENAMETOOLONG;
		memcpy(out + len, piece, plen);
		len += plen;
	}
	if (n == 0)
		return ENAMETOOLONG;
	out[len] = '\0';
	return 0;
}

/* The settings: name after SAFE_MR_, and what is accepted (for messages). */
enum { S_MODE, S_LOG, S_STATS, S_STATS_FILE, S_FLUSH_MS, S_WRITEBACK, S_RESERVE, S_GUARDIAN,
       S_LOG_FILE, S_THREADS, S_SERVICE, S_COUNT };
static const struct {
	const char *name;
	const char *accepted;
} settings[S_COUNT] = {
	/* LOG first: it decides whether the other messages are shown. */
	[S_LOG] = { "LOG", "error, warn, info, debug" },
	[S_MODE] = { "MODE", "bounce, auto, off" },
	[S_STATS] = { "STATS", "1, yes, true, on, 0, no, false, off" },
	[S_STATS_FILE] = { "STATS_FILE", "a path; %p pid, %h host, %r MPI rank, %% a %" },
	[S_FLUSH_MS] = { "FLUSH_MS", "milliseconds, 0 to 3600000" },
	[S_WRITEBACK] = { "WRITEBACK", "auto, io_uring, pwrite" },
	[S_RESERVE] = { "RESERVE", "auto, off" },
	[S_GUARDIAN] = { "GUARDIAN", "on, off, require (1, yes, true, 0, no, false)" },
	[S_LOG_FILE] = { "LOG_FILE", "a path; %p pid, %h host, %r MPI rank, %% a %" },
	[S_THREADS] = { "THREADS", "threads for hashing, 0 to 17 (0 and 1: none besides the caller)" },
	[S_SERVICE] = { "SERVICE", "auto, off, require, or the service's socket path" },
};
/* LOG and LOG_FILE first: they decide whether and where the other messages
 * go. */
static const int parse_order[S_COUNT] = { S_LOG, S_LOG_FILE, S_MODE, S_STATS, S_STATS_FILE,
					  S_FLUSH_MS, S_WRITEBACK, S_RESERVE, S_GUARDIAN,
					  S_THREADS, S_SERVICE };

/* One setting: 0 or EINVAL (nothing changed). */
static int config_set(int which, const char *value)
{
	static const char *const modes[] = { "bounce", "auto", "off" };
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	static const char *const wbs[] = { "auto", "io_uring", "pwrite" };
	static const char *const reserves[] = { "off", "auto" };
	char scratch[PATH_MAX];
	unsigned long ms;
	char *end;
	bool b;
	int v;

	switch (which) {
	case S_MODE:
		if ((v = parse_word(value, modes, 3)) < 0)
			return EINVAL;
		sm_cfg.mode = (enum sm_mode)v;
		break;
	case S_LOG:
		if ((v = parse_word(value, levels, 4)) < 0)
			return EINVAL;
		sm_cfg.log_level = (enum sm_log_level)v;
		break;
	case S_STATS:
		if (parse_bool(value, &b))
			return EINVAL;
		sm_cfg.stats_at_exit = b;
		break;
	case S_STATS_FILE:
		/* Checked now (expanded with this pid), used at exit. */
		if (!*value || strlen(value) >= sizeof(stats_file) ||
		    sm_stats_path(value, scratch, sizeof(scratch)))
			return EINVAL;
		strcpy(stats_file, value);
		break;
	case S_LOG_FILE:
		if (!*value || strlen(value) >= sizeof(log_file) ||
		    sm_stats_path(value, scratch, sizeof(scratch)))
			return EINVAL;
		strcpy(log_file, value);
		break;
	case S_FLUSH_MS:
		errno = 0;
		ms = strtoul(value, &end, 10);
		if (*value < '0' || *value > '9' || *end != '\0' || errno || ms > 3600000)
			return EINVAL;
		sm_cfg.flush_ms = (unsigned int)ms;
		break;
	case S_THREADS:
		errno = 0;
		ms = strtoul(value, &end, 10);
		if (*value < '0' || *value > '9' || *end != '\0' || errno || ms > 17)
			return EINVAL;
		sm_cfg.threads = (int)ms;
		break;
	case S_WRITEBACK:
		if ((v = parse_word(value, wbs, 3)) < 0)
			return EINVAL;
		sm_cfg.writeback = (enum sm_wb_pref)v;
		break;
	case S_RESERVE:
		if ((v = parse_word(value, reserves, 2)) < 0)
			return EINVAL;
		sm_cfg.reserve = v == 1;
		break;
	case S_GUARDIAN:
		if (!strcmp(value, "require"))
			sm_cfg.guardian = SM_GUARD_REQUIRE;
		else if (parse_bool(value, &b))
			return EINVAL;
		else
			sm_cfg.guardian = b ? SM_GUARD_ON : SM_GUARD_OFF;
		break;
	case S_SERVICE:
		if (!strcasecmp(value, "auto") || !strcasecmp(value, "off") ||
		    !strcasecmp(value, "require")) {
			sm_cfg.service = tolower((unsigned char)value[0]) == 'a' ? SM_SVC_AUTO :
					 tolower((unsigned char)value[0]) == 'o' ? SM_SVC_OFF :
					 SM_SVC_REQUIRE;
			strcpy(sm_cfg.service_path, SMD_DEFAULT_SOCKET);
		} else if (value[0] == '/' && strlen(value) < sizeof(sm_cfg.service_path)) {
			sm_cfg.service = SM_SVC_AUTO;
			strcpy(sm_cfg.service_path, value);
		} else {
			return EINVAL;
		}
		break;
	default:
		return EINVAL;
	}
	return 0;
}

/* SAFE_MR_* names that are not settings of the engine: the launcher's
 * (SAFE_MR_RUN_*) and the test beds' (SAFE_MR_TEST_*, SAFE_MR_BUILD,
 * SAFE_MR_SRC). */
static bool not_a_setting(const char *name, size_t len)
{
	return (len >= 4 && !strncmp(name, "RUN_", 4)) ||
	       (len >= 5 && !strncmp(name, "TEST_", 5)) ||
	       (len == 5 && !strncmp(name, "BUILD", 5)) ||
	       (len == 3 && !strncmp(name, "SRC", 3));
}

static bool is_setting(const char *name, size_t len)
{
	for (int i = 0; i < S_COUNT; i++)
		if (strlen(settings[i].name) == len && !strncmp(name, settings[i].name, len))
			return true;
	return false;
}

/* Every SAFE_MR_ variable that is neither a setting nor reserved. */
static void report_unknown(void)
{
	for (char **e = environ; e && *e; e++) {
		const char *name, *eq;

		if (strncmp(*e, "SAFE_MR_", 8))
			continue;
		name = *e + 8;
		eq = strchr(name, '=');
		if (!eq || is_setting(name, (size_t)(eq - name)) ||
		    not_a_setting(name, (size_t)(eq - name)))
			continue;
		sm_warn("unknown variable SAFE_MR_%.*s ignored; the settings are "
			"SAFE_MR_MODE, SAFE_MR_LOG, SAFE_MR_STATS, SAFE_MR_STATS_FILE, "
			"SAFE_MR_FLUSH_MS, SAFE_MR_WRITEBACK, SAFE_MR_RESERVE, SAFE_MR_GUARDIAN, "
			"SAFE_MR_LOG_FILE, SAFE_MR_THREADS, SAFE_MR_SERVICE",
			(int)(eq - name),
			name);
	}
}

/* The values checked (and reported) when the library was loaded. */
static char checked[S_COUNT][128];
static bool checked_set[S_COUNT];

static bool was_checked(int i, const char *value)
{
	return checked_set[i] && strlen(value) < sizeof(checked[i]) &&
	       !strcmp(checked[i], value);
}

/* Commit the settings (first use).  Values are read now, not at load: the
 * libfabric hook turns its FI_SAFE_MR_* parameters into SAFE_MR_* variables
 * after this library was loaded.  A bad value already reported at load is
 * not reported twice. */
static void config_parse(void)
{
	const char *value;
	char var[32];
	bool stats_set = false;

	sm_page_size = (size_t)sysconf(_SC_PAGESIZE);
	/* Secure execution: the environment is not ours to trust, and not
	 * ours to comment on either. */
	if (getauxval(AT_SECURE))
		return;
	for (int k = 0; k < S_COUNT; k++) {
		int i = parse_order[k];

		snprintf(var, sizeof(var), "SAFE_MR_%s", settings[i].name);
		value = secure_getenv(var);
		if (!value)
			continue;
		if (config_set(i, value)) {
			if (!was_checked(i, value))
				sm_warn("ignoring %s=%s: not a valid value (accepted: %s)", var,
					value, settings[i].accepted);
			continue;
		}
		stats_set |= i == S_STATS;
		/* A stats file asks for the stats, unless SAFE_MR_STATS says no. */
		if (i == S_STATS_FILE && !stats_set)
			sm_cfg.stats_at_exit = true;
	}
}

void sm_init(void)
{
	pthread_once(&config_once, config_parse);
}

/* Which door loaded the engine: the preload, the libfabric hook, or a
 * program (or library) linked against it. */
static int find_door(struct dl_phdr_info *info, size_t size, void *arg)
{
	const char **door = arg;
	const char *base = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;

	(void)size;
	base = base ? base + 1 : info->dlpi_name;
	if (base && !strncmp(base, "libsafe_mr_preload.so", 21))
		*door = "preload";
	else if (base && !strncmp(base, "libsafe_mr-fi.so", 16) && strcmp(*door, "preload"))
		*door = "libfabric hook";
	return 0;
}

/* The info line at start: what is active here, and what protects it. */
static void say_active(void)
{
	static const char *const modes[] = { "bounce", "auto", "off" };
	const char *door = "linked";

	if (sm_cfg.log_level < SM_LOG_INFO)
		return;
	dl_iterate_phdr(find_door, &door);
	sm_info("safe_mr active: mode=%s, %s, protector: %s", modes[sm_cfg.mode], door,
		sm_cfg.mode == SM_MODE_OFF ? "none (mode off: nothing is shadowed)" :
		!sm_cfg.guardian ? "none (SAFE_MR_GUARDIAN=off)" :
		sm_cfg.service == SM_SVC_OFF ?
		"guardian (safe_mr-guardian, started with the first shadow)" :
		sm_cfg.service == SM_SVC_REQUIRE ? "node service safe_mrd (required)" :
		"node service safe_mrd if it answers, else safe_mr-guardian (with the first shadow)");
}

/* At load: report bad values and unknown names now, when the user can still
 * stop the job, rather than run it with the defaults.  Only checks: what is
 * used is read at first use (config_parse). */
__attribute__((constructor)) static void config_check(void)
{
	struct sm_config saved;
	char var[32], saved_file[sizeof(stats_file)];
	const char *log;

	if (getauxval(AT_SECURE))
		return;
	/* The log level and file decide what is shown, and where: taken now. */
	if ((log = secure_getenv("SAFE_MR_LOG")))
		config_set(S_LOG, log);
	if ((log = secure_getenv("SAFE_MR_LOG_FILE")))
		config_set(S_LOG_FILE, log);
	saved = sm_cfg;
	strcpy(saved_file, stats_file);
	for (int k = 0; k < S_COUNT; k++) {
		int i = parse_order[k];
		const char *value;

		snprintf(var, sizeof(var), "SAFE_MR_%s", settings[i].name);
		value = secure_getenv(var);
		if (!value)
			continue;
		if (config_set(i, value))
			sm_warn("ignoring %s=%s: not a valid value (accepted: %s)", var, value,
				settings[i].accepted);
		if (strlen(value) < sizeof(checked[i])) {
			strcpy(checked[i], value);
			checked_set[i] = true;
		}
	}
	report_unknown();
	say_active();
	/* Nothing is committed here but the log level and file. */
	sm_cfg = saved;
	strcpy(stats_file, saved_file);
}
