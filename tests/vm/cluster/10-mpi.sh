#!/bin/bash
# SPDX-License-Identifier: MIT
# Unmodified MPI across the two nodes: Open MPI 4.1 and MPICH 4.0, both
# over UCX (RC verbs on rxe0, the nodes' eth0: the bytes cross the emulated
# wire between the 6.1 and the newest kernel), launched by srun (PMIx for
# Open MPI, PMI-2 for MPICH).  A two-rank job (rank 0 on n1, rank 1 on n2):
# the window's owner exposes one window per file (tests/mpi/win_ckpt.c),
# on the NFS exports (nfs: ext4 on the server, nfsx: xfs) and on its own
# node-local ext4 xfs btrfs dax; the other rank puts, accumulates and gets;
# the owner msync()s and reads its files back with O_DIRECT.  The owner is
# first rank 0 (Linux 6.1), then rank 1 (the newest kernel).
#
# Without safe_mr: 6.1 loses the NIC's bytes (dax: EOPNOTSUPP), the new
# kernel refuses every window (EFAULT; dax EOPNOTSUPP).  With the preload
# (srun --export=...,LD_PRELOAD): every byte on disk, and after the job the
# other node reads the NIC's bytes from the NFS files.  Each line carries
# the rxe0 packets the job sent from the origin's node and received on the
# owner's.
. "$SAFE_MR_SRC/tests/vm/cluster/lib.sh"
FS_ALL="nfs nfsx ext4 xfs btrfs dax"
SIZE=${CL_MPI_SIZE:-256k} ROUNDS=${CL_MPI_ROUNDS:-2}
export UCX_TLS=rc_verbs,ud_verbs,self UCX_UD_ETH_DGID_CHECK=n UCX_NET_DEVICES=rxe0:1
export UCX_RNDV_THRESH=16k UCX_WARN_UNUSED_ENV_VARS=n MPIR_CVAR_NOLOCAL=1
export OMPI_MCA_pml=ucx OMPI_MCA_osc=ucx OMPI_MCA_btl=self OMPI_MCA_pml_ucx_devices=rxe0
for m in ompi mpich; do
	[ -x "$SAFE_MR_BUILD/tests/mpi/win_ckpt_$m" ] ||
		{ cl_result - build FAIL "tests/mpi/win_ckpt_$m missing (apt-get install libopenmpi-dev libmpich-dev)"; cl_exit; }
done

path() { # FS TAG
	case $1 in nfs|nfsx) echo $VM_SHARED/$1/$2 ;; *) echo $VM_LOCAL/$1/$2 ;; esac
}
pmi() { case $1 in ompi) echo pmix ;; mpich) echo pmi2 ;; esac; }

# srun_job MPI OWNER PRELOAD OUTFILE FS...: one srun job (2 ranks, one
# per node; a task that dies takes the other down: -K1; cl_srun_mpi).
srun_job() {
	local mpi=$1 own=$2 pre=$3 o=$4 fs p=() exp=ALL lim=100; shift 4
	for fs in "$@"; do p+=("$(path $fs wc-$mpi-$own)"); done
	[ "$pre" != - ] && { exp="ALL,LD_PRELOAD=$pre"; lim=240; }
	cl_srun_mpi $o $lim 2 -N2 -n2 --mpi=$(pmi $mpi) --export="$exp" -K1 \
		"$SAFE_MR_BUILD/tests/mpi/win_ckpt_$mpi" --owner $own --size $SIZE --rounds $ROUNDS --keep "${p[@]}"
}
# run_job MPI OWNER PRELOAD FS...: srun_job in the foreground; sets out,
# rc, pk (rxe0 packets sent by the origin's node / received by the
# owner's), secs.
run_job() {
	local mpi=$1 own=$2 pre=$3 on=n1 org=n2 s0 r0 s1 r1 t0=$SECONDS; shift 3
	[ $own = 1 ] && { on=n2; org=n1; }
	s0=$(cl_cnt $org rxe0 sent_pkts); r0=$(cl_cnt $on rxe0 rcvd_pkts)
	srun_job $mpi $own "$pre" $VM_OUT/job.out "$@"
	s1=$(cl_cnt $org rxe0 sent_pkts); r1=$(cl_cnt $on rxe0 rcvd_pkts)
	out=$(cat $VM_OUT/job.out); rc=$(echo "$out" | sed -n 's/^rc=//p' | tail -n1)
	pk="$((s1 - s0))/$((r1 - r0))"
	secs=$((SECONDS - t0))
	report $mpi $own "$pre" "$*"
}
report() { echo "== $1 owner=$2 preload=$3 fs=$4 rc=$rc packets ${pk:-?} ${secs:-?}s"; echo "$out" | sed 's/^/  /' | tail -n 25; }
verdict() { # MPI OWNER FS: the owner's RESULT word for FS's window
	echo "$out" | grep -m1 -E "^win_ckpt: $(path $3 wc-$1-$2) RESULT " | sed 's/.* RESULT \([a-z]*\).*/\1/'
}
why() { echo "$out" | grep -m2 -E 'FAIL|rror|Bad address|not supported|refused|signal|abort' | cut -c1-160 | tr '\n' ' '; }

