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
unset SAFE_MR_LOG_FILE SAFE_MR_GUARDIAN SAFE_MR_RESERVE SAFE_MR_THREADS
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

out=$(env SAFE_MR_MODE=auto SAFE_MR_FLUSH_MS=0 SAFE_MR_STATS=yes SAFE_MR_THREADS=2 "$prog" register 2>&1)
printf '%s\n' "$out" | grep -q 'warn' && { bad "valid values reported:"; printf '%s\n' "$out"; } ||
	ok "valid values: silent"

out=$(env SAFE_MR_THREADS=many "$prog" 2>&1)
line_before "$out" "ignoring SAFE_MR_THREADS=many: not a valid value .accepted: " &&
	ok "bad SAFE_MR_THREADS reported" || { bad "bad SAFE_MR_THREADS:"; printf '%s\n' "$out"; }

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
# The stats line: failed registrations apart, guard_failures, host, rank.
out=$(env SAFE_MR_STATS=1 SLURM_PROCID=12 "$prog" register 5 2>&1)
host=$(hostname)
if printf '%s\n' "$out" | grep -qE "^safe_mr: stats pid=[0-9]+ registrations=1 .* failed_registrations=5 guard_failures=0 .*host=$host rank=12 time=[0-9-]+T[0-9:.]+Z\$"; then
	ok "stats line: 1 registration, 5 failed apart, guard_failures, host and rank"
else bad "stats line:"; printf '%s\n' "$out"; fi

# Log lines: time, host, rank, pid; the info line at start.
out=$(env SAFE_MR_LOG=info PMIX_RANK=4 SAFE_MR_GUARDIAN=off "$prog" 2>&1)
if printf '%s\n' "$out" | head -1 | grep -qE "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z $host rank=4 safe_mr\\[[0-9]+\\]: info: safe_mr active: mode=bounce, linked, protector: none \\(SAFE_MR_GUARDIAN=off\\)\$"; then
	ok "info line at start (before main): time, host, rank, pid; mode, linked, protector"
else bad "no 'safe_mr active' line at start:"; printf '%s\n' "$out"; fi
out=$(env SAFE_MR_LOG=info SAFE_MR_MODE=auto SAFE_MR_SERVICE=off "$prog" 2>&1)
printf '%s\n' "$out" | grep -q " rank=none safe_mr\\[[0-9]*\\]: info: safe_mr active: mode=auto, linked, protector: guardian " &&
	ok "info line: mode auto, guardian, no rank" || { bad "info line (auto):"; printf '%s\n' "$out"; }
out=$(env SAFE_MR_LOG=info "$prog" 2>&1)
printf '%s\n' "$out" | grep -q "info: safe_mr active: mode=bounce, linked, protector: node service safe_mrd if it answers, else safe_mr-guardian " &&
	ok "info line: the node service first (SAFE_MR_SERVICE=auto)" || { bad "info line (service auto):"; printf '%s\n' "$out"; }
out=$(env SAFE_MR_MODE=bogus OMPI_COMM_WORLD_RANK=9 "$prog" 2>&1)
printf '%s\n' "$out" | grep -qE "Z $host rank=9 safe_mr\\[[0-9]+\\]: warn: ignoring SAFE_MR_MODE=bogus" &&
	ok "warnings carry host and rank (Open MPI)" || { bad "warning line:"; printf '%s\n' "$out"; }
out=$(env SAFE_MR_LOG=info PMI_RANK=2 "$prog" 2>&1)
printf '%s\n' "$out" | grep -q " rank=2 safe_mr" && ok "rank from PMI_RANK (MPICH)" ||
	{ bad "PMI_RANK:"; printf '%s\n' "$out"; }

# SAFE_MR_LOG_FILE: %h %p %r as the stats file; nothing on stderr.
out=$(env SAFE_MR_LOG=info SAFE_MR_MODE=bogus SLURM_PROCID=5 SAFE_MR_LOG_FILE="$dir/log.%h.%r.%p" \
	sh -c 'echo "pid $$"; exec "$0"' "$prog" 2>&1)
pid=$(printf '%s\n' "$out" | sed -n 's/^pid //p')
f="$dir/log.$host.5.$pid"
if [ -f "$f" ] && grep -q "rank=5 safe_mr\\[$pid\\]: info: safe_mr active" "$f" &&
   grep -q "rank=5 safe_mr\\[$pid\\]: warn: ignoring SAFE_MR_MODE=bogus" "$f" &&
   ! printf '%s\n' "$out" | grep -q 'safe_mr\['; then
	ok "SAFE_MR_LOG_FILE: lines in $f, none on stderr"
else bad "SAFE_MR_LOG_FILE: $f:"; ls "$dir"; cat "$f" 2>/dev/null; printf '%s\n' "$out"; fi
out=$(env 'SAFE_MR_LOG_FILE=/x/%q' "$prog" 2>&1)
line_before "$out" "ignoring SAFE_MR_LOG_FILE=/x/[%]q: not a valid value .accepted: " &&
	ok "bad SAFE_MR_LOG_FILE reported on stderr" || { bad "bad SAFE_MR_LOG_FILE:"; printf '%s\n' "$out"; }
exit $fail
