"""Data-parallel training under ``mpiexec``: the MPI implementation of :class:`.train.Parallel`.

``mpiexec -n N nprnn train ...`` runs the same command in N processes (ranks). Every
rank reads the same data and options, so every rank's batcher yields the same *global*
batches; :class:`MPIParallel` gives each rank its share of the rows, averages the
gradients over the ranks (weighted by the predictions each counted, so the result is
the global batch's mean gradient) in one ``Allreduce`` before clipping, and sums the
validation totals. Only rank 0 writes the run directory and prints.

What keeps N ranks equal to one process (to float summation order):

- ``--batch-size`` is the global batch B and must be divisible by N (each rank B/N
  rows). A smaller last batch of an epoch is split as evenly as it goes (the weighting
  keeps the mean exact; a rank left without rows contributes nothing).
- Dropout: the model's generator is replaced on every rank by :class:`GlobalMasks`,
  which draws the mask of the *global* batch (the draw one process would make) and
  keeps this rank's rows. All ranks hold the same generator state, so the checkpoint's
  ``model_rng`` is the single process's. (Costs N× the mask draws; they are cheap next
  to the matrix products. On the GPU backend masks are drawn on the device from a seed
  and are not equivalent — see docs/guides/distributed.md.)
- Stream mode: each rank carries the state of its own streams; a checkpoint holds the
  global state (gathered to rank 0), and resuming gives each rank its rows back. The
  checkpoint is therefore the one a single process would write, and a run may be
  resumed with another number of ranks (the result then agrees to summation order,
  not bit for bit; with the same N it continues bit for bit).
- Ctrl-C: each rank's "stop" flag rides in the gradient allreduce, so all ranks stop
  after the same step and save one checkpoint together.

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


def _rows(B: int, n: int, r: int) -> tuple[int, int]:
    """Rank r's contiguous rows of a batch of B rows split over n ranks, as evenly as
    they go (the first B mod n ranks get one more)."""
    k, extra = divmod(B, n)
    start = r * k + min(r, extra)
    return start, start + k + (r < extra)


class GlobalMasks:
    """Stands in for a model's generator: ``random(shape)`` draws the mask of the global
    batch and returns this rank's rows, so the masks are the ones one process would use.

    The batch axis follows the app's layouts: axis 1 of a time-major (T, B, H) array,
    axis 0 of a (B, F) one. Everything else (``bit_generator``, ``integers``, ...) is
    the wrapped generator's. ``rows = (start, stop, B)`` is set for every batch.
    """

    def __init__(self, rng: np.random.Generator):
        self.generator = rng
        self.rows = None

    def random(self, size=None, dtype=np.float64, out=None):
        if self.rows is None or size is None or out is not None:
            return self.generator.random(size, dtype=dtype, out=out)
        shape = tuple(np.atleast_1d(size))
        start, stop, B = self.rows
        axis = 1 if len(shape) == 3 else 0
        if len(shape) not in (2, 3) or shape[axis] != stop - start:
            raise RuntimeError(
                f"a dropout mask of shape {shape} does not have this rank's {stop - start} "
                f"rows on axis {axis}: the model's layout is not the one MPI training knows"
            )
        full = list(shape)
        full[axis] = B
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, stop)
        return np.ascontiguousarray(self.generator.random(tuple(full), dtype=dtype)[tuple(index)])

    def __getattr__(self, name):
        return getattr(self.generator, name)


class MPIParallel(Parallel):
    """The data-parallel hooks over ``comm`` (see the module docstring)."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.writes = self.rank == 0
        self._masks = None
        self._buf = None
        self._stop = False  # the stop flag agreed in the last allreduce
        self._profile = os.environ.get(PROFILE_ENV) or None
        self._steps: list[list[float]] = []  # [start, wait, reduce] per step

    def check_batch_size(self, batch_size: int) -> None:
        """``--batch-size`` (the global batch) must split evenly over the ranks; raised
        on every rank alike, so the setup agreement stops them all."""
        if batch_size % self.size:
            lower = batch_size - batch_size % self.size
            raise UsageError(
                f"--batch-size {batch_size} is not divisible by the {self.size} MPI ranks "
                f"(each rank takes an equal share of the global batch)",
                f"pass a --batch-size that is a multiple of {self.size} (e.g. "
                f"{lower or self.size} or {lower + self.size}), or another mpiexec -n",
            )

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
        rng = model.rng
        self._masks = GlobalMasks(rng)
        for m in model.modules():  # the model and its layers share one generator
            if getattr(m, "rng", None) is rng:
                m.rng = self._masks
        if self._profile:
            atexit.register(self._write_profile)

    # ------------------------------------------------------------------ the step

    def shard(self, batch, objective):
        axes = objective.batch_axes(batch)
        B = next(np.shape(a)[ax] for a, ax in zip(batch, axes, strict=True) if ax is not None)
        start, stop = _rows(B, self.size, self.rank)
        if self._masks is not None:
            self._masks.rows = (start, stop, B)
        if self._profile:
            self._steps.append([time.perf_counter(), 0.0, 0.0])
        if stop == start:
            return None  # fewer rows than ranks: this rank sits the batch out
        out = []
        for a, ax in zip(batch, axes, strict=True):
            if ax is None:
                out.append(a)
            else:
                index = [slice(None)] * np.ndim(a)
                index[ax] = slice(start, stop)
                out.append(np.ascontiguousarray(a[tuple(index)]))
        return tuple(out)

    def average_gradients(self, grads: dict, loss: float, count: int, stop: bool = False):
        """One in-place ``Allreduce`` of [w·g for every gradient, w, w·loss, stop] with
        w = count; the gradients become Σ w_r g_r / Σ w_r. Returns the global
        ``(mean loss, count)``; the agreed stop flag is kept for :meth:`should_stop`."""
        from mpi4py import MPI

        names = sorted(grads)
        dtypes = {grads[k].dtype for k in names}
        if len(dtypes) != 1:
            raise TypeError(f"MPI training needs one gradient dtype, the model has {dtypes}")
        n = sum(grads[k].size for k in names)
        if self._buf is None or self._buf.size != n + 3:
            self._buf = np.empty(n + 3, dtype=dtypes.pop())
        buf, w = self._buf, float(count)
        off = 0
        for k in names:
            g = grads[k].reshape(-1)
            np.multiply(g, w, out=buf[off : off + g.size])
            off += g.size
        buf[n : n + 3] = (w, w * loss if count else 0.0, 1.0 if stop else 0.0)
        if self._profile:
            t0 = time.perf_counter()
            self.comm.Barrier()  # the wait for the slowest rank, apart from the transfer
            t1 = time.perf_counter()
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            t2 = time.perf_counter()
            self._steps[-1][1:] = (t1 - t0, t2 - t1)
        else:
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        total = float(buf[n])
        self._stop = bool(buf[n + 2] > 0)
        if total == 0:
            raise RuntimeError("no rank counted a prediction in this batch")
        buf[:n] /= buf.dtype.type(total)
        off = 0
        for k in names:
            g = grads[k].reshape(-1)
            g[...] = buf[off : off + g.size]
            off += g.size
        return float(buf[n + 1]) / total, int(round(total))

    def should_stop(self, local: bool) -> bool:
        return self._stop

    def sum_totals(self, totals: dict) -> dict:
        from mpi4py import MPI

        keys = sorted(totals)
        buf = np.array([v for k in keys for v in totals[k]], dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return {k: (float(buf[2 * i]), int(round(buf[2 * i + 1]))) for i, k in enumerate(keys)}

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

    def shard_carry(self, carry):
        """This rank's rows (axis 1) of a global carried state read from a checkpoint."""
        if carry is None:
            return None
        parts = carry if isinstance(carry, tuple) else (carry,)
        start, stop = _rows(parts[0].shape[1], self.size, self.rank)
        mine = tuple(np.ascontiguousarray(p[:, start:stop]) for p in parts)
        return mine if isinstance(carry, tuple) else mine[0]

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
