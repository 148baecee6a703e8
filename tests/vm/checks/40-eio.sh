#!/bin/bash
# SPDX-License-Identifier: MIT
# vm-kernel: host (one kernel is enough here; the other and the cluster cover the rest: guest-init)
# Real I/O errors (a failed flush must keep every NIC byte): ext4, xfs and
# btrfs on a device-mapper device that starts failing writes.  The NIC RDMA-WRITEs a shadowed file mapping
# (LD_PRELOAD, and the linked API), the device switches to dm-flakey
# error_writes, the durable sync (msync MS_SYNC / fsync / ibv_dereg_mr /
# fdatasync) must fail, the NIC writes some pages again, the device is
# restored, the retried sync must return 0 and an O_DIRECT read must show
# every byte the NIC wrote; after a cold remount the files still hold them.
# VM_EIO_SIZE bytes (default 1 MiB: four times the 64-page writeback
# slice) - after a failed fdatasync the kernel may have dropped every page
# written since the last good one (fsyncgate), so all must be written again.
# Control without safe_mr: < 6.5 the sync returns 0 while the device fails
# writes and the disk keeps the old bytes; >= 6.5 ibv_reg_mr says EFAULT.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
EW=$SAFE_MR_BUILD/tests/vm/eio_write
EWL=$SAFE_MR_BUILD/tests/vm/eio_write_linked
SIZE=${VM_EIO_SIZE:-1048576}
for f in "$EW" "$EWL" "$VM_PRELOAD"; do
	[ -e "$f" ] || { vm_result - build FAIL "$f not built"; vm_exit; }
done
command -v dmsetup > /dev/null || { vm_result - dmsetup FAIL "dmsetup is not installed (Debian package dmsetup)"; vm_exit; }
grep -qw flakey <(dmsetup targets 2>&1) ||
	{ vm_result - dm-flakey FAIL "no dm flakey target (modules dm_mod, dm_flakey): $(dmsetup targets 2>&1 | head -n1)"; vm_exit; }
# No udev in the guest: libdevmapper makes the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
new=$(( $(vm_kver_num) >= 605 ))

# The log worker forces the xfs log every xfssyncd_centisecs; a log write
# while the device fails shuts xfs down.  Only data writes may fail here.
xfs_sync=$(cat /proc/sys/fs/xfs/xfssyncd_centisecs)
echo 720000 > /proc/sys/fs/xfs/xfssyncd_centisecs

declare -A SIZE_MB=([ext4]=64 [xfs]=320 [btrfs]=128)
declare -A OPTS=([ext4]="-o commit=60" [xfs]="" [btrfs]="-o commit=60")
# Linear (good) and flakey-failing-every-write tables over the loop device,
# swapped without freezing the fs (--nolockfs: a freeze and thaw write the
# ext4 superblock, which would then fail too).
good_table() { echo "0 $2 linear $1 0"; }
bad_table() { echo "0 $2 flakey $1 0 0 1 1 error_writes"; }

setup() { # FS -> LOOP SECTORS DM MNT; 1 on failure (after a FAIL line)
	local fs=$1 img=$TMPDIR/eio-$1.img out
	MNT=$TMPDIR/eio-$fs DM=smeio-$fs
	mkdir -p "$MNT"
	rm -f "$img"; truncate -s ${SIZE_MB[$fs]}M "$img"
	LOOP=$(losetup -f --show "$img") || { vm_result $fs setup FAIL "losetup failed"; return 1; }
	SECTORS=$(blockdev --getsz "$LOOP")
	if ! out=$(dmsetup create $DM --table "$(good_table $LOOP $SECTORS)" 2>&1) ||
	   [ ! -b /dev/mapper/$DM ]; then
		vm_result $fs setup FAIL "dmsetup create: $out"; return 1
	fi
	case $fs in
	ext4) out=$(mkfs.ext4 -q -F /dev/mapper/$DM 2>&1) ;;
	xfs) out=$(mkfs.xfs -q -f /dev/mapper/$DM 2>&1) ;;
	btrfs) out=$(mkfs.btrfs -q -f /dev/mapper/$DM 2>&1) ;;
	esac || { vm_result $fs setup FAIL "mkfs: $out"; return 1; }
	mount -t $fs ${OPTS[$fs]} /dev/mapper/$DM "$MNT" ||
		{ vm_result $fs setup FAIL "mount -t $fs ${OPTS[$fs]} /dev/mapper/$DM failed"; return 1; }
	FAILCMD="dmsetup load $DM --table '$(bad_table $LOOP $SECTORS)' && dmsetup suspend --nolockfs $DM && dmsetup resume $DM"
	RESTORECMD="dmsetup load $DM --table '$(good_table $LOOP $SECTORS)' && dmsetup suspend --nolockfs $DM && dmsetup resume $DM"
}

teardown() {
	umount "$MNT" 2>/dev/null
	dmsetup remove $DM 2>/dev/null
	losetup -d "$LOOP" 2>/dev/null
	rm -f "$TMPDIR/eio-$1.img"
}

