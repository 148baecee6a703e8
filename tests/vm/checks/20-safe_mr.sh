#!/bin/bash
# SPDX-License-Identifier: MIT
# The fix, on every kernel x filesystem: the same unmodified program under
# LD_PRELOAD=libsafe_mr_preload.so, and the variant linked with the C API.
# Registration succeeds, RDMA READ/WRITE/atomics move the right bytes,
# msync(MS_SYNC) / fsync / ibv_dereg_mr make the data durable (O_DIRECT read),
# the btrfs race reads back clean, and the kernel log stays clean.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
for f in "$VM_RWF" "$VM_RWF_LINKED" "$VM_PRELOAD"; do
	[ -e "$f" ] || { vm_result - build FAIL "$f not built"; vm_exit; }
done

# run CASE FS PROGRAM ARGS...: PASS when the program says PASS and safe_mr
# counted the registration as shadowed (or odp, in auto mode with ODP).
run() {
	local case=$1 fs=$2 want=${WANT:-shadowed}; shift 2
	local out rc st
	out=$(SAFE_MR_STATS=1 "$@" 2>$TMPDIR/err); rc=$?
	st=$(grep -m1 'safe_mr: stats' $TMPDIR/err)
	if [ $rc != 0 ]; then
		vm_result $fs $case FAIL "rc=$rc: $out $(grep -v 'safe_mr: stats' $TMPDIR/err | head -n2 | tr '\n' ' ')"
	elif ! [[ $st =~ $want=[1-9] ]]; then
		vm_result $fs $case FAIL "data ok but stats show no $want registration: '$st'"
	else
		vm_result $fs $case PASS "$out [${st#safe_mr: stats }]"
	fi
}

for fs in ext4 xfs btrfs dax; do
	d=$VM_MNT/$fs
	vm_dmesg_mark
	for sync in msync fsync dereg; do
		run preload-rwa-$sync $fs env LD_PRELOAD="$VM_PRELOAD" "$VM_RWF" -o read,write,atomic -y $sync $d/fix-$sync
	done
	run preload-write-noclean $fs env LD_PRELOAD="$VM_PRELOAD" "$VM_RWF" -n -s 1048576 $d/fix-big
	for sync in msync dereg; do
		run linked-rwa-$sync $fs "$VM_RWF_LINKED" -o read,write,atomic -y $sync $d/fix-linked
	done
	vm_dmesg_clean $fs dmesg-clean
	rm -f $d/fix-*
done

# The btrfs race of 10-premise, with safe_mr: the NIC writes anonymous
# memory, writeback is ordinary pwrite, the checksums stay right.
vm_dmesg_mark
run preload-race btrfs env LD_PRELOAD="$VM_PRELOAD" "$VM_RWF" -r 4000 -s 1048576 $VM_MNT/btrfs/fix-race
vm_dmesg_clean btrfs race-dmesg-clean
rm -f $VM_MNT/btrfs/fix-race

# SAFE_MR_MODE=auto: ODP where rxe offers it for RC (7.x), else a shadow.
# rxe implements On-Demand Paging from 6.15 on (brief §1).
if [ "$(vm_kver_num)" -ge 615 ]; then
	for fs in ext4 xfs btrfs; do
		WANT=odp run auto-odp $fs env SAFE_MR_MODE=auto LD_PRELOAD="$VM_PRELOAD" "$VM_RWF" -o read,write,atomic -y msync $VM_MNT/$fs/fix-odp
		rm -f $VM_MNT/$fs/fix-odp
	done
else
	run auto-shadow ext4 env SAFE_MR_MODE=auto LD_PRELOAD="$VM_PRELOAD" "$VM_RWF" -o read,write,atomic -y msync $VM_MNT/ext4/fix-auto
	rm -f $VM_MNT/ext4/fix-auto
fi
vm_exit
