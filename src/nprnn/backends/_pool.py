"""Reused memory for the kernels' large arrays.

Memory fresh from the operating system costs a page fault on its first write, in which
the kernel zeroes the page. glibc gives every array above 32 MB (above ~128 KB at
first) back to the system when it is freed, so a training loop paid that price for the
cache of every step again: measured here, about 0.2 ms per MB, 20 ms of a 145 ms LSTM
forward at (H, B, T) = (256, 64, 150). The kernels take their large arrays from this
pool instead, which keeps freed buffers and hands them out again.

**When a buffer is free.** Every array handed out is a view of a pool buffer, and a
NumPy view, and any view of it, holds a reference to the array that owns the memory. A
buffer whose reference count is back to the pool's own is therefore unused by anyone
(a cache, an output the caller kept, a view of one) and is handed out again. The pool
holds at most ``LIMIT`` bytes, in use or not (beyond that, arrays come from NumPy as
usual); :func:`release` frees the unused buffers.
Arrays under ``MIN_BYTES`` come from NumPy as usual (malloc reuses those itself), and
on a free-threaded Python (no GIL, where reference counts are deferred) the pool is off.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 20
LIMIT = 1 << 30
_ALIGN = 64  # a cache line: what SIMD loads like best

_lock = threading.Lock()
# The first entry is a sentinel that nothing else refers to: its reference count, read
# in the same loop as the others', is what "unused" reads as on this Python version.
_buffers: list[np.ndarray] = [np.empty(0, dtype=np.uint8)]
_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()


def _idle() -> list[int]:
    """Indices of the unused buffers (call with the lock held)."""
    found, base = [], None
    for i, buf in enumerate(_buffers):
        refs = sys.getrefcount(buf)
        if i == 0:
            base = refs
        elif refs == base:
            found.append(i)
    return found


def empty(shape, dtype) -> np.ndarray:
    """Like ``np.empty(shape, dtype)`` (C order), from a reused buffer when it is large."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if not _enabled or nbytes < MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    with _lock:
        idle = _idle()
        fits = [i for i in idle if nbytes <= _buffers[i].nbytes - _ALIGN <= 2 * nbytes]
        if fits:
            buf = _buffers[min(fits, key=lambda i: _buffers[i].nbytes)]
        else:
            held = sum(b.nbytes for b in _buffers)
            _trim(idle, keep=LIMIT - (held - sum(_buffers[i].nbytes for i in idle)) - nbytes)
            if sum(b.nbytes for b in _buffers) + nbytes + _ALIGN > LIMIT:
                return np.empty(shape, dtype=dtype)  # the pool is full of arrays in use
            buf = np.empty(nbytes + _ALIGN, dtype=np.uint8)
            _buffers.append(buf)
        start = -buf.ctypes.data % _ALIGN
        return buf[start : start + nbytes].view(dtype).reshape(shape)


def _trim(idle: list[int], keep: int) -> None:
    """Drop unused buffers, largest first, until at most ``keep`` bytes of them remain."""
    total = sum(_buffers[i].nbytes for i in idle)
    drop = set()
    for i in sorted(idle, key=lambda i: -_buffers[i].nbytes):
        if total <= keep:
            break
        total -= _buffers[i].nbytes
        drop.add(i)
    _buffers[:] = [b for i, b in enumerate(_buffers) if i not in drop]


def release() -> int:
    """Free every unused pooled buffer; returns the number of bytes released."""
    with _lock:
        idle = _idle()
        freed = sum(_buffers[i].nbytes for i in idle)
        _trim(idle, keep=0)
    return freed


def empty_like(a: np.ndarray) -> np.ndarray:
    return empty(a.shape, a.dtype)
