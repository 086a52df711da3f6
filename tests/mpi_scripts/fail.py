"""Run under mpiexec: rank 1 raises while rank 0 waits in a collective call."""

import time

import numpy as np

import nprnn.distributed as dist

dist.init()
if dist.rank() == 1:
    time.sleep(0.2)
    raise RuntimeError("disk full")
dist.allreduce(np.ones(3))  # would wait forever for rank 1 without the abort
