"""The NumPy backend: host arrays, NumPy's ufuncs and BLAS, and two host-only measures.

1. Large arrays (caches, outputs, gradients) come from a pool of reused buffers
   (:mod:`nprnn.backends._pool`): fresh memory costs a page fault per 4 KB on its first
   write, about 15% of an LSTM forward at (H, B, T) = (256, 64, 150).
2. A gradient vanishing through time is flushed to zero before it turns subnormal:
   x86 computes 10–100× slower on subnormal floats (see :meth:`flush_subnormals`).
"""

from __future__ import annotations

import numpy as np

from . import _pool

__all__ = ["NumpyBackend"]


class NumpyBackend:
    name = "numpy"
    device = "cpu"
    xp = np
    gather_per_step = True  # see nprnn.backends: a step adds its block while in cache

    def kernel(self, cell):
        return cell.kernel  # the element-wise steps of nprnn.kernels.fast, on NumPy

    def empty(self, shape, dtype):
        return _pool.empty(shape, dtype)

    def matmul(self, a, b, out):
        return np.dot(a, b, out=out)

    def uniform(self, rng, shape, dtype):
        """U[0, 1) samples from the host generator ``rng`` (dropout masks)."""
        return rng.random(shape, dtype=dtype)

    def asarray(self, a, dtype=None):
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        return np.asarray(a)

    def flush_subnormals(self, carried, chunk=()) -> bool:
        """Zero the entries of the carried state gradients below ``tiny``·2^32 (tiny: the
        dtype's smallest normal number), in place, and those of ``chunk`` (stored gate
        gradients) too when the carried ones come near that range. Returns whether they
        do (a nonzero entry below ``tiny``·2^64): the driver then flushes at every step.

        A gradient that vanishes through time (the tanh RNN on a long sequence; any cell
        at initialisation) decays geometrically towards the subnormal range; products of
        such tiny numbers fall into it even when the factors do not. Measured: an LSTM
        backward at T = 200 took 20x the time of T = 100. The flushed entries are below
        5e-29 in float32 and 1e-298 in float64: far under the rounding of any gradient
        of a loss of ordinary scale (``torch.set_flush_denormal`` makes the same trade).
        """
        near = False
        for a in carried:
            tiny = np.finfo(a.dtype).tiny
            mag = np.abs(a)
            small = mag < tiny * 2.0**64
            small &= a != 0
            if small.any():
                near = True
                np.copyto(a, 0, where=mag < tiny * 2.0**32)
        if near:
            for a in chunk:
                np.copyto(a, 0, where=np.abs(a) < np.finfo(a.dtype).tiny * 2.0**32)
        return near

    def info(self) -> dict:
        blas = "unknown"
        try:
            cfg = np.show_config(mode="dicts")
            b = cfg.get("Build Dependencies", {}).get("blas", {})
            blas = f"{b.get('name', '?')} {b.get('version', '')}".strip()
        except Exception:  # older NumPy: no dict mode
            pass
        return {"backend": self.name, "numpy": np.__version__, "blas": blas}
