#!/bin/bash
# SPDX-License-Identifier: MIT
# The test bed itself: Soft-RoCE up, every filesystem mounted as intended.
. "$SAFE_MR_SRC/tests/vm/lib.sh"

if ibv_devinfo -d "$VM_RXE" | grep -q PORT_ACTIVE; then
	vm_result - rxe PASS "$VM_RXE ACTIVE on lo"
else
	vm_result - rxe FAIL "$VM_RXE not ACTIVE"
fi
for fs in $VM_FS_LIST; do
	line=$(grep " $VM_MNT/$fs " /proc/mounts)
	case $fs in
	dax) want="ext4 .*dax" ;;
	*) want="$fs " ;;
	esac
	if echo "$line" | grep -q " $want"; then
		vm_result $fs mounted PASS "$(echo "$line" | cut -d' ' -f1,3)"
	else
		vm_result $fs mounted FAIL "not mounted as $want: '$line'"
	fi
done
vm_exit
