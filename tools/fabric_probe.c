/* SPDX-License-Identifier: MIT */
/* The libfabric probe shared by safe_mr-run --fabric and safe_mr-info.
 * libfabric logs "No hook found for: safe_mr" only at FI_LOG_LEVEL=warn and
 * then runs the application without the hook, so this asks directly: is
 * the hook's module loaded after fi_getinfo, and is the fabric a provider
 * opens really the hook's object (its close function lives in the hook)? */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fabric_probe.h"
#include "paths.h"

#ifdef SMT_HAVE_FABRIC
#include <rdma/fabric.h>
#endif

static const char *const names[] = {
	[SMT_HOOK_ACTIVE] = "active",
	[SMT_HOOK_LOADED] = "loaded-no-fabric",
	[SMT_HOOK_NOT_WRAPPED] = "not-wrapped",
	[SMT_HOOK_NOT_LOADED] = "not-loaded",
	[SMT_HOOK_NO_LIBFABRIC] = "no-libfabric",
	[SMT_HOOK_NO_SUPPORT] = "no-support",
	[SMT_HOOK_PROBE_FAILED] = "probe-failed",
};

const char *smt_hook_name(enum smt_hook h)
{
	return (unsigned)h < sizeof(names) / sizeof(names[0]) ? names[h] : "?";
}

char *smt_provider_path(const char *provdir)
{
	const char *old = getenv("FI_PROVIDER_PATH");
	char *v;

	if (old && *old) {
		if (asprintf(&v, "%s:%s", provdir, old) < 0)
			return NULL;
	} else {
		v = strdup(provdir);
	}
	return v;
}

#ifdef SMT_HAVE_FABRIC
typedef int (*getinfo_fn)(uint32_t, const char *, const char *, uint64_t,
			  const struct fi_info *, struct fi_info **);
typedef void (*freeinfo_fn)(struct fi_info *);
typedef int (*fabric_fn)(struct fi_fabric_attr *, struct fid_fabric **, void *);
typedef uint32_t (*version_fn)(void);

static bool same_file(const char *a, const char *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];

	return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

/* In the child: the answer as exit status, the detail on fd `out`. */
static enum smt_hook probe(const char *provdir, FILE *out)
{
	char hook[PATH_MAX];
	enum smt_hook res = SMT_HOOK_LOADED;
	struct fi_info *info = NULL;
	void *lib, *mod;
	getinfo_fn getinfo;
	freeinfo_fn freeinfo;
	fabric_fn fabric;
	version_fn version;
	uint32_t v;
	int ret;

	if (!smt_join(hook, sizeof(hook), provdir, "libsafe_mr-fi.so"))
		return SMT_HOOK_PROBE_FAILED;
	lib = dlopen("libfabric.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(out, "cannot load libfabric.so.1: %s", dlerror());
		return SMT_HOOK_NO_LIBFABRIC;
	}
	getinfo = (getinfo_fn)dlsym(lib, "fi_getinfo");
	freeinfo = (freeinfo_fn)dlsym(lib, "fi_freeinfo");
	fabric = (fabric_fn)dlsym(lib, "fi_fabric");
	version = (version_fn)dlsym(lib, "fi_version");
	if (!getinfo || !freeinfo || !fabric || !version) {
		fprintf(out, "libfabric.so.1 lacks fi_getinfo/fi_fabric");
		return SMT_HOOK_NO_LIBFABRIC;
	}
	v = version();
	ret = getinfo(FI_VERSION(1, 17), NULL, NULL, 0, NULL, &info);
	mod = dlopen(hook, RTLD_NOW | RTLD_NOLOAD);
	if (!mod) {
		fprintf(out, "libfabric %u.%u did not load %s", FI_MAJOR(v), FI_MINOR(v), hook);
		if (info)
			freeinfo(info);
		return SMT_HOOK_NOT_LOADED;
	}
	fprintf(out, "libfabric %u.%u loaded %s", FI_MAJOR(v), FI_MINOR(v), hook);
	for (struct fi_info *i = ret ? NULL : info; i; i = i->next) {
		struct fid_fabric *fab;
		Dl_info di;

		if (!i->fabric_attr || fabric(i->fabric_attr, &fab, NULL))
			continue;
		if (dladdr((void *)fab->fid.ops->close, &di) && di.dli_fname &&
		    same_file(di.dli_fname, hook)) {
			fprintf(out, "; provider %s's fabric opens through the hook",
				i->fabric_attr->prov_name);
			res = SMT_HOOK_ACTIVE;
		} else {
			fprintf(out, "; provider %s's fabric opens WITHOUT the hook",
				i->fabric_attr->prov_name);
			res = SMT_HOOK_NOT_WRAPPED;
		}
		fab->fid.ops->close(&fab->fid);
		break;
	}
	if (res == SMT_HOOK_LOADED)
		fprintf(out, "; no provider opened a fabric to check it on");
	if (info)
		freeinfo(info);
	return res;
}
#endif

enum smt_hook smt_fabric_probe(const char *provdir, char *detail, size_t n)
{
#ifdef SMT_HAVE_FABRIC
	int fds[2], status;
	ssize_t got = 0, r;
	pid_t pid;

	detail[0] = '\0';
	if (pipe(fds))
		return SMT_HOOK_PROBE_FAILED;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return SMT_HOOK_PROBE_FAILED;
	}
	if (pid == 0) {
		char *path = smt_provider_path(provdir);
		FILE *out = fdopen(fds[1], "w");

		close(fds[0]);
		if (!path || !out)
			_exit(SMT_HOOK_PROBE_FAILED);
		setenv("FI_HOOK", "safe_mr", 1);
		setenv("FI_PROVIDER_PATH", path, 1);
		/* The program reports its own configuration; not twice. */
		setenv("SAFE_MR_LOG", "error", 1);
		status = probe(provdir, out);
		fclose(out);
		_exit(status);
	}
	close(fds[1]);
	while (got < (ssize_t)n - 1 &&
	       ((r = read(fds[0], detail + got, n - 1 - (size_t)got)) > 0 ||
		(r < 0 && errno == EINTR)))
		got += r > 0 ? r : 0;
	detail[got] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return SMT_HOOK_PROBE_FAILED;
	if (!WIFEXITED(status)) {
		snprintf(detail, n, "the probe died (signal %d)",
			 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
		return SMT_HOOK_PROBE_FAILED;
	}
	return (enum smt_hook)WEXITSTATUS(status);
#else
	(void)provdir;
	snprintf(detail, n, "built without libfabric");
	return SMT_HOOK_NO_SUPPORT;
#endif
}
