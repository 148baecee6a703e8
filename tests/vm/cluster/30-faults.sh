#!/bin/bash
# SPDX-License-Identifier: MIT
# Faults in the middle of a checkpoint (tests/mpi/win_ckpt.c --hold: the
# NIC's bytes of the last round are in the window, the owner has not
# msync()ed them yet), Open MPI over UCX between n1 (6.1: safe_mr shadows
# the window) and n2, launched by Slurm with proctrack/cgroup:
#   scancel     the job is cancelled: slurmd sends SIGTERM to every task,
#               then SIGKILL to the job's cgroup after KillWait (10 s)
#   time-limit  sbatch --time=1: the same, at the limit
#   power-off   n2's qemu is killed mid-job: Slurm notices (SlurmdTimeout)
#               and kills n1's tasks; n1's changes since its last sync
#               point must be on n1's disk; after n2 boots again, its disk
#               holds what it had made durable (round 1), nothing more
#   nfs-restart the NFS server stops while the owner holds and comes back
#               while its msync (safe_mr's writeback) waits on the hard
#               mount: the msync completes and every byte is on the server
# "On disk" is read from the block device (debugfs, page cache dropped,
# no sync) for ext4, and from the server by the other node for NFS.
. "$SAFE_MR_SRC/tests/vm/cluster/lib.sh"
cl_mpi_env
PROG=$SAFE_MR_BUILD/tests/mpi/win_ckpt_ompi
SIZE=256k
L=$VM_LOCAL/ext4 N=$VM_SHARED/nfs

# wait_for PATTERN FILE SECS [COUNT]: FILE has COUNT lines matching PATTERN
wait_for() {
	local end=$((SECONDS + 2 * $3)) n	# twice SECS: a busy guest is slow
	while [ $SECONDS -lt $end ]; do
		n=$(grep -c -E "$1" "$2" 2>/dev/null)
		[ "${n:-0}" -ge "${4:-1}" ] && return 0
		sleep 0.5
	done
	return 1
}
job_gone() { # JOBID SECS: the job left the queue and no guardian is left on n1
	local i
	for i in $(seq $2); do
		squeue -h -j $1 2>/dev/null | grep -q . || { pgrep -f safe_mr-guardian > /dev/null || return 0; }
		sleep 1
	done
	return 1
}
# on_disk FILE OUT: FILE's bytes as n1's ext4 disk has them (no sync; the
# block device's cache dropped), copied to OUT.
on_disk() {
	echo 3 > /proc/sys/vm/drop_caches
	debugfs -c -R "dump ${1#$L} $2" /dev/vda > /dev/null 2>&1
}
ckpt() { # SBATCH-ARGS... -- WIN_CKPT-ARGS...: submit; prints the job id
	# (--no-requeue: a batch job on a failed node is requeued by default)
	local a=() pre=
	while [ "$1" != -- ]; do a+=("$1"); shift; done; shift
	sbatch --parsable --no-requeue -N2 -n2 "${a[@]}" --wrap "srun --mpi=pmix -K1 $PROG --size $SIZE --rounds 2 --keep $*"
}
verify() { # NODE FILE WIN_CKPT-VERIFY-ARGS...: 0 if every region checked is ok
	local n=$1 f=$2 out; shift 2
	out=$(cl_on $n $PROG --verify "$f" --size $SIZE "$@" 2>&1)
	echo "$out" >> $VM_OUT/verify.log
	echo "$out" | grep -q ' VERIFY ok' && ! echo "$out" | grep -q -E ' VERIFY bad|FAIL'
}

# --- scancel (with and without safe_mr) and the time limit, at once ----
rm -f $L/fa-* $N/fa-*
j_sc=$(ckpt -o $VM_OUT/scancel.out --export=ALL,LD_PRELOAD=$VM_PRELOAD -- --owner 0 --hold 9999 $L/fa-scancel)
j_pl=$(ckpt -o $VM_OUT/plain.out -- --owner 0 --hold 9999 $L/fa-plain)
j_tl=$(ckpt -o $VM_OUT/timelimit.out --time=1 --export=ALL,LD_PRELOAD=$VM_PRELOAD -- --owner 0 --hold 9999 $N/fa-timelimit)
t0=$SECONDS
if wait_for HOLD $VM_OUT/scancel.out 180 && wait_for HOLD $VM_OUT/plain.out 60; then
	scancel $j_sc $j_pl
	job_gone $j_sc 60; job_gone $j_pl 60
	state=$(sacct -n -X -j $j_sc -o State 2>/dev/null | head -n1 | tr -d ' ')
	on_disk $L/fa-scancel $VM_LOCAL/xfs/fa-scancel.disk
	if verify n1 $VM_LOCAL/xfs/fa-scancel.disk --owner 0 --ranks 2 --rounds 2; then
		cl_result ext4 scancel-safe_mr PASS "job $j_sc cancelled while holding round 2 unsynced (${state:-CANCELLED}): on n1's disk afterwards, written by the guardian within KillWait"
	else
		cl_result ext4 scancel-safe_mr FAIL "round 2's NIC bytes not on the disk after scancel: $(tail -n1 $VM_OUT/verify.log); $(tail -n3 $VM_OUT/scancel.out | tr '\n' ' ')"
	fi
	on_disk $L/fa-plain $VM_LOCAL/xfs/fa-plain.disk
	if verify n1 $VM_LOCAL/xfs/fa-plain.disk --owner 0 --ranks 2 --rounds 0; then
		cl_result ext4 scancel-without PASS "premise: after scancel the disk has none of the NIC's bytes, not even round 1's, which the job had msync()ed (6.1 never saw them dirty; the kill's unpin dirties the pages, and nothing writes them)"
	else
		cl_result ext4 scancel-without FAIL "want the file as it was before the job on disk: $(tail -n1 $VM_OUT/verify.log)"
	fi
