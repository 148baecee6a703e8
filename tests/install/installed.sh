#!/bin/sh
# SPDX-License-Identifier: MIT
# installed.sh BUILD PREFIX LIBDIR BINDIR PROVDIR CFG_PROG FAKE_VERBS_DIR SRCDIR REG_FILE
# `meson install` into a scratch DESTDIR (a prefix that is not the
# system's), then every entry point from there, with nothing of the build
# tree on any search path: the preload (in <libdir>/safe_mr/ and through
# the <libdir> link), the C API (pkg-config, header, library), the libfabric
# hook, safe_mr-run and safe_mr-info.  Then the same after moving the whole
# prefix elsewhere, and the refusals once the engine is gone.
set -u
build=$1 prefix=$2 libdir=$3 bindir=$4 provdir=$5 cfg_prog=$6 fake=$7 src=$8 reg_file=$9
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
show() { printf '%s\n' "$1" | sed 's/^/    /'; }
# The test's LD_PRELOAD (the ASan runtime in sanitizer builds) is for the
# programs under test only, not for meson, cc or python.
test_preload=${LD_PRELOAD-}
unset LD_PRELOAD LD_LIBRARY_PATH SAFE_MR_MODE SAFE_MR_STATS SAFE_MR_STATS_FILE FI_HOOK FI_PROVIDER_PATH
dest=$(mktemp -d "${TMPDIR:-/tmp}/safe_mr-install.XXXXXX") || exit 1
dest=$(realpath "$dest")
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >/dev/null ||
	{ echo "FAIL: meson install"; exit 1; }

