#!/bin/bash
# SPDX-License-Identifier: MIT
# vm-kernel: host (one kernel is enough here; the other and the cluster cover the rest: guest-init)
# ENOSPC before the NIC writes (SAFE_MR_RESERVE, README "Coherence model"),
# on small ext4, xfs and btrfs loop images made here (tests/vm/resv_write.c,
# a real RC RDMA WRITE over rxe0, 1 MiB sparse file):
#  (a) ext4/xfs, less free space than the range: the registration fails
#      with ENOSPC before anything is allocated (statfs shows the holes
#      cannot fit; a failed registration never gives back what it reserved,
#      issue 16) and changed nothing (size, data extents, the mapping) —
#      LD_PRELOAD ibv_reg_mr and safe_mr_file_reg (the linked
#      safe_mr_reg_mr takes the same path: tests/unit/test_reserve.c); with
#      SAFE_MR_RESERVE=off it succeeds (the control);
#  (b) ext4/xfs, enough space: register, another process fills the
#      filesystem, the NIC writes the whole range, the sync point returns 0,
#      and after a remount the file holds every byte (LD_PRELOAD + msync,
#      linked + ibv_dereg_mr, safe_mr_file_reg + safe_mr_file_sync on ext4);
#  (c) the same with SAFE_MR_RESERVE=off: the sync point fails with ENOSPC
#      (the defect the reservation removes), the data stays in the
#      registered memory, and a retry after space is freed succeeds;
#  (d) btrfs (copy-on-write: nothing reserved): the registration succeeds
#      even with too little space, the sync point reports ENOSPC, data kept,
#      retry after freeing space succeeds.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
RW=$SAFE_MR_BUILD/tests/vm/resv_write
RWL=$SAFE_MR_BUILD/tests/vm/resv_write_linked
for f in "$RW" "$RWL" "$VM_PRELOAD"; do
	[ -e "$f" ] || { vm_result - build FAIL "$f not built"; vm_exit; }
done
SIZE=1048576
PL="env LD_PRELOAD=$VM_PRELOAD"
DONE=() VERIFY=

# make_fs FS: a fresh small filesystem on a loop device, mounted at $MNT.
make_fs() {
	local fs=$1 out
	IMG=$TMPDIR/resv-$fs.img MNT=$TMPDIR/resv-$fs
	mkdir -p "$MNT"
	rm -f "$IMG"
	case $fs in
	ext4) truncate -s 16M "$IMG"; out=$(mkfs.ext4 -q -F -m 0 -E nodiscard "$IMG" 2>&1) ;;
	xfs) truncate -s 320M "$IMG"; out=$(mkfs.xfs -q -f -K "$IMG" 2>&1) ;;
	btrfs) truncate -s 128M "$IMG"; out=$(mkfs.btrfs -q -f -K "$IMG" 2>&1) ;;
	esac || { vm_result $fs mkfs FAIL "$out"; return 1; }
	mount -o loop "$IMG" "$MNT" || { vm_result $fs mount FAIL "mount -o loop $IMG"; return 1; }
}

# Fill the filesystem but for `$1` bytes (less than the range): a spare
# file written first and removed after (btrfs frees no space for a punched
# part of an extent).
fill_leaving() {
	rm -f "$MNT/spare"
	head -c "$1" /dev/zero > "$MNT/spare" && sync -f "$MNT" &&
		"$RW" -f "$MNT/filler" > /dev/null && rm "$MNT/spare" && sync -f "$MNT"
}
# syncfs of this filesystem only (a plain sync also writes the guest's disks)
unfill() { rm -f "$MNT"/filler "$MNT"/spare; sync -f "$MNT"; }

# Builtins only in what runs per case: every fork+exec of a host binary over
# 9p costs about 0.1 s under TCG.
# Seconds since $1 (an $EPOCHREALTIME) into ELAPSED; a timing line in the log.
elapsed() {
	local us=$(( ${EPOCHREALTIME/./} - ${1/./} ))
	printf -v ELAPSED '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000))
}
T=$EPOCHREALTIME
step() { elapsed $T; echo "-- $1: $ELAPSED s" >> "$VM_OUT/resv.log"; T=$EPOCHREALTIME; }

# run FS CASE WANT_RC CMD...: PASS when CMD exits WANT_RC (and, for a
# non-zero WANT_RC, prints a FAIL line matching $WANT_MSG).
run() {
	local fs=$1 case=$2 want=$3 out rc line last= res= other= t0=$EPOCHREALTIME; shift 3
	out=$("$@" 2>&1); rc=$?
	elapsed $t0
	printf '== %s %s (%s s): %s\n%s\n' $fs $case $ELAPSED "$*" "$out" >> "$VM_OUT/resv.log"
	while IFS= read -r line; do
		case $line in
		RESULT\ *) res+="${line#RESULT };" ;;
		PASS*|FAIL*) last=$line ;;
		*) other=$line ;;
		esac
	done <<< "$out"
	if [ "$rc" = "$want" ] && { [ "$want" = 0 ] || [[ $last =~ ${WANT_MSG:-.} ]]; }; then
		vm_result $fs $case PASS "$last [$res]"
	else
		vm_result $fs $case FAIL "rc=$rc (want $want): $last [$res] $other"
	fi
	[ "$rc" = 0 ] && [ "$want" = 0 ] && [ -n "$VERIFY" ] && DONE+=("$case")
	return 0
}

