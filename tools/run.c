/* SPDX-License-Identifier: MIT */
/* safe_mr-run [options] [--] program [args]: run a program with safe_mr's
 * LD_PRELOAD library, and only with it.
 *
 * Fails closed.  Before running anything it checks what would make the
 * dynamic loader skip LD_PRELOAD (preflight.c) and, with --fabric, that
 * libfabric loads the hook and opens fabrics through it (fabric_probe.c).
 * Then it forks; the child execs the program with SAFE_MR_RUN_CHECK=<fd>,
 * the write end of a pipe, and the preload's constructor — before the
 * program's main — writes "safe_mr-run-check active pid=..." into it
 * (preload/run_check.c).  No such line from that pid (timeout, or the pipe
 * closed first): the program is killed and safe_mr-run exits 126 with a
 * message.  Otherwise it waits and exits as the program did (same code, or
 * the same signal), forwarding the signals sent to it.
 *
 * One launcher per process, so it composes with MPI launchers:
 * `mpirun -np 4 safe_mr-run -- ./app` checks every rank by itself. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fabric_probe.h"
#include "ldpreload.h"
#include "paths.h"
#include "preflight.h"

#define EXIT_REFUSED 126	/* safe_mr could not be made active; or the program
				 * exists but cannot be executed (as the shell) */
#define EXIT_NOTFOUND 127	/* no such program (as the shell and env) */
#define EXIT_USAGE 125		/* the launcher's own usage errors (as env) */

static const char *argv0 = "safe_mr-run";
static volatile pid_t child;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [options] [--] program [args...]\n"
		"Runs program with safe_mr (LD_PRELOAD), and refuses to run it without.\n"
		"  -m, --mode=MODE            SAFE_MR_MODE: bounce, auto, off\n"
		"  -l, --log=LEVEL            SAFE_MR_LOG: error, warn, info, debug\n"
		"  -s, --stats                SAFE_MR_STATS=1: one stats line at exit\n"
		"  -S, --stats-file=TEMPLATE  SAFE_MR_STATS_FILE (%%p pid, %%h host, %%r MPI rank)\n"
		"  -f, --flush-ms=MS          SAFE_MR_FLUSH_MS: periodic writeback\n"
		"  -w, --writeback=ENGINE     SAFE_MR_WRITEBACK: auto, io_uring, pwrite\n"
		"  -r, --reserve=auto|off     SAFE_MR_RESERVE: reserve blocks at registration\n"
		"  -g, --guardian=on|off|require  SAFE_MR_GUARDIAN: the crash guardian process\n"
		"  -L, --log-file=TEMPLATE    SAFE_MR_LOG_FILE (%%p pid, %%h host, %%r MPI rank)\n"
		"  -F, --fabric               also the libfabric hook (FI_HOOK, FI_PROVIDER_PATH)\n"
		"  -p, --preload=PATH         the preload library (default: the one installed\n"
		"                             with this program)\n"
		"  -t, --check-timeout=SEC    wait this long for the program's report (30)\n"
		"  -n, --dry-run              print the settings and the checks, run nothing\n"
		"  -V, --version              print the version\n"
		"  -h, --help                 this text\n"
		"Exit status: the program's; %d when safe_mr could not be made active in it\n"
		"(nothing run, or the program stopped) or the program cannot be executed,\n"
		"%d when it is not found, %d for a usage error of %s itself.\n",
		argv0, EXIT_REFUSED, EXIT_NOTFOUND, EXIT_USAGE, argv0);
}

static void vsay(const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", argv0);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* Nothing ran, or what ran was stopped. */
__attribute__((format(printf, 1, 2), noreturn)) static void refuse(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: not running it without safe_mr\n", argv0);
	exit(EXIT_REFUSED);
}

/* It ran to its end without safe_mr: the caller must not trust the result. */
__attribute__((format(printf, 1, 2), noreturn)) static void unprotected(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: exit status %d: the run was not protected\n", argv0,
		EXIT_REFUSED);
	exit(EXIT_REFUSED);
}

static bool one_of(const char *v, const char *const *words)
{
	for (; *words; words++)
		if (!strcasecmp(v, *words))
			return true;
	return false;
}

