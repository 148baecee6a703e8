/* SPDX-License-Identifier: MIT */
/* spank_safe_mr.c's logic against a fake SPANK host (no Slurm daemons, so
 * it runs in the sanitizer builds too): plugstack arguments, option values,
 * how LD_PRELOAD is composed, which program is checked, what is refused.
 * Each case runs the plugin's callbacks in a child (a refusal _exits, as in
 * a task) and looks at its exit status, its stderr and the task's
 * environment it leaves.
 *
 * usage: spank_unit PRELOAD STATIC_PROGRAM */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

/* The fake host: one task, its environment and argv. */
static char *job_env[16][2];
static char *job_argv[2];
static uint32_t job_step;
static spank_context_t ctx = S_CTX_REMOTE;
static struct spank_option *registered;

spank_context_t spank_context(void) { return ctx; }
int spank_remote(spank_t sp) { (void)sp; return ctx == S_CTX_REMOTE; }
const char *spank_strerror(spank_err_t e) { return e == ESPANK_NOSPACE ? "no space" : "error"; }

spank_err_t spank_option_register(spank_t sp, struct spank_option *opt)
{
	(void)sp;
	registered = opt;
	return ESPANK_SUCCESS;
}

spank_err_t spank_get_item(spank_t sp, spank_item_t item, ...)
{
	va_list ap;

	(void)sp;
	va_start(ap, item);
	switch (item) {
	case S_JOB_ID:
		*va_arg(ap, uint32_t *) = 7;
		break;
	case S_JOB_STEPID:
		*va_arg(ap, uint32_t *) = job_step;
		break;
	case S_TASK_GLOBAL_ID:
		*va_arg(ap, uint32_t *) = 0;
		break;
	case S_JOB_ARGV:
		*va_arg(ap, int *) = 1;
		*va_arg(ap, char ***) = job_argv;
		break;
	default:
		va_end(ap);
		return ESPANK_BAD_ARG;
	}
	va_end(ap);
	return ESPANK_SUCCESS;
}

static char **slot(const char *var, bool add)
{
	for (int i = 0; i < 16; i++)
		if (job_env[i][0] && !strcmp(job_env[i][0], var))
			return &job_env[i][1];
	if (add)
		for (int i = 0; i < 16; i++)
			if (!job_env[i][0]) {
				job_env[i][0] = strdup(var);
				return &job_env[i][1];
			}
	return NULL;
}

spank_err_t spank_getenv(spank_t sp, const char *var, char *buf, int len)
{
	char **v = slot(var, false);

	(void)sp;
	if (!v)
		return ESPANK_ENV_NOEXIST;
	if ((int)strlen(*v) >= len)
		return ESPANK_NOSPACE;
	strcpy(buf, *v);
	return ESPANK_SUCCESS;
}

spank_err_t spank_setenv(spank_t sp, const char *var, const char *val, int overwrite)
{
	char **v = slot(var, true);

	(void)sp;
	(void)overwrite;
	free(*v);
	*v = strdup(val);
	return ESPANK_SUCCESS;
}

