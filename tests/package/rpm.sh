#!/bin/sh
# SPDX-License-Identifier: MIT
# rpm.sh SRCDIR VERSION: the RPM packages for RHEL-family clusters
# (rpm/safe_mr.spec) built with rpmbuild from a tarball of the tree (what
# git tracks and new files it does not ignore), and rpmlint clean on the
# spec and the packages (rpm/safe_mr.rpmlintrc says why each filter).  On
# a machine without Fedora's %meson macros (Debian CI) rpm/macros.meson-
# fallback supplies them; BuildRequires are Fedora names, not checked here.
set -u
src=$1 version=$2
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
show() { printf '%s\n' "$1" | sed 's/^/    /'; }
for t in rpmbuild rpmlint; do
	command -v $t >/dev/null || { echo "FAIL: $t not found (apt-get install rpm rpmlint)"; exit 1; }
done
unset LD_PRELOAD LD_LIBRARY_PATH MAKEFLAGS MFLAGS DESTDIR
tmp=$(mktemp -d "${TMPDIR:-/tmp}/safe_mr-rpm.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

spec=$src/rpm/safe_mr.spec
v=$(sed -n 's/^Version: *//p' "$spec")
[ "$v" = "$version" ] && ok "spec version $v is meson.build's" || bad "spec says $v, meson.build $version"

mkdir -p "$tmp/SOURCES" "$tmp/safe_mr-$version"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
	xargs -0 cp -P --parents -t "$tmp/safe_mr-$version" 2>/dev/null)
tar -C "$tmp" -czf "$tmp/SOURCES/safe_mr-$version.tar.gz" "safe_mr-$version"

macros=
rpm --eval '%{?meson:yes}' | grep -q yes || macros="--load=$src/rpm/macros.meson-fallback"
jobs=$(nproc); [ "$jobs" -gt 2 ] && jobs=2
# shellcheck disable=SC2086
if rpmbuild $macros --define "_topdir $tmp" --define "_smp_build_ncpus $jobs" --nodeps \
	-bb "$spec" >"$tmp/build.log" 2>&1; then
	ok "rpmbuild -bb"
else
	bad "rpmbuild failed:"; tail -n 40 "$tmp/build.log"; exit 1
fi
rpms=$(find "$tmp/RPMS" -name '*.rpm' | grep -v debug | sort)
for p in safe_mr safe_mr-devel safe_mr-preload safe_mr-tools safe_mr-fabric safe_mr-slurm safe_mrd; do
	printf '%s\n' "$rpms" | grep -q "/$p-$version-1\.[^/]*\.rpm$" && ok "built $p" || bad "no package $p"
done
out=$(rpm -qlp "$tmp"/RPMS/*/safe_mr-tools-*.rpm 2>&1)
printf '%s\n' "$out" | grep -q '/usr/share/bash-completion/completions/safe_mr-run$' &&
	ok "safe_mr-tools has the bash completion" || { bad "no completion in safe_mr-tools:"; show "$out"; }

# shellcheck disable=SC2086
out=$(rpmlint -c "$src/rpm/rpmlint.toml" -r "$src/rpm/safe_mr.rpmlintrc" "$spec" $rpms 2>&1); rc=$?
if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -qE ': (E|W): '; then
	ok "rpmlint: no error or warning ($(printf '%s\n' "$out" | tail -1))"
else bad "rpmlint (exit $rc):"; show "$out"; fi
exit $fail