/* A bad option value: name the option, say what is accepted, exit 125. */
__attribute__((format(printf, 3, 4), noreturn)) static void bad_value(const char *opt,
								      const char *v,
								      const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: --%s=%s: ", argv0, opt, v);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", argv0);
	exit(EXIT_USAGE);
}

static void set_word(const char *opt, const char *var, const char *v,
		     const char *const *words, const char *accepted)
{
	if (!one_of(v, words))
		bad_value(opt, v, "not one of %s", accepted);
	setenv(var, v, 1);
}

/* --stats-file and --log-file: checked as the library checks them (the
 * same template letters), so a typo is refused here, not ignored later. */
static void set_template(const char *opt, const char *var, const char *v)
{
	for (const char *s = v; *s; s++) {
		if (*s != '%')
			continue;
		s++;
		if (!*s)
			bad_value(opt, v, "ends in a lone %%: %%p pid, %%h host, %%r MPI rank, "
				  "%%%% a %%");
		if (!strchr("phr%", *s))
			bad_value(opt, v, "%%%c is not a template letter: %%p pid, %%h host, "
				  "%%r MPI rank, %%%% a %%", *s);
	}
	if (!*v || strlen(v) >= PATH_MAX - 64)
		bad_value(opt, v, "a path template, 1 to %d bytes", PATH_MAX - 64);
	setenv(var, v, 1);
}

static void set_preload(const char *preload)
{
	char *v = smt_ldpreload_with(getenv("LD_PRELOAD"), preload);

	if (!v)
		refuse("out of memory");
	setenv("LD_PRELOAD", v, 1);
	free(v);
}

static void set_fabric(const char *provdir)
{
	const char *hook = getenv("FI_HOOK");
	char *path = smt_provider_path(provdir), *v = NULL;

	if (!path)
		refuse("out of memory");
	setenv("FI_PROVIDER_PATH", path, 1);
	free(path);
	if (!hook || !*hook) {
		setenv("FI_HOOK", "safe_mr", 1);
	} else if (!strstr(hook, "safe_mr")) {
		/* The probe below tells whether libfabric takes the list. */
		if (asprintf(&v, "safe_mr;%s", hook) < 0)
			refuse("out of memory");
		setenv("FI_HOOK", v, 1);
		free(v);
	}
}

/* Signals sent to us by another process go on to the program.  Those from
 * the terminal (si_code SI_KERNEL) reached the program already: it is in
 * our process group. */
static void forward(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (child > 0 && si->si_code != SI_KERNEL)
		kill(child, sig);
}

static void install_forwarding(void)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2,
				    SIGALRM, SIGCONT, SIGWINCH };
	struct sigaction sa = { .sa_sigaction = forward, .sa_flags = SA_SIGINFO | SA_RESTART };

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait for the report line; NULL when it came, else why not. */
static const char *await_report(int fd, pid_t pid, double timeout, char *buf, size_t n)
{
	double end = now() + timeout;
	size_t got = 0;
	char want[64];

	snprintf(want, sizeof(want), "safe_mr-run-check active pid=%d ", (int)pid);
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		double left = end - now();
		ssize_t r;
		int pr;

		if (left <= 0) {
			snprintf(buf, n, "no report from safe_mr within %.0f s", timeout);
			return buf;
		}
		pr = poll(&pf, 1, (int)(left * 1000) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		r = read(fd, buf + got, n - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(buf, n, "it closed the check pipe or exited without a report "
				 "from safe_mr");
			return buf;
		}
		got += (size_t)r;
		buf[got] = '\0';
		if (strchr(buf, '\n')) {
			if (!strncmp(buf, want, strlen(want)))
				return NULL;
			snprintf(buf, n, "unexpected report (not from pid %d)", (int)pid);
			return buf;
		}
		if (got == n - 1) {
			snprintf(buf, n, "unreadable report");
			return buf;
		}
	}
}

