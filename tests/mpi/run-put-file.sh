#!/bin/sh
# SPDX-License-Identifier: MIT
# run-put-file.sh MODE MPIRUN PUT_FILE DATA_FILE [FABRIC_DIR [PRELOAD_LIB]]
#
# Runs the unmodified MPI program put_file with two Open MPI ranks whose
# one-sided traffic (osc/rdma) goes through btl/ofi, i.e. libfabric:
#   nohook        plain libfabric
#   hook          FI_HOOK=safe_mr (FI_PROVIDER_PATH=FABRIC_DIR)
#   hook-preload  FI_HOOK=safe_mr plus LD_PRELOAD=PRELOAD_LIB (msync etc.)
# and checks put_file's verdict and, with the hook, rank 0's stats line.
#
# Provider: "sockets" on 127.0.0.1 (TCP sockets).  Not "tcp": libfabric
# 1.17's tcp provider is FI_EP_MSG only, its RDM form is "tcp;ofi_rxm", and
# Open MPI 4.1's btl/ofi rejects every provider whose name contains
# "ofi_rxm" (validate_info: no FI_DELIVERY_COMPLETE), so osc/rdma would
# find no btl.  Extra environment for the ranks: MPI_EXTRA_ENV (names).
set -u
[ $# -ge 4 ] || { echo "usage: $0 MODE MPIRUN PUT_FILE DATA_FILE [FABRIC_DIR [PRELOAD_LIB]]" >&2; exit 2; }
mode=$1 mpirun=$2 prog=$3 data=$4 fabric_dir=${5:-} preload=${6:-}
shift $#

"$mpirun" --version 2>&1 | grep -q -E 'Open MPI|OpenRTE' ||
	{ echo "FAIL: $mpirun is not Open MPI's mpirun" >&2; exit 1; }

# Root in a container: Open MPI refuses root without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export FI_PROVIDER=sockets FI_SOCKETS_IFACE=lo
# mpirun's arguments are collected in "$@" (no word splitting of paths).
set -- --oversubscribe --bind-to none -np 2 \
	--mca pml ob1 --mca btl self,ofi --mca btl_ofi_mode 2 \
	--mca btl_ofi_provider_include sockets \
	--mca osc rdma --mca osc_rdma_btls ofi \
	--mca oob_tcp_if_include lo \
	-x FI_PROVIDER -x FI_SOCKETS_IFACE
expect=nohook
case $mode in
nohook) ;;
hook|hook-preload)
	[ -n "$fabric_dir" ] && [ -e "$fabric_dir/libsafe_mr-fi.so" ] ||
		{ echo "FAIL: no libsafe_mr-fi.so in '$fabric_dir'" >&2; exit 1; }
	export FI_HOOK=safe_mr FI_PROVIDER_PATH="$fabric_dir" SAFE_MR_STATS=1
	set -- "$@" -x FI_HOOK -x FI_PROVIDER_PATH -x SAFE_MR_STATS
	expect=shadow
	if [ "$mode" = hook-preload ]; then
		[ -n "$preload" ] || { echo "FAIL: no preload library given" >&2; exit 1; }
		# Only the ranks get it (-x), not mpirun/orted.
		set -- "$@" -x "LD_PRELOAD=$preload"
		expect=shadow-msync
	fi ;;
*) echo "unknown mode $mode" >&2; exit 2 ;;
esac
for v in ${MPI_EXTRA_ENV:-}; do set -- "$@" -x "$v"; done

# pml ob1 + btl self,ofi: no shared-memory btl, so every byte between the
# two ranks crosses libfabric; osc rdma over btl ofi (osc_rdma_btls); the
# default btl_ofi_mode (0) is one-sided only, 2 adds the messages ob1 needs.
echo "+ $mpirun $* $prog $data --expect $expect"
out=$("$mpirun" "$@" "$prog" "$data" --expect "$expect" 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc -eq 0 ] || { echo "FAIL: mpirun exited $rc" >&2; exit 1; }
printf '%s\n' "$out" | grep -q "^put_file\[0\]: PASS ($expect)" ||
	{ echo "FAIL: no PASS line from rank 0" >&2; exit 1; }
if [ "$expect" != nohook ]; then
	# Rank 0 shadowed the window (the only file mapping of the job) and
	# wrote the put pages back; rank 1 has no file, so it shadows nothing.
	re='^safe_mr: stats pid=[0-9]+ registrations=[1-9][0-9]* shadowed=[1-9][0-9]* .*bytes_written_back=[1-9]'
	n=$(printf '%s\n' "$out" | grep -c -E "$re")
	[ "$n" -eq 1 ] || { echo "FAIL: $n stats lines show a shadow with writeback, want 1" >&2; exit 1; }
	n=$(printf '%s\n' "$out" | grep -c -E '^safe_mr: stats pid=')
	[ "$n" -eq 2 ] || { echo "FAIL: $n stats lines, want one per rank" >&2; exit 1; }
	echo "ok: hook exercised, rank 0 shadowed the window and wrote it back"
fi
echo "ok: $mode"
