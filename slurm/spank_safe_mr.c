/* SPDX-License-Identifier: MIT */
/* spank_safe_mr.so: `srun --safe-mr` / `#SBATCH --safe-mr` run every task of
 * a step (and a batch script) with safe_mr's LD_PRELOAD library, and fail
 * the task closed when the preload could not reach its program.
 *
 * plugstack.conf:
 *   required /path/spank_safe_mr.so [preload=/abs/libsafe_mr_preload.so]
 *                                   [default=off|on|require]
 *
 * In slurm_spank_task_init (the task process, as the user, just before
 * slurmstepd's execve) it checks, with safe_mr-run's preflight, the program
 * the task will exec (resolved as slurmstepd does) against the preload:
 * missing or unreadable library, static program, set-user/group-ID or
 * file-capability program, other ELF class or machine.  If any holds, the
 * task writes why to its own stderr (the job's output) and exits 126, as
 * safe_mr-run does, so nothing runs unprotected whether the plugstack line
 * says required or optional.  Otherwise the preload goes into the task's
 * LD_PRELOAD, after sanitizer runtimes and before what the user had. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

#include "ldpreload.h"
#include "preflight.h"

/* Exported by name: slurm reads these symbols from the plugin. */
#define SPANK_EXPORT __attribute__((visibility("default")))

SPANK_EXPORT const char plugin_name[] = "safe_mr";
SPANK_EXPORT const char plugin_type[] = "spank";
SPANK_EXPORT const unsigned int plugin_version = SLURM_VERSION_NUMBER;
SPANK_EXPORT const unsigned int spank_plugin_version = 1;

#define EXIT_REFUSED 126	/* safe_mr-run's: safe_mr could not be made active */

enum sms_mode { SMS_UNSET = -1, SMS_OFF, SMS_ON, SMS_REQUIRE };

static enum sms_mode opt_mode = SMS_UNSET;	/* --safe-mr */
static enum sms_mode site_mode = SMS_OFF;	/* default= */
static char preload[PATH_MAX] = SMS_PRELOAD;	/* preload= */

/* No value is "on".  sbatch/salloc hand an option given without a value to
 * the job as SLURM_SPANK_..._safe_mr=(null) (printf of a NULL argument), and
 * srun inside the job parses that back: "(null)" is no value too. */
static enum sms_mode parse_mode(const char *v)
{
	if (!v || !*v || !strcmp(v, "(null)") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcmp(v, "1"))
		return SMS_ON;
	if (!strcasecmp(v, "require"))
		return SMS_REQUIRE;
	if (!strcasecmp(v, "off") || !strcasecmp(v, "no") || !strcmp(v, "0"))
		return SMS_OFF;
	return SMS_UNSET;
}

static int opt_cb(int val, const char *optarg, int remote)
{
	enum sms_mode m = parse_mode(optarg);

	(void)val;
	(void)remote;
	if (m == SMS_UNSET) {
		slurm_error("--safe-mr=%s: not one of on, require, off", optarg);
		return -1;
	}
	opt_mode = m;
	return 0;
}

static struct spank_option safe_mr_opt = {
	.name = "safe-mr",
	.arginfo = "[on|require|off]",
	.usage = "run the tasks with safe_mr (LD_PRELOAD) and fail a task it cannot "
		 "reach; require: also SAFE_MR_GUARDIAN=require; off: not even when the "
		 "site's default is on",
	.has_arg = 2,
	.val = 0,
	.cb = opt_cb,
};

static int parse_args(int ac, char **av)
{
	for (int i = 0; i < ac; i++) {
		if (!strncmp(av[i], "preload=", 8)) {
			const char *p = av[i] + 8;

			if (*p != '/' || strlen(p) >= sizeof(preload)) {
				slurm_error("safe_mr: plugstack.conf: %s: an absolute path is "
					    "needed", av[i]);
				return -1;
			}
			strcpy(preload, p);
		} else if (!strncmp(av[i], "default=", 8)) {
			site_mode = parse_mode(av[i] + 8);
			if (site_mode == SMS_UNSET || !av[i][8]) {
				slurm_error("safe_mr: plugstack.conf: %s: not one of off, on, "
					    "require", av[i]);
				return -1;
			}
		} else {
			slurm_error("safe_mr: plugstack.conf: unknown argument %s (preload=PATH, "
				    "default=off|on|require)", av[i]);
			return -1;
		}
	}
	return 0;
}

SPANK_EXPORT int slurm_spank_init(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();

	if (parse_args(ac, av))
		return -1;
	if (ctx != S_CTX_LOCAL && ctx != S_CTX_REMOTE && ctx != S_CTX_ALLOCATOR)
		return 0;
	if (spank_option_register(sp, &safe_mr_opt) != ESPANK_SUCCESS) {
		slurm_error("safe_mr: cannot register --safe-mr");
		return -1;
	}
	return 0;
}

/* The task's reason to stop, on its stderr (the job's output file or
 * srun's terminal) and in slurmd's log; then the task ends. */
