/* SPDX-License-Identifier: MIT */
/* SAFE_MR_* settings: read once, with secure_getenv so that setuid
 * processes ignore them. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct sm_config sm_cfg = {
	.mode = SM_MODE_BOUNCE,
	.log_level = SM_LOG_WARN,
};
size_t sm_page_size = 4096;

static pthread_once_t config_once = PTHREAD_ONCE_INIT;

static int parse_word(const char *value, const char *const *words, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcasecmp(value, words[i]))
			return i;
	return -1;
}

/* One setting by name ("MODE", "LOG", ...): 0 or EINVAL. */
static int config_set(const char *name, const char *value)
{
	static const char *const modes[] = { "bounce", "auto", "off" };
	static const char *const levels[] = { "error", "warn", "info", "debug" };
	static const char *const wbs[] = { "auto", "io_uring", "pwrite" };
	int v;
	char *end;

	if (!strcmp(name, "MODE")) {
		if ((v = parse_word(value, modes, 3)) < 0)
			return EINVAL;
		sm_cfg.mode = (enum sm_mode)v;
	} else if (!strcmp(name, "LOG")) {
		if ((v = parse_word(value, levels, 4)) < 0)
			return EINVAL;
		sm_cfg.log_level = (enum sm_log_level)v;
	} else if (!strcmp(name, "STATS")) {
		sm_cfg.stats_at_exit = strcmp(value, "0") && strcasecmp(value, "no") &&
				       strcasecmp(value, "false") && *value;
	} else if (!strcmp(name, "FLUSH_MS")) {
		unsigned long ms = strtoul(value, &end, 10);
		if (*value == '\0' || *end != '\0' || ms > 3600000)
			return EINVAL;
		sm_cfg.flush_ms = (unsigned int)ms;
	} else if (!strcmp(name, "WRITEBACK")) {
		if ((v = parse_word(value, wbs, 3)) < 0)
			return EINVAL;
		sm_cfg.writeback = (enum sm_wb_pref)v;
	} else {
		return EINVAL;
	}
	return 0;
}

static void config_parse(void)
{
	static const char *const names[] = { "LOG", "MODE", "STATS", "FLUSH_MS", "WRITEBACK" };
	char var[32];

	sm_page_size = (size_t)sysconf(_SC_PAGESIZE);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *value;

		snprintf(var, sizeof(var), "SAFE_MR_%s", names[i]);
		value = secure_getenv(var);
		if (value && config_set(names[i], value))
			sm_warn("ignoring %s=%s: not a valid value", var, value);
	}
}

void sm_init(void)
{
	pthread_once(&config_once, config_parse);
}
