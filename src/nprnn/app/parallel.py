"""Data parallelism, whatever carries it: the hooks of :class:`.train.Parallel` for N
processes that each take a share of every global batch.

Two transports implement it: MPI (:mod:`.mpi`, ``mpiexec -n N nprnn train``, across
machines) and shared memory on one machine (:mod:`.local`, ``nprnn train --procs N``).
Both run the arithmetic below, so they compute the same thing; what a transport
supplies is one collective, :meth:`DataParallel._parts`: the N processes' buffers (or
their sum) after every process has filled its own.

What keeps N processes equal to one process (to float summation order):

- The global batch B is split into contiguous rows (:func:`rows`), the first B mod N
  processes taking one row more; each process's gradient is the mean over its rows, and
  :meth:`DataParallel.average_gradients` replaces it by Σ_r w_r g_r / Σ_r w_r with w_r
  the predictions process r counted: the global batch's mean gradient.
- Dropout: the model's generator is wrapped in :class:`GlobalMasks`, which draws the
  mask of the *global* batch (the draw one process would make) and keeps this
  process's rows; every process holds the same generator state.
- Stream mode: each process carries the state of its own streams; a checkpoint holds
  the global state (``gather_carry``), and a resume gives each process its rows back
  (``shard_carry``), so a run may resume with another N.
- Ctrl-C: each process's stop flag rides in the gradient buffer, so all of them stop
  after the same step.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError
from .train import Parallel

__all__ = ["DataParallel", "GlobalMasks", "rows", "summed"]


def rows(B: int, n: int, r: int) -> tuple[int, int]:
    """Process r's contiguous rows of a batch of B rows split over n processes, as
    evenly as they go (the first B mod n processes get one more)."""
    k, extra = divmod(B, n)
    start = r * k + min(r, extra)
    return start, start + k + (r < extra)


def summed(parts: list) -> np.ndarray:
    """Σ of ``parts`` (what :meth:`DataParallel._parts` returns), added in list order."""
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


class GlobalMasks:
    """Stands in for a model's generator: ``random(shape)`` draws the mask of the global
    batch and returns this process's rows, so the masks are the ones one process uses.

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
                f"a dropout mask of shape {shape} does not have this process's "
                f"{stop - start} rows on axis {axis}: the model's layout is not the one "
                "data-parallel training knows"
            )
        full = list(shape)
        full[axis] = B
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, stop)
        return np.ascontiguousarray(self.generator.random(tuple(full), dtype=dtype)[tuple(index)])

    def __getattr__(self, name):
        return getattr(self.generator, name)


class DataParallel(Parallel):
    """The data-parallel hooks for ``size`` processes; a transport subclasses it with
    :meth:`_parts` (and :meth:`gather_carry`). ``members``: what the processes are
    called in messages ("MPI ranks", "processes") and one of them (``member``); ``fix``:
    how to choose another N."""

    members, member = "processes", "process"
    fix = "another N"

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size
        self.writes = rank == 0
        self._masks = None
        self._buf = None
        self._stop = False  # the stop flag agreed in the last gradient average

    def _parts(self, buf: np.ndarray) -> list:
        """After every process has filled its own ``buf`` (same size and dtype in all):
        arrays whose sum, taken in list order, is the sum of all processes' ``buf``
        (MPI: ``[the sum]``; shared memory: the N buffers in rank order)."""
        raise NotImplementedError

    def _buffer(self, n: int, dtype) -> np.ndarray:
        """This process's buffer of ``n`` elements for the next :meth:`_parts`."""
        if self._buf is None or self._buf.size != n or self._buf.dtype != dtype:
            self._buf = np.empty(n, dtype=dtype)
        return self._buf

    def check_batch_size(self, batch_size: int) -> None:
        """``--batch-size`` (the global batch) must split evenly over the processes."""
        if batch_size % self.size:
            lower = batch_size - batch_size % self.size
            raise UsageError(
                f"--batch-size {batch_size} is not divisible by the {self.size} "
                f"{self.members} (each {self.member} takes an equal share of the global batch)",
                f"pass a --batch-size that is a multiple of {self.size} (e.g. "
                f"{lower or self.size} or {lower + self.size}), or {self.fix}",
            )

    def install_masks(self, model) -> None:
        """Give the model (and its layers, which share its generator) :class:`GlobalMasks`."""
        rng = model.rng
        self._masks = GlobalMasks(rng)
        for m in model.modules():
            if getattr(m, "rng", None) is rng:
                m.rng = self._masks

    # ------------------------------------------------------------------ the step

    def shard(self, batch, objective):
        axes = objective.batch_axes(batch)
        B = next(np.shape(a)[ax] for a, ax in zip(batch, axes, strict=True) if ax is not None)
        start, stop = rows(B, self.size, self.rank)
        if self._masks is not None:
            self._masks.rows = (start, stop, B)
        if stop == start:
            return None  # fewer rows than processes: this one sits the batch out
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
        """One collective over [w·g for every gradient, w, w·loss, stop] with w = count;
        the gradients become Σ w_r g_r / Σ w_r. Returns the global ``(mean loss,
        count)``; the agreed stop flag is kept for :meth:`should_stop`."""
        names = sorted(grads)  # the same order in every process
        dtypes = {grads[k].dtype for k in names}
        if len(dtypes) != 1:
            raise TypeError(f"data-parallel training needs one gradient dtype, not {dtypes}")
        n = sum(grads[k].size for k in names)
        buf, w = self._buffer(n + 3, dtypes.pop()), float(count)
        off = 0
        for k in names:
            g = grads[k].reshape(-1)
            np.multiply(g, w, out=buf[off : off + g.size])
            off += g.size
        buf[n : n + 3] = (w, w * loss if count else 0.0, 1.0 if stop else 0.0)
        parts = self._parts(buf)
        tail = summed([p[n : n + 3] for p in parts])
        total = float(tail[0])
        self._stop = bool(tail[2] > 0)
        if total == 0:
            raise RuntimeError("no process counted a prediction in this batch")
        scale = buf.dtype.type(total)
        off = 0
        for k in names:  # g = (Σ_r w_r g_r) / Σ_r w_r, summed in rank order
            g = grads[k].reshape(-1)
            seg = slice(off, off + g.size)
            if len(parts) == 1:
                np.copyto(g, parts[0][seg])
            else:
                np.add(parts[0][seg], parts[1][seg], out=g)
                for p in parts[2:]:
                    g += p[seg]
            g /= scale
            off += g.size
        return float(tail[1]) / total, int(round(total))

    def should_stop(self, local: bool) -> bool:
        return self._stop

    def sum_totals(self, totals: dict) -> dict:
        keys = sorted(totals)
        buf = np.array([v for k in keys for v in totals[k]], dtype=np.float64)
        out = summed(self._parts(buf))
        return {k: (float(out[2 * i]), int(round(out[2 * i + 1]))) for i, k in enumerate(keys)}

    def shard_carry(self, carry):
        """This process's rows (axis 1) of a global carried state read from a checkpoint."""
        if carry is None:
            return None
        parts = carry if isinstance(carry, tuple) else (carry,)
        start, stop = rows(parts[0].shape[1], self.size, self.rank)
        mine = tuple(np.ascontiguousarray(p[:, start:stop]) for p in parts)
        return mine if isinstance(carry, tuple) else mine[0]
