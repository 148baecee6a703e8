#!/bin/bash
# SPDX-License-Identifier: MIT
# The libfabric hook over real RDMA: tests/fabric's fi_rma_file over
# FI_PROVIDER='verbs;ofi_rxm' on Soft-RoCE, on every filesystem.
#
# ofi_rxm's verbs side connects with rdma_cm, which cannot resolve
# 127.0.0.1 over rxe0 on lo (fi_domain -61): both processes use
# VM_PAIR_IP_A on the veth pair of vm_rxe_pair (lib.sh), i.e. the rxe
# device srxa connected to itself (fi_rma_file takes one node for both).
#
# Without the hook the verbs provider pins the file pages:
#  >= 6.5: fi_mr_reg is refused with EFAULT (-14); fsdax: EOPNOTSUPP (-95)
#          on every kernel.
#  6.1:    fi_mr_reg succeeds.  The pin itself write-faults the pages, so
#          they are dirty until writeback cleans them; once cleaned, the
#          NIC's writes set no dirty bit and msync+fsync leave the OLD data
#          on disk.  The guest has periodic writeback off, so this case runs
#          with the flusher at 10 ms / expire 0 (what any system does every
#          few seconds) to clean the pages between fi_mr_reg and the
#          peer's fi_write; after fi_close(mr) the verbs provider's MR cache
#          still holds the registration, so the close proves nothing there.
# With FI_HOOK=safe_mr the pages are shadowed, the disk keeps the old data
# until the sync, and the data is on disk (O_DIRECT) after fi_close(mr)
# and after safe_mr_fi_sync (fi_rma_file asserts each step).
# Not run here: --op regv (the verbs provider takes one iovec per MR:
# fi_mr_regv returns -FI_EINVAL with or without the hook).
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
PROG=$SAFE_MR_BUILD/tests/fabric/fi_rma_file
HOOKDIR=$SAFE_MR_BUILD/fabric
for f in "$PROG" "$HOOKDIR/libsafe_mr-fi.so" "$VM_PRELOAD"; do
	[ -e "$f" ] || { vm_result - build FAIL "$f not built"; vm_exit; }
done
if ! vm_rxe_pair; then
	vm_result - rxe-pair FAIL "vm_rxe_pair: $VM_PAIR_ERR"
	vm_exit
fi
# brief §4: sockaddr_in addresses (fi_util.c asks for them); ofi_rxm sizes
# its CQ by FI_UNIVERSE_SIZE, rxe's max_cqe is below what 256 makes it.
export FI_PROVIDER='verbs;ofi_rxm' FI_RMA_NODE=$VM_PAIR_IP_A FI_UNIVERSE_SIZE=16
export FI_TEST_TIMEOUT=60
kv=$(vm_kver_num)
pkts() { cat /sys/class/infiniband/$VM_PAIR_RXE_A/ports/1/hw_counters/sent_pkts 2>/dev/null || echo 0; }

# fi_case CASE FS ENV... -- ARGS...: run fi_rma_file, PASS when it does (it
# asserts shadowing, the disk before and after each sync, the stats).
fi_case() {
	local case=$1 fs=$2 out env=(); shift 2
	while [ "$1" != -- ]; do env+=("$1"); shift; done; shift
	if out=$(env "${env[@]}" FI_TEST_DIR=$VM_MNT/$fs timeout 120 "$PROG" "$@" 2>&1); then
		vm_result $fs $case PASS "$(echo "$out" | grep -m1 'server: registrations' | tr -s ' ')"
	else
		vm_result $fs $case FAIL "$* -> $(echo "$out" | grep -m3 -E 'FAIL|signal|rror' | tr '\n' ' ')"
		echo "$out" | sed 's/^/# /' | tail -n 30
	fi
}
hook() { local c=$1 f=$2; shift 2; fi_case $c $f FI_HOOK=safe_mr FI_PROVIDER_PATH=$HOOKDIR -- "$@"; }

# raw FS: the provider alone; sets out, rc.
raw() {
	out=$(FI_TEST_DIR=$VM_MNT/$1 timeout 120 "$PROG" --op write --sync fi_sync --expect raw 2>&1)
	rc=$?
}
# with_flusher CMD...: CMD with periodic writeback every 10 ms, expire 0.
with_flusher() {
	local w=/proc/sys/vm/dirty_writeback_centisecs e=/proc/sys/vm/dirty_expire_centisecs
	local ow oe r
	ow=$(cat $w) oe=$(cat $e)
	echo 0 > $e; echo 1 > $w
	"$@"; r=$?
	echo $ow > $w; echo $oe > $e
	return $r
}

for fs in ext4 xfs btrfs dax; do
	vm_dmesg_mark
	p0=$(pkts)
	if [ $fs = dax ] || [ $kv -ge 605 ]; then
		want=-14; [ $fs = dax ] && want=-95
		raw $fs
		got=$(echo "$out" | grep -m1 'fi_mr_reg(r.domain, seg\[0\]' | sed -n 's/.*): \(-[0-9]*\) .*/\1/p')
		if [ $rc != 0 ] && [ "$got" = $want ]; then
			vm_result $fs nohook-refused PASS "fi_mr_reg of the file mapping: $(echo "$out" | grep -m1 fi_mr_reg | sed 's/.*): -/-/')"
		else
			vm_result $fs nohook-refused FAIL "want fi_mr_reg $want, rc=$rc: $(echo "$out" | grep -E 'FAIL|RAW' | head -n3 | tr '\n' ' ')"
		fi
	else
		for try in 1 2; do
			with_flusher raw $fs
			[ $rc = 0 ] && echo "$out" | grep -q 'RAW after-msync old' && break
		done
		if [ $rc = 0 ] && echo "$out" | grep -q 'RAW after-msync old'; then
			vm_result $fs nohook-lost PASS "registered; RDMA into cleaned pages, msync+fsync=0, disk has the OLD data ($(echo "$out" | grep RAW | tr '\n' ' '), try $try)"
		else
			vm_result $fs nohook-lost FAIL "rc=$rc $(echo "$out" | grep -E 'RAW|FAIL' | tr '\n' ' ')"
		fi
	fi
	for op in write read atomic mixed; do
		hook hook-$op-close $fs --op $op --sync close --expect shadow
	done
	hook hook-write-fi_sync $fs --op write --sync fi_sync --expect shadow
	# The hook and the LD_PRELOAD library together: the verbs provider's
	# ibv_reg_mr goes through the interposer and sees the hook's shadow.
	fi_case hook-with-preload $fs LD_PRELOAD=$VM_PRELOAD FI_HOOK=safe_mr FI_PROVIDER_PATH=$HOOKDIR -- \
		--op write --sync fi_sync --expect shadow
	p1=$(pkts)
	[ $p1 -gt $p0 ] && vm_result $fs on-$VM_PAIR_RXE_A PASS "$((p1 - p0)) packets sent by $VM_PAIR_RXE_A ($VM_PAIR_IP_A)" ||
		vm_result $fs on-$VM_PAIR_RXE_A FAIL "no packets counted on $VM_PAIR_RXE_A: not the veth rxe?"
	vm_dmesg_clean $fs dmesg-clean
	rm -f $VM_MNT/$fs/fi_rma_file.*
done
vm_exit
