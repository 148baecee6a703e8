#!/bin/sh
# SPDX-License-Identifier: MIT
# check-output.sh REGEX... -- CMD ARGS...: run CMD, which must succeed, and
# require every extended REGEX to match a line of its stdout+stderr.
set -u
n=0
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	n=$((n + 1)); eval "re_$n=\$1"; shift
done
[ $# -gt 1 ] || { echo "usage: $0 REGEX... -- CMD ARGS..." >&2; exit 2; }
shift
out=$("$@" 2>&1); rc=$?
printf '%s\n' "$out"
[ $rc -eq 0 ] || { echo "FAIL: '$*' exited $rc" >&2; exit 1; }
i=1
while [ $i -le $n ]; do
	eval "re=\$re_$i"
	if ! printf '%s\n' "$out" | grep -a -E -q -- "$re"; then
		echo "FAIL: no line matches /$re/" >&2; exit 1
	fi
	echo "ok: /$re/"
	i=$((i + 1))
done
