#!/bin/bash
# SPDX-License-Identifier: MIT
# Power cut at a random moment under blockd (see README.md, power-cut
# contract): on ext4, xfs and btrfs, clients keep writing and committing
# blocks when the guest is killed; every block the daemon acknowledged
# (ACK log, written to the host over 9p after each reply) must be on the
# recovered disk, whole, with that generation or a later one.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
. "$SAFE_MR_SRC/tests/vm/checks/storage-lib.sh"
BD=$SAFE_MR_BUILD/examples/blockd
BC=$SAFE_MR_BUILD/examples/blockc
NCLIENTS=3
PER=128
step=$1

case $step in
guest)
	[ -x "$BD" ] && [ -x "$BC" ] || { vm_result - build FAIL "examples/blockd or blockc not built"; vm_exit; }
	st_net_up || { vm_result - veth-rxe FAIL "rxe on a veth pair could not be set up"; vm_exit; }
	port=19200
	for fs in ext4 xfs btrfs; do
		port=$((port + 1))
		f=$VM_MNT/$fs/pc-blockd.img ack=$VM_PC_OUT/$fs.blockd.ack
		rm -f "$ack"
		dd if=/dev/zero of="$f" bs=4096 count=$((NCLIENTS * PER)) status=none
		sync	# the empty file itself must survive the cut
		setsid "$BD" -f "$f" -a $ST_SA -p $port -t 20 > "$VM_PC_OUT/$fs.blockd.log" 2>&1 < /dev/null &
		for i in $(seq 100); do grep -q 'blockd: ready' "$VM_PC_OUT/$fs.blockd.log" && break; sleep 0.1; done
		for c in $(seq 0 $((NCLIENTS - 1))); do
			setsid "$BC" -s $ST_SA -p $port -c $c -F $((c * PER)) -K $PER -n 100000000 \
				-t 20 -l "$ack" > "$VM_PC_OUT/$fs.client$c.log" 2>&1 < /dev/null &
		done
		echo "$fs" >> "$VM_PC_OUT/fs.list"
	done
	# a random moment: the clients keep going until the guest dies
	sleep $((1 + RANDOM % 4)).$((RANDOM % 10))
	for fs in ext4 xfs btrfs; do
		n=$(grep -c '^ACK' "$VM_PC_OUT/$fs.blockd.ack" 2>/dev/null)
		if [ "${n:-0}" -gt 0 ]; then vm_result $fs powercut-blockd-armed PASS "$n ACKs so far, clients running"
		else vm_result $fs powercut-blockd-armed FAIL "no ACK before the cut: $(tail -n1 "$VM_PC_OUT/$fs.blockd.log")"; fi
	done
	vm_exit
	;;
host)
	exit 0
	;;
verify)
	[ -e "$VM_PC_OUT/fs.list" ] || { vm_result - powercut-blockd FAIL "guest step left no fs.list"; vm_exit; }
	for fs in $(cat "$VM_PC_OUT/fs.list"); do
		f=$VM_MNT/$fs/pc-blockd.img ack=$VM_PC_OUT/$fs.blockd.ack
		n=$(grep -c '^ACK' "$ack" 2>/dev/null)
		if [ ! -e "$f" ]; then vm_result $fs powercut-blockd FAIL "file lost"; continue; fi
		if out=$("$BC" -V "$f" -l "$ack" 2>&1) && [ "${n:-0}" -gt 0 ]; then
			vm_result $fs powercut-blockd PASS "$(echo "$out" | tail -n1)"
		else
			vm_result $fs powercut-blockd FAIL "$(echo "$out" | tail -n3 | tr '\n' ' ')"
		fi
	done
	vm_exit
	;;
*)
	echo "usage: $0 guest|host|verify" >&2
	exit 2
	;;
esac
