#!/bin/bash
# SPDX-License-Identifier: MIT
# completion.sh SRCDIR: the bash completion of both tools completes their
# options and option values (bash-completion's own helpers loaded).
set -u
src=$1
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
bc=/usr/share/bash-completion/bash_completion
[ -r "$bc" ] || { echo "bash-completion not installed (apt-get install bash-completion)"; exit 77; }
# shellcheck disable=SC1090
. "$bc"
. "$src/tools/completion/safe_mr-run"
. "$src/tools/completion/safe_mr-info"
# complete LINE: COMPREPLY for the command line LINE (the cursor at its end).
complete_line() {
	COMP_LINE=$1 COMP_POINT=${#1}
	read -r -a COMP_WORDS <<<"$1"
	[[ $1 == *' ' ]] && COMP_WORDS+=('')
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	"$2" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}
check() { # WANT LINE FUNC
	got=$(complete_line "$2" "$3")
	[ "$got" = "$1" ] && ok "'$2' -> $got" || bad "'$2' -> '$got', want '$1'"
}
check 'auto bounce off ' 'safe_mr-run --mode ' _safe_mr_run
check 'auto off ' 'safe_mr-run --reserve ' _safe_mr_run
check 'off on ' 'safe_mr-run --guardian ' _safe_mr_run
check 'debug error info warn ' 'safe_mr-run --log ' _safe_mr_run
check '--fabric ' 'safe_mr-run --fab' _safe_mr_run
check '--config ' 'safe_mr-info --con' _safe_mr_info
check '--no-fabric --no-probe ' 'safe_mr-info --no-' _safe_mr_info
exit $fail
