#!/bin/bash
# SPDX-License-Identifier: MIT
# The libfabric hook over real RDMA: tests/fabric's fi_rma_file over
# FI_PROVIDER='verbs;ofi_rxm' on rxe0, on every filesystem.
# Without the hook the verbs provider pins the file pages: on >= 6.5 the
# registration is refused (EFAULT; fsdax: EOPNOTSUPP everywhere), on 6.1
# it succeeds and msync/fsync leave the old data on disk.  With
# FI_HOOK=safe_mr the registration works and the data reaches the disk at
# safe_mr_fi_sync and at fi_close (checked with O_DIRECT).
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
PROG=$SAFE_MR_BUILD/tests/fabric/fi_rma_file
HOOKDIR=$SAFE_MR_BUILD/fabric
for f in "$PROG" "$HOOKDIR/libsafe_mr-fi.so" "$VM_PRELOAD"; do
	[ -e "$f" ] || { vm_result - build FAIL "$f not built"; vm_exit; }
done
# brief §4: rdma_cm/rdma_ucm loaded by guest-init; sockaddr_in addresses;
# ofi_rxm sizes its CQ by FI_UNIVERSE_SIZE, rxe's max_cqe is smaller than
# the default 256 makes it.
# FI_RMA_NODE empty: with FI_SOURCE 127.0.0.1, rxm's core lookup fails in
# rdma_resolve_addr (EINVAL) on rxe over lo.
export FI_PROVIDER='verbs;ofi_rxm' FI_RMA_NODE= FI_UNIVERSE_SIZE=16
export FI_TEST_TIMEOUT=120
kv=$(vm_kver_num)

# hook CASE FS ARGS...: with the hook, fi_rma_file must PASS and the engine
# must have shadowed (fi_rma_file checks both and the bytes shadowed).
hook() {
	local case=$1 fs=$2 out; shift 2
	if out=$(FI_HOOK=safe_mr FI_PROVIDER_PATH=$HOOKDIR FI_TEST_DIR=$VM_MNT/$fs \
		 "$PROG" "$@" 2>&1); then
		vm_result $fs $case PASS "$(echo "$out" | grep -m1 'server: registrations' | tr -s ' ')"
	else
		vm_result $fs $case FAIL "$(echo "$out" | grep -m2 FAIL | tr '\n' ' ')"
	fi
}

for fs in ext4 xfs btrfs dax; do
	vm_dmesg_mark
	# Without the hook: what the kernel does with the pinned file pages.
	out=$(FI_LOG_LEVEL=warn FI_TEST_DIR=$VM_MNT/$fs "$PROG" --op write --sync fi_sync --expect raw 2>&1); rc=$?
	[ $rc = 0 ] || echo "$out" | sed 's/^/# /' | head -n 20	# libfabric's reasons, for the log
	if [ $fs = dax ] || [ $kv -ge 605 ]; then
		# Registration must be refused (EFAULT; fsdax EOPNOTSUPP).
		if [ $rc != 0 ] && echo "$out" | grep -q 'fi_mr_reg(r.domain, seg\[0\]'; then
			vm_result $fs nohook-refused PASS "$(echo "$out" | grep -m1 fi_mr_reg | sed 's/.*: -/-/')"
		else
			vm_result $fs nohook-refused FAIL "rc=$rc $(echo "$out" | tail -n2 | tr '\n' ' ')"
		fi
	else
		# 6.1: registers, RDMA lands in the pinned page, msync+fsync
		# return 0 and the disk keeps the old data.
		if [ $rc = 0 ] && echo "$out" | grep -q 'RAW after-msync old'; then
			vm_result $fs nohook-lost PASS "registered; after msync+fsync the disk has the OLD data"
		else
			vm_result $fs nohook-lost FAIL "rc=$rc $(echo "$out" | grep -E 'RAW|FAIL' | tr '\n' ' ')"
		fi
	fi
	for op in write read atomic mixed; do
		hook hook-$op-close $fs --op $op --sync close --expect shadow
	done
	hook hook-write-fi_sync $fs --op write --sync fi_sync --expect shadow
	hook hook-regv $fs --op regv --sync fi_sync --expect shadow
	# The hook and the LD_PRELOAD library together: the verbs provider's
	# ibv_reg_mr goes through the interposer and sees the hook's shadow.
	out=$(LD_PRELOAD=$VM_PRELOAD FI_HOOK=safe_mr FI_PROVIDER_PATH=$HOOKDIR \
	      FI_TEST_DIR=$VM_MNT/$fs "$PROG" --op write --sync fi_sync --expect shadow 2>&1) &&
		vm_result $fs hook-with-preload PASS "$(echo "$out" | grep -m1 'server: registrations' | tr -s ' ')" ||
		vm_result $fs hook-with-preload FAIL "$(echo "$out" | grep -m2 FAIL | tr '\n' ' ')"
	vm_dmesg_clean $fs dmesg-clean
	rm -f $VM_MNT/$fs/fi_rma_file.*
done
vm_exit
