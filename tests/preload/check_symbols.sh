#!/bin/sh
# SPDX-License-Identifier: MIT
# Exported symbols of the preload library and of libsafe_mr.so.
#   check_symbols.sh libsafe_mr_preload.so libsafe_mr.so
set -eu
preload=$1
engine=$2
fail=0

# Defined dynamic symbols as name[@|@@]VERSION, one per line.
defined() {
	readelf --dyn-syms -W "$1" | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && $5 != "LOCAL" && NF >= 8 { print $8 }'
}

have=$(defined "$preload")
for want in \
	'ibv_reg_mr@IBVERBS_1.0' 'ibv_reg_mr@@IBVERBS_1.1' \
	'ibv_dereg_mr@IBVERBS_1.0' 'ibv_dereg_mr@@IBVERBS_1.1' \
	'ibv_rereg_mr@@IBVERBS_1.1' 'ibv_reg_mr_iova@@IBVERBS_1.7' \
	'ibv_reg_mr_iova2@@IBVERBS_1.8' \
	msync munmap mremap fsync fdatasync dlopen \
	execve execv execvp execvpe execl execlp execle fexecve \
	wait waitpid wait4 waitid; do
	if printf '%s\n' "$have" | grep -qxF "$want"; then
		echo "ok: $preload exports $want"
	else
		echo "FAIL: $preload does not export $want"; fail=1
	fi
done
# Nothing else, apart from the version nodes and the ELF init/fini symbols.
extra=$(printf '%s\n' "$have" | grep -vxE \
	'ibv_(reg_mr|dereg_mr)@IBVERBS_1\.0|ibv_(reg_mr|dereg_mr|rereg_mr)@@IBVERBS_1\.1|ibv_reg_mr_iova@@IBVERBS_1\.7|ibv_reg_mr_iova2@@IBVERBS_1\.8|msync|munmap|mremap|fsync|fdatasync|dlopen|execve|execv|execvp|execvpe|execl|execlp|execle|fexecve|wait|waitpid|wait4|waitid|IBVERBS_1\.[0178]|_init|_fini' || true)
if [ -n "$extra" ]; then
	echo "FAIL: $preload exports more:"; echo "$extra"; fail=1
fi

# libsafe_mr.so: only safe_mr_* (and its version node), and in the node
# SAFE_MR_PRIVATE[_x.y] the preload library's hook (lib/libc_next.h).
extra=$(defined "$engine" | grep -vE '^(safe_mr_[A-Za-z0-9_]+(@@?SAFE_MR_[0-9.]+)?|SAFE_MR_[0-9.]+|sm_set_libc_next@@SAFE_MR_PRIVATE(_[0-9.]+)?|SAFE_MR_PRIVATE(_[0-9.]+)?)$' || true)
if [ -n "$extra" ]; then
	echo "FAIL: $engine exports more than safe_mr_* and sm_set_libc_next@@SAFE_MR_PRIVATE:"; echo "$extra"; fail=1
else
	echo "ok: $engine exports only safe_mr_* (and sm_set_libc_next@@SAFE_MR_PRIVATE)"
fi
if [ -z "$(defined "$engine")" ]; then
	echo "FAIL: $engine exports nothing"; fail=1
fi
exit $fail