# What each kernel does with the window without safe_mr: 6.1 accepts the
# registration of NFS, ext4, xfs and btrfs pages and loses the NIC's
# bytes; the new kernel refuses them with EFAULT; fsdax is refused with
# EOPNOTSUPP on both.
expect() { # KV FS -> "lost" or "refused ERRNO-TEXT"
	case $2 in
	dax) echo "refused Operation not supported" ;;
	*) [ $1 -ge 605 ] && echo "refused Bad address" || echo lost ;;
	esac
}
premise_line() { # MPI OWNER FS KV
	local v want err
	v=$(verdict $1 $2 $3); [ -z "$v" ] && v=died
	want=$(expect $4 $3); err=${want#refused }
	if [ "$want" = lost ] && [ "$v" = lost ]; then
		cl_result $3 $1-owner$2-without PASS "premise: LOST after msync ($(echo "$out" | grep -m1 "$(path $3 wc-$1-$2) RESULT" | grep -o 'disk_missing=[0-9]*')); rxe0 packets $pk"
	elif [ "${want%% *}" = refused ] && { [ "$v" = refused ] || [ "$v" = died ]; } && echo "$out" | grep -q "ibv_reg_mr.*$err"; then
		cl_result $3 $1-owner$2-without PASS "premise: window refused, ibv_reg_mr: $err$([ $v = died ] && echo ', the job died of it')"
	else
		cl_result $3 $1-owner$2-without FAIL "want $want, got '$v' rc=$rc: $(why)"
	fi
}

# mpi_owner MPI OWNER: the premise (each window the kernel refuses in a
# job of its own, those jobs at once: Open MPI dies after a refused
# MPI_Win_create; the others together), then the job under the preload,
# then the other node's read of the NFS files.
mpi_owner() {
	local mpi=$1 own=$2 fs v got min other=n2 kv lost=() refd=() pids=()
	[ $own = 1 ] && other=n1
	CL_KERNEL=$(cl_kernel n$((own + 1)))
	kv=$(VM_KERNEL=$CL_KERNEL vm_kver_num)
	for fs in $FS_ALL; do
		[ "$(expect $kv $fs)" = lost ] && lost+=($fs) || refd+=($fs)
	done
	local on=n$((own + 1)) s0 r0 t0=$SECONDS
	s0=$(cl_cnt $other rxe0 sent_pkts); r0=$(cl_cnt $on rxe0 rcvd_pkts)
	for fs in "${refd[@]}"; do
		srun_job $mpi $own - $VM_OUT/job-$fs.out $fs &
		pids+=($!)
	done
	[ ${#lost[@]} -gt 0 ] && { srun_job $mpi $own - $VM_OUT/job-lost.out "${lost[@]}" & pids+=($!); }
	wait "${pids[@]}"
	pk="$(( $(cl_cnt $other rxe0 sent_pkts) - s0 ))/$(( $(cl_cnt $on rxe0 rcvd_pkts) - r0 )) (all premise jobs)"
	secs=$((SECONDS - t0))
	for fs in "${refd[@]}"; do
		out=$(cat $VM_OUT/job-$fs.out); rc=$(echo "$out" | sed -n 's/^rc=//p' | tail -n1)
		report $mpi $own - $fs
		premise_line $mpi $own $fs $kv
	done
	if [ ${#lost[@]} -gt 0 ]; then
		out=$(cat $VM_OUT/job-lost.out); rc=$(echo "$out" | sed -n 's/^rc=//p' | tail -n1)
		report $mpi $own - "${lost[*]}"
		for fs in "${lost[@]}"; do premise_line $mpi $own $fs $kv; done
	fi
	cl_on n$((own + 1)) rm -f $(for fs in $FS_ALL; do path $fs wc-$mpi-$own; done)

	run_job $mpi $own "$VM_PRELOAD" $FS_ALL
	min=$(( $(numfmt --from=iec ${SIZE^^}) / 4096 ))
	for fs in $FS_ALL; do
		v=$(verdict $mpi $own $fs)
		if { [ "$rc" = 0 ] || [ "$rc" = finalize-hang ]; } && [ "$v" = ok ] && [ ${pk%/*} -ge $min ] && [ ${pk#*/} -ge $min ]; then
			cl_result $fs $mpi-owner$own-safe_mr PASS "every byte on disk after msync and after MPI_Win_free; rxe0 packets ${pk} (origin sent/owner received), job ${secs}s$([ $rc = finalize-hang ] && echo ', then hung in MPI_Finalize (cancelled)')"
		else
			cl_result $fs $mpi-owner$own-safe_mr FAIL "got '$v' rc=$rc packets $pk: $(why)"
		fi
	done
	for fs in nfs nfsx; do
		got=$(cl_on $other "$SAFE_MR_BUILD/tests/mpi/win_ckpt_$mpi" --verify "$(path $fs wc-$mpi-$own)" \
			--owner $own --ranks 2 --size $SIZE --rounds $ROUNDS 2>&1)
		if [ $? = 0 ] && echo "$got" | grep -q ' VERIFY ok'; then
			cl_result $fs $mpi-owner$own-other-node PASS "after the job $other reads every NIC byte from the NFS file"
		else
			cl_result $fs $mpi-owner$own-other-node FAIL "$other: $(echo "$got" | tail -n1)"
		fi
	done
	cl_on n$((own + 1)) rm -f $(for fs in $FS_ALL; do path $fs wc-$mpi-$own; done)
}

for mpi in ${CL_MPIS:-ompi mpich}; do
	for own in 0 1; do
		mpi_owner $mpi $own
	done
done
cl_exit
