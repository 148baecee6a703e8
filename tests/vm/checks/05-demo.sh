#!/bin/bash
# SPDX-License-Identifier: MIT
# The README's demonstration, in a few lines: a NIC's RDMA WRITE into a
# MAP_SHARED file mapping on ext4, then msync.  The same unmodified binary,
# without and with LD_PRELOAD=libsafe_mr_preload.so.  Without it the write is
# lost (< 6.5: msync/fsync return 0, the disk keeps the old bytes) or the
# registration is refused (>= 6.5: EFAULT); with it, the data is on disk.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
f=$VM_MNT/ext4/demo
new=$(( $(vm_kver_num) >= 605 ))

echo "== kernel $VM_KERNEL, ext4: $VM_RWF -y msync $f"
out=$("$VM_RWF" -y msync "$f" 2>&1); rc=$?
echo "   without safe_mr: $out"
if { [ $new = 1 ] && [ $rc = 2 ]; } || { [ $new = 0 ] && [ $rc = 1 ]; }; then
	vm_result ext4 without-safe_mr PASS "$out"
else
	vm_result ext4 without-safe_mr FAIL "expected the write lost or refused, got rc=$rc: $out"
fi
out=$(LD_PRELOAD=$VM_PRELOAD SAFE_MR_STATS=1 "$VM_RWF" -y msync "$f" 2>&1); rc=$?
echo "   with safe_mr:    $(echo "$out" | grep -m1 -E '^(PASS|FAIL)')"
echo "$out" | grep '^safe_mr: stats' | sed 's/^/                    /'
if [ $rc = 0 ]; then
	vm_result ext4 with-safe_mr PASS "$(echo "$out" | grep '^PASS')"
else
	vm_result ext4 with-safe_mr FAIL "rc=$rc: $out"
fi
vm_exit
