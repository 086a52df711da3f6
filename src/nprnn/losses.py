"""Softmax cross-entropy with its exact gradient, for masked (padded) batches; torch's options.

With p_j = softmax(z_j) over the V classes, class weights w (all ones when ``weight`` is
None, W = Σ_c w_c), label smoothing ε and the positions that count
a_j = m_j · [y_j ≠ ignore_index] (m the mask, all ones when None)::

    loss_j  = (1 − ε) · w_{y_j} · (−log p_j[y_j])  +  (ε / V) · Σ_c w_c · (−log p_j[c])
    "sum":  L = Σ_j a_j loss_j
    "mean": L = Σ_j a_j loss_j / Z,   Z = Σ_j a_j w_{y_j}   (the count of a_j = 1 unweighted)
    dL/dz_j = (a_j / Z) · [((1 − ε) w_{y_j} + (ε / V) W) p_j
                           − (1 − ε) w_{y_j} onehot(y_j) − (ε / V) w]

(Z = 1 for "sum".) These are ``torch.nn.functional.cross_entropy``'s definitions for
class-index targets: a weighted mean divides by the summed weights of the counted
targets, the smoothing term is weighted by the class weights and shares that divisor.
Where nothing counts (a mask with no 1, every target ignored) or Z = 0, L = 0 and the
gradient is 0 (torch gives NaN: nothing to average, no 0/0). At positions that do not
count the target is neither read nor validated, so padding may hold any integer, e.g. −1.

On a GPU (CuPy logits) everything is computed on the device: host targets, mask and
weight are checked on the host and go there with one copy each; the loss comes back as
one scalar.
"""

from __future__ import annotations

import numbers

import numpy as np

from .validation import (
    _shape,
    array_module,
    as_array,
    as_bool_mask,
    float_array,
    one_of,
    real_in_range,
    to_module,
)

__all__ = ["softmax_cross_entropy"]


def _mask(mask, shape):
    m = as_array("mask", mask)
    if m.shape != shape:
        raise ValueError(
            f"mask has shape {_shape(m)} but targets is {_shape(np.empty(shape))}: "
            f"expected the same shape"
        )
    return as_bool_mask(m)


