#!/bin/bash
# SPDX-License-Identifier: MIT
# How a site turns the preload on, on the cluster: spank_safe_mr.so is in
# both nodes' plugstack.conf (run-cluster: "required", preload= the build's
# library).  srun --safe-mr preloads every task on both kernels; a task
# the preload cannot reach (a static program) fails with 126 on each node;
# examples/slurm/checkpoint.sbatch, submitted as a site's user would with
# two nodes and its windows on NFS, ends "ok" in every rank with safe_mr
# loaded in the batch script and the ranks.
. "$SAFE_MR_SRC/tests/vm/cluster/lib.sh"
grep -q spank_safe_mr /etc/slurm/plugstack.conf ||
	{ cl_result - plugin FAIL "spank_safe_mr.so not built (-Dslurm; apt-get install libslurm-dev)"; cl_exit; }

# Each task says whether the library is mapped in it ("$(hostname) yes").
mapped='grep -q /libsafe_mr_preload.so /proc/self/maps && echo "$(hostname) yes" || echo "$(hostname) no"'
got=$(srun -N2 -n2 --safe-mr bash -c "$mapped" 2>&1 | sort | tr '\n' ' ')
[ "$got" = "n1 yes n2 yes " ] && cl_result - srun-safe-mr PASS "srun -N2 --safe-mr: the preload is in the task on n1 and n2 ($got)" ||
	cl_result - srun-safe-mr FAIL "srun -N2 --safe-mr: '$got'"
got=$(srun -N2 -n2 bash -c "$mapped" 2>&1 | sort | tr '\n' ' ')
[ "$got" = "n1 no n2 no " ] && cl_result - srun-plain PASS "without --safe-mr no task has it ($got)" ||
	cl_result - srun-plain FAIL "srun -N2 without --safe-mr: '$got'"

out=$(srun -N2 -n2 --safe-mr /bin/busybox true 2>&1); rc=$?
n126=$(echo "$out" | grep -c 'exit code 126')
if [ $rc != 0 ] && [ "$n126" = 2 ] && echo "$out" | grep -q 'statically linked'; then
	cl_result - static-refused PASS "a static program fails closed on both nodes: $(echo "$out" | grep -m1 statically | cut -c1-120)"
else
	cl_result - static-refused FAIL "rc=$rc, $n126 tasks exited 126: $(echo "$out" | head -n3 | tr '\n' ' ')"
fi

cl_mpi_env
d=$VM_SHARED/nfs/example
rm -rf $d
j=$(cd "$SAFE_MR_SRC" && sbatch --parsable -N2 -n2 -o $VM_OUT/example.out examples/slurm/checkpoint.sbatch $d)
# Its verdict, then the job is done: Open MPI's ranks on the two kernels
# may spin in MPI_Finalize afterwards (see cl_srun_mpi).
for i in $(seq 240); do
	squeue -h -j $j 2>/dev/null | grep -q . || break
	grep -q -E '^mpi4py_memmap_put: .* RESULT ' $VM_OUT/example.out 2>/dev/null && { sleep 5; scancel $j; break; }
	sleep 1
done
out=$(cat $VM_OUT/example.out)
echo "$out" | sed 's/^/  /'
if echo "$out" | grep -q 'batch script: safe_mr loaded' && echo "$out" | grep -q '^mpi4py_memmap_put: .* RESULT ok'; then
	cl_result nfs sbatch-example PASS "examples/slurm/checkpoint.sbatch on 2 nodes, windows on NFS: $(echo "$out" | grep -m1 'RESULT ok' | cut -c1-120)"
else
	cl_result nfs sbatch-example FAIL "$(echo "$out" | tail -n4 | tr '\n' ' ')"
fi
cl_exit
