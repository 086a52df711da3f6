"""Validation and plumbing behind :mod:`nprnn.classic`: the notebook's parameter dicts,
(n_x, m, Tx) arrays, masks and per-step caches checked at the boundary, with messages
that name the argument (``parameters is missing 'Waa' (expected keys Wax, Waa, Ba, Wya,
By)``), and the conversions between the notebook's layout and the kernels'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .validation import check_shape, float_array, format_shape, mask_array

RNN_KEYS = ("Wax", "Waa", "Ba", "Wya", "By")
LSTM_KEYS = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo", "Wy", "by")


# ----------------------------------------------------------------------------- validation


def _params(parameters, keys) -> dict:
    """The parameter dict as float arrays; a missing key is named."""
    if not isinstance(parameters, Mapping):
        raise TypeError(
            f"parameters must be a dict with keys {', '.join(keys)}, "
            f"got {type(parameters).__name__}"
        )
    for k in keys:
        if k not in parameters:
            raise ValueError(f"parameters is missing {k!r} (expected keys {', '.join(keys)})")
    return {k: float_array(f"parameters[{k!r}]", parameters[k], ndim=2) for k in keys}


def _rnn_dims(P, n_x):
    """Check the RNN parameter shapes against each other and n_x; return (n_a, n_y)."""
    n_a, n_y = P["Waa"].shape[0], P["Wya"].shape[0]
    src = f"n_a={n_a} from parameters['Waa']"
    check_shape("parameters['Waa']", P["Waa"], (n_a, n_a), hint="it must be square (n_a, n_a)")
    check_shape("parameters['Wax']", P["Wax"], (n_a, n_x), hint=f"{src}, n_x={n_x} from x")
    check_shape("parameters['Ba']", P["Ba"], (n_a, 1), hint=src)
    check_shape("parameters['Wya']", P["Wya"], (n_y, n_a), hint=src)
    check_shape("parameters['By']", P["By"], (n_y, 1), hint=f"n_y={n_y} from parameters['Wya']")
    return n_a, n_y


def _lstm_dims(P, n_x):
    """Check the LSTM parameter shapes against each other and n_x; return (n_a, n_y)."""
    n_a, n_y = P["Wf"].shape[0], P["Wy"].shape[0]
    src = f"n_a={n_a} from parameters['Wf']"
    for w, b in (("Wf", "bf"), ("Wi", "bi"), ("Wc", "bc"), ("Wo", "bo")):
        check_shape(
            f"parameters[{w!r}]", P[w], (n_a, n_a + n_x),
            hint=f"{src}, n_x={n_x} from x: (n_a, n_a + n_x)",
        )  # fmt: skip
        check_shape(f"parameters[{b!r}]", P[b], (n_a, 1), hint=src)
    check_shape("parameters['Wy']", P["Wy"], (n_y, n_a), hint=src)
    check_shape("parameters['by']", P["by"], (n_y, 1), hint=f"n_y={n_y} from parameters['Wy']")
    return n_a, n_y


def _state(name, a, n_a, m, src):
    a = float_array(name, a, ndim=2)
    check_shape(name, a, (n_a, m), hint=f"n_a={n_a} from {src}, m={m} from x")
    return a


def _dtype(*arrays) -> np.dtype:
    """The working dtype: NumPy's promotion of float32/float64 arrays."""
    return np.result_type(*arrays)


def _cast(dt, *arrays):
    return tuple(a.astype(dt, copy=False) for a in arrays)


def _sequence_input(x):
    x = float_array("x", x, ndim=3)
    n_x, m, Tx = x.shape
    if m == 0 or Tx == 0:
        raise ValueError(
            f"x has shape {format_shape(x.shape)}: it needs m >= 1 sequences and Tx >= 1 steps"
        )
    return x


def _mask(mask, Tx, m, ref="x is (n_x, m={m}, Tx={Tx})"):
    """Validate a (Tx, m) 0/1 mask; return it as bool, or None."""
    if mask is None:
        return None
    mk = np.asarray(mask)
    if mk.shape != (Tx, m):
        raise ValueError(
            f"mask has shape {format_shape(mk.shape)} but {ref.format(m=m, Tx=Tx)}: "
            f"expected (Tx, m) = ({Tx}, {m})"
        )
    return mask_array(mk, None, Tx, m)


