# SPDX-License-Identifier: MIT
# Helpers for tests/vm checks (sourced; see README.md for the contract).
VM_CHECK=${VM_CHECK:-$(basename "$0" .sh)}
VM_FAILS=0

# vm_result FS CASE PASS|FAIL DETAIL...
vm_result() {
	local fs=$1 case=$2 r=$3; shift 3
	echo "VMRESULT $VM_CHECK $VM_KERNEL $fs $case $r $*"
	[ "$r" = PASS ] || VM_FAILS=$((VM_FAILS + 1))
}

# vm_expect FS CASE CMD...: PASS if CMD exits 0
vm_expect() {
	local fs=$1 case=$2 out; shift 2
	if out=$("$@" 2>&1); then vm_result "$fs" "$case" PASS "$(echo "$out" | tail -n1)"
	else vm_result "$fs" "$case" FAIL "$(echo "$out" | tail -n1)"; fi
}

# Kernel log since the last vm_dmesg_mark.
vm_dmesg_mark() { VM_DMESG_MARK="smvm-mark-$$-$RANDOM"; echo "$VM_DMESG_MARK" > /dev/kmsg; }
vm_dmesg_since() { dmesg | sed -n "/$VM_DMESG_MARK/,\$p" | tail -n +2; }
# vm_dmesg_clean FS CASE: FAIL on kernel warnings/bugs/checksum errors since the mark
vm_dmesg_clean() {
	local bad
	bad=$(vm_dmesg_since | grep -E 'WARNING|BUG|csum failed|Oops|I/O error|checksum error' | head -n3 | tr '\n' ' ')
	if [ -n "$bad" ]; then vm_result "$1" "$2" FAIL "kernel log: $bad"
	else vm_result "$1" "$2" PASS "no WARNING/BUG/csum errors in dmesg"; fi
}

# Kernel major.minor as one number (6.1 -> 601, 7.2 -> 702).
vm_kver_num() { local v=${VM_KERNEL%%-*}; v=${v%%+*}; echo $(( ${v%%.*} * 100 + $(echo "$v" | cut -d. -f2) )); }

VM_PRELOAD=$SAFE_MR_BUILD/preload/libsafe_mr_preload.so
VM_RWF=$SAFE_MR_BUILD/examples/rdma_write_file
VM_RWF_LINKED=$SAFE_MR_BUILD/examples/rdma_write_file_linked

# Exit status for the check: non-zero if any case failed.
vm_exit() { exit $((VM_FAILS > 0)); }