# run FS CASE PROGRAM ARGS...: PASS when the program passes and safe_mr
# shadowed the registration.
run() {
	local fs=$1 case=$2 out rc st; shift 2
	out=$(SAFE_MR_STATS=1 "$@" -s $SIZE -F "$FAILCMD" -R "$RESTORECMD" 2>$TMPDIR/eio.err); rc=$?
	st=$(grep -m1 'safe_mr: stats' $TMPDIR/eio.err)
	echo "$case $fs rc=$rc: $out" >&2
	[ $rc = 0 ] || eval "$RESTORECMD"	# it may have stopped while the device failed
	if [ $rc != 0 ]; then
		vm_result $fs $case FAIL "rc=$rc: $(echo "$out" | tail -n2 | tr '\n' ' ') $(grep -v 'safe_mr: stats' $TMPDIR/eio.err | head -n2 | tr '\n' ' ')"
	elif ! [[ $st =~ shadowed=[1-9] ]]; then
		vm_result $fs $case FAIL "data ok but stats show no shadowed registration: '$st'"
	else
		vm_result $fs $case PASS "$(echo "$out" | grep '^RESULT' | cut -d' ' -f2-) [${st#safe_mr: stats }]"
	fi
}

# The control: the same program without safe_mr.
control() {
	local fs=$1 out rc
	out=$("$EW" -y msync -s $SIZE -F "$FAILCMD" -R "$RESTORECMD" $MNT/control 2>&1); rc=$?
	echo "control $fs rc=$rc: $out" >&2
	eval "$RESTORECMD"
	if [ $new = 1 ]; then
		[ $rc = 2 ] && [[ $out == *"Bad address"* ]] &&
			vm_result $fs control-no-safe_mr PASS "registration refused: $out" ||
			vm_result $fs control-no-safe_mr FAIL "expected EFAULT from ibv_reg_mr, got rc=$rc: $out"
	elif [[ $rc =~ ^[13]$ && $out =~ retry=0\ .*disk_old=[1-9] ]]; then
		# The NIC's pages are clean: the failing msync has nothing to
		# write (it fails only if the cache flush does), the retry
		# returns 0 and the disk keeps the old bytes.
		vm_result $fs control-no-safe_mr PASS "NIC write lost: $(echo "$out" | grep '^RESULT' | cut -d' ' -f2-)"
	else
		vm_result $fs control-no-safe_mr FAIL "expected (< 6.5, no safe_mr) the retried msync to return 0 with old data on disk, got rc=$rc: $out"
	fi
}

for fs in ext4 xfs btrfs; do
	t0=$SECONDS
	setup $fs || { teardown $fs; continue; }
	vm_dmesg_mark
	for sync in msync fsync dereg; do
		run $fs preload-$sync env LD_PRELOAD="$VM_PRELOAD" "$EW" -y $sync $MNT/eio-$sync
	done
	run $fs linked-fdatasync "$EWL" -y fdatasync $MNT/eio-linked
	control $fs
	# Cold: unmount (nothing of the files stays cached), mount, read.
	if umount "$MNT" && mount -t $fs ${OPTS[$fs]} /dev/mapper/$DM "$MNT"; then
		if out=$("$EW" -V -s $SIZE "$MNT"/eio-{msync,fsync,dereg,linked} 2>&1); then
			vm_result $fs cold-remount PASS "after umount+mount every file holds the NIC's bytes"
		else
			vm_result $fs cold-remount FAIL "$(echo "$out" | grep -v '^PASS' | tr '\n' ' ')"
		fi
	else
		vm_result $fs cold-remount FAIL "umount/mount of /dev/mapper/$DM failed"
	fi
	# The device's data write errors are expected in the log (ext4 "I/O
	# error 10 writing to inode", xfs "writeback error on inode", btrfs
	# "errs: wr N"); metadata errors, shutdowns and warnings are not.
	bad=$(vm_dmesg_since | grep -E 'WARNING|BUG|Oops|csum failed|checksum error|EXT4-fs error|with errors|superblock|read-only|readonly|[Ss]hut(ting)? ?down|[Aa]bort|Corruption|metadata|BTRFS: error|IO failure' | head -n3 | tr '\n' ' ')
	[ -z "$bad" ] && vm_result $fs dmesg-clean PASS "$(vm_dmesg_since | grep -ci 'error') error lines, no WARNING/BUG/abort/shutdown" ||
		vm_result $fs dmesg-clean FAIL "kernel log: $bad"
	umount "$MNT"
	case $fs in
	ext4) out=$(e2fsck -fn /dev/mapper/$DM 2>&1) ;;
	xfs) out=$(xfs_repair -n /dev/mapper/$DM 2>&1) ;;
	btrfs) out=$(btrfs check /dev/mapper/$DM 2>&1) ;;
	esac && vm_result $fs fsck-clean PASS "$(echo "$out" | tail -n1)" ||
		vm_result $fs fsck-clean FAIL "$(echo "$out" | tail -n3 | tr '\n' ' ')"
	teardown $fs
	echo "$fs done in $((SECONDS - t0))s" >&2
done
echo $xfs_sync > /proc/sys/fs/xfs/xfssyncd_centisecs
vm_exit
