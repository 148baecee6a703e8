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

# vm_rxe_pair: two Soft-RoCE devices with non-loopback addresses, for
# rdma_cm users (rdma_resolve_addr/route fail on rxe0 over lo): a veth pair
# VM_PAIR_NETDEV_A/B with VM_PAIR_IP_A/B, rxe devices VM_PAIR_RXE_A/B on it,
# and policy routing so that traffic between the two (local) addresses
# really crosses the pair (brief §4: table 77 sends each address out of the
# opposite end, the `local` rule moved after it, accept_local, rp_filter).
# Idempotent: a second caller (or storage-lib.sh's st_net_up, which builds
# the same names and addresses) reuses the pair.  Returns 0 when both ports
# are ACTIVE; on failure VM_PAIR_ERR says which step failed.
VM_PAIR_NETDEV_A=sva VM_PAIR_NETDEV_B=svb
VM_PAIR_IP_A=10.77.0.1 VM_PAIR_IP_B=10.77.0.2
VM_PAIR_RXE_A=srxa VM_PAIR_RXE_B=srxb
vm_rxe_pair() {
	local a=$VM_PAIR_NETDEV_A b=$VM_PAIR_NETDEV_B k i
	VM_PAIR_ERR=
	if ! ip link show $a > /dev/null 2>&1; then
		ip link add $a type veth peer name $b || { VM_PAIR_ERR="ip link add veth"; return 1; }
		ip addr add $VM_PAIR_IP_A/24 dev $a && ip addr add $VM_PAIR_IP_B/24 dev $b &&
			ip link set $a up && ip link set $b up || { VM_PAIR_ERR="veth addresses"; return 1; }
		for k in all default lo $a $b; do
			sysctl -qw net.ipv4.conf.$k.accept_local=1 net.ipv4.conf.$k.rp_filter=0
		done
		ip route add $VM_PAIR_IP_B dev $a src $VM_PAIR_IP_A table 77 &&
			ip route add $VM_PAIR_IP_A dev $b src $VM_PAIR_IP_B table 77 &&
			ip rule add pref 50 iif lo lookup 77 &&
			ip rule add pref 100 lookup local && ip rule del pref 0 lookup local ||
			{ VM_PAIR_ERR="policy routing"; return 1; }
		rdma link add $VM_PAIR_RXE_A type rxe netdev $a &&
			rdma link add $VM_PAIR_RXE_B type rxe netdev $b ||
			{ VM_PAIR_ERR="rdma link add"; return 1; }
	fi
	for i in $(seq 50); do
		ibv_devinfo -d $VM_PAIR_RXE_A 2>/dev/null | grep -q PORT_ACTIVE &&
			ibv_devinfo -d $VM_PAIR_RXE_B 2>/dev/null | grep -q PORT_ACTIVE && return 0
		sleep 0.1
	done
	VM_PAIR_ERR="$VM_PAIR_RXE_A/$VM_PAIR_RXE_B not PORT_ACTIVE"
	return 1
}
