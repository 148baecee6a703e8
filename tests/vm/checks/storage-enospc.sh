#!/bin/bash
# SPDX-License-Identifier: MIT
# ENOSPC through blockd: on an 8 MiB ext4 (loop, in $TMPDIR) filled up, a
# commit fails, the client is told ENOSPC, blockd keeps running and keeps
# the data; after space is freed the client's retry is acknowledged.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
. "$SAFE_MR_SRC/tests/vm/checks/storage-lib.sh"
BD=$SAFE_MR_BUILD/examples/blockd
BC=$SAFE_MR_BUILD/examples/blockc
[ -x "$BD" ] && [ -x "$BC" ] || { vm_result - build FAIL "examples/blockd or blockc not built"; vm_exit; }
st_net_up || { vm_result - veth-rxe FAIL "rxe on a veth pair could not be set up"; vm_exit; }

img=$TMPDIR/enospc.img mnt=$TMPDIR/enospc
mkdir -p "$mnt"
truncate -s 8M "$img"
if ! mkfs.ext4 -q -F -m 0 "$img" || ! mount -o loop "$img" "$mnt"; then
	vm_result ext4 mount FAIL "cannot make/mount the small ext4 (loop module?)"
	vm_exit
fi
f=$mnt/blockd.img ack=$VM_OUT/enospc.ack
rm -f "$ack"
truncate -s 1M "$f"		# sparse: blocks are allocated at commit
# The error path itself: no block reservation at registration (with the
# default SAFE_MR_RESERVE=auto blockd would hold its blocks from the start).
SAFE_MR_RESERVE=off "$BD" -f "$f" -a $ST_SA -p 19100 -t 20 -v > "$VM_OUT/enospc.blockd.log" 2>&1 &
bd=$!
for i in $(seq 100); do grep -q 'blockd: ready' "$VM_OUT/enospc.blockd.log" && break; sleep 0.1; done
dd if=/dev/zero of="$mnt/filler" bs=64k status=none 2>/dev/null
dd if=/dev/zero of="$mnt/filler2" bs=4k status=none 2>/dev/null
sync
"$BC" -s $ST_SA -p 19100 -c 7 -F 0 -K 32 -n 32 -l "$ack" -r 100 -R 100 -t 20 -v > "$VM_OUT/enospc.client.log" 2>&1 &
bc=$!
for i in $(seq 300); do grep -q '^NACK' "$ack" 2>/dev/null && break; kill -0 $bc 2>/dev/null || break; sleep 0.1; done
if grep -q '^NACK .* 28$' "$ack"; then
	vm_result ext4 commit-enospc PASS "client told ENOSPC: $(grep -m1 '^NACK' "$ack")"
else
	vm_result ext4 commit-enospc FAIL "no ENOSPC reply: $(tail -n1 "$VM_OUT/enospc.client.log")"
fi
if kill -0 $bd 2>/dev/null; then vm_result ext4 daemon-alive PASS "blockd still running after ENOSPC"
else vm_result ext4 daemon-alive FAIL "blockd died"; fi
rm -f "$mnt/filler" "$mnt/filler2"
if wait $bc; then vm_result ext4 retry PASS "$(grep -c '^ACK' "$ack") commits acknowledged after space was freed"
else vm_result ext4 retry FAIL "client exit $?: $(tail -n1 "$VM_OUT/enospc.client.log")"; fi
kill -TERM $bd; wait $bd
echo 3 > /proc/sys/vm/drop_caches
vm_expect ext4 acked-on-file "$BC" -V "$f" -l "$ack"
umount "$mnt"
vm_exit
