# SPDX-License-Identifier: MIT
# Sourced by the storage-* checks and powercut/storage-*.sh; NOT a check
# (not executable).  rdma_cm cannot resolve routes over rxe on lo
# ("rdma_resolve_route: No such device", see storage-00-probe), so blockd
# and blockc talk over two rxe devices on a veth pair, with policy routing
# that makes traffic between the two local addresses cross the pair.
[ -n "${BASH_SOURCE[1]:-}" ] || { echo "storage-lib.sh is sourced, not run" >&2; exit 1; }
ST_SA=10.77.0.1 ST_SB=10.77.0.2

# st_net_up: 0 when srxa (ST_SA, server) and srxb (ST_SB, client) are ACTIVE.
st_net_up() {
	if ! ip link show sva > /dev/null 2>&1; then
		ip link add sva type veth peer name svb || return 1
		ip addr add $ST_SA/24 dev sva && ip addr add $ST_SB/24 dev svb || return 1
		ip link set sva up && ip link set svb up || return 1
		for k in all default lo sva svb; do
			sysctl -qw net.ipv4.conf.$k.accept_local=1 net.ipv4.conf.$k.rp_filter=0
		done
		# locally sent packets to the other end go out of the opposite veth;
		# arriving ones still reach the local table (moved after it)
		ip route add $ST_SB dev sva src $ST_SA table 77 &&
			ip route add $ST_SA dev svb src $ST_SB table 77 || return 1
		ip rule add pref 50 iif lo lookup 77 || return 1
		ip rule add pref 100 lookup local && ip rule del pref 0 lookup local || return 1
		rdma link add srxa type rxe netdev sva && rdma link add srxb type rxe netdev svb || return 1
	fi
	for i in $(seq 50); do
		ibv_devinfo -d srxa 2>/dev/null | grep -q PORT_ACTIVE &&
			ibv_devinfo -d srxb 2>/dev/null | grep -q PORT_ACTIVE && return 0
		sleep 0.1
	done
	return 1
}

# st_diag FILE: the RDMA state after a failure (counters of both rxe devices,
# QPs, kernel log since the mark), for the logs kept in VM_OUT.
st_diag() {
	{
		echo "== rdma statistic"; rdma statistic show 2>&1
		echo "== rdma resource qp"; rdma resource show qp 2>&1
		echo "== dmesg since mark"; vm_dmesg_since 2>&1 | tail -n 50
	} > "$1" 2>&1
}
