#!/bin/bash
# SPDX-License-Identifier: MIT
# rdma_cm between the two rxe devices of storage-lib.sh works at all
# (rping), the transport blockd/blockc use.  A FAIL here explains storage-blockd FAILs.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
. "$SAFE_MR_SRC/tests/vm/checks/storage-lib.sh"
command -v rping > /dev/null || { vm_result - rdma_cm-rping FAIL "rping (rdmacm-utils) missing"; vm_exit; }
if st_net_up; then vm_result - veth-rxe PASS "srxa ($ST_SA) and srxb ($ST_SB) ACTIVE"
else vm_result - veth-rxe FAIL "veth pair / rxe / policy routing setup failed"; vm_exit; fi
rping -s -a $ST_SA -p 19999 -C 3 > "$VM_OUT/rping-s.log" 2>&1 &
s=$!
# The server says nothing when it listens: a client that comes too soon
# (a loaded host: seen once) is refused, so it tries again, 10 s at most.
ok=0
for try in $(seq 10); do
	sleep 1
	out=$(timeout 30 rping -c -a $ST_SA -p 19999 -C 3 -v 2>&1) && { ok=1; break; }
	echo "$out" | grep -q 'connect error' || break
done
if [ $ok = 1 ]; then
	vm_result - rdma_cm-rping PASS "$(echo "$out" | tail -n1) (try $try)"
else
	vm_result - rdma_cm-rping FAIL "$(echo "$out" | tail -n2 | tr '\n' ' ') server: $(tail -n1 "$VM_OUT/rping-s.log")"
fi
kill $s 2>/dev/null; wait $s 2>/dev/null
vm_exit
