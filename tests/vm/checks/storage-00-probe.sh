#!/bin/bash
# SPDX-License-Identifier: MIT
# rdma_cm over rxe0 (on lo) works at all: rping through 127.0.0.1, the
# transport blockd/blockc use.  A FAIL here explains storage-blockd FAILs.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
command -v rping > /dev/null || { vm_result - rdma_cm-rping FAIL "rping (rdmacm-utils) missing"; vm_exit; }
rping -s -a 127.0.0.1 -p 19999 -C 3 > "$VM_OUT/rping-s.log" 2>&1 &
s=$!
sleep 1
if out=$(timeout 30 rping -c -a 127.0.0.1 -p 19999 -C 3 -v 2>&1); then
	vm_result - rdma_cm-rping PASS "$(echo "$out" | tail -n1)"
else
	vm_result - rdma_cm-rping FAIL "$(echo "$out" | tail -n2 | tr '\n' ' ') server: $(tail -n1 "$VM_OUT/rping-s.log")"
fi
kill $s 2>/dev/null; wait $s 2>/dev/null
vm_exit
