#!/bin/sh
# SPDX-License-Identifier: MIT
# debs.sh SRCDIR VERSION FAKE_VERBS_DIR REG_FILE BUILD [RUN_VM]
# The Debian packages: dpkg-buildpackage -b -us -uc in a copy of the source
# tree (the tree itself is never written), lintian quiet (errors and
# warnings fail; debian/*.lintian-overrides say why each override), the
# packages' dependencies installable here (apt-get --simulate), then the
# packages unpacked into a throwaway root and run from there: safe_mr-info
# (version, the packaged hook found by libfabric), safe_mr-run over a
# program registering a file mapping (the libibverbs test double), and the
# installed header and pkg-config file.  With RUN_VM (meson option
# vm_tests): the packages kept in BUILD/tests/package/debs and the
# demonstration run from them in a Debian 12 (6.1) guest over Soft-RoCE
# (guest/packages.sh).
set -u
src=$1 version=$2 fake=$3 reg_file=$4 build=$5 run_vm=${6:-}
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
show() { printf '%s\n' "$1" | sed 's/^/    /'; }
unset LD_PRELOAD LD_LIBRARY_PATH SAFE_MR_MODE SAFE_MR_STATS SAFE_MR_STATS_FILE FI_HOOK FI_PROVIDER_PATH
unset MAKEFLAGS MFLAGS DESTDIR
tmp=$(mktemp -d "${TMPDIR:-/tmp}/safe_mr-debs.XXXXXX") || exit 1
tmp=$(realpath "$tmp")
trap 'rm -rf "$tmp"' EXIT

# debian/changelog carries the project version (meson.build).
deb_version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version) || exit 1
[ "${deb_version%-*}" = "$version" ] && ok "debian/changelog $deb_version is version $version" ||
	bad "debian/changelog says $deb_version, meson.build $version"

# A copy of the tree: what git tracks (and new files it does not ignore),
# or, outside git, everything but build directories.
copy=$tmp/safe-mr-$version
mkdir -p "$copy"
if git -C "$src" rev-parse --show-toplevel >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 cp -P --parents -t "$copy" 2>/dev/null)
else
	tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$copy" -xf -
fi
[ -f "$copy/debian/rules" ] || { echo "FAIL: no debian/rules in the copy"; exit 1; }

# The source package: the upstream tarball is the tree without debian/.
tar -C "$tmp" --exclude="safe-mr-$version/debian" -czf "$tmp/safe-mr_$version.orig.tar.gz" "safe-mr-$version"
if out=$(cd "$copy" && dpkg-source --build . 2>&1) && [ -f "$tmp/safe-mr_$deb_version.dsc" ]; then
	ok "dpkg-source --build: safe-mr_$deb_version.dsc"
else bad "dpkg-source --build:"; show "$out"; fi

jobs=$(nproc); [ "$jobs" -gt 2 ] && jobs=2
if (cd "$copy" && DEB_BUILD_OPTIONS="parallel=$jobs" dpkg-buildpackage -b -us -uc) >"$tmp/build.log" 2>&1; then
	ok "dpkg-buildpackage -b -us -uc"
else
	bad "dpkg-buildpackage failed:"; tail -n 40 "$tmp/build.log"; exit 1
fi
for p in libsafe-mr0 libsafe-mr-dev libsafe-mr-preload safe-mr-tools libfabric-safe-mr slurm-spank-safe-mr safe-mrd; do
	[ -f "$tmp/${p}_${deb_version}_$(dpkg --print-architecture).deb" ] && ok "built $p" || bad "no package $p"
done
for f in debian/files debian/.debhelper obj-*; do
	# shellcheck disable=SC2086 # obj-* is a pattern
	ls -d "$src"/$f >/dev/null 2>&1 && bad "the source tree got $f"
done

