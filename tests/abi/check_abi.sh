#!/bin/sh
# SPDX-License-Identifier: MIT
# check_abi.sh REFERENCE.abi LIBRARY HEADERS_DIR
# The library's ABI against the last release's (abidw output kept in abi/):
# added functions are fine; a removed or changed function or variable, or
# an incompatible change, fails.  Needs abidiff (Debian: abigail-tools).
set -u
ref=$1 lib=$2 headers=$3
command -v abidiff >/dev/null ||
	{ echo "FAIL: abidiff not found (Debian: apt-get install abigail-tools)"; exit 1; }
out=$(abidiff --headers-dir2 "$headers" --drop-private-types "$ref" "$lib" 2>&1)
rc=$?
printf '%s\n' "$out"
fail=0
# abidiff's status bits: 1 error, 2 usage error, 4 ABI change, 8 incompatible.
if [ $((rc & 11)) -ne 0 ]; then
	echo "FAIL: abidiff exited $rc (error or incompatible change)"; fail=1
fi
# "N Removed, N Changed" of functions and variables (with debug info), and
# of symbols without it: only additions are allowed.
if printf '%s\n' "$out" | grep -E 'changes summary:' | grep -qvE ' 0 Removed(, 0 Changed)?'; then
	echo "FAIL: something was removed or changed"; fail=1
fi
[ -s "$ref" ] || { echo "FAIL: no reference ABI $ref"; fail=1; }
[ $fail -eq 0 ] && echo "ok: $(basename "$lib") keeps the ABI of $(basename "$ref") (additions only)"
exit $fail
