#!/bin/bash
# SPDX-License-Identifier: MIT
# Unmodified MPI jobs over UCX on Soft-RoCE: Open MPI 4.1 (pml ucx, osc ucx).
# See mpi-ucx-lib.sh and tests/vm/README.md.
. "$SAFE_MR_SRC/tests/vm/checks/mpi-ucx-lib.sh"
mpi_case ompi
vm_exit