__attribute__((format(printf, 2, 3), noreturn)) static void refuse(spank_t sp,
								   const char *fmt, ...)
{
	uint32_t job = 0, step = 0;
	uint32_t task = 0;
	char msg[1024];
	va_list ap;

	spank_get_item(sp, S_JOB_ID, &job);
	spank_get_item(sp, S_JOB_STEPID, &step);
	spank_get_item(sp, S_TASK_GLOBAL_ID, &task);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dprintf(STDERR_FILENO, "safe_mr: job %u task %u: %s\n"
		"safe_mr: not running it without safe_mr (--safe-mr); exit status %d\n",
		job, task, msg, EXIT_REFUSED);
	slurm_info("safe_mr: job %u step %u task %u: %s; task refused", job, step, task, msg);
	_exit(EXIT_REFUSED);
}

/* A variable of the task's environment, malloc'ed (any length: a PATH or
 * LD_PRELOAD cut short would check or set something else); NULL with *rc
 * ESPANK_ENV_NOEXIST when it is not set, or another error. */
static char *job_getenv(spank_t sp, const char *name, spank_err_t *rc)
{
	for (int len = 4096; len <= 1 << 24; len *= 2) {
		char *buf = malloc((size_t)len);

		if (!buf) {
			*rc = ESPANK_ERROR;
			return NULL;
		}
		*rc = spank_getenv(sp, name, buf, len);
		if (*rc == ESPANK_SUCCESS)
			return buf;
		free(buf);
		if (*rc != ESPANK_NOSPACE)
			return NULL;
	}
	return NULL;
}

/* The file slurmstepd will execve for `name` (its _build_path: absolute as
 * is, "./x" from the working directory, else the first PATH entry that
 * stat()s as a non-directory, else the name itself).  false when there is
 * no such file. */
static bool resolve(spank_t sp, const char *name, char *out, size_t n)
{
	char cwd[PATH_MAX], *path;
	struct stat st;
	spank_err_t rc;

	if (name[0] == '/' || name[0] == '.') {
		int len = name[0] == '.' && getcwd(cwd, sizeof(cwd)) ?
			snprintf(out, n, "%s/%s", cwd, name) : snprintf(out, n, "%s", name);

		return len > 0 && (size_t)len < n && !stat(out, &st);
	}
	if ((path = job_getenv(sp, "PATH", &rc))) {
		char *save = NULL;

		for (char *d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
			if ((size_t)snprintf(out, n, "%s/%s", d, name) < n && !stat(out, &st) &&
			    !S_ISDIR(st.st_mode)) {
				free(path);
				return true;
			}
		}
		free(path);
	} else if (rc != ESPANK_ENV_NOEXIST) {
		refuse(sp, "cannot read the task's PATH: %s", spank_strerror(rc));
	}
	return (size_t)snprintf(out, n, "%s", name) < n && !stat(out, &st);
}

SPANK_EXPORT int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	enum sms_mode mode = opt_mode != SMS_UNSET ? opt_mode : site_mode;
	char prog[PATH_MAX], why[1024], mode_env[16], *old;
	const char *reason;
	uint32_t step = 0;
	spank_err_t rc;
	char **argv = NULL;
	int argc = 0;
	char *v;

	(void)ac;
	(void)av;
	if (!spank_remote(sp) || mode == SMS_OFF)
		return 0;
	/* The extern step's process is slurm's own (a sleep holding the job's
	 * cgroup), not the user's program. */
	if (spank_get_item(sp, S_JOB_STEPID, &step) == ESPANK_SUCCESS && step == SLURM_EXTERN_CONT)
		return 0;
	if (spank_getenv(sp, "SAFE_MR_MODE", mode_env, sizeof(mode_env)) == ESPANK_SUCCESS &&
	    !strcasecmp(mode_env, "off"))
		refuse(sp, "SAFE_MR_MODE=off is set in the job's environment: safe_mr would "
		       "pass every registration through (say --safe-mr=off to mean that)");
	if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1 ||
	    !argv || !argv[0])
		refuse(sp, "cannot tell which program the task runs");
	/* What cannot be found cannot be checked: slurmstepd might still find
	 * it (a TaskProlog changing PATH, a container, a --multi-prog step
	 * whose configuration file is not on the node). */
	if (access(preload, R_OK))
		refuse(sp, "the preload %s: %s", preload, strerror(errno));
	if (!resolve(sp, argv[0], prog, sizeof(prog)))
		refuse(sp, "%s: not found in the task's PATH or working directory: cannot "
		       "check that the preload reaches it", argv[0]);
	if ((reason = smt_preflight(prog, preload, why, sizeof(why))))
		refuse(sp, "%s", reason);

	old = job_getenv(sp, "LD_PRELOAD", &rc);
	if (!old && rc != ESPANK_ENV_NOEXIST)
		refuse(sp, "cannot read the task's LD_PRELOAD: %s", spank_strerror(rc));
	v = smt_ldpreload_with(old, preload);
	free(old);
	if (!v)
		refuse(sp, "out of memory");
	if (spank_setenv(sp, "LD_PRELOAD", v, 1) != ESPANK_SUCCESS) {
		free(v);
		refuse(sp, "cannot set the task's LD_PRELOAD");
	}
	free(v);
	if (mode == SMS_REQUIRE && spank_setenv(sp, "SAFE_MR_GUARDIAN", "require", 1) !=
	    ESPANK_SUCCESS)
		refuse(sp, "cannot set SAFE_MR_GUARDIAN=require");
	return 0;
}
