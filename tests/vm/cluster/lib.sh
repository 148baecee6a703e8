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

# cl_on NODE CMD...: run CMD on NODE (n1 runs it here) as a one-task step.
cl_on() {
	local n=$1; shift
	if [ "$n" = "$VM_NODE" ]; then "$@"; else srun -Q -N1 -n1 -w "$n" "$@"; fi
}
# cl_cnt NODE DEV COUNTER: an rxe/siw port counter on NODE.
cl_cnt() { cl_on $1 cat /sys/class/infiniband/$2/ports/1/hw_counters/$3 2>/dev/null || echo 0; }
# cl_kernel NODE: uname -r there.
cl_kernel() { cl_on $1 uname -r; }