check_tree() { # ROOT: the installed prefix's files, run from ROOT
	root=$1 tag=$2
	L=$root${libdir#"$prefix"} B=$root${bindir#"$prefix"} P=$root${provdir#"$prefix"}
	pl=$L/safe_mr/libsafe_mr_preload.so
	[ -f "$pl" ] && ok "$tag: preload in <libdir>/safe_mr/" || bad "$tag: no $pl"
	[ -L "$L/libsafe_mr_preload.so" ] && ok "$tag: <libdir>/libsafe_mr_preload.so is a link" ||
		bad "$tag: no compatible link"
	readelf -d "$pl" | grep -q SONAME && bad "$tag: the preload has a SONAME" ||
		ok "$tag: the preload is a module (no SONAME)"

	# The preload finds its engine, by either path, and it is ours.
	for p in "$pl" "$L/libsafe_mr_preload.so"; do
		maps=$(LD_PRELOAD=${test_preload:+$test_preload:}$p cat /proc/self/maps 2>&1); rc=$?
		eng=$(printf '%s\n' "$maps" | awk '/libsafe_mr\.so/ { print $6; exit }')
		if [ $rc -eq 0 ] && [ "$(realpath "$eng" 2>/dev/null)" = "$(realpath "$L/libsafe_mr.so.0")" ]; then
			ok "$tag: LD_PRELOAD=$p runs, engine from $eng"
		else bad "$tag: LD_PRELOAD=$p: exit $rc, engine '$eng':"; show "$maps"; fi
	done
	# A registration through it (the libibverbs test double).
	out=$(LD_LIBRARY_PATH=$fake SAFE_MR_LOG=debug SAFE_MR_TEST_DIR=/tmp LD_PRELOAD=${test_preload:+$test_preload:}$pl "$reg_file" ok 2>&1) &&
		ok "$tag: preload shadows a file registration" || { bad "$tag: preload registration:"; show "$out"; }
	# Its guardian (lib/guard.h) found relative to the installed engine.
	gpath=$(printf '%s\n' "$out" | sed -n 's/.*debug: guardian \(.*\) started$/\1/p' | head -n1)
	[ -n "$gpath" ] && [ "$(realpath "$gpath")" = "$(realpath "$L/safe_mr/safe_mr-guardian")" ] &&
		ok "$tag: the guardian starts from this install" ||
		{ bad "$tag: no guardian from this install:"; show "$(printf '%s\n' "$out" | grep -i guardian)"; }

	# Tools.
	out=$(LD_PRELOAD=$test_preload "$B/safe_mr-run" -- sh -c 'echo "LD_PRELOAD=$LD_PRELOAD"' 2>&1); rc=$?
	want=$(realpath "$pl")
	[ -n "$test_preload" ] && want=$test_preload:$want
	[ $rc -eq 0 ] && printf '%s\n' "$out" | grep -qxF "LD_PRELOAD=$want" &&
		ok "$tag: safe_mr-run uses its own install's preload, and the check passes" ||
		{ bad "$tag: safe_mr-run (rc $rc, want $want):"; show "$out"; }
	if [ -f "$P/libsafe_mr-fi.so" ]; then
		json=$(LD_PRELOAD=$test_preload "$B/safe_mr-info" --json 2>&1)
		printf '%s' "$json" | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
assert d["libfabric"]["hook"] == "active", d["libfabric"]
assert os.path.realpath(d["libfabric"]["provider_dir"]) == os.path.realpath(sys.argv[1]), d["libfabric"]
' "$P" && ok "$tag: safe_mr-info: libfabric loads and applies the installed hook" ||
			{ bad "$tag: safe_mr-info hook:"; show "$json"; }
		out=$(LD_PRELOAD=$test_preload "$B/safe_mr-run" --fabric -- sh -c 'echo "FI_PROVIDER_PATH=$FI_PROVIDER_PATH"' 2>&1)
		printf '%s\n' "$out" | grep -qxF "FI_PROVIDER_PATH=$(realpath "$P")" &&
			ok "$tag: safe_mr-run --fabric: the installed provider directory" ||
			{ bad "$tag: safe_mr-run --fabric:"; show "$out"; }
	fi
}

root=$dest$prefix
check_tree "$root" installed
P=$root${provdir#"$prefix"}
[ -f "$P/libsafe_mr-fi.so" ] || bad "no hook installed in $P (provider dir under the prefix)"

# The C API from the install: pkg-config, header, library.
pc=$root${libdir#"$prefix"}/pkgconfig
flags=$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags --libs safe_mr) ||
	bad "pkg-config safe_mr"
L=$root${libdir#"$prefix"}
if ${CC:-cc} -o "$dest/api_prog" "$src/cfg_prog.c" $flags -Wl,-rpath,"$L" 2>"$dest/cc.log"; then
	out=$(LD_PRELOAD=$test_preload "$dest/api_prog" register 2>&1) &&
		printf '%s\n' "$out" | grep -q '^main: safe_mr ' && ok "C API: built with pkg-config, runs" ||
		{ bad "C API program:"; show "$out"; }
else bad "C API program does not build:"; show "$(cat "$dest/cc.log")"; fi

# Move the whole prefix: everything is found relative to itself.
case $libdir$bindir$provdir in
"$prefix"/*"$prefix"/*"$prefix"/*)
	mkdir -p "$dest/moved"
	mv "$root" "$dest/moved/prefix"
	check_tree "$dest/moved/prefix" moved
	root=$dest/moved/prefix ;;
*) echo "note: libdir/bindir/provdir not all under the prefix: no move test" ;;
esac

# Fail closed: without the engine the launcher refuses, with and without
# --fabric (libfabric cannot load the hook: the probe sees it).
L=$root${libdir#"$prefix"} B=$root${bindir#"$prefix"}
rm -f "$L"/libsafe_mr.so*
out=$(LD_PRELOAD=$test_preload "$B/safe_mr-run" -- true 2>&1); rc=$?
[ $rc -eq 126 ] && printf '%s\n' "$out" | grep -q 'safe_mr was not active in it' &&
	ok "engine removed: safe_mr-run refuses (126)" || { bad "engine removed (rc $rc):"; show "$out"; }
if [ -f "$root${provdir#"$prefix"}/libsafe_mr-fi.so" ]; then
	out=$(LD_PRELOAD=$test_preload "$B/safe_mr-run" --fabric -- true 2>&1); rc=$?
	[ $rc -eq 126 ] && printf '%s\n' "$out" | grep -q 'the libfabric hook is not usable (not-loaded)' &&
		ok "engine removed: safe_mr-run --fabric refuses (hook not loaded)" ||
		{ bad "engine removed, --fabric (rc $rc):"; show "$out"; }
fi
exit $fail
