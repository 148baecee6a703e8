#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""One-sided MPI into files with numpy.memmap: for each PATH, every rank
maps its own file (PATH.RANK), exposes it as an MPI window, its left
neighbour puts and accumulates into it, and the owner flushes it (msync)
and reads it back from the disk (O_DIRECT).  Nothing here knows about
safe_mr; run it under the preload library so the NIC's writes reach the
files:

    mpirun -np 2 -x LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libsafe_mr_preload.so \\
        python3 -m mpi4py mpi4py_memmap_put.py /data/window.bin [PATH...]

(`-m mpi4py` aborts the whole job when one rank raises.)  Rank 0 prints
"mpi4py_memmap_put: PATH RESULT ok" when every rank's file holds every
byte after the flush, "lost" when not, "refused" when the MPI library
could not register the window; the exit status is 0 only if all are ok.
"""
import mmap
import os
import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
target = (rank + 1) % size
n = 1 << 14          # words per window (64 KiB; any size works)
half = n // 2


def put_into_file(base):
    path = f"{base}.{rank}"
    np.arange(n, dtype=np.uint32).tofile(path)  # the file before the job
    os.sync()
    data = np.memmap(path, dtype=np.uint32, mode="r+", shape=(n,))  # MAP_SHARED
    try:
        win = MPI.Win.Create(data, disp_unit=4, comm=comm)
    except MPI.Exception as e:
        win = e
    if not comm.allreduce(isinstance(win, MPI.Win), op=MPI.LAND):
        print(f"mpi4py_memmap_put[{rank}]: {path}: MPI.Win.Create refused: {win}", flush=True)
        if isinstance(win, MPI.Win):
            win.Free()
        os.unlink(path)
        return "refused"
    data.flush()  # a checkpoint before the RMA phase (msync)

    # Fence epoch: put into the first half of the target's file.
    new = np.arange(half, dtype=np.uint32) * 3 + 1000 * (target + 1)
    win.Fence()
    win.Put([new, MPI.UINT32_T], target, target=(0, half, MPI.UINT32_T))
    win.Fence()
    # Lock epoch: add 7 to every word of the second half.
    inc = np.full(n - half, 7, dtype=np.uint32)
    win.Lock(target)
    win.Accumulate([inc, MPI.UINT32_T], target, target=(half, n - half, MPI.UINT32_T), op=MPI.SUM)
    win.Unlock(target)
    comm.Barrier()

    data.flush()  # msync(MS_SYNC): the file on disk must now hold everything
    want = np.arange(n, dtype=np.uint32)
    want[:half] = np.arange(half, dtype=np.uint32) * 3 + 1000 * (rank + 1)
    want[half:] += 7
    win.Free()
    del data

    # Read the disk, not the page cache: O_DIRECT into a page-aligned buffer.
    buf = mmap.mmap(-1, n * 4)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    got = os.preadv(fd, [buf], 0)
    os.close(fd)
    os.unlink(path)
    disk = np.frombuffer(buf, dtype=np.uint32, count=got // 4)
    missing = int(np.count_nonzero(disk != want[:disk.size])) + (n - disk.size)
    print(f"mpi4py_memmap_put[{rank}]: {path}: {missing} of {n} words missing on disk", flush=True)
    return "ok" if comm.allreduce(missing) == 0 else "lost"


results = [(base, put_into_file(base)) for base in sys.argv[1:]]
if rank == 0:
    for base, r in results:
        print(f"mpi4py_memmap_put: {base} RESULT {r}", flush=True)
sys.exit(0 if results and all(r == "ok" for _, r in results) else 1)