# After one remount (nothing cached), every file a passing case wrote holds
# the NIC's bytes (one run for all of them: each run opens rxe0, ~1 s here).
verify_all() {
	local fs=$1 c
	if ! { umount "$MNT" && mount -o loop "$IMG" "$MNT"; }; then
		vm_result $fs remount FAIL "umount/mount of $IMG failed"; return
	fi
	[ ${#DONE[@]} = 0 ] && return
	VERIFY= run $fs on-disk-after-remount 0 "$RW" -V -s $SIZE "${DONE[@]/#/$MNT/}"
	DONE=()
}

for fs in ext4 xfs; do
	t0=$SECONDS
	vm_dmesg_mark
	step "$fs start"
	make_fs $fs || continue
	step "$fs mkfs+mount"
	fill="$RW -f $MNT/filler" free="rm -f $MNT/filler && sync -f $MNT"
	# (a) less free space than the range lacks
	if fill_leaving 262144; then
		step "$fs fill_leaving"
		run $fs reg-enospc-preload 0 $PL "$RW" -e reg-enospc -s $SIZE "$MNT/a"
		run $fs reg-enospc-file-reg 0 "$RWL" -L -e reg-enospc -s $SIZE "$MNT/a"
		WANT_MSG='registration to fail with ENOSPC: it succeeded' \
			run $fs reg-enospc-control-off 2 env SAFE_MR_RESERVE=off LD_PRELOAD="$VM_PRELOAD" \
			"$RW" -e reg-enospc -s $SIZE "$MNT/a"
	else
		vm_result $fs fill FAIL "could not fill the filesystem"
	fi
	step "$fs (a)"
	rm -f "$MNT/a"; unfill
	step "$fs unfill"
	# (b) reserved at registration: a filler in between cannot take the blocks
	VERIFY=1
	run $fs fill-between-preload-msync 0 $PL "$RW" -e ok -y msync -X "$fill" -s $SIZE \
		"$MNT/fill-between-preload-msync"
	unfill
	run $fs fill-between-linked-dereg 0 "$RWL" -e ok -y dereg -X "$fill" -s $SIZE \
		"$MNT/fill-between-linked-dereg"
	unfill
	if [ $fs = ext4 ]; then	# the same engine path on xfs
		run $fs fill-between-file-reg 0 "$RWL" -L -e ok -y msync -X "$fill" -s $SIZE \
			"$MNT/fill-between-file-reg"
		unfill
	fi
	# (c) the same without the reservation: the sync point fails with
	# ENOSPC (data kept, a retry after space is freed succeeds)
	run $fs fill-between-off-enospc 0 env SAFE_MR_RESERVE=off LD_PRELOAD="$VM_PRELOAD" \
		"$RW" -e sync-enospc -y msync -X "$fill" -R "$free" -s $SIZE \
		"$MNT/fill-between-off-enospc"
	unfill
	step "$fs (b)+(c)"
	VERIFY=
	verify_all $fs
	step "$fs verify"
	vm_dmesg_clean $fs dmesg-clean
	umount "$MNT"; rm -f "$IMG"
	step "$fs dmesg+umount"
	echo "70-reserve: $fs took $((SECONDS - t0)) s" >> "$VM_OUT/resv.log"
done

# (d) btrfs: no promise; ENOSPC at the sync point, data kept, retry works.
fs=btrfs t0=$SECONDS
vm_dmesg_mark
if make_fs $fs; then
	fill="$RW -f $MNT/filler" free="rm -f $MNT/filler && sync -f $MNT"
	VERIFY=1
	if fill_leaving 262144; then
		run $fs reg-too-little-space-succeeds 0 $PL "$RW" -e sync-enospc -y msync \
			-R "$free" -s $SIZE "$MNT/reg-too-little-space-succeeds"
	else
		vm_result $fs fill FAIL "could not fill the filesystem"
	fi
	unfill
	run $fs fill-between-linked-dereg 0 "$RWL" -e sync-enospc -y dereg -X "$fill" \
		-R "$free" -s $SIZE "$MNT/fill-between-linked-dereg"
	unfill
	VERIFY=
	verify_all $fs
	vm_dmesg_clean $fs dmesg-clean
	umount "$MNT"; rm -f "$IMG"
	echo "70-reserve: $fs took $((SECONDS - t0)) s" >> "$VM_OUT/resv.log"
fi
vm_exit
