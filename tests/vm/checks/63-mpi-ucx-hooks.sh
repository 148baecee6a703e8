#!/bin/bash
# SPDX-License-Identifier: MIT
# vm-kernel: new (one kernel is enough here; the other and the cluster cover the rest: guest-init)
# Unmodified MPI jobs over UCX on Soft-RoCE: UCX's registration cache and memory hooks, without and with the preload.
# See mpi-ucx-lib.sh and tests/vm/README.md.
. "$SAFE_MR_SRC/tests/vm/checks/mpi-ucx-lib.sh"
hooks ucx-hooks-without -
hooks ucx-hooks-preload "$VM_PRELOAD"
vm_exit
