#!/bin/bash
# SPDX-License-Identifier: MIT
# vm-kernel: new (one kernel is enough here; the other and the cluster cover the rest: guest-init)
# blockd + several blockc clients over Soft-RoCE on every filesystem: each
# client RDMA-writes verifiable blocks, commits them (durable), reads them
# back with RDMA READ; then the ACK log is checked against the file.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
. "$SAFE_MR_SRC/tests/vm/checks/storage-lib.sh"
BD=$SAFE_MR_BUILD/examples/blockd
BC=$SAFE_MR_BUILD/examples/blockc
NCLIENTS=4
PER=64		# blocks per client
OPS=100		# commits per client
DL=60		# blockd/blockc deadline (s) on any wait for the peer: fail with a reason (20 s was
		# too short once, an RDMA READ on btrfs with four TCG guests on 2 cores)

[ -x "$BD" ] && [ -x "$BC" ] || { vm_result - build FAIL "examples/blockd or blockc not built"; vm_exit; }
st_net_up || { vm_result - veth-rxe FAIL "rxe on a veth pair could not be set up"; vm_exit; }
port=19000
for fs in $VM_FS_LIST; do
	port=$((port + 1))
	dir=$VM_MNT/$fs
	f=$dir/blockd.img
	ack=$VM_OUT/$fs.ack
	rm -f "$f" "$ack"
	dd if=/dev/zero of="$f" bs=4096 count=$((NCLIENTS * PER)) status=none
	vm_dmesg_mark
	t0=$SECONDS
	"$BD" -f "$f" -a $ST_SA -p $port -t $DL -v > "$VM_OUT/$fs.blockd.log" 2>&1 &
	bd=$!
	for i in $(seq 100); do grep -q 'blockd: ready' "$VM_OUT/$fs.blockd.log" && break; kill -0 $bd 2>/dev/null || break; sleep 0.1; done
	if ! grep -q 'blockd: ready' "$VM_OUT/$fs.blockd.log"; then
		vm_result $fs blockd-start FAIL "$(tail -n2 "$VM_OUT/$fs.blockd.log" | tr '\n' ' ')"
		kill $bd 2>/dev/null; wait $bd 2>/dev/null
		continue
	fi
	pids=()
	for c in $(seq 0 $((NCLIENTS - 1))); do
		"$BC" -s $ST_SA -p $port -c $c -F $((c * PER)) -K $PER -n $OPS -l "$ack" \
			-t $DL -v > "$VM_OUT/$fs.client$c.log" 2>&1 &
		pids+=($!)
	done
	bad=0
	for c in $(seq 0 $((NCLIENTS - 1))); do
		wait ${pids[$c]} || { bad=1; vm_result $fs client$c FAIL "exit $?: $(tail -n1 "$VM_OUT/$fs.client$c.log")"; }
	done
	nack=$(grep -c '^ACK' "$ack" 2>/dev/null)
	early=$(cat "$VM_OUT"/$fs.client*.log | sed -n 's/.*, \([0-9]*\) replies before.*/\1/p' | awk '{s += $1} END {print s + 0}')
	[ $bad = 0 ] && vm_result $fs clients PASS "$NCLIENTS clients, $nack commits acknowledged, RDMA READ back ok in $((SECONDS - t0))s ($early replies completed before their SEND)"
	[ $bad = 0 ] || st_diag "$VM_OUT/$fs.diag"
	# stop the server (final writeback, deregistration), then check the file
	kill -TERM $bd; wait $bd; rc=$?
	if [ $rc = 0 ]; then vm_result $fs blockd-exit PASS "SIGTERM: written back and deregistered"
	else vm_result $fs blockd-exit FAIL "exit $rc: $(grep -m1 TIMEOUT "$VM_OUT/$fs.blockd.log" || tail -n1 "$VM_OUT/$fs.blockd.log")"; fi
	echo 3 > /proc/sys/vm/drop_caches
	vm_expect $fs acked-on-file "$BC" -V "$f" -l "$ack"
	[ "$nack" = $((NCLIENTS * OPS)) ] || vm_result $fs ack-count FAIL "$nack ACKs, want $((NCLIENTS * OPS))"
	vm_dmesg_clean $fs dmesg
	rm -f "$f"
done
vm_exit