void slurm_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("slurm_error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void slurm_info(const char *fmt, ...)
{
	(void)fmt;
}

static void setvar(const char *var, const char *val)
{
	char **v = slot(var, true);

	free(*v);
	*v = val ? strdup(val) : NULL;
	if (!val) {
		for (int i = 0; i < 16; i++)
			if (job_env[i][0] && !strcmp(job_env[i][0], var)) {
				free(job_env[i][0]);
				job_env[i][0] = NULL;
			}
	}
}

/* The case's result: exit status, stderr, and the variables after. */
struct res {
	int status;
	char err[2048];
	char preload[32768];
	char guardian[64];
};

static const char *preload, *static_prog;
static int fails;

/* Plugstack args (NULL-terminated), the option's value (NULL: not given;
 * "" : given without a value), then slurm_spank_init and task_init. */
static struct res run(const char *const *args, const char *opt, const char *prog)
{
	struct res r = { 0 };
	int ep[2], vp[2];
	pid_t pid;

	if (pipe(ep) || pipe(vp))
		abort();
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		char *av[8];
		int ac = 0, rc;
		char *pl, *g;

		dup2(ep[1], 2);
		for (; args && args[ac]; ac++)
			av[ac] = (char *)args[ac];
		av[ac] = NULL;
		job_argv[0] = (char *)prog;
		if (slurm_spank_init(NULL, ac, av))
			_exit(50);
		if (opt && registered->cb(0, *opt ? opt : NULL, 1))
			_exit(51);
		rc = slurm_spank_task_init(NULL, 0, NULL);
		pl = slot("LD_PRELOAD", false) ? *slot("LD_PRELOAD", false) : NULL;
		g = slot("SAFE_MR_GUARDIAN", false) ? *slot("SAFE_MR_GUARDIAN", false) : NULL;
		dprintf(vp[1], "%s\n%s\n", pl ? pl : "(unset)", g ? g : "(unset)");
		_exit(rc ? 52 : 0);
	}
	close(ep[1]);
	close(vp[1]);
	static char buf[32768];
	size_t got = 0, egot = 0;
	ssize_t n;

	while (egot < sizeof(r.err) - 1 && (n = read(ep[0], r.err + egot, sizeof(r.err) - 1 - egot)) > 0)
		egot += (size_t)n;
	r.err[egot] = '\0';
	while (got < sizeof(buf) - 1 && (n = read(vp[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	char *nl = strchr(buf, '\n');
	if (nl) {
		*nl = '\0';
		snprintf(r.preload, sizeof(r.preload), "%s", buf);
		snprintf(r.guardian, sizeof(r.guardian), "%.*s", (int)strcspn(nl + 1, "\n"), nl + 1);
	}
	close(ep[0]);
	close(vp[0]);
	waitpid(pid, &r.status, 0);
	r.status = WIFEXITED(r.status) ? WEXITSTATUS(r.status) : 128 + WTERMSIG(r.status);
	return r;
}

#define CHECK(name, cond, r)                                                             \
	do {                                                                             \
		if (cond) {                                                              \
			printf("ok: %s\n", name);                                        \
		} else {                                                                 \
			printf("not ok: %s (status %d, LD_PRELOAD=%s, guardian=%s, "     \
			       "stderr: %s)\n", name, (r).status, (r).preload,            \
			       (r).guardian, (r).err);                                    \
			fails++;                                                         \
		}                                                                        \
	} while (0)

int main(int argc, char **argv)
{
	char arg_preload[4200], self[4096], want[8192], dir[4096], longpath[20000];
	struct res r;
	ssize_t n;

	if (argc != 3) {
		fprintf(stderr, "usage: %s PRELOAD STATIC_PROGRAM\n", argv[0]);
		return 2;
	}
	preload = argv[1];
	static_prog = argv[2];
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 2;
	self[n] = '\0';
	snprintf(arg_preload, sizeof(arg_preload), "preload=%s", preload);
	const char *const pl_args[] = { arg_preload, NULL };
	const char *const on_args[] = { arg_preload, "default=on", NULL };

	setvar("PATH", "/usr/bin:/bin");

	/* Off unless asked for: nothing set. */
	r = run(pl_args, NULL, self);
	CHECK("no option: nothing", r.status == 0 && !strcmp(r.preload, "(unset)"), r);
	/* --safe-mr: the preload, alone. */
	r = run(pl_args, "", self);
	CHECK("--safe-mr: LD_PRELOAD is the preload", r.status == 0 && !strcmp(r.preload, preload) &&
	      !strcmp(r.guardian, "(unset)"), r);
	/* sbatch hands a valueless option on as "(null)". */
	r = run(pl_args, "(null)", self);
	CHECK("--safe-mr from sbatch's (null)", r.status == 0 && !strcmp(r.preload, preload), r);
	r = run(pl_args, "require", self);
	CHECK("--safe-mr=require: SAFE_MR_GUARDIAN=require",
	      r.status == 0 && !strcmp(r.guardian, "require"), r);
	r = run(pl_args, "sometimes", self);
	CHECK("--safe-mr=sometimes refused", r.status == 51 && strstr(r.err, "not one of"), r);

	/* What the user had stays, after sanitizer runtimes, not twice. */
	setvar("LD_PRELOAD", "libasan.so.8 /opt/x.so");
	r = run(pl_args, "on", self);
	snprintf(want, sizeof(want), "libasan.so.8:%s:/opt/x.so", preload);
	CHECK("sanitizer first, the user's after", r.status == 0 && !strcmp(r.preload, want), r);
	setvar("LD_PRELOAD", want);
	r = run(pl_args, "on", self);
	CHECK("already there: unchanged", r.status == 0 && !strcmp(r.preload, want), r);
	/* A long LD_PRELOAD is read whole (the fake refuses short buffers). */
	memset(longpath, 'a', 10000);
	longpath[0] = '/';
	longpath[10000] = '\0';
	setvar("LD_PRELOAD", longpath);
	r = run(pl_args, "on", self);
	CHECK("an LD_PRELOAD over 8 KiB kept whole", r.status == 0 && strlen(r.preload) ==
	      strlen(preload) + 1 + 10000, r);
	setvar("LD_PRELOAD", NULL);

	/* Refusals: exit 126, the reason on stderr. */
	r = run(pl_args, "", static_prog);
	CHECK("static program refused", r.status == 126 && strstr(r.err, "statically linked") &&
	      strstr(r.err, "not running it without safe_mr"), r);
	/* Found in the job's PATH, as slurmstepd finds it: a PATH over 8 KiB
	 * with the static program's directory last. */
	snprintf(dir, sizeof(dir), "%s", static_prog);
	*strrchr(dir, '/') = '\0';
	memset(longpath, 0, sizeof(longpath));
	for (int i = 0; i < 1000; i++)
		strcat(longpath, "/nonexistent:");
	strcat(longpath, dir);
	setvar("PATH", longpath);
	r = run(pl_args, "", strrchr(static_prog, '/') + 1);
	CHECK("static program found in a long PATH refused", r.status == 126 &&
	      strstr(r.err, static_prog), r);
	setvar("PATH", "/usr/bin:/bin");
	r = run(pl_args, "", "no-such-program-here");
	CHECK("program not found: refused", r.status == 126 &&
	      strstr(r.err, "no-such-program-here: not found"), r);
	setvar("SAFE_MR_MODE", "off");
	r = run(pl_args, "", self);
	CHECK("SAFE_MR_MODE=off refused", r.status == 126 && strstr(r.err, "SAFE_MR_MODE=off"), r);
	setvar("SAFE_MR_MODE", NULL);
	const char *const missing[] = { "preload=/nonexistent/libsafe_mr_preload.so", NULL };
	r = run(missing, "", self);
	CHECK("missing preload refused", r.status == 126 &&
	      strstr(r.err, "/nonexistent/libsafe_mr_preload.so: No such file"), r);
	r = run(missing, "", "no-such-program-here");
	CHECK("missing preload refused, program or not", r.status == 126, r);

	/* The extern step is slurm's own process. */
	job_step = SLURM_EXTERN_CONT;
	r = run(on_args, NULL, static_prog);
	CHECK("extern step left alone", r.status == 0 && !strcmp(r.preload, "(unset)"), r);
	job_step = 0;

	/* default=on: without the option too; --safe-mr=off opts out. */
	r = run(on_args, NULL, self);
	CHECK("default=on", r.status == 0 && !strcmp(r.preload, preload), r);
	r = run(on_args, "off", static_prog);
	CHECK("default=on, --safe-mr=off", r.status == 0 && !strcmp(r.preload, "(unset)"), r);

	/* plugstack.conf mistakes make the plugin fail to load. */
	const char *const rel[] = { "preload=lib/x.so", NULL };
	const char *const bad_default[] = { "default=always", NULL };
	const char *const empty_default[] = { "default=", NULL };
	const char *const unknown[] = { "prelaod=/x.so", NULL };
	r = run(rel, NULL, self);
	CHECK("relative preload= refused", r.status == 50 && strstr(r.err, "absolute path"), r);
	r = run(bad_default, NULL, self);
	CHECK("default=always refused", r.status == 50 && strstr(r.err, "not one of"), r);
	r = run(empty_default, NULL, self);
	CHECK("default= refused", r.status == 50, r);
	r = run(unknown, NULL, self);
	CHECK("unknown argument refused", r.status == 50 && strstr(r.err, "unknown argument"), r);

	/* srun's side: the option is registered, nothing else happens. */
	ctx = S_CTX_LOCAL;
	r = run(pl_args, "", static_prog);
	CHECK("local context: no check", r.status == 0, r);

	if (fails) {
		printf("FAIL: %d check(s)\n", fails);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
