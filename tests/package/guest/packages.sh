#!/bin/bash
# SPDX-License-Identifier: MIT
# Guest check (run by tests/package/debs.sh through run-vm --checks): the
# Debian packages that debs.sh built (BUILD/tests/package/debs) unpacked
# into a scratch root and the README's demonstration run from them over
# Soft-RoCE: the NIC RDMA-WRITEs a file mapping on ext4, and with the
# packaged safe_mr-run the data is on disk; safe_mr-info from the packages
# reports this kernel and the rxe device.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
debs=$SAFE_MR_BUILD/tests/package/debs
root=$TMPDIR/pkgroot
n=0
for d in "$debs"/*.deb; do
	dpkg -x "$d" "$root" || vm_result - unpack FAIL "dpkg -x $d"
	n=$((n + 1))
done
[ $n -ge 4 ] && vm_result - unpack PASS "$n packages from $debs" ||
	vm_result - unpack FAIL "$n packages in $debs"
B=$root/usr/bin

json=$("$B/safe_mr-info" --json 2>&1)
if printf '%s' "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["kernel"]["release"] == sys.argv[1], d["kernel"]
assert [x for x in d["devices"] if x["name"] == sys.argv[2]], d["devices"]
' "$VM_KERNEL" "$VM_RXE"; then
	vm_result - safe_mr-info PASS "packaged safe_mr-info reports $VM_KERNEL and $VM_RXE"
else
	vm_result - safe_mr-info FAIL "$json"
fi

f=$VM_MNT/ext4/pkgdemo
new=$(( $(vm_kver_num) >= 605 ))
out=$("$VM_RWF" -y msync "$f" 2>&1); rc=$?
if { [ $new = 1 ] && [ $rc = 2 ]; } || { [ $new = 0 ] && [ $rc = 1 ]; }; then
	vm_result ext4 demo-without PASS "lost or refused without safe_mr (rc=$rc)"
else
	vm_result ext4 demo-without FAIL "expected the write lost or refused, got rc=$rc: $out"
fi
out=$("$B/safe_mr-run" --stats -- "$VM_RWF" -y msync "$f" 2>&1); rc=$?
if [ $rc = 0 ] && printf '%s\n' "$out" | grep -q 'shadowed=[1-9]'; then
	vm_result ext4 demo-packaged-safe_mr-run PASS "$(printf '%s\n' "$out" | grep -m1 '^PASS')"
else
	vm_result ext4 demo-packaged-safe_mr-run FAIL "rc=$rc: $out"
fi
vm_exit