static int exit_like(int status)
{
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		/* Die of the same signal, so our parent sees what happened (no
		 * second core dump). */
		prctl(PR_SET_DUMPABLE, 0);
		signal(sig, SIG_DFL);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		raise(sig);
		return 128 + sig;
	}
	return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
	static const char *const modes[] = { "bounce", "auto", "off", NULL };
	static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
	static const char *const wbs[] = { "auto", "io_uring", "pwrite", NULL };
	static const char *const reserves[] = { "auto", "off", NULL };
	static const char *const guardians[] = { "on", "off", "require", "1", "0", "yes", "no",
						 "true", "false", NULL };
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "log", required_argument, NULL, 'l' },
		{ "stats", no_argument, NULL, 's' },
		{ "stats-file", required_argument, NULL, 'S' },
		{ "flush-ms", required_argument, NULL, 'f' },
		{ "writeback", required_argument, NULL, 'w' },
		{ "reserve", required_argument, NULL, 'r' },
		{ "guardian", required_argument, NULL, 'g' },
		{ "log-file", required_argument, NULL, 'L' },
		{ "fabric", no_argument, NULL, 'F' },
		{ "preload", required_argument, NULL, 'p' },
		{ "check-timeout", required_argument, NULL, 't' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char preload[PATH_MAX], provdir[PATH_MAX], prog[PATH_MAX], why[512], report[256];
	const char *preload_opt = NULL, *reason;
	bool fabric = false, dry = false, mode_off = false;
	double timeout = 30;
	int c, pfd[2], efd[2], status, err;
	char *end;
	pid_t parent;

	if (argv[0] && strrchr(argv[0], '/'))
		argv0 = strrchr(argv[0], '/') + 1;
	while ((c = getopt_long(argc, argv, "+m:l:sS:f:w:r:g:L:Fp:t:nVh", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			set_word("mode", "SAFE_MR_MODE", optarg, modes, "bounce, auto, off");
			mode_off = !strcasecmp(optarg, "off");
			break;
		case 'l':
			set_word("log", "SAFE_MR_LOG", optarg, levels, "error, warn, info, debug");
			break;
		case 's':
			setenv("SAFE_MR_STATS", "1", 1);
			break;
		case 'S':
			set_template("stats-file", "SAFE_MR_STATS_FILE", optarg);
			setenv("SAFE_MR_STATS", "1", 1);
			break;
		case 'f': {
			unsigned long ms = strtoul(optarg, &end, 10);

			if (*optarg < '0' || *optarg > '9' || *end || ms > 3600000)
				bad_value("flush-ms", optarg, "milliseconds, 0 to 3600000");
			setenv("SAFE_MR_FLUSH_MS", optarg, 1);
			break;
		}
		case 'w':
			set_word("writeback", "SAFE_MR_WRITEBACK", optarg, wbs, "auto, io_uring, pwrite");
			break;
		case 'r':
			set_word("reserve", "SAFE_MR_RESERVE", optarg, reserves, "auto, off");
			break;
		case 'g':
			set_word("guardian", "SAFE_MR_GUARDIAN", optarg, guardians, "on, off, require");
			break;
		case 'L':
			set_template("log-file", "SAFE_MR_LOG_FILE", optarg);
			break;
		case 'F':
			fabric = true;
			break;
		case 'p':
			preload_opt = optarg;
			break;
		case 't':
			timeout = strtod(optarg, &end);
			if (end == optarg || *end || !(timeout > 0) || timeout > 86400)
				bad_value("check-timeout", optarg, "seconds, more than 0");
			break;
		case 'n':
			dry = true;
			break;
		case 'V':
			printf("safe_mr-run %s\n", SAFE_MR_VERSION_STRING);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:	/* getopt said what */
			fprintf(stderr, "Try '%s --help' for more information.\n", argv0);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: no program to run\nTry '%s --help' for more information.\n",
			argv0, argv0);
		return EXIT_USAGE;
	}

	/* What safe_mr would do must be safe_mr's default or asked for here. */
	if (!mode_off && getenv("SAFE_MR_MODE") && !strcasecmp(getenv("SAFE_MR_MODE"), "off"))
		refuse("SAFE_MR_MODE=off is set in the environment: safe_mr would pass every "
		       "registration through (say --mode=off to mean that)");
	if (preload_opt) {
		if (!realpath(preload_opt, preload))
			refuse("the preload %s: %s", preload_opt, strerror(errno));
	} else if (!smt_preload_path(preload, sizeof(preload))) {
		refuse("cannot find libsafe_mr_preload.so next to this program (install "
		       "incomplete?); give it with --preload=PATH");
	}
	if ((err = smt_find_program(argv[optind], prog, sizeof(prog)))) {
		fprintf(stderr, "%s: %s: %s\n", argv0, argv[optind], strerror(err));
		return err == ENOENT || err == ENOTDIR ? EXIT_NOTFOUND : EXIT_REFUSED;
	}
	if ((reason = smt_preflight(prog, preload, why, sizeof(why))))
		refuse("%s", reason);
	set_preload(preload);
	if (fabric) {
		enum smt_hook h;

		if (!smt_provider_dir(provdir, sizeof(provdir)))
			refuse("--fabric: cannot find the libfabric provider directory with "
			       "libsafe_mr-fi.so next to this program");
		set_fabric(provdir);
		h = smt_fabric_probe(provdir, why, sizeof(why));
		if (h != SMT_HOOK_ACTIVE && h != SMT_HOOK_LOADED)
			refuse("--fabric: the libfabric hook is not usable (%s): %s",
			       smt_hook_name(h), why);
		if (h == SMT_HOOK_LOADED)
			fprintf(stderr, "%s: --fabric: %s\n", argv0, why);
	}
	if (dry) {
		static const char *const vars[] = { "LD_PRELOAD", "FI_HOOK", "FI_PROVIDER_PATH",
			"SAFE_MR_MODE", "SAFE_MR_LOG", "SAFE_MR_STATS", "SAFE_MR_STATS_FILE",
			"SAFE_MR_FLUSH_MS", "SAFE_MR_WRITEBACK", "SAFE_MR_RESERVE",
			"SAFE_MR_GUARDIAN", "SAFE_MR_LOG_FILE" };

		for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
			if (getenv(vars[i]) && (fabric || strncmp(vars[i], "FI_", 3)))
				printf("%s=%s\n", vars[i], getenv(vars[i]));
		printf("program=%s\n", prog);
		return 0;
	}

	/* pfd: the report (the write end survives exec); efd: exec's errno
	 * (closed by a successful exec). */
	if (pipe2(pfd, O_CLOEXEC) || pipe2(efd, O_CLOEXEC))
		refuse("pipe: %s", strerror(errno));
	install_forwarding();
	fflush(NULL);
	parent = getpid();
	child = fork();
	if (child < 0)
		refuse("fork: %s", strerror(errno));
	if (child == 0) {
		char num[16];

		/* The program must not outlive us (mpirun kills us, not it). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)	/* died before the prctl */
			_exit(127);
		close(pfd[0]);
		close(efd[0]);
		fcntl(pfd[1], F_SETFD, 0);
		snprintf(num, sizeof(num), "%d", pfd[1]);
		setenv("SAFE_MR_RUN_CHECK", num, 1);
		execv(prog, argv + optind);
		err = errno;
		if (write(efd[1], &err, sizeof(err)) < 0) {
			/* the parent sees EOF and no report */
		}
		_exit(127);
	}
	close(pfd[1]);
	close(efd[1]);
	while ((c = (int)read(efd[0], &err, sizeof(err))) < 0 && errno == EINTR)
		;
	close(efd[0]);
	if (c == (int)sizeof(err)) {
		waitpid(child, &status, 0);
		fprintf(stderr, "%s: %s: %s\n", argv0, prog, strerror(err));
		return err == ENOENT ? EXIT_NOTFOUND : EXIT_REFUSED;
	}
	reason = await_report(pfd[0], child, timeout, report, sizeof(report));
	close(pfd[0]);
	if (reason) {
		pid_t done = 0;

		/* After EOF the program is usually exiting: let it become a
		 * zombie, so the message says what happened. */
		for (int i = 0; i < 100 && (done = waitpid(child, &status, WNOHANG)) == 0 &&
				strstr(reason, "closed"); i++)
			usleep(10000);
		if (done == 0) {
			kill(child, SIGKILL);
			while (waitpid(child, &status, 0) < 0 && errno == EINTR)
				;
			refuse("%s: safe_mr is not active in it (%s); stopped it (pid %d)",
			       prog, reason, (int)child);
		}
		unprotected("%s: safe_mr was not active in it (%s); it exited with status %d "
			    "without safe_mr", prog, reason,
		       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			refuse("waitpid: %s", strerror(errno));
	return exit_like(status);
}
