#!/bin/sh
# SAFE_MR_* variables are ignored in secure-execution processes: a setuid
# copy of setuid_env, run as nobody, must not print the SAFE_MR_STATS line;
# the same copy without the setuid bit must (the control).
set -u
prog=$1
command -v setpriv >/dev/null || { echo "FAIL: setpriv (util-linux) missing"; exit 1; }
# Without root: skipped, as tu_require_root does (a failure under CI).
if [ "$(id -u)" != 0 ]; then
	[ -n "${CI:-}" ] && { echo "FAIL: needs root to make a setuid binary"; exit 1; }
	echo "SKIP: needs root to make a setuid binary"; exit 77
fi
dir=$(mktemp -d /var/tmp/safe_mr_setuid.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
cp "$prog" "$dir/prog" && chown root:root "$dir/prog"
if findmnt -no OPTIONS -T "$dir" | grep -qw nosuid; then
	echo "FAIL: $dir is on a nosuid filesystem"; exit 1
fi
run() {
	SAFE_MR_STATS=1 setpriv --reuid=65534 --regid=65534 --clear-groups "$dir/prog" 2>&1
}
chmod 0755 "$dir/prog"
out=$(run)
echo "$out" | grep -q '^safe_mr: stats' || { echo "FAIL: control run printed no stats line:"; echo "$out"; exit 1; }
chmod 4755 "$dir/prog"
out=$(run)
echo "$out" | grep -q 'loaded' || { echo "FAIL: setuid run did not run:"; echo "$out"; exit 1; }
if echo "$out" | grep -q '^safe_mr: stats'; then
	echo "FAIL: SAFE_MR_STATS was honoured in a setuid process"; exit 1
fi
echo "PASS: SAFE_MR_STATS honoured normally, ignored under setuid"
