#!/bin/sh
# SPDX-License-Identifier: MIT
# hook_warning.sh FI_RMA_FILE PRELOAD: with FI_HOOK=safe_mr alone, the first
# registration that needs a shadow says, once and on stderr (no
# FI_LOG_LEVEL needed), that msync/fsync/munmap are not seen; with the
# preload loaded too, and with SAFE_MR_LOG=error, it says nothing.
set -u
prog=$1 preload=$2
fail=0
re='libfabric hook without the preload library: msync, fsync, munmap and mremap do not write shadowed file pages back'
asan=${LD_PRELOAD-}
unset LD_PRELOAD FI_LOG_LEVEL
count() { printf '%s\n' "$1" | grep -c "$re"; }

# Several registrations (rounds): still one line.
out=$(LD_PRELOAD=$asan "$prog" --op rereg --rounds 3 --expect shadow 2>&1) || { echo "FAIL: hook run failed"; printf '%s\n' "$out"; exit 1; }
n=$(count "$out")
[ "$n" -eq 1 ] && echo "ok: hook alone: said once" || { echo "FAIL: hook alone: $n lines"; printf '%s\n' "$out"; fail=1; }
out=$(LD_PRELOAD=${asan:+$asan:}$preload "$prog" --op write --sync fi_sync --expect shadow 2>&1) || { echo "FAIL: hook+preload run failed"; printf '%s\n' "$out"; exit 1; }
n=$(count "$out")
[ "$n" -eq 0 ] && echo "ok: with the preload: silent" || { echo "FAIL: with the preload: $n lines"; fail=1; }
out=$(SAFE_MR_LOG=error LD_PRELOAD=$asan "$prog" --op write --sync close --expect shadow 2>&1) || exit 1
n=$(count "$out")
[ "$n" -eq 0 ] && echo "ok: SAFE_MR_LOG=error: silent" || { echo "FAIL: SAFE_MR_LOG=error: $n lines"; fail=1; }
exit $fail
