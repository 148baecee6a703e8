#!/bin/bash
# SPDX-License-Identifier: MIT
# N-to-1 checkpoint: 4 Open MPI ranks over both nodes (2 per node, srun
# --mpi=pmix) each expose their own region of ONE shared NFS file
# (tests/mpi/win_ckpt.c --all: rank r maps bytes [r*S, (r+1)*S) MAP_SHARED
# and exposes them; rank r-1 puts, accumulates and gets there over UCX
# RC verbs on rxe0, across the wire for the ranks whose neighbour is on the
# other node), msync at every round.  After the job, each node reads the
# whole file back (O_DIRECT: from the server) and finds every rank's region
# complete (on the ext4 export; CL_CKPT_EXPORTS="nfs nfsx" for xfs too).  Without safe_mr the windows are refused (6.1: EOPNOTSUPP for
# NFS pages; the new kernel: EFAULT) and the job dies.
. "$SAFE_MR_SRC/tests/vm/cluster/lib.sh"
cl_mpi_env
PROG=$SAFE_MR_BUILD/tests/mpi/win_ckpt_ompi
SIZE=${CL_CKPT_SIZE:-256k} ROUNDS=2
for e in ${CL_CKPT_EXPORTS:-nfs}; do
	f=$VM_SHARED/$e/ckpt
	rm -f $f
	cl_srun_mpi $VM_OUT/job.out 180 4 -N2 -n4 --mpi=pmix -K1 $PROG --all --size $SIZE --rounds $ROUNDS --keep $f
	out=$(cat $VM_OUT/job.out); rc=$(echo "$out" | sed -n 's/^rc=//p' | tail -n1)
	if [ "$rc" != 0 ] && echo "$out" | grep -q -E 'ibv_reg_mr.*(Bad address|Operation not supported)'; then
		cl_result $e n-to-1-without PASS "premise: the job dies, its windows refused: $(echo "$out" | grep -o -m2 -E 'n[12]:[0-9]+ .*ibv_reg_mr.*(Bad address|Operation not supported)' | sed 's/ .*failed:/ ibv_reg_mr:/' | tr '\n' ' ')"
	else
		cl_result $e n-to-1-without FAIL "want the windows refused, rc=$rc: $(echo "$out" | tail -n3 | tr '\n' ' ')"
	fi
	rm -f $f
	a0=$(cl_cnt n1 rxe0 sent_pkts); b0=$(cl_cnt n2 rxe0 sent_pkts); t0=$SECONDS
	cl_srun_mpi $VM_OUT/job.out 360 4 -N2 -n4 --mpi=pmix -K1 --export=ALL,LD_PRELOAD=$VM_PRELOAD \
		$PROG --all --size $SIZE --rounds $ROUNDS --keep $f
	out=$(cat $VM_OUT/job.out); rc=$(echo "$out" | sed -n 's/^rc=//p' | tail -n1)
	a1=$(cl_cnt n1 rxe0 sent_pkts); b1=$(cl_cnt n2 rxe0 sent_pkts)
	echo "$out" | sed 's/^/  /'
	nok=$(echo "$out" | grep -c "^win_ckpt: $f RESULT ok")
	if { [ "$rc" = 0 ] || { [ "$rc" = finalize-hang ] || [ "$rc" = finalize-died ]; }; } && [ $nok = 4 ]; then
		cl_result $e n-to-1-safe_mr PASS "4 ranks, each region on disk after every msync; rxe0 packets n1 sent $((a1 - a0)), n2 sent $((b1 - b0)); $((SECONDS - t0))s$([ $rc = finalize-hang ] && echo ', then hung in MPI_Finalize (cancelled)')$([ $rc = finalize-died ] && echo ', then died in MPI_Finalize')"
	else
		cl_result $e n-to-1-safe_mr FAIL "rc=$rc, $nok of 4 owners ok: $(echo "$out" | grep -E 'RESULT|FAIL|rror' | head -n3 | tr '\n' ' ')"
	fi
	for n in n1 n2; do
		got=$(cl_on $n $PROG --verify $f --all --ranks 4 --size $SIZE --rounds $ROUNDS 2>&1)
		if [ $? = 0 ] && [ "$(echo "$got" | grep -c ' VERIFY ok')" = 4 ]; then
			cl_result $e n-to-1-read-$n PASS "after the job $n reads the whole file ($(stat -c %s $f) bytes): all 4 regions complete"
		else
			cl_result $e n-to-1-read-$n FAIL "$(echo "$got" | grep -v ' ok' | head -n2 | tr '\n' ' ')"
		fi
	done
	rm -f $f
done
cl_exit
