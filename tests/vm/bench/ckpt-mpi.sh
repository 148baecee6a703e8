#!/bin/bash
# SPDX-License-Identifier: MIT
# The MPI checkpoint benchmark (issue 19), in the guest: not a test, and not
# in tests/vm/checks (the vm suite never runs it).  scripts/bench-ckpt boots
# a guest for it: run-vm --checks tests/vm/bench --only 'ckpt*'.
#
# tests/mpi/ckpt_bench.c under Open MPI over UCX, as the single-guest MPI
# checks run their jobs (checks/mpi-ucx-lib.sh: rank 0, the origin, on
# srxa, rank 1, the windows' owner, on srxb, RC verbs across the veth pair,
# no shared memory), one job under LD_PRELOAD=libsafe_mr_preload.so:
# checkpoints of a window on a MAP_SHARED file mapping on ext4 (puts +
# msync) alternating with checkpoints of an anonymous window written to a
# file on the same ext4 with pwrite + fdatasync.  Every checkpoint's file is
# read back with O_DIRECT and compared.  Sizes, checkpoints per size and
# warm-up from CKPT_SIZES, CKPT_ROUNDS, CKPT_WARMUP (run-vm --env).
#
# PASS per size: the job ran, every file was right, the safe_mr window was
# shadowed, and the origin's device sent at least one packet per 4 KiB put.
# The ratio is reported, not asserted.  Raw lines: $VM_OUT/ckpt_bench.txt.
. "$SAFE_MR_SRC/tests/vm/checks/mpi-ucx-lib.sh"
PROG=$SAFE_MR_BUILD/tests/mpi/ckpt_bench_ompi
[ -x "$PROG" ] || { vm_result - build FAIL "$PROG missing (meson setup with mpicc.openmpi)"; vm_exit; }
SIZES=${CKPT_SIZES:-1M,64M,256M} ROUNDS=${CKPT_ROUNDS:-9,4,2} WARMUP=${CKPT_WARMUP:-1,0,0}
dir=$VM_MNT/ext4/ckpt
mkdir -p $dir
# Jumbo frames on the veth pair (RoCE MTU 4096, as RoCE fabrics run):
# under TCG rxe's cost is per packet, and the puts, the same in both
# variants, would otherwise be most of every checkpoint.
ip link set $VM_PAIR_NETDEV_A mtu 9000 && ip link set $VM_PAIR_NETDEV_B mtu 9000 ||
	{ vm_result - mtu FAIL "cannot set the veth pair's MTU to 9000"; vm_exit; }
sleep 1

{
	echo "kernel $VM_KERNEL"
	echo "guest_cpus $(nproc)"
	echo "guest_mem_mib $(awk '/^MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)"
	echo "fs $(grep " $VM_MNT/ext4 " /proc/mounts | cut -d' ' -f1,3,4)"
	echo "mpi $(mpirun.openmpi --version 2>&1 | head -n1)"
	echo "ucx $(dpkg-query -W -f '${Version}' libucx0 2>/dev/null)"
	echo "roce_mtu $(ibv_devinfo -d $VM_PAIR_RXE_A | sed -n 's/.*active_mtu:[[:space:]]*\([0-9]*\).*/\1/p' | head -n1)"
	echo "args --sizes $SIZES --rounds $ROUNDS --warmup $WARMUP"
} > "$VM_OUT/env.txt"

vm_dmesg_mark
t0=$SECONDS
JOB_TIMEOUT=${CKPT_TIMEOUT:-540} job ompi "$VM_PRELOAD" \
	"$PROG" --dir $dir --sizes $SIZES --rounds $ROUNDS --warmup $WARMUP
jt=$((SECONDS - t0))
echo "job_seconds $jt" >> "$VM_OUT/env.txt"
echo "$out" > "$VM_OUT/job.log"
echo "$out" | grep '^ckpt_bench: ' > "$VM_OUT/ckpt_bench.txt"

# Bytes the origin put: one window's size per checkpoint.
bytes=$(echo "$out" | awk '$2 == "CKPT" { sub("size=", "", $3); s += $3 } END { printf "%.0f", s }')
sent=${pk% *}
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
ms() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1e6 }'; }
if [ $rc = 0 ] && echo "$out" | grep -q '^ckpt_bench: DONE ok' && [ "$sent" -ge $((bytes / 4096)) ] &&
	echo "$out" | grep -q '^ckpt_bench: RESULT'; then
	echo "$out" | grep '^ckpt_bench: RESULT' | while read -r line; do
		size=$(field size "$line")
		vm_result ext4 ckpt-$((size >> 20))MiB PASS "$(field rounds "$line") checkpoints each, every file right (O_DIRECT);" \
			"safe_mr $(ms $(field safe_mr_ns "$line")) ms, by hand $(ms $(field byhand_ns "$line")) ms," \
			"ratio $(field ratio "$line") (target <= 1.05, reported); srxa sent $sent packets for $bytes bytes; job ${jt}s"
	done
else
	vm_result ext4 ckpt FAIL "rc=$rc, packets srxa/srxb $pk for $bytes bytes: $(echo "$out" | grep -m3 -E 'FAIL|rror|signal|abort' | cut -c1-200 | tr '\n' ' ')"
	dump
fi
vm_dmesg_clean - dmesg-clean
vm_exit
