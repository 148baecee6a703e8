#!/bin/bash
# SPDX-License-Identifier: MIT
# blockc never waits forever: with blockd frozen (SIGSTOP) in the middle of
# a run, the client's wait for the commit reply ends after its deadline
# (-t) with exit 5 and a line naming what it waited for, instead of hanging
# until the check's 300 s timeout; and blockd keeps serving others.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
. "$SAFE_MR_SRC/tests/vm/checks/storage-lib.sh"
BD=$SAFE_MR_BUILD/examples/blockd
BC=$SAFE_MR_BUILD/examples/blockc
DL=3
[ -x "$BD" ] && [ -x "$BC" ] || { vm_result - build FAIL "examples/blockd or blockc not built"; vm_exit; }
st_net_up || { vm_result - veth-rxe FAIL "rxe on a veth pair could not be set up"; vm_exit; }
f=$VM_MNT/ext4/deadline.img ack=$VM_OUT/deadline.ack
rm -f "$f" "$ack"
dd if=/dev/zero of="$f" bs=4096 count=64 status=none
"$BD" -f "$f" -a $ST_SA -p 19300 -t 20 > "$VM_OUT/blockd.log" 2>&1 &
bd=$!
for i in $(seq 100); do grep -q 'blockd: ready' "$VM_OUT/blockd.log" && break; sleep 0.1; done
# Warm the path first (ARP on a fresh veth pair can take longer than $DL s).
"$BC" -s $ST_SA -p 19300 -c 2 -F 0 -K 64 -n 1 -g 2000 -t 20 > "$VM_OUT/warmup.log" 2>&1 ||
	vm_result ext4 warmup FAIL "$(tail -n1 "$VM_OUT/warmup.log")"
"$BC" -s $ST_SA -p 19300 -c 0 -F 0 -K 64 -n 100000000 -l "$ack" -t $DL > "$VM_OUT/client.log" 2>&1 &
bc=$!
for i in $(seq 200); do [ -s "$ack" ] && break; kill -0 $bc 2>/dev/null || break; sleep 0.1; done
if [ ! -s "$ack" ]; then
	vm_result ext4 deadline-setup FAIL "no commit acknowledged before the freeze: $(tail -n1 "$VM_OUT/client.log")"
	kill $bc $bd 2>/dev/null; wait; vm_exit
fi
kill -STOP $bd
t0=$SECONDS
for i in $(seq $(( (DL + 10) * 10 ))); do kill -0 $bc 2>/dev/null || break; sleep 0.1; done
if kill -0 $bc 2>/dev/null; then
	vm_result ext4 client-deadline FAIL "blockc still waiting $((SECONDS - t0))s after the server froze (deadline ${DL}s)"
	kill -9 $bc
fi
wait $bc; rc=$?
msg=$(grep -m1 TIMEOUT "$VM_OUT/client.log")
if [ $rc = 5 ] && echo "$msg" | grep -q 'waiting for the completion of RECV'; then
	vm_result ext4 client-deadline PASS "exit 5 after $((SECONDS - t0))s: ${msg#*] }"
else
	vm_result ext4 client-deadline FAIL "exit $rc after $((SECONDS - t0))s: $(tail -n1 "$VM_OUT/client.log")"
fi
kill -CONT $bd
# The server outlives a client that vanished mid-commit (its connection is
# dropped, at its deadline at the latest): a new client is served.
"$BC" -s $ST_SA -p 19300 -c 1 -F 0 -K 64 -n 16 -g 1000 -l "$ack.2" -t 20 > "$VM_OUT/client2.log" 2>&1
rc=$?
if [ $rc = 0 ] && kill -0 $bd 2>/dev/null; then
	vm_result ext4 server-survives PASS "$(tail -n1 "$VM_OUT/client2.log")"
else
	vm_result ext4 server-survives FAIL "rc=$rc, server $(kill -0 $bd 2>/dev/null && echo alive || echo gone): $(tail -n1 "$VM_OUT/client2.log")"
fi
kill -TERM $bd; wait $bd
rm -f "$f"
vm_exit
