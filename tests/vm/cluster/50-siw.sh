#!/bin/bash
# SPDX-License-Identifier: MIT
# soft-iWARP (siw0) between the nodes: n2 (the new kernel) RDMA-WRITEs into
# a MAP_SHARED file mapping on n1 (6.1), without and with safe_mr on n1.
# siw.ko is built by tests/vm/get-siw from Debian's packages of each kernel
# and has a link of its own, eth1 (10.99.1.N, cluster-init).
#  (a) tests/vm/cm_write_file over rdma_cm: the target registers the
#      mapping with ibv_reg_mr, cleans it (msync+fsync), the peer writes,
#      the target msyncs and reads the disk with O_DIRECT.  On 6.1 without
#      safe_mr msync returns 0 and the disk keeps the old bytes (siw writes
#      the pinned pages with the CPU from the kernel: no dirty bit); on
#      6.5+ ibv_reg_mr fails with EFAULT.  With LD_PRELOAD=libsafe_mr_preload.so
#      the data is on disk.  ext4 (n1 local) and nfs (n1's own export).
#  (b) libfabric's verbs;ofi_rxm over rdma_cm on siw: tests/fabric's
#      fi_rma_file.  On n2 (7.3) both processes over siw0: no hook
#      (fi_mr_reg refused, EFAULT) and FI_HOOK=safe_mr (shadowed; on disk
#      after fi_close / safe_mr_fi_sync).  n2 -> n1: blocked (see (b2)).
# Traffic really crosses siw: the device rdma_cm chose is printed by
# cm_write_file, and n2's eth1 counts the bytes (rxe0 is on eth0).
# siw has no ODP (no IBV_ACCESS_ON_DEMAND).
. "$SAFE_MR_SRC/tests/vm/cluster/lib.sh"
CMW=$SAFE_MR_BUILD/tests/vm/cm_write_file
FIR=$SAFE_MR_BUILD/tests/fabric/fi_rma_file
HOOKDIR=$SAFE_MR_BUILD/fabric
ip1=10.99.1.1 ip2=10.99.1.2
k2=$(cl_kernel n2)
new1=$(( $(vm_kver_num) >= 605 ))
for f in "$CMW" "$FIR" "$HOOKDIR/libsafe_mr-fi.so" "$VM_PRELOAD"; do
	[ -e "$f" ] || { cl_result - build FAIL "$f not built"; cl_exit; }
done

# The devices: siw0 ACTIVE on both nodes, iWARP, from get-siw's module.
for n in n1 n2; do
	k=$VM_KERNEL; [ $n = n2 ] && k=$k2
	info=$(cl_on $n sh -c 'ibv_devinfo -d siw0 2>&1 | grep -E "transport|state:" | tr -s " \t" " " | tr "\n" ";";
		echo " taint=$(cat /proc/sys/kernel/tainted) lockdown=$(cat /sys/kernel/security/lockdown 2>/dev/null || echo none)";
		echo " $(dmesg | grep -m1 -o "siw: module verification failed[^.]*")"' 2>&1 | tr '\n' ' ')
	if echo "$info" | grep -q 'iWARP' && echo "$info" | grep -q PORT_ACTIVE; then
		CL_KERNEL=$k cl_result - siw0-$n PASS "$n siw0 (get-siw, $(cl_on $n sh -c "sed -n 2p \$SAFE_MR_BUILD/tests/vm/cache/siw-\$(uname -r)/ORIGIN" 2>/dev/null)): $info"
	else
		CL_KERNEL=$k cl_result - siw0-$n FAIL "$n: $info"
		cl_exit
	fi
done

siw_tx() { cl_on n2 cat /sys/class/net/eth1/statistics/tx_bytes 2>/dev/null || echo 0; }
# pair LOG SERVER... -- CLIENT...: SERVER on n1 (background), CLIENT on n2
# once the server listens; sets sout src cout crc.
pair() {
	local log=$VM_OUT/$1 i sp; shift
	local s=(); while [ "$1" != -- ]; do s+=("$1"); shift; done; shift
	timeout ${PAIR_T:-60} "${s[@]}" > $log.server 2>&1 &
	sp=$!
	for i in $(seq 150); do grep -q -E 'listening|waiting for the client' $log.server && break; sleep 0.1; done
	cout=$(cl_on n2 timeout $((${PAIR_T:-60} - 10)) "$@" 2>&1); crc=$?
	wait $sp; src=$?
	sout=$(cat $log.server)
	echo "$cout" > $log.client
}
line() { echo "$1" | grep -m1 -E '^(PASS|FAIL)' ; }

# (a) rdma_cm + plain verbs.
port=7471
for fs in ext4 nfs; do
	case $fs in ext4) dir=$VM_LOCAL/ext4 ;; nfs) dir=$VM_SHARED/nfs ;; esac
	f=$dir/siw-cm.$$
	t0=$(siw_tx)
	pair cm-$fs-without $CMW -s $ip1 -p $((port++)) $f -- $CMW -c $ip1 -p $((port - 1))
	t1=$(siw_tx)
	dev=$(echo "$sout" | sed -n 's/^target: device //p')
	if [ "$dev" != siw0 ]; then
		cl_result $fs cm-device FAIL "rdma_cm chose '$dev', not siw0: $sout"
	elif [ $new1 = 0 ] && [ $src = 1 ] && echo "$sout" | grep -q 'old data on disk'; then
		cl_result $fs cm-without-safe_mr PASS "siw0 n2->n1 ($((t1 - t0)) bytes out of n2's eth1), msync=0: $(line "$sout")"
	elif [ $new1 = 1 ] && [ $src = 2 ]; then
		cl_result $fs cm-without-safe_mr PASS "registration refused: $(line "$sout")"
	else
		cl_result $fs cm-without-safe_mr FAIL "want the write lost (6.1) or refused (6.5+): target rc=$src $(line "$sout"); peer rc=$crc $(echo "$cout" | tail -n1)"
	fi
	t0=$(siw_tx)
	pair cm-$fs-with env LD_PRELOAD=$VM_PRELOAD SAFE_MR_STATS=1 $CMW -s $ip1 -p $((port++)) $f -- \
		$CMW -c $ip1 -p $((port - 1))
	t1=$(siw_tx)
	if [ $src = 0 ] && [ $crc = 0 ] && [ $((t1 - t0)) -ge 65536 ]; then
		cl_result $fs cm-with-safe_mr PASS "siw0 n2->n1 ($((t1 - t0)) bytes out of n2's eth1): $(line "$sout") $(echo "$sout" | grep -m1 -o 'shadowed=[0-9]*')"
	else
		cl_result $fs cm-with-safe_mr FAIL "target rc=$src $(line "$sout"); peer rc=$crc $(echo "$cout" | tail -n1); eth1 tx $((t1 - t0))"
	fi
	rm -f $f