def _mask_t(mask_t, m, dt):
    """Validate a one-step mask of shape (1, m) (or (m,)); return it as (1, m) floats."""
    if mask_t is None:
        return None
    mk = np.asarray(mask_t)
    if mk.shape not in ((1, m), (m,)):
        raise ValueError(f"mask_t has shape {format_shape(mk.shape)}: expected (1, m) = (1, {m})")
    return mask_array(mk.reshape(1, m), None, 1, m).astype(dt)


def _unpack(cache, n, what, where="cache"):
    if not isinstance(cache, (tuple, list)) or len(cache) != n:
        got = type(cache).__name__
        if isinstance(cache, (tuple, list)):
            got = f"a {got} of length {len(cache)}"
        raise TypeError(f"{where} must be the {n}-tuple {what} returned, got {got}")
    return cache


def _in(where, check, *args):
    """``check(*args)``, its ValueError/TypeError prefixed with ``where`` (a cache)."""
    try:
        return check(*args)
    except (TypeError, ValueError) as e:
        raise (ValueError if isinstance(e, ValueError) else TypeError)(f"{where}: {e}") from None


def _cache_state(name, a, n_a, m, src):
    """A (n_a, m) state or gate field of a cache, as a float array."""
    a = float_array(name, a, ndim=2)
    check_shape(name, a, (n_a, m), hint=src)
    return a


_RNN_CACHE = "(at, a_prev, xt, parameters, mask_t) rnnCell_forward"
_LSTM_CACHE = "(a_next, c_next, a_prev, c_prev, xt, parameters, gates, mask_t) lstmCell_forward"


def _rnn_step_cache(cache, where="cache"):
    """Validate one rnnCell_forward cache: every field's type, and shapes against each
    other (n_x from xt, n_a and n_y from the parameters, m from xt).

    Returns ``(at, a_prev, xt, P, mk)``: float arrays, the parameter dict as float
    arrays, and the mask as (1, m) float64 0/1 or None.
    """
    at, a_prev, xt, parameters, mask_t = _unpack(cache, 5, _RNN_CACHE, where)

    def check():
        P = _params(parameters, RNN_KEYS)
        x = float_array("xt", xt, ndim=2)
        n_x, m = x.shape
        n_a, _ = _rnn_dims(P, n_x)
        src = f"n_a={n_a} from parameters['Waa'], m={m} from xt"
        a = _cache_state("at", at, n_a, m, src)
        ap = _cache_state("a_prev", a_prev, n_a, m, src)
        return a, ap, x, P, _mask_t(mask_t, m, np.float64)

    return _in(where, check)


def _lstm_step_cache(cache, where="cache"):
    """Validate one lstmCell_forward cache (as :func:`_rnn_step_cache`; the gates are
    the 4-tuple (ft, it, cct, ot) of (n_a, m) arrays).

    Returns ``(a_next, c_next, a_prev, c_prev, xt, P, (ft, it, cct, ot), mk)``.
    """
    fields = _unpack(cache, 8, _LSTM_CACHE, where)
    a_next, c_next, a_prev, c_prev, xt, parameters, gates, mask_t = fields

    def check():
        P = _params(parameters, LSTM_KEYS)
        x = float_array("xt", xt, ndim=2)
        n_x, m = x.shape
        n_a, _ = _lstm_dims(P, n_x)
        src = f"n_a={n_a} from parameters['Wf'], m={m} from xt"
        states = [
            _cache_state(name, v, n_a, m, src)
            for name, v in (("a_next", a_next), ("c_next", c_next), ("a_prev", a_prev),
                            ("c_prev", c_prev))
        ]  # fmt: skip
        if not isinstance(gates, (tuple, list)) or len(gates) != 4:
            got = type(gates).__name__
            if isinstance(gates, (tuple, list)):
                got = f"a {got} of length {len(gates)}"
            raise TypeError(f"gates must be the 4-tuple (ft, it, cct, ot), got {got}")
        gs = tuple(
            _cache_state(name, g, n_a, m, src)
            for name, g in zip(("ft", "it", "cct", "ot"), gates, strict=True)
        )
        return (*states, x, P, gs, _mask_t(mask_t, m, np.float64))

    return _in(where, check)


def _predictions(y_pred, y_true):
    y_pred = float_array("y_pred", y_pred, ndim=3)
    if 0 in y_pred.shape:
        raise ValueError(
            f"y_pred has shape {format_shape(y_pred.shape)}: it needs n_y >= 1 classes, m >= 1 "
            "sequences and Tx >= 1 steps (n_y, m, Tx)"
        )
    y_true = float_array("y_true", y_true)
    check_shape("y_true", y_true, y_pred.shape, hint="the shape of y_pred, (n_y, m, Tx)")
    dt = _dtype(y_pred, y_true)
    return _cast(dt, y_pred, y_true)


