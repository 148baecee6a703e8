#!/bin/sh
# SPDX-License-Identifier: MIT
# config.sh CFG_PROG: SAFE_MR_* configuration talks back.  Bad values and
# unknown names are reported when the program starts (before main), once,
# with what is accepted; the stats line comes only from processes that
# registered something; SAFE_MR_STATS_FILE expands %p and %r.
set -u
prog=$1
fail=0
dir=$(mktemp -d "${TMPDIR:-/tmp}/safe_mr-config.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
unset SAFE_MR_MODE SAFE_MR_LOG SAFE_MR_STATS SAFE_MR_STATS_FILE SAFE_MR_FLUSH_MS SAFE_MR_WRITEBACK
unset OMPI_COMM_WORLD_RANK PMI_RANK PMIX_RANK SLURM_PROCID

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
# line_before OUT REGEX: REGEX matches a line that comes before "main:".
line_before() {
	printf '%s\n' "$1" | awk -v re="$2" '/^main:/ { exit !seen } $0 ~ re { seen = 1 } END { exit !seen }'
}

out=$(env SAFE_MR_MODE=bogus "$prog" 2>&1)
if line_before "$out" 'ignoring SAFE_MR_MODE=bogus: not a valid value .accepted: bounce, auto, off.'; then
	ok "bad value reported at start, with the accepted values"
else bad "bad value not reported before main:"; printf '%s\n' "$out"; fi

out=$(env SAFE_MR_MODE=bogus "$prog" register 2>&1)
n=$(printf '%s\n' "$out" | grep -c 'ignoring SAFE_MR_MODE=bogus')
[ "$n" -eq 1 ] && ok "reported once, not again at first use" || { bad "reported $n times:"; printf '%s\n' "$out"; }

for v in SAFE_MR_FLUSH_MS=12x SAFE_MR_FLUSH_MS=-1 SAFE_MR_STATS=maybe SAFE_MR_WRITEBACK=aio \
	 SAFE_MR_LOG=verbose 'SAFE_MR_STATS_FILE=/x/%q'; do
	out=$(env "$v" "$prog" 2>&1)
	line_before "$out" "ignoring $(printf '%s' "$v" | sed 's/[%]/[%]/g'): not a valid value .accepted: " &&
		ok "$v reported" || { bad "$v not reported:"; printf '%s\n' "$out"; }
done

out=$(env SAFE_MR_MDOE=auto SAFE_MR_TEST_DIR=/tmp SAFE_MR_RUN_X=1 "$prog" 2>&1)
if line_before "$out" 'unknown variable SAFE_MR_MDOE ignored; the settings are SAFE_MR_MODE, '; then
	ok "unknown name reported at start"
else bad "unknown name not reported:"; printf '%s\n' "$out"; fi
printf '%s\n' "$out" | grep -q 'SAFE_MR_TEST_DIR\|SAFE_MR_RUN_X' &&
	{ bad "reserved names reported:"; printf '%s\n' "$out"; } || ok "SAFE_MR_TEST_*, SAFE_MR_RUN_* not reported"

out=$(env SAFE_MR_LOG=error SAFE_MR_MODE=bogus SAFE_MR_MDOE=1 "$prog" 2>&1)
printf '%s\n' "$out" | grep -q 'safe_mr\[' && { bad "SAFE_MR_LOG=error did not silence:"; printf '%s\n' "$out"; } ||
	ok "SAFE_MR_LOG=error silences the warnings"

out=$(env SAFE_MR_MODE=auto SAFE_MR_FLUSH_MS=0 SAFE_MR_STATS=yes "$prog" register 2>&1)
printf '%s\n' "$out" | grep -q 'warn' && { bad "valid values reported:"; printf '%s\n' "$out"; } ||
	ok "valid values: silent"

# Stats: only a process that registered prints the line.
out=$(env SAFE_MR_STATS=1 "$prog" 2>&1)
printf '%s\n' "$out" | grep -q '^safe_mr: stats' && { bad "stats line without a registration:"; printf '%s\n' "$out"; } ||
	ok "no stats line without a registration"
out=$(env SAFE_MR_STATS=1 "$prog" register 2>&1)
[ "$(printf '%s\n' "$out" | grep -c '^safe_mr: stats pid=[0-9]* registrations=1 ')" -eq 1 ] &&
	ok "one stats line after a registration" || { bad "no stats line after a registration:"; printf '%s\n' "$out"; }

# Stats file: %r from each launcher variable, %p the pid; nothing on stderr.
for var in OMPI_COMM_WORLD_RANK PMI_RANK PMIX_RANK SLURM_PROCID; do
	out=$(env "$var=7" SAFE_MR_STATS_FILE="$dir/$var.%r.%p" sh -c 'echo "pid $$"; exec "$0" register' "$prog" 2>&1)
	pid=$(printf '%s\n' "$out" | sed -n 's/^pid //p')
	f="$dir/$var.7.$pid"
	if [ -f "$f" ] && grep -q "^safe_mr: stats pid=$pid registrations=1 " "$f"; then
		ok "$var: stats in $f"
	else bad "$var: no stats in $f:"; ls "$dir"; printf '%s\n' "$out"; fi
	printf '%s\n' "$out" | grep -q '^safe_mr: stats' && bad "$var: stats line on stderr too"
done
env SAFE_MR_STATS_FILE="$dir/none.%p" "$prog" >/dev/null 2>&1
ls "$dir"/none.* >/dev/null 2>&1 && bad "stats file written without a registration" ||
	ok "no stats file without a registration"
# SAFE_MR_STATS=0 wins over a stats file.
env SAFE_MR_STATS=0 SAFE_MR_STATS_FILE="$dir/off.%p" "$prog" register >/dev/null 2>&1
ls "$dir"/off.* >/dev/null 2>&1 && bad "SAFE_MR_STATS=0 did not win" || ok "SAFE_MR_STATS=0 wins"
# An unwritable stats file: the line goes to stderr, with the reason.
out=$(env SAFE_MR_STATS_FILE="$dir/no/such/dir/%p" "$prog" register 2>&1)
printf '%s\n' "$out" | grep -q 'SAFE_MR_STATS_FILE: cannot open' &&
	printf '%s\n' "$out" | grep -q '^safe_mr: stats pid=' && ok "unwritable stats file: stderr, with the reason" ||
	{ bad "unwritable stats file:"; printf '%s\n' "$out"; }
exit $fail
