#!/bin/bash
# SPDX-License-Identifier: MIT
# vm-kernel: new (one kernel is enough here; the other and the cluster cover the rest: guest-init)
# Memory: a registration shadows the whole region (anonymous memory as big
# as the region, beside the file's page cache), so a job in a memory cgroup
# must not be pushed over its limit by it.  Under a cgroup v2 memory.max of
# 1.5x the region, tests/vm/resv_write (LD_PRELOAD, 32 MiB file) registers
# all of it, the NIC (a second RC QP on rxe0) RDMA-WRITEs all of it, and
# msync writes it back: it must pass (an O_DIRECT read shows every byte the
# NIC wrote) with no OOM kill in the cgroup (memory.events).  resv_write is
# both ends: the peer's source buffer (32 MiB of anonymous memory, pinned)
# is in the same process, so the limit is 1.5x the region plus that buffer.
# The control, 0.5x the region plus the buffer (less than the shadow, which
# the NIC pins), must end in an OOM kill or a failed run: the limit is
# really enforced on the process.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
RW=$SAFE_MR_BUILD/tests/vm/resv_write
[ -e "$RW" ] && [ -e "$VM_PRELOAD" ] || { vm_result - build FAIL "$RW or $VM_PRELOAD not built"; vm_exit; }
SIZE=$((32 << 20))
CG=/sys/fs/cgroup

if [ ! -e $CG/cgroup.controllers ]; then
	mount -t cgroup2 none $CG 2>/dev/null ||
		{ vm_result - cgroup2 FAIL "cannot mount cgroup2 on $CG"; vm_exit; }
fi
grep -qw memory $CG/cgroup.controllers ||
	{ vm_result - cgroup2 FAIL "no memory controller: $(cat $CG/cgroup.controllers)"; vm_exit; }
echo +memory > $CG/cgroup.subtree_control 2>/dev/null
grep -qw memory $CG/cgroup.subtree_control ||
	{ vm_result - cgroup2 FAIL "cannot enable the memory controller for children"; vm_exit; }

# field FILE NAME: the value of NAME in a flat-keyed cgroup file
field() { while read -r k v; do [ "$k" = "$2" ] && { echo "$v"; return; }; done < "$1"; echo 0; }

# run_in FS CASE LIMIT: resv_write in a fresh cgroup with memory.max LIMIT;
# sets RC, OUT, OOMK (OOM kills in the cgroup), PEAK (memory.peak if the
# kernel has it, else "-").
run_in() {
	local fs=$1 case=$2 limit=$3 g=$CG/smvm-memcg-$2-$fs
	rmdir "$g" 2>/dev/null
	mkdir "$g" || { RC=99 OUT="mkdir $g failed" OOMK=0 PEAK=-; return; }
	echo "$limit" > "$g/memory.max"
	[ -e "$g/memory.swap.max" ] && echo 0 > "$g/memory.swap.max"
	rm -f "$VM_MNT/$fs/memcg-$case"
	# The file starts cold: its page cache is charged to the cgroup.
	sync; echo 3 > /proc/sys/vm/drop_caches
	OUT=$(sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$g" \
		env LD_PRELOAD="$VM_PRELOAD" "$RW" -e ok -y msync -s $SIZE \
		"$VM_MNT/$fs/memcg-$case" 2>&1)
	RC=$?
	OOMK=$(field "$g/memory.events" oom_kill)
	PEAK=-
	[ -e "$g/memory.peak" ] && PEAK=$(( $(cat "$g/memory.peak") >> 20 ))MiB
	printf '== %s %s limit %s: rc %s, oom_kill %s, peak %s\n%s\n' "$fs" "$case" "$limit" \
		"$RC" "$OOMK" "$PEAK" "$OUT" >> "$VM_OUT/memcg.log"
	rmdir "$g" 2>/dev/null
	rm -f "$VM_MNT/$fs/memcg-$case"
}

# ext4 (journalled, in place) and btrfs (copy-on-write); xfs takes the
# ext4 path here and the suite's time is short.
for fs in ext4 btrfs; do
	vm_dmesg_mark
	run_in $fs limit-1.5x $((SIZE * 3 / 2 + SIZE))
	last=$(printf '%s\n' "$OUT" | grep -E '^(PASS|FAIL)' | tail -1)
	if [ "$RC" = 0 ] && [ "$OOMK" = 0 ]; then
		vm_result $fs register-nic-write-sync-1.5x PASS "$last (peak $PEAK)"
	else
		vm_result $fs register-nic-write-sync-1.5x FAIL \
			"rc=$RC oom_kill=$OOMK peak $PEAK: $last $(printf '%s\n' "$OUT" | tail -2 | tr '\n' ' ')"
	fi
	if [ $fs = ext4 ]; then
		run_in $fs limit-0.5x $((SIZE / 2 + SIZE))
		if [ "$RC" != 0 ] || [ "$OOMK" != 0 ]; then
			vm_result $fs control-0.5x-limited PASS "rc=$RC oom_kill=$OOMK: the limit is enforced"
		else
			vm_result $fs control-0.5x-limited FAIL "the shadow fit in half its size: the cgroup does not limit the process"
		fi
	fi
	# (the control's OOM report has none of these)
	vm_dmesg_clean $fs dmesg-clean
done
vm_exit
