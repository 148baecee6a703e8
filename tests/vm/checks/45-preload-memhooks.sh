#!/bin/bash
# SPDX-License-Identifier: MIT
# A neighbour of the preload library on the real RDMA stack: libfabric's
# memory monitor "memhooks" (it rewrites libc's munmap) must see an
# application munmap, so that the verbs provider's MR cache drops the entry
# (tests/preload/fi_memhooks.c), without and with safe_mr's preload.  The
# preload's munmap must end in libc's: a raw munmap system call leaves the
# cache a stale MR.  Needs verbs (rdma_cm on the veth pair of vm_rxe_pair).
. "$SAFE_MR_SRC/tests/vm/lib.sh"
unset LD_PRELOAD
PROG=$SAFE_MR_BUILD/tests/preload/pl_fi_memhooks
for f in "$PROG" "$VM_PRELOAD"; do
	[ -e "$f" ] || { vm_result - build FAIL "$f not built"; vm_exit; }
done
if ! vm_rxe_pair; then
	vm_result - rxe-pair FAIL "vm_rxe_pair: $VM_PAIR_ERR"
	vm_exit
fi
export FI_PROVIDER=verbs FI_MR_CACHE_MONITOR=memhooks

# memhooks_case CASE ENV...: PASS when fi_memhooks does.
memhooks_case() {
	local case=$1 out; shift
	if out=$(env "$@" timeout 120 "$PROG" "$VM_PAIR_IP_A" 2>&1); then
		vm_result - $case PASS "$(echo "$out" | grep -m1 'after munmap' | tr -s ' ')"
	else
		vm_result - $case FAIL "$(echo "$out" | grep -m2 -E 'FAIL|after munmap|signal' | tr '\n' ' ')"
		echo "$out" | sed 's/^/# /' | tail -n 20
	fi
}
memhooks_case memhooks-munmap-without
memhooks_case memhooks-munmap-preload LD_PRELOAD=$VM_PRELOAD
vm_exit
