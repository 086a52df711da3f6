"""Sequence kernels with PyTorch's weights: forward and exact backward through time.

The interface is time-major: ``x`` is (T, B, F), states are (B, H), ``out`` is (T, B, H).
Weights use PyTorch's layout and gate order:

=====  ==  ==========================  ==============================================
cell   G   weight_ih (G·H, F)           step
=====  ==  ==========================  ==============================================
RNN    1   W_ih                         h' = act(W_ih x + b_ih + W_hh h + b_hh)
LSTM   4   [W_ii; W_if; W_ig; W_io]     gates i, f, g, o (see :func:`lstm_forward`)
GRU    3   [W_ir; W_iz; W_in]           gates r, z, n (see :func:`gru_forward`)
=====  ==  ==========================  ==============================================

**Masks** (T, B): 1 for a real step, 0 for padding; any pattern is allowed (left or
right padding, holes, a row of all zeros). At a padding step the state passes through
unchanged (``h_t = h_{t-1}``, and ``c_t = c_{t-1}`` for the LSTM), the output there is 0,
and in backward the gradient passes back along that carry. So ``h_n`` is each row's
state after its last real step, and a row with no real step keeps its initial state.
``reverse=True`` runs from t = T-1 down to 0 under the same rules; for right-padded
input that is what PyTorch's packed sequences compute for the backward direction.

Forward functions return ``(out, state_n, cache)``; backward functions take the upstream
gradients of ``out`` and of the final state (either may be ``None`` for zeros) and return
``(dx, dstate0, grads)``, ``grads`` keyed ``weight_ih, weight_hh[, bias_ih, bias_hh]``.
A cache may be backpropagated more than once, and it holds its own copies of the
weights, so updating the weights after the forward does not change its backward.

These functions validate their arguments and run the one driver,
:func:`nprnn.kernels.driver.forward` / ``backward`` (its docstring says how it is fast),
on the current backend (:mod:`nprnn.backends`); :func:`sequence_forward` /
:func:`sequence_backward` do the same for any registered cell
(:mod:`nprnn.kernels.cells`).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import backends
from .kernels import driver
from .kernels.cells import get_cell
from .validation import _shape, check_shape, float_array, mask_array, on_backend, one_of

__all__ = [
    "sigmoid",
    "softmax",
    "log_softmax",
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "sequence_forward",
    "sequence_backward",
]


# ----------------------------------------------------------------------------- activations


def _activation_input(x, axis=None):
    """``x`` as a finite float array (ints and bools become float64), and ``axis``
    checked against its ndim; complex, object, str, None and NaN/inf are refused."""
    x = float_array("x", x)
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an int, got {axis!r}")
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(
                f"axis must lie in [{-x.ndim}, {x.ndim}) for x of shape {_shape(x)}, got {axis}"
            )
    return x


def sigmoid(x):
    """σ(x) = 1 / (1 + e^(−x)), computed without overflow for any finite x.

    ``x``: a finite real array (ints and bools become float64). Underflow to 0 is the
    intended result and raises nothing, even under ``np.seterr(all="raise")``.

    Example:

    >>> import numpy as np
    >>> from nprnn.functional import sigmoid
    >>> sigmoid(np.array([0.0, 1000.0, -1000.0]))  # no overflow warning
    array([0.5, 1. , 0. ])
    """
    x = _activation_input(x)
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _shifted(x, axis):
    """x − max along ``axis`` (≤ 0). Where the true difference lies below the dtype's
    most negative value (float32 logits near ±3e38) it rounds to −inf, which is its
    correctly rounded value and gives exp = 0: no overflow warning is raised for it."""
    with np.errstate(over="ignore"):
        return x - np.max(x, axis=axis, keepdims=True)


def log_softmax(x, axis: int = -1):
    """log softmax(x) = x − max − log Σ exp(x − max) along ``axis``; stable for finite x.

    ``x``: a finite real array (ints and bools become float64); size 0 gives an empty
    array. An entry whose log-probability is below the dtype's range gives −inf.
    """
    x = _activation_input(x, axis)
    if x.size == 0:
        return np.empty(x.shape, dtype=x.dtype)
    shifted = _shifted(x, axis)
    with np.errstate(under="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x, axis: int = -1):
    """softmax(x)_k = exp(x_k − max) / Σ_j exp(x_j − max) along ``axis``.

    ``x``: a finite real array (ints and bools become float64); size 0 gives an empty
    array. Exact to rounding for any finite x, without over- or underflow errors.
    """
    x = _activation_input(x, axis)
    if x.size == 0:
        return np.empty(x.shape, dtype=x.dtype)
    with np.errstate(under="ignore"):
        e = np.exp(_shifted(x, axis))
        return e / np.sum(e, axis=axis, keepdims=True)


# ----------------------------------------------------------------------------- validation


def _what(obj) -> str:
    """A short description of an unexpected argument, for an error message."""
    if isinstance(obj, np.ndarray):
        return f"an array of shape {_shape(obj)}"
    if obj is None or isinstance(obj, (str, numbers.Number)) and len(repr(obj)) <= 40:
        return repr(obj)
    return f"a {type(obj).__name__}"


def _checked_inputs(cell, x, states, weights, mask, lengths):
    """x, the states and the weights as arrays of x's float dtype, checked against each
    other; the padding mask (T, 1, B) or None."""
    G, kind = cell.gates, cell.name.split("_")[0].upper()
    x = float_array("x", x, ndim=3)
    dt = x.dtype
    T, B, F = x.shape
    if T == 0 or B == 0:
        raise ValueError(f"x has shape {x.shape}: expected T ≥ 1 steps and B ≥ 1 sequences")
    w_ih, w_hh, b_ih, b_hh = weights
    w_ih = float_array("weight_ih", w_ih, ndim=2, dtype=dt)
    if w_ih.shape[0] % G or w_ih.shape[0] == 0:
        raise ValueError(
            f"weight_ih has {w_ih.shape[0]} rows: a {kind} needs G·H rows with G={G}, H ≥ 1"
        )
    H = w_ih.shape[0] // G
    shapes = cell.param_shapes(F, H, bias=b_ih is not None)
    check_shape("weight_ih", w_ih, shapes["weight_ih"], hint=f"x has F={F} features")
    w_hh = float_array("weight_hh", w_hh, ndim=len(shapes["weight_hh"]), dtype=dt)
    check_shape("weight_hh", w_hh, shapes["weight_hh"], hint=f"weight_ih implies H={H}")
    ws = [w_ih, w_hh]
    if (b_ih is None) != (b_hh is None):
        raise ValueError("pass both bias_ih and bias_hh, or neither")
    if b_ih is not None:
        for name, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
            b = float_array(name, b, ndim=1, dtype=dt)
            check_shape(name, b, (G * H,))
            ws.append(b)
    checked = []
    for name, s in states:
        if s is not None:
            s = float_array(name, s, ndim=2, dtype=dt)
            check_shape(name, s, (B, H), hint=f"x is (T={T}, B={B}, F={F}) and H={H}")
        checked.append(s)
    m = mask_array(mask, lengths, T, B)
    pad = None if m is None or m.all() else ~m[:, None, :]  # (T, 1, B)
    be = backends.current()  # everything on its device (a no-op on the host)
    x = on_backend("x", x, be)
    ws = [on_backend(n, w, be) for n, w in zip(cell.param_shapes(F, H), ws, strict=False)]
    names = [n for n, _ in states]
    checked = [
        None if s is None else on_backend(n, s, be) for n, s in zip(names, checked, strict=True)
    ]
    pad = None if pad is None else be.asarray(pad)
    return x, checked, ws, pad


def _check_cache(cache, kind: str) -> driver.Cache:
    """``cache`` if made by ``{kind}_forward``, else a TypeError that says which one."""
    want = f"cache must be the cache returned by {kind}_forward"
    if not isinstance(cache, driver.Cache):
        raise TypeError(f"{want}, got {_what(cache)}")
    made_by = cache.cell.name.split("_")[0]
    if made_by != kind and kind != "sequence":
        raise TypeError(
            f"{want}, got the cache of {made_by}_forward: pass it to {made_by}_backward"
        )
    return cache


def _checked_upstream(c: driver.Cache, dout, dstates, names):
    T, B, _ = c.x.shape
    H = c.slots[0].shape[1]
    dt = c.x.dtype
    if dout is not None:
        dout = on_backend("dout", float_array("dout", dout, ndim=3, dtype=dt), c.be)
        check_shape("dout", dout, (T, B, H), hint="it must match out")
    checked = []
    for name, d in zip(names, dstates, strict=True):
        if d is not None:
            d = on_backend(name, float_array(name, d, ndim=2, dtype=dt), c.be)
            check_shape(name, d, (B, H), hint="it must match the final state")
        checked.append(d)
    return dout, checked


def _check_dstate(dstate):
    """``(dh_n, dc_n)`` from ``dstate``: None, or a tuple/list of two (each may be None)."""
    if dstate is None:
        return None, None
    if not isinstance(dstate, (tuple, list)) or len(dstate) != 2:
        got = _what(dstate)
        if isinstance(dstate, (tuple, list)):
            got = f"a {type(dstate).__name__} of {len(dstate)} items"
        raise TypeError(
            f"dstate must be a pair (dh_n, dc_n) or None, got {got}: "
            "pass a tuple of the final h and c gradients (either may be None)"
        )
    return dstate[0], dstate[1]


# ----------------------------------------------------------------------------- any cell


def sequence_forward(cell, x, states=None, weights=(), *, mask=None, lengths=None,
                     reverse=False):  # fmt: skip
    """Run the registered cell ``cell`` (a name, see :mod:`nprnn.kernels.cells`) over x.

    Shapes: x (T, B, F); states a sequence with one (B, H) array or None per cell state
    (None: all zeros); weights ``[weight_ih, weight_hh]`` or with ``bias_ih, bias_hh``,
    shaped as ``cell.param_shapes(F, H)``. Returns ``out`` (T, B, H), the list of final
    states and a cache for :func:`sequence_backward`.
    """
    c = get_cell(cell) if isinstance(cell, str) else cell
    states = [None] * len(c.states) if states is None else list(states)
    if len(states) != len(c.states):
        raise ValueError(f"states must hold {len(c.states)} arrays {c.states}, got {len(states)}")
    weights = list(weights) + [None] * (4 - len(weights))
    named = [(n + "0", s) for n, s in zip(c.states, states, strict=True)]
    x, states, ws, pad = _checked_inputs(c, x, named, weights, mask, lengths)
    return driver.forward(c, x, states, ws, pad, reverse)


def sequence_backward(dout, dstates, cache):
    """Backward of :func:`sequence_forward`: ``dstates`` one (B, H) array or None per
    state (or None). Returns ``dx`` (T, B, F), the list of initial-state gradients and
    ``grads``."""
    c = _check_cache(cache, "sequence")
    names = [f"d{n}_n" for n in c.cell.states]
    dstates = [None] * len(names) if dstates is None else list(dstates)
    dout, dstates = _checked_upstream(c, dout, dstates, names)
    return driver.backward(c, dout, dstates)


# ----------------------------------------------------------------------------- RNN, LSTM, GRU


def rnn_forward(
    x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
    *, nonlinearity="tanh", mask=None, lengths=None, reverse=False,
):  # fmt: skip
    """Elman RNN over a whole sequence.

    h_t = act(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh),  act = tanh or relu

    Shapes: x (T, B, F); h0 (B, H) or None (zeros); weight_ih (H, F); weight_hh (H, H);
    biases (H,) or None; mask (T, B) or lengths (B,). Returns ``out`` (T, B, H),
    ``h_n`` (B, H) and a cache for :func:`rnn_backward`.
    """
    one_of("nonlinearity", nonlinearity, ("tanh", "relu"))
    cell = get_cell("rnn_" + nonlinearity)
    weights = [weight_ih, weight_hh, bias_ih, bias_hh]
    x, states, ws, pad = _checked_inputs(cell, x, [("h0", h0)], weights, mask, lengths)
    out, (h_n,), cache = driver.forward(cell, x, states, ws, pad, reverse)
    return out, h_n, cache


def rnn_backward(dout, dh_n, cache):
    """Backward of :func:`rnn_forward`.

    With dh = dout_t + dh_next (dout_t ignored at padding) and h_t = act(a_t):
    da_t = dh ⊙ (1 − h_t²) for tanh, dh ⊙ [h_t > 0] for relu, and 0 at padding;
    dh_prev = W_hhᵀ da_t, or dh itself at padding (the carry).
    Returns ``dx`` (T, B, F), ``dh0`` (B, H) and ``grads``.
    """
    c = _check_cache(cache, "rnn")
    dout, dstates = _checked_upstream(c, dout, [dh_n], ["dh_n"])
    dx, (dh0,), grads = driver.backward(c, dout, dstates)
    return dx, dh0, grads


def lstm_forward(
    x, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
    *, mask=None, lengths=None, reverse=False,
):  # fmt: skip
    """LSTM over a whole sequence (PyTorch's equations and gate order i, f, g, o).

    i = σ(W_ii x + b_ii + W_hi h + b_hi)     f = σ(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)  o = σ(W_io x + b_io + W_ho h + b_ho)
    c' = f ⊙ c + i ⊙ g                       h' = o ⊙ tanh(c')

    Shapes: x (T, B, F); h0, c0 (B, H) or None; weight_ih (4H, F); weight_hh (4H, H);
    biases (4H,) or None; mask (T, B) or lengths (B,). Returns ``out`` (T, B, H),
    ``(h_n, c_n)`` and a cache for :func:`lstm_backward`.
    """
    cell = get_cell("lstm")
    weights = [weight_ih, weight_hh, bias_ih, bias_hh]
    named = [("h0", h0), ("c0", c0)]
    x, states, ws, pad = _checked_inputs(cell, x, named, weights, mask, lengths)
    out, (h_n, c_n), cache = driver.forward(cell, x, states, ws, pad, reverse)
    return out, (h_n, c_n), cache


def lstm_backward(dout, dstate, cache):
    """Backward of :func:`lstm_forward`; ``dstate`` is ``(dh_n, dc_n)`` or None.

    Per step, with dh = dout_t + dh_next and tc = tanh(c_t):
    do = dh ⊙ tc;  dc = dc_next + dh ⊙ o ⊙ (1 − tc²)
    di = dc ⊙ g;   df = dc ⊙ c_{t−1};  dg = dc ⊙ i;  dc_prev = dc ⊙ f
    pre-activations: d(i, f, o) ⊙= s (1 − s), dg ⊙= 1 − g²;  dh_prev = W_hhᵀ dgates.
    At padding the gate gradients are 0 and (dh, dc) pass back unchanged.
    Returns ``dx`` (T, B, F), ``(dh0, dc0)`` and ``grads``.
    """
    c = _check_cache(cache, "lstm")
    dh_n, dc_n = _check_dstate(dstate)
    dout, dstates = _checked_upstream(c, dout, [dh_n, dc_n], ["dh_n", "dc_n"])
    dx, (dh0, dc0), grads = driver.backward(c, dout, dstates)
    return dx, (dh0, dc0), grads


def gru_forward(
    x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
    *, mask=None, lengths=None, reverse=False,
):  # fmt: skip
    """GRU over a whole sequence (PyTorch's equations and gate order r, z, n).

    r = σ(W_ir x + b_ir + W_hr h + b_hr)    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h

    Shapes: x (T, B, F); h0 (B, H) or None; weight_ih (3H, F); weight_hh (3H, H);
    biases (3H,) or None; mask (T, B) or lengths (B,). Returns ``out`` (T, B, H),
    ``h_n`` (B, H) and a cache for :func:`gru_backward`.
    """
    cell = get_cell("gru")
    weights = [weight_ih, weight_hh, bias_ih, bias_hh]
    x, states, ws, pad = _checked_inputs(cell, x, [("h0", h0)], weights, mask, lengths)
    out, (h_n,), cache = driver.forward(cell, x, states, ws, pad, reverse)
    return out, h_n, cache


def gru_backward(dout, dh_n, cache):
    """Backward of :func:`gru_forward`.

    Per step, with dh = dout_t + dh_next:
    dn = dh ⊙ (1 − z) ⊙ (1 − n²);  dz = dh ⊙ (h_{t−1} − n) ⊙ z(1 − z)
    dr = dn ⊙ (W_hn h + b_hn) ⊙ r(1 − r)
    the input side gets (dr, dz, dn), the recurrent side (dr, dz, dn ⊙ r), and
    dh_prev = dh ⊙ z + W_hhᵀ (dr, dz, dn ⊙ r); at padding dh carries back unchanged.
    Returns ``dx`` (T, B, F), ``dh0`` (B, H) and ``grads``.
    """
    c = _check_cache(cache, "gru")
    dout, dstates = _checked_upstream(c, dout, [dh_n], ["dh_n"])
    dx, (dh0,), grads = driver.backward(c, dout, dstates)
    return dx, dh0, grads