done

# (b) libfabric verbs;ofi_rxm over siw.  The out-of-band socket goes over
# eth0 (10.99.0.1), the fabric over eth1.
export FI_PROVIDER='verbs;ofi_rxm' FI_UNIVERSE_SIZE=16 FI_TEST_TIMEOUT=20 PAIR_T=45 FI_LOG_LEVEL=warn
fport=7600
# fab FS CASE SERVER-ENV... -- ARGS...: server with SERVER-ENV, client plain.
fab() {
	local fs=$1 case=$2 env=() p=$((fport++)); shift 2
	while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
	pair fi-$case-$fs env "${env[@]}" FI_RMA_NODE=$ip1 FI_TEST_DIR=$VM_LOCAL/$fs $FIR "$@" --listen $p -- \
		env FI_RMA_NODE=$ip2 FI_TEST_DIR=/tmp $FIR "$@" --connect 10.99.0.1:$p
}
fs=ext4
# (b1) On n2 (7.3) alone, both processes over siw0: without the hook the
# verbs provider's fi_mr_reg of the file mapping is refused (EFAULT, 6.5+);
# with FI_HOOK=safe_mr the data is on disk after fi_close / safe_mr_fi_sync.
fab2() { # ARGS...: fi_rma_file on n2, sets cout crc
	cout=$(cl_on n2 env "$@" 2>&1); crc=$?
}
fab2 FI_RMA_NODE=$ip2 FI_TEST_DIR=$VM_LOCAL/$fs timeout 45 $FIR --op write --sync fi_sync --expect raw
if [ $crc != 0 ] && echo "$cout" | grep -q 'fi_mr_reg(r.domain, seg\[0\].*-14'; then
	CL_KERNEL=$k2 cl_result $fs fi-n2-without-safe_mr PASS "verbs;ofi_rxm on siw0: fi_mr_reg refused: $(echo "$cout" | grep -m1 -o ': -14 .*')"
else
	CL_KERNEL=$k2 cl_result $fs fi-n2-without-safe_mr FAIL "want fi_mr_reg -14, rc=$crc: $(echo "$cout" | grep -E 'RAW|FAIL' | head -n3 | tr '\n' ' ')"
fi
for sync in close fi_sync; do
	fab2 FI_HOOK=safe_mr FI_PROVIDER_PATH=$HOOKDIR FI_RMA_NODE=$ip2 FI_TEST_DIR=$VM_LOCAL/$fs timeout 45 \
		$FIR --op write --sync $sync --expect shadow
	if [ $crc = 0 ]; then
		CL_KERNEL=$k2 cl_result $fs fi-n2-with-safe_mr-$sync PASS "FI_HOOK=safe_mr, verbs;ofi_rxm on siw0: $(echo "$cout" | grep -E 'before sync|after' | tr '\n' ' ')"
	else
		CL_KERNEL=$k2 cl_result $fs fi-n2-with-safe_mr-$sync FAIL "rc=$crc: $(echo "$cout" | grep -m3 -E 'FAIL|rror' | tr '\n' ' ')"
	fi
done
# (b2) n2 -> n1 with libfabric is not checked: blocked by libfabric 1.17
# with 6.1's siw.  Seen: n1's ofi_rxm opens the MSG endpoint for the
# connection request and closes it at once (nothing logged at
# FI_LOG_LEVEL=debug), rdma_reject then fails with EBUSY; with 6.1's siw as
# the client, fi_write returns -FI_ENOMEM.  Both processes on 7.3's siw
# work (above); rdma_cm across the nodes works (a).
rm -f $VM_LOCAL/$fs/fi_rma_file.*
cl_exit
