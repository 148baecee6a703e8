#!/bin/sh
# SPDX-License-Identifier: MIT
# installed.sh BUILDDIR PROVDIR LIBDIR PROG: install the build into a scratch
# DESTDIR and run the hook test from there, with FI_PROVIDER_PATH set to the
# installed libfabric provider directory (what `meson install` put there).
set -eu
build=$1 provdir=$2 libdir=$3 prog=$4
# The test's LD_PRELOAD (libasan in sanitizer builds) is for the program
# under test only: uninstrumented tools (mktemp, python) report leaks under it.
test_preload=${LD_PRELOAD-}
unset LD_PRELOAD
dest=$(mktemp -d "${TMPDIR:-/tmp}/safe_mr-fi-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >/dev/null
mod=$dest$provdir/libsafe_mr-fi.so
[ -f "$mod" ] || { echo "FAIL: $mod not installed" >&2; exit 1; }
echo "installed: $mod"
# Only the installed copies: no build-tree paths.
unset LD_LIBRARY_PATH
LD_PRELOAD=$test_preload FI_HOOK=safe_mr FI_PROVIDER_PATH=$dest$provdir LD_LIBRARY_PATH=$dest$libdir \
	"$prog" --op write --sync fi_sync --expect shadow
