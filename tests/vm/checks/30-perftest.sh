#!/bin/bash
# SPDX-License-Identifier: MIT
# vm-kernel: new (one kernel is enough here; the other and the cluster cover the rest: guest-init)
# Real clients nobody here wrote: perftest's ib_write_bw, ib_read_bw and
# ib_atomic_bw, server with --mmap=FILE (a MAP_SHARED file mapping) on each
# filesystem, with and without safe_mr, client on anonymous memory, both on
# rxe0 over 127.0.0.1.  With safe_mr: the run passes, and afterwards the file
# on disk (O_DIRECT) equals what the server's CPU saw (buffered read) and
# holds the NIC's changes.  Bandwidth goes to $VM_OUT/bw.tsv for bench-vm.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
[ -e "$VM_PRELOAD" ] || { vm_result - build FAIL "$VM_PRELOAD not built"; vm_exit; }
gid=$(grep -l "0000:0000:0000:0000:0000:ffff:7f00:0001" /sys/class/infiniband/$VM_RXE/ports/1/gids/* 2>/dev/null | head -n1)
[ -n "$gid" ] || { vm_result - gid FAIL "no 127.0.0.1 GID on $VM_RXE"; vm_exit; }
gid=$(basename $gid)
tsv=$VM_OUT/bw.tsv
: > $tsv
ITERS=${VM_PERF_ITERS:-200}
SIZE=65536
port=18600

# perf TEST FS MODE: MODE anon (no --mmap), file (no safe_mr), safe_mr
perf() {
	local t=$1 fs=$2 mode=$3 f= srv_env=() mm=() out rc bw
	port=$((port + 1))
	if [ $mode != anon ]; then
		f=$VM_MNT/$fs/perf-$t
		head -c 8388608 /dev/zero | tr '\0' '\253' > $f; sync $f
		mm=(--mmap=$f)
	fi
	[ $mode = safe_mr ] && srv_env=(LD_PRELOAD=$VM_PRELOAD SAFE_MR_STATS=1)
	local args=(-d $VM_RXE -x $gid -s $SIZE -n $ITERS -F -p $port)
	[ $t = ib_atomic_bw ] && args=(-d $VM_RXE -x $gid -n $ITERS -F -p $port)
	env "${srv_env[@]}" timeout 120 $t "${args[@]}" "${mm[@]}" > $TMPDIR/srv.log 2>&1 &
	local spid=$!
	for i in $(seq 100); do
		out=$(timeout 120 $t "${args[@]}" 127.0.0.1 2>&1) && break
		kill -0 $spid 2>/dev/null || break
		sleep 0.3
	done
	wait $spid; rc=$?
	bw=$(echo "$out" | awk '$1 ~ /^[0-9]+$/ && NF >= 4 {v=$4} END {print v}')
	if [ $rc != 0 ] || [ -z "$bw" ]; then
		if [ $mode = file ] && [ "$(vm_kver_num)" -ge 605 -o $fs = dax ]; then
			# the kernel refuses the pin: that is its documented behaviour
			if grep -qi "Couldn't allocate MR\|register\|Bad address\|not supported" $TMPDIR/srv.log; then
				vm_result $fs $t-$mode PASS "kernel refused the registration (as expected): $(grep -im1 'mr\|register' $TMPDIR/srv.log)"
			else
				vm_result $fs $t-$mode FAIL "expected a refused registration: rc=$rc $(tail -n2 $TMPDIR/srv.log | tr '\n' ' ')"
			fi
		else
			vm_result $fs $t-$mode FAIL "rc=$rc client: $(echo "$out" | tail -n2 | tr '\n' ' ') server: $(tail -n2 $TMPDIR/srv.log | tr '\n' ' ')"
		fi
		return
	fi
	printf '%s\t%s\t%s\t%s\t%s\n' "$VM_KERNEL" $t $fs $mode $bw >> $tsv
	local detail="$bw MB/s"
	if [ $mode = safe_mr ]; then
		local st; st=$(grep -m1 'safe_mr: stats' $TMPDIR/srv.log)
		[[ $st =~ shadowed=[1-9] ]] || { vm_result $fs $t-$mode FAIL "no shadowed registration: '$st'"; return; }
		# durable = what the CPU saw; and the NIC changed it (write/atomic)
		local a b ch
		a=$(dd if=$f iflag=direct bs=1M 2>/dev/null | sha256sum)
		b=$(sha256sum < $f)
		ch=$(cmp -l $f <(head -c 8388608 /dev/zero | tr '\0' '\253') 2>/dev/null | wc -l)
		if [ "$a" != "$b" ]; then
			vm_result $fs $t-$mode FAIL "O_DIRECT read differs from the page cache after the run"; return
		fi
		if [ $t != ib_read_bw ] && [ "$ch" -eq 0 ]; then
			vm_result $fs $t-$mode FAIL "the file does not hold the NIC's writes"; return
		fi
		detail="$detail, file durable, $ch bytes changed by the NIC"
	fi
	vm_result $fs $t-$mode PASS "$detail"
	[ -n "$f" ] && rm -f $f
}

for t in ib_write_bw ib_read_bw ib_atomic_bw; do
	perf $t - anon
	# Writes reach the file on every filesystem; reads and atomics are the
	# same shadow whatever the file system: ext4 and fsdax (CI time).
	fss="ext4 xfs btrfs dax"
	[ $t = ib_write_bw ] || fss="ext4 dax"
	for fs in $fss; do
		perf $t $fs safe_mr
		[ $t = ib_write_bw ] && perf $t $fs file
	done
done
vm_exit
