# SPDX-License-Identifier: MIT
# Helpers for the cluster checks (sourced; contract in tests/vm/README.md,
# "The cluster").  They run as root on n1; other nodes are reached through
# Slurm (cl_on), as a site's scripts would.
. "$SAFE_MR_SRC/tests/vm/lib.sh"
VM_CHECK=${VM_CHECK:-$(basename "$0" .sh)}
unset LD_PRELOAD

# cl_result FS CASE PASS|FAIL DETAIL...: the kernel field is the node's
# kernel the case is about (CL_KERNEL, default n1's).
cl_result() {
	local fs=$1 case=$2 r=$3; shift 3
	echo "VMRESULT $VM_CHECK ${CL_KERNEL:-$VM_KERNEL} $fs $case $r $*"
	[ "$r" = PASS ] || VM_FAILS=$((VM_FAILS + 1))
}
cl_exit() { exit $((VM_FAILS > 0)); }
# cl_known BUG FS CASE OK(0|1) DETAIL...: a case that fails because of a
# known, open bug: XFAIL while it fails; PASS, saying the bug was not
# seen, when it passes (a failing suite for a bug that did not show is
# noise; the line tells whoever fixes it).
cl_known() {
	local bug=$1 fs=$2 case=$3 ok=$4; shift 4
	if [ "$ok" = 0 ]; then
		cl_result "$fs" "$case" PASS "(known bug $bug not seen this time) $*"
	else
		echo "VMRESULT $VM_CHECK ${CL_KERNEL:-$VM_KERNEL} $fs $case XFAIL $bug: $*"
	fi
}

# cl_on NODE CMD...: run CMD on NODE (n1 runs it here) as a one-task step.
cl_on() {
	local n=$1; shift
	if [ "$n" = "$VM_NODE" ]; then "$@"; else srun -Q -N1 -n1 -w "$n" "$@"; fi
}
# cl_cnt NODE DEV COUNTER: an rxe/siw port counter on NODE.
cl_cnt() { cl_on $1 cat /sys/class/infiniband/$2/ports/1/hw_counters/$3 2>/dev/null || echo 0; }
# cl_kernel NODE: uname -r there.
cl_kernel() { cl_on $1 uname -r; }

# cl_srun_mpi OUTFILE LIMIT NRANKS SRUN-ARGS...: an MPI job step run with
# srun; its output in OUTFILE, then "rc=N".  Open MPI and MPICH over UCX
# between the 6.1 and the new kernel's rxe sometimes never leave
# MPI_Finalize (a rank spins in UCX's teardown after the other left; seen
# with and without safe_mr): once all NRANKS said "entering MPI_Finalize"
# (tests/mpi/win_ckpt.c), the step gets 10 s, then it is cancelled and the
# status is "rc=finalize-hang".  Everything the check judges was printed
# before.
# LIMIT is wall-clock seconds ($SECONDS): counting loop turns made it
# five times longer in a busy TCG guest, where each turn's grep is slow
# (an MPICH job that hangs at a refused window waited 8 minutes).
# CL_MPI_REFUSED (an extended regex): once the output matches it (the
# premise jobs: UCX's "ibv_reg_mr(...) failed: Bad address"), the step gets
# 10 s, then it is cancelled and the status is "rc=refused-hang": MPICH's
# ranks wait forever for the refused one (Open MPI's die by themselves).
cl_srun_mpi() {
	local o=$1 lim=$2 n=$3 pid end fin= ref= rc; shift 3
	srun "$@" > $o 2>&1 &
	pid=$!
	end=$((SECONDS + lim))
	while [ $SECONDS -lt $end ]; do
		kill -0 $pid 2>/dev/null || break
		if [ -z "$fin" ] && [ "$(grep -c 'entering MPI_Finalize' $o)" -ge $n ]; then fin=$SECONDS; fi
		if [ -n "$fin" ] && [ $((SECONDS - fin)) -ge 10 ]; then
			kill -TERM $pid; sleep 1; kill -TERM $pid 2>/dev/null
			wait $pid 2>/dev/null; echo "rc=finalize-hang" >> $o; return 0
		fi
		if [ -z "$ref" ] && [ -n "${CL_MPI_REFUSED:-}" ] && grep -q -E "$CL_MPI_REFUSED" $o; then
			ref=$SECONDS
		fi
		if [ -n "$ref" ] && [ $((SECONDS - ref)) -ge 10 ]; then
			kill -TERM $pid; sleep 1; kill -KILL $pid 2>/dev/null
			wait $pid 2>/dev/null; echo "rc=refused-hang" >> $o; return 0
		fi
		sleep 0.5
	done
	if kill -0 $pid 2>/dev/null; then
		kill -TERM $pid; sleep 1; kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
		echo "rc=124" >> $o; return 0
	fi
	wait $pid; rc=$?
	# Died in MPI_Finalize after every rank got there (UCX's teardown on rxe
	# once aborted on an assertion, Open MPI, 7.3): like the spin above.
	if [ $rc != 0 ] && [ "$(grep -c 'entering MPI_Finalize' $o)" -ge $n ]; then
		echo "rc=finalize-died" >> $o; return 0
	fi
	echo "rc=$rc" >> $o
}

# cl_mpi_env: the ranks' environment (srun passes it on): UCX over RC verbs
# on rxe0 (UD for its wire-up, whose DGID check rxe fails, brief §6), no
# shared memory, Open MPI's pml/osc ucx on rxe; TCG guests are slow, so
# UD's peer timeout is long (the default killed a job now and then).
cl_mpi_env() {
	export UCX_TLS=rc_verbs,ud_verbs,self UCX_UD_ETH_DGID_CHECK=n UCX_NET_DEVICES=rxe0:1
	export UCX_RNDV_THRESH=16k UCX_WARN_UNUSED_ENV_VARS=n UCX_UD_TIMEOUT=600s MPIR_CVAR_NOLOCAL=1
	export OMPI_MCA_pml=ucx OMPI_MCA_osc=ucx OMPI_MCA_btl=self OMPI_MCA_pml_ucx_devices=rxe0
}
