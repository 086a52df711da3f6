"""Softmax cross-entropy with its exact gradient, for masked (padded) batches.

    loss_j  = −log softmax(z_j)[y_j] = logsumexp(z_j) − z_j[y_j]
    "sum":  L = Σ_j m_j loss_j                   w_j = m_j
    "mean": L = Σ_j m_j loss_j / Σ_j m_j          w_j = m_j / Σ m
    dL/dz_j = w_j · (softmax(z_j) − onehot(y_j))

j runs over every position of ``targets`` (any shape); m is the mask (all ones when
None). A mask with no 1 gives L = 0 and a zero gradient (nothing to average, and no
NaN from 0/0). At masked positions the target is ignored entirely: it is neither read
nor validated, so padding may hold any integer, e.g. −1.
"""

from __future__ import annotations

import numpy as np

from .validation import _shape, as_array, as_bool_mask, float_array, one_of

__all__ = ["softmax_cross_entropy"]


def _mask(mask, shape):
    m = as_array("mask", mask)
    if m.shape != shape:
        raise ValueError(
            f"mask has shape {_shape(m)} but targets is {_shape(np.empty(shape))}: "
            f"expected the same shape"
        )
    return as_bool_mask(m)


def softmax_cross_entropy(logits, targets, mask=None, reduction="mean"):
    """Cross-entropy of integer ``targets`` under softmax(``logits``), and its gradient.

    Shapes: logits (..., V) float; targets (...) int in [0, V) where mask is 1;
    mask (...) of 0/1 or bools, or None. ``reduction`` is ``"mean"`` (over the
    positions where mask is 1) or ``"sum"``. Returns ``(loss, dlogits)``: ``loss`` a
    Python float (accumulated in float64), ``dlogits`` of logits' shape and dtype.
    Stable for any finite logits (log-sum-exp with the row max subtracted).
    """
    one_of("reduction", reduction, ("mean", "sum"))
    z = float_array("logits", logits)
    if z.ndim == 0:
        raise ValueError("logits must have at least 1 dimension (..., V), got a scalar")
    V = z.shape[-1]
    if targets is None:
        raise TypeError("targets must be an array of integer class ids, got None")
    y = as_array("targets", targets)
    if y.dtype.kind not in "iu":
        raise TypeError(f"targets must hold integer class ids, got dtype {y.dtype}")
    if y.shape != z.shape[:-1]:
        raise ValueError(
            f"targets has shape {_shape(y)} but logits is {_shape(z)}: "
            f"expected {_shape(np.empty(z.shape[:-1]))}"
        )
    m = None if mask is None else _mask(mask, y.shape)
    counted = np.ones(y.shape, dtype=bool) if m is None else m
    bad = counted & ((y < 0) | (y >= V))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"targets must hold ids in [0, {V}), got {int(y[idx])} at index {idx}")
    n = int(np.count_nonzero(counted))
    if n == 0:
        return 0.0, np.zeros_like(z)
    y = np.where(counted, y, 0).astype(np.intp)[..., None]  # (..., 1), 0 where ignored
    w = counted.astype(z.dtype)[..., None]  # (..., 1)
    if reduction == "mean":
        w /= z.dtype.type(n)
    zmax = z.max(axis=-1, keepdims=True)  # (..., 1)
    # exp(very negative) -> 0 is the intended result; z - max below the dtype's range
    # (float32 logits near ±3e38) rounds to -inf, its correctly rounded value, exp = 0
    with np.errstate(under="ignore", over="ignore"):
        e = np.subtract(z, zmax)  # (..., V), max 0; a new array: z stays as it is
        np.exp(e, out=e)
        s = e.sum(axis=-1, keepdims=True)  # (..., 1), in [1, V]
        # loss_j = log s + max − z[y] in float64: finite for any finite float32 logits,
        # even where z[y] − max is not representable in float32 (float64 logits more
        # than 1.8e308 apart give inf, the rounding of a loss beyond float64's range)
        nll = np.log(s, dtype=np.float64) + (
            zmax.astype(np.float64) - np.take_along_axis(z, y, axis=-1).astype(np.float64)
        )  # (..., 1)
        loss = float(np.sum(nll[..., 0], where=counted, dtype=np.float64))  # masked: unread
        dz = e
        dz *= w / s  # softmax · w
    np.put_along_axis(dz, y, np.take_along_axis(dz, y, axis=-1) - w, axis=-1)
    return (loss / n if reduction == "mean" else loss), dz
