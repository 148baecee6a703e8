#!/bin/bash
# SPDX-License-Identifier: MIT
# Unmodified MPI jobs over UCX on Soft-RoCE: MPICH 4.0 (ch4:ucx).
# See mpi-ucx-lib.sh and tests/vm/README.md.
. "$SAFE_MR_SRC/tests/vm/checks/mpi-ucx-lib.sh"
mpi_case mpich
vm_exit
