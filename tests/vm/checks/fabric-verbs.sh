#!/bin/bash
# SPDX-License-Identifier: MIT
# vm-kernel: host (one kernel is enough here; the other and the cluster cover the rest: guest-init)
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
# fi_close(mr) with the verbs MR cache (it parks registrations after
# fi_close): see cache_case below.
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

# The verbs provider's MR cache.  fi_close(mr) only parks the
# registration in ofi_mr_cache, still pinning the shadow pages; the hook
# then puts the file pages back at the same addresses.  The next
# fi_mr_reg of the range gets a NEW shadow, and must not get the parked
# registration back, else the NIC writes orphaned pages and the data is
# lost.  The cache's monitor must see the engine's page swaps (memhooks:
# libc mmap; userfaultfd: the kernel's unmap events) and drop the entry.
# fi_rma_file --op cache: 3 rounds register/write/close of one file range,
# then 3 rounds of overlapping MRs (A open while B is registered over part
# of it); after every fi_write the server's memory must hold the data (the
# NIC wrote where the CPU looks), after every fi_close the disk (O_DIRECT).
# --cache hit|miss asserts that the cache is live (or off): an anonymous
# buffer registered twice gets the same rkey back.
# cache_case FS CASE hit|miss yes|no|any ENV...: the last but one is
# whether the process holds a userfaultfd (the userfaultfd monitor runs).
cache_case() {
	local fs=$1 case=$2 probe=$3 uffd=$4 out line t0=$SECONDS; shift 4
	if out=$(env "$@" FI_HOOK=safe_mr FI_PROVIDER_PATH=$HOOKDIR FI_TEST_DIR=$VM_MNT/$fs \
		timeout 120 "$PROG" --op cache --rounds 3 --cache $probe --expect shadow 2>&1); then
		line=$(echo "$out" | grep -m1 'MR cache probe' | sed 's/^server: //')
		if [ $uffd != any ] && ! echo "$line" | grep -q "userfaultfd open: $uffd"; then
			vm_result $fs $case FAIL "${*:-default monitor}: want userfaultfd open: $uffd; $line"
		else
			vm_result $fs $case PASS "${*:-default monitor}: 6 rounds, data in memory after each fi_write and on disk after each fi_close; $line; $((SECONDS - t0))s"
		fi
	else
		vm_result $fs $case FAIL "${*:-default monitor}: $(echo "$out" | grep -m2 -E 'FAIL|signal' | tr '\n' ' ')"
		echo "$out" | sed 's/^/# /' | tail -n 30
	fi
}

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

# Controls, without the hook: fi_rma_file --self-swap does the engine's
# page swap itself (memfd copy MAP_FIXED over the file pages, written back
# and the file mapped again after fi_close).  Through a raw mmap syscall,
# which the memhooks monitor cannot see, the cache must hand round 2 the
# parked registration of round 1 and the test must report the loss --
# proof that the cache cases above can fail.  Through libc's mmap (what
# the engine does) memhooks sees the swap and nothing is lost.
swap_control() {
	local fs=$1 out rc
	out=$(FI_MR_CACHE_MONITOR=memhooks FI_TEST_DIR=$VM_MNT/$fs timeout 120 "$PROG" --op rereg \
		--rounds 3 --self-swap raw --cache hit --expect nohook 2>&1)
	rc=$?
	if [ $rc != 0 ] && echo "$out" | grep -q 'round 2 after fi_write.*DATA LOST'; then
		vm_result $fs cache-control-hidden-swap PASS "memhooks, swap by raw syscall: round 2 got round 1's parked MR ($(echo "$out" | grep -m1 -o 'round 1: rkey [0-9a-fx]*'), round 2 $(echo "$out" | grep -m1 -o 'rkey [0-9a-fx]*)' | tr -d ')')), the peer's fi_write missed the server's memory: DATA LOST detected"
	else
		vm_result $fs cache-control-hidden-swap FAIL "memhooks, swap by raw syscall: want DATA LOST in round 2, rc=$rc: $(echo "$out" | grep -E 'FAIL|rounds' | head -n2 | tr '\n' ' ')"
		echo "$out" | sed 's/^/# /' | tail -n 20
	fi
	if out=$(FI_MR_CACHE_MONITOR=memhooks FI_TEST_DIR=$VM_MNT/$fs timeout 120 "$PROG" --op rereg \
		--rounds 3 --self-swap libc --cache hit --expect nohook 2>&1); then
		vm_result $fs cache-control-libc-swap PASS "memhooks, swap by libc mmap: $(echo "$out" | grep -m1 'rounds,' | sed 's/^server: //')"
	else
		vm_result $fs cache-control-libc-swap FAIL "memhooks, swap by libc mmap: $(echo "$out" | grep -m2 FAIL | tr '\n' ' ')"
		echo "$out" | sed 's/^/# /' | tail -n 20
	fi
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
	# What depends on the filesystem is the writeback: write, mixed (write,
	# read and atomic in one MR) and fi_sync everywhere; the access kinds
	# alone, the preload and the MR cache on ext4 (and fsdax, the other
	# kind of mapping).  CI time: each run is ~8 s in the TCG guest.
	ops="write mixed"
	[ $fs = ext4 ] && ops="write read atomic mixed"
	for op in $ops; do
		hook hook-$op-close $fs --op $op --sync close --expect shadow
	done
	hook hook-write-fi_sync $fs --op write --sync fi_sync --expect shadow
	# The hook and the LD_PRELOAD library together: the verbs provider's
	# ibv_reg_mr goes through the interposer and sees the hook's shadow.
	case $fs in ext4|dax)
		fi_case hook-with-preload $fs LD_PRELOAD=$VM_PRELOAD FI_HOOK=safe_mr \
			FI_PROVIDER_PATH=$HOOKDIR -- --op write --sync fi_sync --expect shadow
		# Debian's libfabric 1.17 defaults to memhooks (no userfaultfd open).
		cache_case $fs cache-default hit any ;;
	esac
	if [ $fs = ext4 ]; then
		cache_case $fs cache-userfaultfd hit yes FI_MR_CACHE_MONITOR=userfaultfd
		cache_case $fs cache-memhooks hit no FI_MR_CACHE_MONITOR=memhooks
		cache_case $fs cache-max-count-0 miss any FI_MR_CACHE_MAX_COUNT=0
		swap_control $fs
	fi
	p1=$(pkts)
	[ $p1 -gt $p0 ] && vm_result $fs on-$VM_PAIR_RXE_A PASS "$((p1 - p0)) packets sent by $VM_PAIR_RXE_A ($VM_PAIR_IP_A)" ||
		vm_result $fs on-$VM_PAIR_RXE_A FAIL "no packets counted on $VM_PAIR_RXE_A: not the veth rxe?"
	vm_dmesg_clean $fs dmesg-clean
	rm -f $VM_MNT/$fs/fi_rma_file.*
done
vm_exit
