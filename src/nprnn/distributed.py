"""Data parallelism over MPI: the same model on every rank, a share of each batch each.

    mpiexec -n 4 python train.py          # every rank runs the same script

    import nprnn.distributed as dist
    dist.broadcast_params(model)               # every rank starts from rank 0's weights
    for batch in batches:                      # the same global batches on every rank
        x, y = dist.shard(batch.x), dist.shard(batch.y)   # this rank's B/N rows
        loss, dlogits = ...; model.backward(...)
        dist.allreduce_grads(model, weight=n_tokens)      # = the global batch's gradient
        opt.step()

Each rank computes the gradient of its own mean loss; :func:`allreduce_grads` replaces
it, in place and on every rank, by Σ_r w_r g_r / Σ_r w_r — with w_r the number of
terms (e.g. unmasked tokens) the rank's mean was taken over, that is exactly the
gradient of the mean over the whole global batch, so N ranks compute what one process
would, up to the order of float summation. All gradients travel in one flat buffer per
dtype (the weight rides in the same buffer): one ``Allreduce`` per step.

Without MPI — no ``mpiexec``, or mpi4py not installed — everything here is a no-op:
:func:`rank` is 0, :func:`size` is 1, :func:`shard` returns its input. mpi4py is
imported only when the process was started by an MPI launcher (MPICH's or Open MPI's
environment variables), so ``import nprnn`` never loads it. ``pip install 'nprnn[mpi]'``
brings mpi4py and MPICH (``mpiexec`` in the environment's ``bin/``).

**Faults.** An uncaught exception in one rank would leave the others waiting forever in
their next collective call; :func:`abort_on_error` (installed by :func:`init`) prints
one line naming the rank and the error and aborts the whole job (``MPI_Abort``), so it
ends within seconds with a nonzero exit status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import numpy as np

__all__ = [
    "init",
    "launched",
    "comm",
    "rank",
    "size",
    "is_distributed",
    "allreduce_grads",
    "allreduce",
    "broadcast_params",
    "broadcast_object",
    "shard",
    "barrier",
    "abort_on_error",
]

# Set by MPICH's hydra (PMI_*), Open MPI (OMPI_*) and Slurm's PMIx launcher (PMIX_RANK).
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")
_comm = None
_checked = False


def launched() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, srun)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def comm():
    """``MPI.COMM_WORLD`` when launched under MPI with mpi4py installed, else None."""
    global _comm, _checked
    if not _checked:
        _checked = True
        if launched():
            try:
                from mpi4py import MPI
            except ImportError:
                raise ImportError(
                    "this process was started by an MPI launcher but mpi4py is not "
                    "installed: pip install 'nprnn[mpi]'"
                ) from None
            _comm = MPI.COMM_WORLD
    return _comm


def init() -> bool:
    """Set up MPI if launched under it and make an error in one rank end the job
    (:func:`abort_on_error`). Returns whether more than one rank runs."""
    c = comm()
    if c is not None:
        abort_on_error()
    return is_distributed()


def rank() -> int:
    """This process's rank, 0 without MPI."""
    c = comm()
    return 0 if c is None else c.Get_rank()


def size() -> int:
    """The number of ranks, 1 without MPI."""
    c = comm()
    return 1 if c is None else c.Get_size()


def is_distributed() -> bool:
    """True when more than one rank runs (:func:`size` > 1)."""
    return size() > 1


def barrier() -> None:
    """Wait until every rank reaches this call (``MPI_Barrier``); a no-op without MPI."""
    c = comm()
    if c is not None:
        c.Barrier()


def _arrays(obj, what: str) -> dict:
    """A name -> array mapping from a Module (``attr``: params or grads) or a mapping."""
    if hasattr(obj, what) and not isinstance(obj, Mapping):
        obj = getattr(obj, what)
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"expected an nprnn.Module or a dict name -> array, got {type(obj).__name__}"
        )
    return dict(obj)