def softmax_cross_entropy(
    logits,
    targets,
    mask=None,
    reduction="mean",
    *,
    ignore_index=None,
    label_smoothing=0.0,
    weight=None,
):
    """Cross-entropy of integer ``targets`` under softmax(``logits``), and its gradient.

    Shapes: logits (..., V) float; targets (...) int in [0, V) where they count;
    mask (...) of 0/1 or bools, or None. ``reduction`` is ``"mean"`` (over the counted
    positions, weighted: see the module docstring) or ``"sum"``. ``ignore_index``: an
    int target value that does not count (like a 0 in the mask; torch's ``-100`` is not
    assumed: None ignores nothing). ``label_smoothing`` ε in [0, 1]. ``weight``: (V,)
    real class weights, or None. Returns ``(loss, dlogits)``: ``loss`` a Python float
    (accumulated in float64), ``dlogits`` of logits' shape and dtype. Stable for any
    finite logits (log-sum-exp with the row max subtracted).

    Example:

    >>> import numpy as np, nprnn
    >>> loss, dlogits = nprnn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 2]))
    >>> round(loss, 4)                             # uniform over 3 classes: ln 3
    1.0986
    >>> dlogits                                    # (softmax − one-hot) / 2
    array([[-0.33333333,  0.16666667,  0.16666667],
           [ 0.16666667,  0.16666667, -0.33333333]])
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
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral)
    ):
        raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
    eps = real_in_range("label_smoothing", label_smoothing, low=0.0, high=1.0)
    wv = None
    if weight is not None:
        wv = float_array("weight", weight)
        if wv.shape != (V,):
            raise ValueError(
                f"weight has shape {_shape(wv)}: expected ({V},), one weight per class "
                f"(logits has V={V})"
            )
    m = None if mask is None else _mask(mask, y.shape)
    yp = array_module(y)  # targets and mask are checked where they are (host, usually)
    counted = yp.ones(y.shape, dtype=bool) if m is None else to_module(m, yp)
    if ignore_index is not None:
        counted = counted & (y != ignore_index)
    bad = counted & ((y < 0) | (y >= V))
    if bad.any():
        idx = tuple(int(i) for i in yp.argwhere(bad)[0])
        raise ValueError(f"targets must hold ids in [0, {V}), got {int(y[idx])} at index {idx}")
    n = int(counted.sum())
    xp = array_module(z)  # then everything is computed where the logits are
    if n == 0:
        return 0.0, xp.zeros_like(z)
    y = yp.where(counted, y, 0).astype(np.intp)  # 0 where ignored
    counted, y = to_module(counted, xp), to_module(y, xp)[..., None]  # y (..., 1)
    if wv is not None:
        wv = to_module(wv, xp).astype(np.float64)
    dt = z.dtype.type
    if wv is None:
        wy64 = None  # the weight of each counted target is 1
        Z = float(n) if reduction == "mean" else 1.0
        w = counted.astype(z.dtype)[..., None]  # (..., 1): a_j / Z in z's dtype
        if reduction == "mean":
            w /= dt(n)
        c_sm = w * dt(eps / V) if eps else None  # (..., 1)
        c_nll = w * dt(1.0 - eps) if eps else w
        coef_p = c_nll + c_sm * dt(V) if eps else w
    else:
        wy64 = xp.where(counted, wv[y[..., 0]], 0.0)[..., None]  # (..., 1) a_j w_{y_j}
        Z = float(wy64.sum()) if reduction == "mean" else 1.0
        if Z == 0.0:
            return 0.0, xp.zeros_like(z)
        c_nll64 = (1.0 - eps) * wy64 / Z  # (..., 1)
        c_sm = (eps / V) * counted.astype(np.float64)[..., None] / Z  # (..., 1); times w below
        coef_p = (c_nll64 + c_sm * wv.sum()).astype(z.dtype)
        c_nll = c_nll64.astype(z.dtype)
    zmax = z.max(axis=-1, keepdims=True)  # (..., 1)
    # exp(very negative) -> 0 is the intended result; z - max below the dtype's range
    # (float32 logits near ±3e38) rounds to -inf, its correctly rounded value, exp = 0
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        e = z - zmax  # (..., V), max 0; a new array: z stays as it is
        if eps:  # Σ_c w_c (z_c − max), before e is overwritten, in float64
            if wv is None:
                sum_we = e.sum(axis=-1, dtype=np.float64)  # (...)
            else:
                sum_we = xp.tensordot(e, wv, axes=([-1], [0]))  # (...), float64
        xp.exp(e, out=e)
        s = e.sum(axis=-1, keepdims=True)  # (..., 1), in [1, V]
        # loss_j = log s + max − z[y] in float64: finite for any finite float32 logits,
        # even where z[y] − max is not representable in float32 (float64 logits more
        # than 1.8e308 apart give inf, the rounding of a loss beyond float64's range)
        logs = xp.log(s.astype(np.float64))  # (..., 1)
        nll = logs + (
            zmax.astype(np.float64) - xp.take_along_axis(z, y, axis=-1).astype(np.float64)
        )  # (..., 1)
        if wy64 is None and not eps:
            loss = float(xp.where(counted, nll[..., 0], 0.0).sum())  # masked: unread
        else:
            per = nll[..., 0] if wy64 is None else nll[..., 0] * wy64[..., 0]
            per = (1.0 - eps) * per
            if eps:
                W = float(V) if wv is None else float(wv.sum())
                per = per + (eps / V) * (W * logs[..., 0] - sum_we)  # Σ_c w_c (−log p_c)
            loss = float(xp.where(counted, per, 0.0).sum())
        dz = e
        dz *= coef_p / s  # softmax · coefficient
    rows = dz.reshape(-1, V)  # a view: e is a new contiguous array
    rows[xp.arange(rows.shape[0]), y.reshape(-1)] -= c_nll.reshape(-1)  # − c · onehot(y)
    if eps:
        if wv is None:
            dz -= c_sm
        else:
            dz -= (c_sm * wv).astype(z.dtype)  # (..., V)
    return (loss / Z if reduction == "mean" else loss), dz
