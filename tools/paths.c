/* SPDX-License-Identifier: MIT */
/* The tools' own location decides where the rest is: an install in any
 * prefix keeps bindir, libdir and the provider directory in the same
 * relation as configured (SMT_REL_*: relative to bindir), and the build tree
 * is recognised by the tool's own build directory (SMT_BUILD_TOOLS). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "paths.h"

bool smt_join(char *out, size_t n, const char *a, const char *b)
{
	char tmp[PATH_MAX];

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/%s", a, b) >= sizeof(tmp))
		return false;
	if (!realpath(tmp, out)) {
		if (strlen(tmp) >= n)
			return false;
		strcpy(out, tmp);
	}
	return true;
}

static bool exe_dir(char *out, size_t n)
{
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (len <= 0)
		return false;
	exe[len] = '\0';
	slash = strrchr(exe, '/');
	if (!slash || (size_t)(slash - exe) >= n)
		return false;
	*slash = '\0';
	strcpy(out, exe);
	return true;
}

static bool in_build_tree(const char *dir)
{
	char build[PATH_MAX];

	return realpath(SMT_BUILD_TOOLS, build) && !strcmp(build, dir);
}

static bool locate(char *out, size_t n, const char *build_path, const char *rel)
{
	char dir[PATH_MAX];

	if (!exe_dir(dir, sizeof(dir)))
		return false;
	if (in_build_tree(dir)) {
		if (strlen(build_path) >= n)
			return false;
		strcpy(out, build_path);
	} else if (!smt_join(out, n, dir, rel)) {
		return false;
	}
	return access(out, F_OK) == 0;
}

bool smt_preload_path(char *out, size_t n)
{
	return locate(out, n, SMT_BUILD_PRELOAD, SMT_REL_PRELOAD);
}

bool smt_provider_dir(char *out, size_t n)
{
	char mod[PATH_MAX];

	return locate(out, n, SMT_BUILD_PROVDIR, SMT_REL_PROVDIR) &&
	       smt_join(mod, sizeof(mod), out, "libsafe_mr-fi.so") && access(mod, F_OK) == 0;
}
