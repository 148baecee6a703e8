#!/bin/bash
# SPDX-License-Identifier: MIT
# EXPLORATION (temporary)
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
PROG=$SAFE_MR_BUILD/tests/fabric/fi_rma_file
HOOKDIR=$SAFE_MR_BUILD/fabric
vm_rxe_pair && vm_result - pair PASS up || vm_result - pair FAIL "$VM_PAIR_ERR"
ip rule; ip addr; rdma link
export FI_PROVIDER='verbs;ofi_rxm' FI_UNIVERSE_SIZE=16 FI_TEST_TIMEOUT=60
t0=$SECONDS
timeout 60 fi_info -p 'verbs;ofi_rxm' -c FI_RMA 2>&1 | grep -E 'domain|src|provider|fabric' | head -30
echo "fi_info $((SECONDS-t0))s"
for node in 10.77.0.1 10.77.0.2; do
	t0=$SECONDS
	echo "== raw node $node"
	FI_RMA_NODE=$node FI_LOG_LEVEL=warn FI_TEST_DIR=$VM_MNT/ext4 timeout 90 "$PROG" --op write --sync fi_sync --expect raw 2>&1 | tail -n 20
	echo "rc=${PIPESTATUS[0]} $((SECONDS-t0))s"
done
export FI_RMA_NODE=10.77.0.1
t0=$SECONDS
echo "== hook write close"
FI_HOOK=safe_mr FI_PROVIDER_PATH=$HOOKDIR FI_TEST_DIR=$VM_MNT/ext4 timeout 90 "$PROG" --op write --sync close --expect shadow 2>&1 | tail -n 20
echo "rc=${PIPESTATUS[0]} $((SECONDS-t0))s"
echo "== raw with sync loop"
for i in 1 2 3; do
	( while :; do sync; sleep 0.01; done ) & sp=$!
	t0=$SECONDS
	FI_TEST_DIR=$VM_MNT/ext4 timeout 90 "$PROG" --op write --sync fi_sync --expect raw 2>&1 | tail -n 8
	echo "rc=${PIPESTATUS[0]} $((SECONDS-t0))s"
	kill $sp; wait $sp 2>/dev/null
done
vm_exit