if command -v lintian >/dev/null; then
	out=$(lintian --fail-on error,warning "$tmp"/safe-mr_*.changes 2>&1); rc=$?
	out=$(printf '%s\n' "$out" | grep -v '^running with root privileges')
	[ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -q '^[EW]:' && ok "lintian: no error or warning" ||
		{ bad "lintian (exit $rc):"; show "$out"; }
else
	bad "lintian not found (Debian: apt-get install lintian)"
fi

arch=$(dpkg --print-architecture)
ma=$(dpkg-deb -f "$tmp/libsafe-mr-preload_${deb_version}_$arch.deb" Multi-Arch 2>&1)
files=$(dpkg-deb -c "$tmp/libsafe-mr-preload_${deb_version}_$arch.deb" 2>&1)
[ "$ma" = same ] && printf '%s\n' "$files" | grep -q '/safe_mr/libsafe_mr_preload.so$' &&
	ok "the preload in libsafe-mr-preload, Multi-Arch: same" || { bad "libsafe-mr-preload ($ma):"; show "$files"; }
docs=$(dpkg-deb -c "$tmp/libsafe-mr0_${deb_version}_$arch.deb"; dpkg-deb -c "$tmp/libfabric-safe-mr_${deb_version}_$arch.deb")
for d in libsafe-mr0/README.md libsafe-mr0/benchmarks.md libfabric-safe-mr/README.md; do
	printf '%s\n' "$docs" | grep -q "/usr/share/doc/$d" && ok "documentation: /usr/share/doc/$d" ||
		bad "no /usr/share/doc/$d"
done
dpkg-deb -c "$tmp/safe-mr-tools_${deb_version}_$arch.deb" | grep -q '/usr/share/bash-completion/completions/safe_mr-run$' &&
	ok "safe-mr-tools: bash completion" || bad "safe-mr-tools has no bash completion"

debs=$(ls "$tmp"/*.deb | grep -v dbgsym)
# shellcheck disable=SC2086
out=$(apt-get --simulate -q install $debs 2>&1) && ok "apt-get --simulate install: dependencies resolve" ||
	{ bad "apt-get --simulate install:"; show "$out"; }

# Unpacked into a throwaway root, run from there.
root=$tmp/root
for d in $debs; do dpkg -x "$d" "$root" || bad "dpkg -x $d"; done
B=$root/usr/bin L=$root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
json=$("$B/safe_mr-info" --json 2>&1) && printf '%s' "$json" | python3 -c '
import json, os, sys
d = json.load(sys.stdin)
assert d["version"] == sys.argv[1], d["version"]
assert d["libfabric"]["hook"] == "active", d["libfabric"]
assert os.path.realpath(d["libfabric"]["provider_dir"]) == os.path.realpath(sys.argv[2]), d["libfabric"]
' "$version" "$L/libfabric" && ok "safe_mr-info from the packages: version $version, libfabric applies the packaged hook" ||
	{ bad "safe_mr-info from the packages:"; show "$json"; }
mkdir -p "$tmp/data"
out=$(LD_LIBRARY_PATH=$fake SAFE_MR_TEST_DIR=$tmp/data SAFE_MR_STATS=1 "$B/safe_mr-run" -- "$reg_file" ok 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q 'shadowed=[1-9]'; then
	ok "safe_mr-run from the packages: the preload shadows a file registration"
else bad "safe_mr-run from the packages (exit $rc):"; show "$out"; fi
# The node service (safe-mrd): its units, and the packaged daemon guarding
# the packaged preload's process.
grep -qx 'ListenSequentialPacket=/run/safe_mr/safe_mrd.sock' "$root/lib/systemd/system/safe_mrd.socket" &&
	grep -q '^ExecStart=/usr/sbin/safe_mrd --foreground$' "$root/lib/systemd/system/safe_mrd.service" &&
	ok "safe-mrd: the socket and service units" || bad "safe-mrd: units missing or wrong"
"$root/usr/sbin/safe_mrd" --foreground --socket "$tmp/smd.sock" 2>"$tmp/smd.log" & smd=$!
for i in $(seq 100); do [ -S "$tmp/smd.sock" ] && break; sleep 0.1; done
out=$(LD_LIBRARY_PATH=$fake SAFE_MR_TEST_DIR=$tmp/data SAFE_MR_LOG=debug SAFE_MR_SERVICE=$tmp/smd.sock \
	"$B/safe_mr-run" -- "$reg_file" ok 2>&1); rc=$?
kill -TERM $smd; wait $smd; smd_rc=$?
if [ $rc -eq 0 ] && [ $smd_rc -eq 0 ] && printf '%s\n' "$out" | grep -q "guarded by the node service at $tmp/smd.sock"; then
	ok "safe_mrd from the packages guards a preloaded process, stops cleanly"
else bad "safe_mrd from the packages (run $rc, safe_mrd $smd_rc):"; show "$out"; show "$(cat "$tmp/smd.log")"; fi
maps=$(LD_PRELOAD=$L/libsafe_mr_preload.so cat /proc/self/maps 2>&1)
printf '%s\n' "$maps" | grep -q "$L/libsafe_mr.so" &&
	ok "LD_PRELOAD=<libdir>/libsafe_mr_preload.so from the packages loads the packaged engine" ||
	{ bad "preload link from the packages:"; show "$maps"; }
cflags=$(PKG_CONFIG_PATH=$L/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root pkg-config --cflags --libs safe_mr) &&
	printf '#include <safe_mr.h>\nint main(void) { return safe_mr_version()[0] == 0; }\n' > "$tmp/p.c" &&
	# shellcheck disable=SC2086
	gcc -Wall -Werror "$tmp/p.c" -o "$tmp/p" $cflags -Wl,-rpath,"$L" && "$tmp/p" &&
	ok "the -dev package: header, pkg-config, library" || bad "building against the -dev package"

# The Slurm plugin: where Debian's Slurm looks, tied to the Slurm release
# it was built for, and loaded by this host's srun (its --help lists the
# option only when the plugin loaded from plugstack.conf).
spank=$L/slurm-wlm/spank_safe_mr.so
[ -f "$spank" ] && ok "slurm-spank-safe-mr: spank_safe_mr.so in <libdir>/slurm-wlm" || bad "no $spank"
dep=$(dpkg-deb -f "$tmp/slurm-spank-safe-mr_${deb_version}_$arch.deb" Depends 2>&1)
printf '%s\n' "$dep" | grep -q 'slurm-wlm-basic-plugins (>= [0-9]*\.[0-9]*~), slurm-wlm-basic-plugins (<< ' &&
	ok "slurm-spank-safe-mr depends on one Slurm release" || { bad "slurm-spank-safe-mr Depends:"; show "$dep"; }
if command -v srun >/dev/null; then
	printf 'ClusterName=pkg\nSlurmctldHost=localhost\nPlugStackConfig=%s\nNodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost\n' \
		"$tmp/plugstack.conf" > "$tmp/slurm.conf"
	echo "required $spank" > "$tmp/plugstack.conf"
	out=$(SLURM_CONF=$tmp/slurm.conf srun --help 2>&1)
	printf '%s\n' "$out" | grep -q -e '--safe-mr=\[on|require|off\]' &&
		ok "srun loads the packaged plugin: srun --help lists --safe-mr" ||
		{ bad "srun with the packaged plugin:"; show "$out"; }
else
	bad "srun not found (apt-get install slurm-client)"
fi

if [ -n "$run_vm" ]; then
	keep=$build/tests/package/debs
	rm -rf "$keep" && mkdir -p "$keep" && cp $debs "$keep/" || bad "cannot keep the packages in $keep"
	out=$("$run_vm" --build "$build" --src "$src" --kernel host --checks "$src/tests/package/guest" \
		--run-name run-packages --only packages 2>&1); rc=$?
	printf '%s\n' "$out" | grep -E '^(== |[a-z].*(PASS|FAIL))' | sed 's/^/    /'
	[ $rc -eq 0 ] && ok "guest (Debian 12 kernel, Soft-RoCE): the demonstration runs from the packages" ||
		{ bad "guest check (run-vm exit $rc):"; printf '%s\n' "$out" | tail -n 80; }
fi
exit $fail
