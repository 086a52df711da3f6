"""Data-parallel training under ``mpiexec``: the MPI implementation of :class:`.train.Parallel`.

``mpiexec -n N nprnn train ...`` runs the same command in N processes (ranks). Every
rank reads the same data and options, so every rank's batcher yields the same *global*
batches; :class:`MPIParallel` gives each rank its share of the rows, averages the
gradients over the ranks (weighted by the predictions each counted, so the result is
the global batch's mean gradient) in one ``Allreduce`` before clipping, and sums the
validation totals. Only rank 0 writes the run directory and prints.

What keeps N ranks equal to one process (the global batch split by rows, the gradients
averaged weighted by the predictions each rank counted, dropout masks of the global
batch, the carried state gathered into checkpoints, the Ctrl-C flag agreed) is
:mod:`.parallel`'s, shared with ``nprnn train --procs N`` (:mod:`.local`, shared memory
on one machine): this module supplies the MPI collectives. On the GPU backend dropout
masks are drawn on the device from a seed and are not the single process's (see
docs/guides/distributed.md).

**Setup and errors.** Errors before training (bad options, data, an occupied
``--out``) are normally the same on every rank; the ranks agree on the outcome in one
collective (:meth:`MPIParallel.setup_done` / :meth:`setup_failed`) so that a failure on
any rank stops them all, and only the lowest failing rank prints. Once training runs,
an error in one rank prints one line naming the rank and aborts the job
(``MPI_Abort``): nobody is left waiting in a collective call (:func:`fail`).

``NPRNN_MPI_PROFILE=DIR``: every rank writes ``DIR/rank<r>.json`` at exit with the
wall time of each step and the time spent in the allreduce (after a barrier that
measures the wait for the slowest rank separately): ``benchmarks/mpi_scaling.py``.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from nprnn import distributed as dist

from .errors import UsageError
from .parallel import DataParallel, GlobalMasks
from .train import Parallel

__all__ = ["make_parallel", "MPIParallel", "GlobalMasks", "started", "fail", "PROFILE_ENV"]

PROFILE_ENV = "NPRNN_MPI_PROFILE"
_STATE = {"started": False, "reporter": None}


def started() -> bool:
    """Whether every rank has finished setting up (errors from now on abort the job)."""
    return _STATE["started"]


def should_report_setup_error() -> bool:
    """During setup, whether this rank prints its error: the lowest failing rank does
    (the others either failed the same way or were told to stop); before any agreement
    (option parsing, identical everywhere) rank 0 does."""
    who = _STATE["reporter"]
    return dist.rank() == (0 if who is None else who)


def fail(line: str, code: int) -> None:
    """After setup, under MPI: print ``line`` naming this rank and end the whole job."""
    c = dist.comm()
    sys.stderr.write(f"nprnn: rank {c.Get_rank()} of {c.Get_size()}: {line} (aborting the job)\n")
    sys.stderr.flush()
    c.Abort(code)


def make_parallel() -> Parallel:
    """The :class:`.train.Parallel` of this process: :class:`MPIParallel` when launched
    by ``mpiexec`` with more than one rank, else the single-process identity (then no
    MPI is loaded)."""
    if not dist.launched():
        return Parallel()
    dist.init()  # an uncaught exception in a rank now aborts the job
    if dist.size() == 1:
        return Parallel()
    return MPIParallel(dist.comm())


class SetupStopped(UsageError):
    """Raised on the ranks whose setup succeeded when another rank's failed."""


class MPIParallel(DataParallel):
    """The data-parallel hooks (:class:`.parallel.DataParallel`) over ``comm``."""

    members, member = "MPI ranks", "rank"
    fix = "another mpiexec -n"

    def __init__(self, comm):
        super().__init__(comm.Get_rank(), comm.Get_size())
        self.comm = comm
        self._profile = os.environ.get(PROFILE_ENV) or None
        self._steps: list[list[float]] = []  # [start, wait, reduce] per step

    # ------------------------------------------------------------------ setup

    def _agree(self, failed: bool) -> None:
        from mpi4py import MPI

        low = self.comm.allreduce(self.rank if failed else self.size, op=MPI.MIN)
        _STATE["reporter"] = None if low == self.size else low
        if low != self.size and not failed:
            raise SetupStopped(
                f"rank {low} of {self.size} could not start (it printed why)",
                "fix what it said and start the job again",
            )

    def setup_failed(self) -> None:
        """Called by a rank whose setup raised: tells the others (one collective)."""
        self._agree(failed=True)

    def setup_done(self, model) -> None:
        """Called by a rank whose setup succeeded: agree with the others (raises
        :class:`SetupStopped` if another rank failed), then give every rank rank 0's
        weights and the global dropout masks."""
        self._agree(failed=False)
        _STATE["started"] = True
        dist.broadcast_params(model)
        self.install_masks(model)
        if self._profile:
            atexit.register(self._write_profile)

    # ------------------------------------------------------------------ the collective

    def shard(self, batch, objective):
        if self._profile:
            self._steps.append([time.perf_counter(), 0.0, 0.0])
        return super().shard(batch, objective)

    def _parts(self, buf):
        """``[Σ_r buf_r]``: one in-place ``Allreduce``; under ``NPRNN_MPI_PROFILE`` the
        gradient average is timed after a barrier that measures the wait for the
        slowest rank apart from the transfer."""
        from mpi4py import MPI

        if self._profile and buf is self._buf:
            t0 = time.perf_counter()
            self.comm.Barrier()
            t1 = time.perf_counter()
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            self._steps[-1][1:] = (t1 - t0, time.perf_counter() - t1)
        else:
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return [buf]

    # ------------------------------------------------------------------ carried state

    def gather_carry(self, carry):
        """The global carried state (rank 0; None elsewhere): the ranks' rows joined."""
        if carry is None:
            return None
        parts = carry if isinstance(carry, tuple) else (carry,)
        got = self.comm.gather(parts, root=0)
        if self.rank != 0:
            return None
        joined = tuple(np.concatenate([g[i] for g in got], axis=1) for i in range(len(parts)))
        return joined if isinstance(carry, tuple) else joined[0]

    # ------------------------------------------------------------------ profile

    def _write_profile(self) -> None:
        rows = self._steps
        steps = [rows[i + 1][0] - rows[i][0] for i in range(len(rows) - 1)]
        out = {
            "rank": self.rank,
            "size": self.size,
            "step_s": steps,
            "wait_s": [r[1] for r in rows[:-1]],
            "allreduce_s": [r[2] for r in rows[:-1]],
            "floats": 0 if self._buf is None else int(self._buf.size),
        }
        d = Path(self._profile)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"rank{self.rank}.json").write_text(json.dumps(out))
