#!/bin/sh
# SPDX-License-Identifier: MIT
# The fake must export the entry points with rdma-core's symbol versions,
# and ibv_reg_mr/ibv_reg_mr_iova must reach ibv_reg_mr_iova2 through the PLT
# (so that an interposer of ibv_reg_mr_iova2 sees them, as with rdma-core).
set -u
lib=$1
fail=0
syms=$(readelf --dyn-syms -W "$lib") || { echo "readelf failed on $lib"; exit 1; }
for want in \
	ibv_get_device_list@@IBVERBS_1.1 ibv_free_device_list@@IBVERBS_1.1 \
	ibv_get_device_name@@IBVERBS_1.1 ibv_open_device@@IBVERBS_1.1 \
	ibv_close_device@@IBVERBS_1.1 ibv_query_device@@IBVERBS_1.1 \
	ibv_alloc_pd@@IBVERBS_1.1 ibv_dealloc_pd@@IBVERBS_1.1 \
	ibv_reg_mr@@IBVERBS_1.1 ibv_rereg_mr@@IBVERBS_1.1 ibv_dereg_mr@@IBVERBS_1.1 \
	ibv_reg_mr_iova@@IBVERBS_1.7 ibv_reg_mr_iova2@@IBVERBS_1.8 \
	fake_nic_write@@FAKE_NIC_1.0 fake_nic_read@@FAKE_NIC_1.0 \
	fake_nic_mr_count@@FAKE_NIC_1.0; do
	if echo "$syms" | awk '{print $8}' | grep -qx "$want"; then
		echo "ok: $want"
	else
		echo "MISSING: $want"; fail=1
	fi
done
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libibverbs.so.1 ] || { echo "soname is '$soname', want libibverbs.so.1"; fail=1; }
for f in ibv_reg_mr ibv_reg_mr_iova; do
	body=$(objdump -d --no-show-raw-insn "$lib" | awk -v f="<$f>:" '$2 == f {p=1; next} p && /^$/ {exit} p')
	if echo "$body" | grep -q 'ibv_reg_mr_iova2@plt'; then
		echo "ok: $f calls ibv_reg_mr_iova2 through the PLT"
	else
		echo "FAIL: $f does not call ibv_reg_mr_iova2@plt:"; echo "$body"; fail=1
	fi
done
exit $fail
