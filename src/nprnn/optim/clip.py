"""Gradient clipping by the global L2 norm, as ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..module import Module
from ..validation import array_module, real_in_range

__all__ = ["clip_grad_norm", "clip_grad_norm_"]

_CHUNK = 1 << 16  # float32 gradients are summed in float64 chunks of this many entries


def clip_grad_norm(grads, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    ``grads``: an :class:`nprnn.Module` (its ``grads``, a shared parameter's once) or a
    mapping name -> gradient array.

    ``norm = sqrt(sum_k ||g_k||²)`` is computed in float64; as in
    ``torch.nn.utils.clip_grad_norm_``, every gradient is multiplied by
    ``c = max_norm / (norm + 1e-6)`` when ``c < 1``. Returns the norm before clipping;
    a non-finite norm is returned as is and nothing is scaled (the caller decides).
    CuPy gradients are summed on the device; the norm comes to the host once per call.

    A mapping must hold writable real float ``np.ndarray`` (or CuPy) values (they are scaled in
    place); anything else is a ``TypeError``/``ValueError`` naming the key,
    raised before any gradient is touched.
    """
    if isinstance(grads, Module):
        grads = grads.grads
    if not isinstance(grads, Mapping):
        raise TypeError(
            f"grads must be a dict name -> np.ndarray (scaled in place), got {type(grads).__name__}"
        )
    for k, g in grads.items():
        if not isinstance(g, np.ndarray) and array_module(g) is np:
            raise TypeError(
                f"grads[{k!r}] must be a np.ndarray (scaled in place), got {type(g).__name__}"
            )
        if g.dtype.kind != "f":
            fix = ": convert it with .astype(np.float64)" if g.dtype.kind in "biu" else ""
            raise TypeError(
                f"grads[{k!r}] must hold real floats (it is scaled in place), "
                f"got dtype {g.dtype}{fix}"
            )
        if not g.flags.writeable:
            raise ValueError(
                f"grads[{k!r}] is read-only: clip_grad_norm scales it in place — pass a "
                "writable copy (np.array(g))"
            )
    max_norm = real_in_range("max_norm", max_norm, low=0, low_open=True)
    norm = global_norm(grads)
    if not math.isfinite(norm):
        return norm
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return norm


def global_norm(grads: Mapping) -> float:
    """``sqrt(sum_k ||g_k||²)`` of a mapping of gradient arrays, in float64, unchecked
    (:func:`clip_grad_norm` without the clipping)."""
    total = 0.0
    chunk = None
    device_sums = []  # CuPy: float64 sums left on the device, one transfer at the end
    for g in grads.values():
        flat = g.reshape(-1)
        xp = array_module(g)
        if xp is not np:
            f64 = flat.astype(xp.float64)
            device_sums.append(xp.dot(f64, f64))
            continue
        if g.dtype == np.float64:
            total += float(np.dot(flat, flat))
            continue
        if chunk is None:
            chunk = np.empty(_CHUNK, dtype=np.float64)
        for i in range(0, flat.size, _CHUNK):  # float64 sums without a full-size copy
            c = chunk[: min(_CHUNK, flat.size - i)]
            c[...] = flat[i : i + _CHUNK]
            total += float(np.dot(c, c))
    if device_sums:
        total += float(sum(device_sums))  # one device-to-host copy of the norm per call
    return math.sqrt(total)


clip_grad_norm_ = clip_grad_norm
"""torch's name (``torch.nn.utils.clip_grad_norm_``) for :func:`clip_grad_norm`, the same
function."""
