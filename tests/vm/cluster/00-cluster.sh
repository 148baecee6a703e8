#!/bin/bash
# SPDX-License-Identifier: MIT
# The cluster itself (run-cluster): both nodes in Slurm, srun -N2 across
# them, sbatch and salloc, PMIx, the two kernels, rxe and siw on each
# node's eth0 and RoCE traffic really crossing the link (perftest's
# ib_write_bw from n2 to n1, rxe packet counters on both ends), the NFS
# export seen by both nodes at the same path.
. "$SAFE_MR_SRC/tests/vm/cluster/lib.sh"

out=$(srun -N2 -n2 -l uname -r 2>&1)
k1=$(echo "$out" | sed -n 's/^0: //p'); k2=$(echo "$out" | sed -n 's/^1: //p')
if [ -n "$k1" ] && [ -n "$k2" ] && [ "${k1%%.*}" = 6 ] && [ "$k1" != "$k2" ]; then
	cl_result - srun-N2 PASS "srun -N2: n1 runs $k1, n2 runs $k2"
else
	cl_result - srun-N2 FAIL "srun -N2 uname -r: $(echo "$out" | tr '\n' ' ')"
fi
mpis=$(srun --mpi=list 2>&1 | tr '\n' ' ')
case $mpis in *pmix*) cl_result - pmix PASS "srun --mpi=list: $mpis" ;; *) cl_result - pmix FAIL "no pmix in srun --mpi=list: $mpis" ;; esac

job=$(sbatch --parsable -N2 -o $VM_OUT/sbatch-%j.out --wrap 'srun -N2 hostname | sort | tr "\n" " "')
for i in $(seq 60); do squeue -h -j "$job" 2>/dev/null | grep -q . || break; sleep 1; done
got=$(cat $VM_OUT/sbatch-$job.out 2>/dev/null)
[ "$got" = "n1 n2 " ] && cl_result - sbatch PASS "sbatch -N2 job $job: $got" ||
	cl_result - sbatch FAIL "sbatch -N2 job $job wrote '$got'"
got=$(salloc -N2 srun hostname 2>/dev/null | sort | tr '\n' ' ')
[ "$got" = "n1 n2 " ] && cl_result - salloc PASS "salloc -N2 srun: $got" || cl_result - salloc FAIL "salloc -N2 srun: '$got'"

for n in n1 n2; do
	d=$(cl_on $n ls /sys/class/infiniband | tr '\n' ' ')
	[ "$d" = "rxe0 siw0 " ] && cl_result - devices-$n PASS "$n: rxe0 on eth0, siw0 on eth1" || cl_result - devices-$n FAIL "$n: '$d' (want rxe0 siw0)"
done

# RoCE between the kernels: ib_write_bw server on n1, client on n2.
a0=$(cl_cnt n1 rxe0 rcvd_pkts); b0=$(cl_cnt n2 rxe0 sent_pkts)
(timeout 60 ib_write_bw -d rxe0 -s 65536 -n 50 -F > $VM_OUT/bw-server.log 2>&1 &)
sleep 2
cl_on n2 timeout 60 ib_write_bw -d rxe0 -s 65536 -n 50 -F 10.99.0.1 > $VM_OUT/bw-client.log 2>&1
rc=$?
a1=$(cl_cnt n1 rxe0 rcvd_pkts); b1=$(cl_cnt n2 rxe0 sent_pkts)
if [ $rc = 0 ] && [ $((a1 - a0)) -ge 800 ] && [ $((b1 - b0)) -ge 800 ]; then
	cl_result - rxe-wire PASS "ib_write_bw n2->n1: n2 rxe0 sent $((b1 - b0)), n1 rxe0 received $((a1 - a0)) packets"
else
	cl_result - rxe-wire FAIL "ib_write_bw n2->n1 rc=$rc, n2 sent $((b1 - b0)), n1 received $((a1 - a0)): $(tail -n2 $VM_OUT/bw-client.log | tr '\n' ' ')"
fi

for e in nfs nfsx; do
	echo "from n1 $RANDOM" > $VM_SHARED/$e/hello
	want=$(cat $VM_SHARED/$e/hello)
	got=$(cl_on n2 cat $VM_SHARED/$e/hello)
	[ "$got" = "$want" ] && cl_result $e nfs-shared PASS "n2 reads n1's write at $VM_SHARED/$e ($(cl_on n2 grep " $VM_SHARED/$e " /proc/mounts | cut -d' ' -f1,3))" ||
		cl_result $e nfs-shared FAIL "n2 read '$got', want '$want'"
done
cl_exit