def allreduce_grads(model_or_grads, *, weight: float = 1.0) -> float:
    """Replace every gradient, on every rank, by Σ_r w_r g_r / Σ_r w_r, in place.

    ``model_or_grads``: an :class:`nprnn.Module` (its ``grads``) or a dict of gradient
    arrays with the same names and shapes on every rank. ``weight`` w_r: what this
    rank's gradient is a mean over (1 for a plain average; the number of unmasked
    tokens for an exact global mean). Returns Σ_r w_r. Without MPI: nothing changes,
    returns ``weight``.
    """
    grads = _arrays(model_or_grads, "grads")
    w = float(weight)
    if not np.isfinite(w) or w < 0:
        raise ValueError(f"weight must be a finite number ≥ 0, got {weight!r}")
    c = comm()
    if c is None or c.Get_size() == 1:
        return w
    total = None
    by_dtype: dict = {}
    for name in sorted(grads):  # the same order on every rank
        by_dtype.setdefault(grads[name].dtype, []).append(grads[name])
    for dt, arrays in sorted(by_dtype.items(), key=lambda kv: kv[0].str):
        n = sum(a.size for a in arrays)
        buf = np.empty(n + 1, dtype=dt)
        off = 0
        for a in arrays:  # weighted, packed: one buffer per dtype, the weight at the end
            np.multiply(a.reshape(-1), w, out=buf[off : off + a.size])
            off += a.size
        buf[n] = w
        from mpi4py import MPI

        c.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        total = float(buf[n])
        if total == 0:
            raise ValueError("allreduce_grads: every rank passed weight=0: nothing to average")
        buf[:n] /= buf.dtype.type(total)
        off = 0
        for a in arrays:
            a.reshape(-1)[...] = buf[off : off + a.size]
            off += a.size
    return w if total is None else total


def allreduce(x, op: str = "sum"):
    """The sum (or ``"max"``/``"min"``) of a number or array over the ranks, on every
    rank; ``x`` itself without MPI."""
    c = comm()
    if c is None:
        return x
    from mpi4py import MPI

    ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
    if op not in ops:
        raise ValueError(f"op must be one of {sorted(ops)}, got {op!r}")
    if isinstance(x, np.ndarray):
        out = np.empty_like(x)
        c.Allreduce(x, out, op=ops[op])
        return out
    return c.allreduce(x, op=ops[op])


def broadcast_params(model_or_params, root: int = 0) -> None:
    """Copy rank ``root``'s parameters into every rank's, in place (names sorted, so
    every rank must hold the same names and shapes). No-op without MPI."""
    params = _arrays(model_or_params, "params")
    c = comm()
    if c is None:
        return
    for name in sorted(params):
        c.Bcast(params[name], root=root)


def broadcast_object(obj, root: int = 0):
    """Rank ``root``'s ``obj`` (any picklable value from trusted code), on every rank."""
    c = comm()
    return obj if c is None else c.bcast(obj, root=root)


def shard(batch, *, axis: int = 0, name: str = "batch"):
    """This rank's contiguous share of ``batch`` along ``axis``: rows r·B/N .. (r+1)·B/N.

    ``batch``: an array, or a tuple/list of arrays sharing that axis' length B. B must
    be divisible by the number of ranks (a ValueError says so). Without MPI: ``batch``.
    """
    n, r = size(), rank()
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(b, axis=axis, name=name) for b in batch)
    if n == 1 or batch is None:
        return batch
    B = batch.shape[axis]
    if B % n:
        raise ValueError(
            f"{name} has {B} rows along axis {axis}, not divisible by the {n} MPI ranks: "
            f"choose a batch size that is a multiple of {n}"
        )
    k = B // n
    index = [slice(None)] * batch.ndim
    index[axis] = slice(r * k, (r + 1) * k)
    return batch[tuple(index)]


def abort_on_error() -> None:
    """Make an uncaught exception in this rank print one line and abort the whole job
    (``MPI_Abort``), instead of leaving the other ranks waiting forever."""
    c = comm()
    if c is None or getattr(sys.excepthook, "_nprnn_abort", False):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            previous(kind, value, tb)
        else:
            sys.stderr.write(f"nprnn: rank {c.Get_rank()} of {c.Get_size()} failed: "
                             f"{kind.__name__}: {value}; aborting the job\n")  # fmt: skip
            sys.stderr.flush()
        c.Abort(1)

    hook._nprnn_abort = True
    sys.excepthook = hook
