#!/bin/bash
# SPDX-License-Identifier: MIT
# vm-kernel: new (one kernel is enough here; the other and the cluster cover the rest: guest-init)
# Unmodified MPI jobs over UCX on Soft-RoCE: mpi4py + numpy.memmap under Open MPI.
# See mpi-ucx-lib.sh and tests/vm/README.md.
. "$SAFE_MR_SRC/tests/vm/checks/mpi-ucx-lib.sh"
mpi_case mpi4py
vm_exit