def _dlogits(y_pred, y_true, mask):
    """∂compute_loss/∂(logits), (n_y, m, Tx): (ŷ·Σ_k y_k − y) / N at valid tokens, else 0.

    This is the derivative of the cross-entropy −Σ y log ŷ (for one-hot or any targets
    summing to 1 it is the familiar (ŷ − y) / N).
    """
    n_y, m, Tx = y_pred.shape
    dz = y_pred * y_true.sum(axis=0, keepdims=True)
    dz -= y_true
    if mask is None:
        n_tokens = m * Tx
    else:
        dz *= mask.T[None].astype(dz.dtype)  # (1, m, Tx)
        n_tokens = int(mask.sum())
    if n_tokens:
        dz /= n_tokens
    return dz


def _steps_mask(steps, m):
    """The (Tx, m) bool mask stored in validated per-step caches (None if none had one)."""
    masks = [step[-1] for step in steps]
    if all(mk is None for mk in masks):
        return None
    return np.vstack([np.ones((1, m), bool) if mk is None else mk > 0.5 for mk in masks])


def _carried(out, mask, s0):
    """States after each step, (T, B, H), from the kernel's ``out`` (0 at padding).

    At a padded step the state is the one after the last real step before it, or s0 (B, H).
    """
    if mask is None:
        return out
    T, B, _ = out.shape
    slot = np.where(mask, np.arange(1, T + 1)[:, None], 0)  # (T, B): 0 means s0
    slot = np.maximum.accumulate(slot, axis=0)
    states = np.concatenate((s0[None], out))  # (T+1, B, H)
    return states[slot, np.arange(B)[None, :]]


class _Caches(list):
    """The notebook's list of per-step caches; ``fast`` holds what the kernels need."""

    __slots__ = ("fast",)


def _check_caches(caches, what, y_pred, kind):
    """Check ``caches`` against y_pred (n_y, m, Tx); return ``(fast, None)`` for the
    caches of rnn_forward/lstm_forward (the kernel's path), else ``(None, steps)``: every
    per-step cache validated (:func:`_rnn_step_cache` / :func:`_lstm_step_cache`), all
    of the same n_x, n_a and m, and n_y that of y_pred."""
    if not isinstance(caches, Sequence) or len(caches) == 0:
        raise TypeError(f"caches must be the non-empty list {what} returned")
    n_y, m, Tx = y_pred.shape
    if len(caches) != Tx:
        raise ValueError(f"caches has {len(caches)} steps but y_pred has Tx={Tx}")
    wy = "Wya" if kind == "RNN" else "Wy"
    fast = getattr(caches, "fast", None)
    if fast is not None and fast[0] == kind and fast[2].shape[:2] == (Tx, m):
        _check_n_y(n_y, m, Tx, wy, fast[3].shape)
        return fast, None
    validate, ix, ip = (_rnn_step_cache, 2, 3) if kind == "RNN" else (_lstm_step_cache, 4, 5)
    steps = []
    for t, c in enumerate(caches):
        step = validate(c, f"caches[{t}]")
        a, x = step[0].shape, step[ix].shape  # (n_a, m), (n_x, m)
        if a[1] != m:
            raise ValueError(
                f"caches[{t}] holds states of shape {format_shape(a)} but y_pred has m={m}"
            )
        if steps and (a, x) != (steps[0][0].shape, steps[0][ix].shape):
            a0, x0 = steps[0][0].shape, steps[0][ix].shape
            raise ValueError(
                f"caches[{t}] holds a state {format_shape(a)} and xt {format_shape(x)} but "
                f"caches[0] holds {format_shape(a0)} and {format_shape(x0)}: all steps must "
                "come from one forward pass"
            )
        _check_n_y(n_y, m, Tx, wy, step[ip][wy].shape, where=f"caches[{t}]")
        steps.append(step)
    return None, steps


def _check_n_y(n_y, m, Tx, wy, w_shape, where="caches"):
    if w_shape[0] != n_y:
        raise ValueError(
            f"y_pred has n_y={n_y} classes but the parameters in {where} have "
            f"n_y={w_shape[0]} ({wy} is {format_shape(w_shape)}): expected y_pred and y_true "
            f"of shape (n_y, m, Tx) = ({w_shape[0]}, {m}, {Tx})"
        )
