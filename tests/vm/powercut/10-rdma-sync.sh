#!/bin/bash
# SPDX-License-Identifier: MIT
# Power cut right after msync(MS_SYNC) returns (see README.md, power-cut
# contract).  On ext4, xfs and btrfs:
#   fix-msync:  rdma_write_file under LD_PRELOAD=libsafe_mr_preload.so; the
#               NIC's data must be on the disk image after the cut;
#   premise:    (kernels < 6.5, where the registration succeeds) the same
#               without safe_mr: the image must still hold the OLD data.
# The writer stays alive (-H) so no deregistration or exit writes anything.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
step=$1
cases() { # fs name want preload?
	for fs in ext4 xfs btrfs; do
		echo "$fs fix-msync new 1"
		[ "$(vm_kver_num)" -lt 605 ] && echo "$fs premise old 0"
	done
}

case $step in
guest)
	[ -x "$VM_RWF" ] && [ -e "$VM_PRELOAD" ] || { vm_result - build FAIL "rdma_write_file or preload not built"; vm_exit; }
	while read -r fs name want pre; do
		f=$VM_MNT/$fs/pc-$name
		log=$VM_PC_OUT/$fs-$name.log
		if [ $pre = 1 ]; then
			LD_PRELOAD=$VM_PRELOAD setsid "$VM_RWF" -H -o write -y msync "$f" > "$log" 2>&1 &
		else
			setsid "$VM_RWF" -H -o write -y msync "$f" > "$log" 2>&1 &
		fi
		for i in $(seq 600); do grep -q '^HOLD' "$log" && break; kill -0 $! 2>/dev/null || break; sleep 0.1; done
		if ! grep -q '^HOLD' "$log"; then
			vm_result $fs powercut-$name FAIL "writer did not reach HOLD: $(head -n2 "$log" | tr '\n' ' ')"
			continue
		fi
		# What the NIC wrote, as the CPU sees it (the page cache / shadow):
		# taken with the writer still holding, before the cut.
		sha=$(sha256sum < "$f" | cut -d' ' -f1)
		echo "$sha $want" > "$VM_PC_OUT/$fs-$name.expect"
		vm_result $fs powercut-$name-armed PASS "$(head -n1 "$log")"
	done < <(cases)
	vm_exit
	;;
host)
	# ext4 from the host: replay the journal on a copy (e2fsck), then debugfs.
	for e in "$VM_PC_OUT"/ext4-*.expect; do
		[ -e "$e" ] || continue
		name=$(basename "$e" .expect); name=${name#ext4-}
		read -r sha want < "$e"
		img=$(mktemp); cp --sparse=always "$VM_IMG_DIR/ext4.img" "$img"
		e2fsck -fy "$img" > /dev/null 2>&1
		got=$(debugfs -R "cat /pc-$name" "$img" 2>/dev/null | sha256sum | cut -d' ' -f1)
		rm -f "$img"
		if { [ $want = new ] && [ "$got" = "$sha" ]; } || { [ $want = old ] && [ "$got" != "$sha" ]; }; then
			vm_result ext4 powercut-$name-debugfs PASS "disk image (host debugfs) holds the $want data"
		else
			vm_result ext4 powercut-$name-debugfs FAIL "disk image (host debugfs) should hold the $want data"
		fi
	done
	vm_exit
	;;
verify)
	n=0
	for e in "$VM_PC_OUT"/*.expect; do
		[ -e "$e" ] || continue
		n=$((n + 1))
		b=$(basename "$e" .expect); fs=${b%%-*}; name=${b#*-}
		read -r sha want < "$e"
		f=$VM_MNT/$fs/pc-$name
		got=$(dd if="$f" iflag=direct bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1)
		if [ ! -e "$f" ]; then
			vm_result $fs powercut-$name FAIL "file lost in the power cut"
		elif { [ $want = new ] && [ "$got" = "$sha" ]; } || { [ $want = old ] && [ "$got" != "$sha" ]; }; then
			vm_result $fs powercut-$name PASS "after the cut and recovery the file holds the $want data"
		else
			vm_result $fs powercut-$name FAIL "after the cut and recovery the file should hold the $want data"
		fi
	done
	[ $n -gt 0 ] || vm_result - powercut FAIL "no expectations in $VM_PC_OUT"
	vm_exit
	;;
esac