else
	cl_result ext4 scancel-safe_mr FAIL "the jobs never reached the hold: $(tail -n5 $VM_OUT/scancel.out $VM_OUT/plain.out | tr '\n' ' ')"
	scancel $j_sc $j_pl
fi
if wait_for HOLD $VM_OUT/timelimit.out 60 && job_gone $j_tl 200; then
	state=$(sacct -n -X -j $j_tl -o State 2>/dev/null | head -n1 | tr -d ' ')
	if grep -q 'DUE TO TIME LIMIT' $VM_OUT/timelimit.out && verify n2 $N/fa-timelimit --owner 0 --ranks 2 --rounds 2; then
		cl_result nfs time-limit-safe_mr PASS "job $j_tl killed at its time limit (${state:-TIMEOUT}) while holding round 2 unsynced: n2 reads every NIC byte from the server afterwards ($((SECONDS - t0))s)"
	else
		cl_result nfs time-limit-safe_mr FAIL "state ${state:-?}: $(tail -n1 $VM_OUT/verify.log); $(tail -n3 $VM_OUT/timelimit.out | tr '\n' ' ')"
	fi
else
	cl_result nfs time-limit-safe_mr FAIL "the job did not hold and end: $(tail -n4 $VM_OUT/timelimit.out | tr '\n' ' ')"
	scancel $j_tl
fi

# --- the NFS server restarts while safe_mr writes back -------------------
j=$(ckpt -o $VM_OUT/nfsrestart.out --export=ALL,LD_PRELOAD=$VM_PRELOAD -- --owner 0 --hold 15 $N/fa-nfsrestart)
if wait_for HOLD $VM_OUT/nfsrestart.out 180; then
	rpc.nfsd 0; t0=$SECONDS
	sleep 25		# the hold ends at 15 s: the msync waits on the server
	rpc.nfsd -N 3 -V 4.2 --no-udp 4
	down=$((SECONDS - t0))
	wait_for 'RESULT|FAIL' $VM_OUT/nfsrestart.out 120
	scancel $j	# done, or hung in MPI_Finalize (see cl_srun_mpi)
	job_gone $j 60
	if grep -q "fa-nfsrestart RESULT ok" $VM_OUT/nfsrestart.out && verify n2 $N/fa-nfsrestart --owner 0 --ranks 2 --rounds 2; then
		cl_result nfs nfs-restart-safe_mr PASS "server down ${down}s during the owner's msync: msync returned 0 after it came back, every byte on the server (read by n2)"
	elif grep -q -E 'msync.*(error|Input/output)' $VM_OUT/nfsrestart.out; then
		cl_result nfs nfs-restart-safe_mr PASS "server down ${down}s: the msync reported the error: $(grep -m1 msync $VM_OUT/nfsrestart.out)"
	else
		cl_result nfs nfs-restart-safe_mr FAIL "$(grep -E 'RESULT|FAIL' $VM_OUT/nfsrestart.out | head -n2 | tr '\n' ' ') $(tail -n1 $VM_OUT/verify.log)"
	fi
else
	cl_result nfs nfs-restart-safe_mr FAIL "the job never held: $(tail -n4 $VM_OUT/nfsrestart.out | tr '\n' ' ')"
	scancel $j
fi

# --- n2 loses power in the middle of a job -------------------------------
cl_on n2 rm -f $L/fa-pc; rm -f $L/fa-pc
j=$(ckpt -o $VM_OUT/poweroff.out --export=ALL,LD_PRELOAD=$VM_PRELOAD -- --all --hold 9999 $L/fa-pc)
if wait_for HOLD $VM_OUT/poweroff.out 180 2; then
	touch $VM_CTL/poweroff-n2
	wait_for . $VM_CTL/poweroff-n2.done 30 || true
	t0=$SECONDS
	if job_gone $j 180; then
		state=$(sacct -n -X -j $j -o State 2>/dev/null | head -n1 | tr -d ' ')
		on_disk $L/fa-pc $VM_LOCAL/xfs/fa-pc.disk
		if verify n1 $VM_LOCAL/xfs/fa-pc.disk --all --ranks 2 --region 0 --rounds 2; then
			cl_result ext4 power-off-survivor PASS "n2 off mid-job: Slurm ended job $j (${state:-?}) after $((SECONDS - t0))s; n1's round 2 (unsynced when n2 died) is on n1's disk"
		else
			cl_result ext4 power-off-survivor FAIL "n1's round 2 not on disk: $(tail -n1 $VM_OUT/verify.log)"
		fi
	else
		cl_result ext4 power-off-survivor FAIL "job $j still there $((SECONDS - t0))s after n2 died: $(squeue -h -j $j)"
	fi
	touch $VM_CTL/boot-n2
	up=
	for i in $(seq 300); do
		sinfo -h -n n2 -o %t 2>/dev/null | grep -q -E '^(idle|mix)$' && { up=1; break; }
		sleep 1
	done
	if [ -n "$up" ] && CL_KERNEL=$(cl_kernel n2) && verify n2 $L/fa-pc --all --ranks 2 --region 1 --rounds 1; then
		cl_result ext4 power-off-rebooted PASS "n2 back in Slurm $((SECONDS - t0))s after the cut; its disk holds round 1 (its last msync) exactly"
	else
		cl_result ext4 power-off-rebooted FAIL "n2 up=${up:-no}: $(tail -n1 $VM_OUT/verify.log)"
	fi
	CL_KERNEL=
else
	cl_result ext4 power-off-survivor FAIL "the job never held: $(tail -n4 $VM_OUT/poweroff.out | tr '\n' ' ')"
	scancel $j
fi
cl_exit
