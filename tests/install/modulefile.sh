#!/bin/bash
# SPDX-License-Identifier: MIT
# modulefile.sh BUILD PREFIX VERSION: the installed modulefile, with
# environment-modules' modulecmd for real.  `meson install` into a scratch
# DESTDIR; `module use` its modulefile directory; `module load safe_mr`
# puts that install's tools, man pages, pkg-config file, header and library
# first on the search paths and sets no LD_PRELOAD; man still finds the
# system's pages; `module unload` gives back the environment as it was,
# byte for byte.  Then the same through a link to the modulefile, and with
# the whole prefix moved elsewhere.  Fails (never skips) without modulecmd.
set -u
build=$1 prefix=$2 version=$3
fails=0
ok() { echo "ok: $*"; }
bad() { echo "not ok: $*"; fails=$((fails + 1)); }
command -v modulecmd >/dev/null ||
	{ echo "FAIL: modulecmd not found: apt-get install environment-modules (scripts/install-deps)"; exit 1; }
dest=$(mktemp -d "${TMPDIR:-/tmp}/safe_mr-modules.XXXXXX") || exit 1
dest=$(realpath "$dest")
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --quiet --destdir "$dest/stage" >/dev/null ||
	{ echo "FAIL: meson install"; exit 1; }

# check TAG ROOT MODULEDIR: ROOT is where the install's prefix is now.
check() {
	local tag=$1 root=$2 mdir=$3 out
	out=$(env -i PATH=/usr/bin:/bin HOME="$dest" LANG=C MANPATH= bash -c '
		unset MANPATH
		m() { eval "$(modulecmd bash "$@")"; }
		m use "$1" || exit 9
		env | sort > "$2/before"
		m load safe_mr || exit 9
		echo "loaded=$LOADEDMODULES"
		echo "run=$(command -v safe_mr-run)"
		echo "pc=$(pkg-config --variable=pcfiledir safe_mr) $(pkg-config --modversion safe_mr)"
		echo "man=$(man -w safe_mr-run 2>&1)"
		echo "sysman=$(man -w man 2>/dev/null | head -n 1)"
		echo "preload=${LD_PRELOAD-unset}"
		echo "cpath=$CPATH"
		echo "ldlib=$LD_LIBRARY_PATH"
		env | sort > "$2/loaded"
		m unload safe_mr || exit 9
		env | sort > "$2/after"
	' sh "$mdir" "$dest")
	echo "$out" | sed "s/^/#   $tag: /"
	line() { echo "$out" | sed -n "s/^$1=//p"; }
	L=$root/${prefix#/}
	[ "$(line loaded)" = "safe_mr/$version" ] && ok "$tag: module load safe_mr loads safe_mr/$version" ||
		bad "$tag: loaded '$(line loaded)'"
	[ "$(line run)" = "$L/bin/safe_mr-run" ] && ok "$tag: safe_mr-run is the install's" ||
		bad "$tag: safe_mr-run is '$(line run)', want $L/bin/safe_mr-run"
	[ "$(line pc)" = "$(realpath "$(line ldlib)")/pkgconfig $version" ] && ok "$tag: pkg-config finds safe_mr $version" ||
		bad "$tag: pkg-config says '$(line pc)'"
	case "$(line man)" in
	"$L"/*/man1/safe_mr-run.1*) ok "$tag: man finds safe_mr-run(1) in the install" ;;
	*) bad "$tag: man -w safe_mr-run: $(line man)" ;;
	esac
	[ -n "$(line sysman)" ] && ok "$tag: man still finds the system's pages" ||
		bad "$tag: man lost its own search path (MANPATH=$(grep ^MANPATH= "$dest/loaded"))"
	[ "$(line preload)" = unset ] && ok "$tag: no LD_PRELOAD" || bad "$tag: LD_PRELOAD=$(line preload)"
	[ "$(line cpath)" = "$L/include" ] && [ -f "$(line cpath)/safe_mr.h" ] &&
		ok "$tag: CPATH has safe_mr.h" || bad "$tag: CPATH=$(line cpath)"
	[ -f "$(line ldlib)/libsafe_mr.so.0" ] && ok "$tag: LD_LIBRARY_PATH has libsafe_mr.so.0" ||
		bad "$tag: LD_LIBRARY_PATH=$(line ldlib)"
	if cmp -s "$dest/before" "$dest/after"; then
		ok "$tag: module unload restores the environment"
	else
		bad "$tag: module unload leaves:"; diff "$dest/before" "$dest/after"
	fi
}

mdir=$dest/stage/${prefix#/}/share/modulefiles
[ -f "$mdir/safe_mr/$version" ] || { echo "FAIL: no $mdir/safe_mr/$version"; exit 1; }
check installed "$dest/stage" "$mdir"

# A site's module tree with a link to the installed file.
mkdir -p "$dest/site/safe_mr"
ln -s "$mdir/safe_mr/$version" "$dest/site/safe_mr/$version"
check linked "$dest/stage" "$dest/site"

# The whole install moved (a staged tree unpacked elsewhere).
mv "$dest/stage" "$dest/moved"
rm -rf "$dest/site"
check moved "$dest/moved" "$dest/moved/${prefix#/}/share/modulefiles"

[ "$fails" = 0 ] || { echo "FAIL: $fails check(s)"; exit 1; }
echo PASS
