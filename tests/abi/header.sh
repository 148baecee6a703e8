#!/bin/sh
# SPDX-License-Identifier: MIT
# header.sh BUILD PREFIX LIBDIR PROG.c PROJECT_VERSION
# `meson install` into a scratch DESTDIR, then the installed header (with
# the installed pkg-config file's flags) compiled as C (C99, C11, GNU17) and
# as C++ (C++98, C++11, C++17) by gcc and g++ with -Werror, linked against
# the installed library and run; the public structures have the same layout
# in every build.  With a 32-bit toolchain (gcc-multilib): the header
# refuses a 32-bit off_t, and pkg-config's flags make it 64-bit.
set -u
build=$1 prefix=$2 libdir=$3 prog=$4 version=$5
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
unset LD_PRELOAD LD_LIBRARY_PATH
dest=$(mktemp -d "${TMPDIR:-/tmp}/safe_mr-header.XXXXXX") || exit 1
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >/dev/null ||
	{ echo "FAIL: meson install"; exit 1; }
inc=$dest$prefix/include
for h in safe_mr.h safe_mr_version.h; do
	[ -f "$inc/$h" ] && ok "installed $h" || bad "$h not installed in $prefix/include"
done
pc=$dest$libdir/pkgconfig
cflags=$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --cflags safe_mr) &&
	libs=$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$dest pkg-config --libs safe_mr) ||
	{ echo "FAIL: pkg-config safe_mr"; exit 1; }
case " $cflags " in *" -D_FILE_OFFSET_BITS=64 "*) ok "pkg-config --cflags passes -D_FILE_OFFSET_BITS=64";;
	*) bad "pkg-config --cflags: $cflags";; esac
case " $cflags " in *" -I$inc "*) ;; *) bad "pkg-config --cflags does not point at the installed headers: $cflags";; esac
rpath=-Wl,-rpath,$dest$libdir

layouts=
build_run() { # COMPILER LANGOPT STD
	exe=$dest/prog-$1-$3
	# shellcheck disable=SC2086 # flags are lists
	if out=$($1 $2 -std=$3 -Wall -Wextra -Werror $cflags "$prog" -o "$exe" $libs $rpath 2>&1); then
		if run=$("$exe" "$version" 2>&1); then
			ok "$1 -std=$3: compiles, links, runs (version $version)"
			layouts="$layouts$(printf '%s\n' "$run" | grep '^layout:')
"
		else bad "$1 -std=$3: runs: $run"; fi
	else bad "$1 -std=$3 does not compile the installed header:"; printf '%s\n' "$out"; fi
}
build_run gcc '-x c' c99
build_run gcc '-x c' c11
build_run gcc '-x c' gnu17
build_run g++ '-x c++' c++98
build_run g++ '-x c++' c++11
build_run g++ '-x c++' c++17
n=$(printf '%s' "$layouts" | sort -u | grep -c .)
[ "$n" -eq 1 ] && ok "same layout in C and C++: $(printf '%s' "$layouts" | head -n1)" ||
	{ bad "layouts differ:"; printf '%s' "$layouts"; }

# 32-bit: a 32-bit off_t is refused, pkg-config's flags give a 64-bit one.
if printf '#include <sys/types.h>\n' | gcc -m32 -x c -fsyntax-only - 2>/dev/null; then
	stds="c11 c99"
	# C++ too with g++-multilib.
	printf '#include <climits>\n' | g++ -m32 -x c++ -fsyntax-only - 2>/dev/null &&
		stds="$stds c++11 c++98"
	for std in $stds; do
		case $std in c++*) cc="g++ -x c++";; *) cc="gcc -x c";; esac
		# shellcheck disable=SC2086
		out=$($cc -m32 -std=$std -fsyntax-only -I"$inc" "$prog" 2>&1) &&
			bad "-m32 -std=$std without 64-bit offsets compiles" ||
			{ printf '%s\n' "$out" | grep -q 'off_t\|safe_mr_needs_a_64_bit_off_t' &&
				ok "-m32 -std=$std without -D_FILE_OFFSET_BITS=64 is refused (off_t)" ||
				{ bad "-m32 -std=$std fails for another reason:"; printf '%s\n' "$out"; }; }
		# shellcheck disable=SC2086
		out=$($cc -m32 -std=$std -fsyntax-only -Wall -Wextra -Werror $cflags "$prog" 2>&1) &&
			ok "-m32 -std=$std with pkg-config --cflags compiles" ||
			{ bad "-m32 -std=$std with pkg-config --cflags:"; printf '%s\n' "$out"; }
	done
else
	echo "note: no 32-bit toolchain (gcc-multilib): the 32-bit off_t check did not run"
fi
exit $fail
