"""Pure NumPy recurrent kernels: forward and exact backward through time.

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
A cache may be backpropagated more than once. Weights updated in place between a
forward and its backward make the RNN/GRU backward raise ``RuntimeError`` (their caches
hold the caller's arrays); the LSTM cache keeps its own reordered copy.

**How it is fast.** What PyTorch's CPU path and cuDNN do, plus care for NumPy's costs:

1. The input projection is one GEMM per chunk of steps, (G·H, F) × (F, K·B), into a
   buffer that stays in cache (as fast as one GEMM over all T·B columns).
2. One fused gate GEMM per step for the recurrence, written into preallocated buffers.
3. Inside, every per-step array is feature-major, (G·H, B): each gate is a contiguous
   (H, B) block, so the element-wise passes run on contiguous memory (2–4× faster in
   NumPy than on the strided column blocks of a (B, G·H) array).
4. Sigmoid is ``0.5·tanh(a/2) + 0.5``, with the ½ folded into the sigmoid gates'
   weights (a power-of-two scaling is exact): one tanh over all gates, no overflow.
5. Backward multiplies the upstream gradient by per-step factors (σ', tanh', the other
   gates) that are computed for a chunk of steps at once, so a step costs a handful of
   NumPy calls even when B is 1, while the chunk stays in cache when B·H is large.
6. After the backward loop, dW_ih, dW_hh and dx are single GEMMs over all T·B rows.
7. A gradient vanishing through time is flushed to zero before it turns subnormal
   (x86 computes 10-100× slower on subnormal floats); see :func:`_flush_subnormals_`.
8. The large arrays (caches, outputs, gradients) come from a pool of reused buffers
   (``nprnn._workspace``): fresh memory costs a page fault per 4 KB on first write,
   about 15% of an LSTM forward at (H, B, T) = (256, 64, 150).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import _workspace
from .validation import _shape, check_finite, check_shape, float_array, mask_array, one_of

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
]

# Elements per backward chunk of precomputed factors: ~256 KB of float32, cache-sized.
_CHUNK_ELEMS = 1 << 16
# ... and at most this many steps, so a gradient vanishing through time spends at most
# that many steps as subnormal numbers before it is flushed (see _flush_subnormals_).
_CHUNK_STEPS = 16
# Columns (steps × batch rows) per chunk of the forward's input projection: from about
# 256 on, a (G·H, F) @ (F, K·B) GEMM runs as fast as one over all T·B columns (measured,
# OpenBLAS float32, H = F = 256..1024). 512, 1024 and 4096 timed within noise of each
# other on the bench's LSTM steps; 1024 keeps its two short-sequence shapes in one chunk.
_PROJ_COLS = 1024


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


# ----------------------------------------------------------------------------- shared plumbing


@dataclass
class _Cache:
    """What backward needs; per-step arrays are feature-major (·, B)."""

    x: np.ndarray  # (T, B, F) input
    gates: np.ndarray  # (T, G·H, B) activated gates (LSTM: o, i, f, g; GRU: r, z, n)
    hs: np.ndarray  # (T+1, H, B) state slots, see _slots
    hs_bh: np.ndarray  # (T+1, B, H) the same states, batch-major
    w_ih: np.ndarray  # (G·H, F) RNN/GRU: the caller's array; LSTM: internal (see _lstm_weights)
    w_hh: np.ndarray  # (G·H, H) likewise
    has_bias: bool
    pad: np.ndarray | None  # (T, 1, B) bool, True at padding; None if no padding
    reverse: bool
    relu: bool = False  # RNN nonlinearity
    cs: np.ndarray | None = None  # LSTM: (T+1, H, B) cell-state slots
    tanh_c: np.ndarray | None = None  # LSTM: (T, H, B) tanh(c_t)
    hn_part: np.ndarray | None = None  # GRU: (T, H, B) W_hn h + b_hn
    kind: str = ""  # "rnn", "lstm" or "gru": the forward that made it
    versions: tuple = ()  # RNN/GRU: sums of the caller's weights, checked by backward


def _what(obj) -> str:
    """A short description of an unexpected argument, for an error message."""
    if isinstance(obj, np.ndarray):
        return f"an array of shape {_shape(obj)}"
    if obj is None or isinstance(obj, (str, numbers.Number)) and len(repr(obj)) <= 40:
        return repr(obj)
    return f"a {type(obj).__name__}"


def _check_cache(cache, kind: str) -> _Cache:
    """``cache`` if it is a :class:`_Cache` made by ``{kind}_forward``, else a TypeError."""
    want = f"cache must be the cache returned by {kind}_forward"
    if not isinstance(cache, _Cache):
        raise TypeError(f"{want}, got {_what(cache)}")
    if cache.kind != kind:
        raise TypeError(
            f"{want}, got the cache of {cache.kind or 'another'}_forward: "
            f"pass it to {cache.kind}_backward"
        )
    return cache


def _slots(T: int, reverse: bool, t0: int = 0, t1: int | None = None):
    """Step order and state slots: step t reads slot ``prev``, writes slot ``nxt``;
    for the steps in [t0, t1) (all by default), in the forward's processing order.

    Forward: slot 0 = h0, slot t+1 = state after step t. Reverse: slot T = h0, slot t =
    state after step t. In time order, the states before the steps are ``hs[:-1]``
    (forward) or ``hs[1:]`` (reverse) and the final state is ``hs[-1]`` or ``hs[0]``.
    """
    t1 = T if t1 is None else t1
    if reverse:
        return [(t, t + 1, t) for t in range(t1 - 1, t0 - 1, -1)]
    return [(t, t, t + 1) for t in range(t0, t1)]


def _before(buf, reverse):
    """(T, ·) view of the slots holding each step's previous state."""
    return buf[1:] if reverse else buf[:-1]


def _after(buf, reverse):
    """(T, ·) view of the slots holding each step's new state."""
    return buf[:-1] if reverse else buf[1:]


def _chunks(T: int, per_step: int, reverse: bool):
    """Backward visits steps in chunks [t0, t1) of about _CHUNK_ELEMS elements each."""
    k = max(1, min(T, _CHUNK_STEPS, _CHUNK_ELEMS // max(per_step, 1)))
    bounds = [(t0, min(t0 + k, T)) for t0 in range(0, T, k)]
    return bounds if reverse else bounds[::-1]


def _flush_spans(chunks):
    """For each backward chunk, the steps [lo, hi) whose stored gradients the subnormal
    check after it covers, or None for no check there: it runs once _CHUNK_STEPS steps
    have gone by since the last one (a check costs ~8 passes over the carried
    gradients: every step would be 5% of an LSTM backward at H·B = 16K), and at the end."""
    spans, lo, hi = [], None, None
    for i, (t0, t1) in enumerate(chunks):
        lo, hi = (t0, t1) if lo is None else (min(lo, t0), max(hi, t1))
        if hi - lo >= _CHUNK_STEPS or i == len(chunks) - 1:
            spans.append((lo, hi))
            lo = hi = None
        else:
            spans.append(None)
    return spans


def _flush_subnormals_(carried, chunk=()) -> bool:
    """Zero the entries of the carried state gradients below ``tiny``·2^32 (tiny: the
    dtype's smallest normal number), in place, and those of ``chunk`` (stored gate
    gradients) too when the carried ones come near that range. Returns whether they do
    (a nonzero entry below ``tiny``·2^64): the backward loop then flushes at every step.

    A gradient that vanishes through time (the tanh RNN on a long sequence; any cell at
    initialisation) decays geometrically towards the subnormal range, where x86 CPUs
    compute 10-100x slower; products of such tiny numbers fall into it even when the
    factors do not. Measured: an LSTM backward at T = 200 took 20x the time of T = 100.
    In float32 the flushed entries are below 5e-29, in float64 below 1e-298: far under
    the rounding of any gradient of a loss of ordinary scale, so every result stays as
    exact as float arithmetic allows (torch.set_flush_denormal makes the same trade).
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


def _prepare(kind, G, x, states, weight_ih, weight_hh, bias_ih, bias_hh, mask, lengths, reverse):
    """Validate at the boundary; return arrays of one float dtype, the state slot buffers
    (T+1, H, B) holding the initial states, and the padding mask (T, 1, B) or None."""
    x = float_array("x", x, ndim=3)
    dt = x.dtype
    T, B, F = x.shape
    if T == 0 or B == 0:
        raise ValueError(f"x has shape {x.shape}: expected T ≥ 1 steps and B ≥ 1 sequences")
    weight_ih = float_array("weight_ih", weight_ih, ndim=2, dtype=dt, finite=False)
    if weight_ih.shape[0] % G or weight_ih.shape[0] == 0:
        raise ValueError(
            f"weight_ih has {weight_ih.shape[0]} rows: a {kind} needs G·H rows with G={G}, H ≥ 1"
        )
    H = weight_ih.shape[0] // G
    check_shape("weight_ih", weight_ih, (G * H, F), hint=f"x has F={F} features")
    weight_hh = float_array("weight_hh", weight_hh, ndim=2, dtype=dt, finite=False)
    check_shape("weight_hh", weight_hh, (G * H, H), hint=f"weight_ih implies H={H}")
    versions = (_version("weight_ih", weight_ih), _version("weight_hh", weight_hh))
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("pass both bias_ih and bias_hh, or neither")
    if bias_ih is not None:
        bias_ih = float_array("bias_ih", bias_ih, ndim=1, dtype=dt)
        check_shape("bias_ih", bias_ih, (G * H,))
        bias_hh = float_array("bias_hh", bias_hh, ndim=1, dtype=dt)
        check_shape("bias_hh", bias_hh, (G * H,))
    slots = []
    for name, s in states:
        if s is None:
            s = np.zeros((B, H), dtype=dt)
        else:
            s = float_array(name, s, ndim=2, dtype=dt)
            check_shape(name, s, (B, H), hint=f"x is (T={T}, B={B}, F={F}) and H={H}")
        buf = _workspace.empty((T + 1, H, B), dt)
        buf[T if reverse else 0] = s.T
        slots.append(buf)
    m = mask_array(mask, lengths, T, B)
    pad = None if m is None or m.all() else ~m[:, None, :]  # (T, 1, B)
    return x, slots, weight_ih, weight_hh, bias_ih, bias_hh, pad, versions


def _version(name, w) -> float:
    """The sum of ``w``: a one-pass finiteness check (NaN/inf make it non-finite) and a
    fingerprint that backward compares, so weights updated in place between forward and
    backward are an error rather than a silent mix of two sets of weights (the RNN and
    GRU caches hold the caller's arrays; copying them would cost more than the check)."""
    with np.errstate(over="ignore", invalid="ignore"):
        v = float(np.add.reduce(w, axis=None))
    if not np.isfinite(v):
        check_finite(name, w)  # names the bad entry; a mere overflow passes
    return v


def _check_versions(c: _Cache) -> None:
    names = ("weight_ih", "weight_hh")
    for name, w, v in zip(names, (c.w_ih, c.w_hh), c.versions, strict=True):
        with np.errstate(over="ignore", invalid="ignore"):
            now = float(np.add.reduce(w, axis=None))
        if now != v and not (np.isnan(now) and np.isnan(v)):
            raise RuntimeError(
                f"{name} changed between {c.kind}_forward and {c.kind}_backward: the "
                "gradient would mix two sets of weights; run the forward again after "
                "updating the weights"
            )


def _check_upstream(c: _Cache, dout, dstates, names):
    """dout (T, B, H) → (T, H, B) with zeros at padding; dstates (B, H) → (H, B) copies."""
    T, B, _ = c.x.shape
    H = c.hs.shape[1]
    dt = c.x.dtype
    if dout is None:
        dout_t = _workspace.empty((T, H, B), dt)
        dout_t[...] = 0
    else:
        dout = float_array("dout", dout, ndim=3, dtype=dt)
        check_shape("dout", dout, (T, B, H), hint="it must match out")
        dout_t = _workspace.empty((T, H, B), dt)  # a copy: written below
        np.copyto(dout_t, dout.transpose(0, 2, 1))
        if c.pad is not None:
            np.copyto(dout_t, 0, where=c.pad)  # out is constant 0 at padding
    res = []
    for name, d in zip(names, dstates, strict=True):
        if d is None:
            res.append(np.zeros((H, B), dtype=dt))
        else:
            d = float_array(name, d, ndim=2, dtype=dt)
            check_shape(name, d, (B, H), hint="it must match the final state")
            res.append(np.array(d.T, order="C"))  # a copy: accumulated into
    return dout_t, res


def _projected_steps(x, w_ih, bias, reverse):
    """The steps in processing order as ``(t, prev, nxt, xp_t)`` (see :func:`_slots`),
    with xp_t (G·H, B) = W_ih x_t + b.

    The projection is one GEMM per chunk of steps, (G·H, F) @ (F, K·B) with K·B about
    _PROJ_COLS, into one reused buffer: as fast as a single GEMM over all T·B columns,
    without a (G·H, T·B) array written to memory and read back.
    """
    T, B, F = x.shape
    G = w_ih.shape[0]
    k = max(1, min(T, -(-_PROJ_COLS // B)))
    buf = _workspace.empty((G * k * B,), x.dtype)
    for t0 in range(T - k, -k, -k) if reverse else range(0, T, k):
        t0, t1 = max(t0, 0), min(t0 + k, T)
        K = t1 - t0
        if B == 1:  # step-major (K, G·H): each xp_t is contiguous, not a strided column
            xp = buf[: G * K].reshape(K, G)
            np.matmul(x[t0:t1, 0], w_ih.T, out=xp)
            if bias is not None:
                xp += bias
            steps = [xp[t - t0, :, None] for t in range(t0, t1)]
        else:
            xp = buf[: G * K * B].reshape(G, K * B)  # column = (step, row)
            np.matmul(w_ih, x[t0:t1].reshape(K * B, F).T, out=xp)
            if bias is not None:
                xp += bias[:, None]
            steps = [xp[:, (t - t0) * B : (t - t0 + 1) * B] for t in range(t0, t1)]
        for t, prev, nxt in _slots(T, reverse, t0, t1):
            yield t, prev, nxt, steps[t - t0]


def _batch_major(hs, reverse):
    """A (T+1, B, H) twin of the state slots, initial slot filled, and whether the
    forward loop must write each new state into it too (a per-step transposed copy is
    cheaper than transposing all states afterwards; out and dW_hh read them contiguously).
    When B = 1 the slots already are batch-major: the twin is a view, nothing to write."""
    T, H, B = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    if B == 1:
        return hs.reshape(T + 1, 1, H), False
    hs_bh = _workspace.empty((T + 1, B, H), hs.dtype)
    s = T if reverse else 0
    hs_bh[s] = hs[s].T
    return hs_bh, True


def _outputs(hs_bh, pad, reverse):
    """out (T, B, H): the state after each step, 0 at padding; and the final state (B, H)."""
    out = _workspace.empty_like(_after(hs_bh, reverse))  # (T, B, H)
    np.copyto(out, _after(hs_bh, reverse))
    if pad is not None:
        np.copyto(out, 0, where=pad.transpose(0, 2, 1))
    final = (hs_bh[0] if reverse else hs_bh[-1]).copy()
    return out, final


def _reordered(dg):
    """(T, G·H, B) -> (G·H, T·B): a copy, or a transposed view when B = 1."""
    T, GH, B = dg.shape
    if B == 1:
        return dg.reshape(T, GH).T
    out = _workspace.empty((GH, T, B), dg.dtype)
    np.copyto(out, dg.transpose(1, 0, 2))
    return out.reshape(GH, T * B)


def _weight_grads(c: _Cache, dg_ih, dg_hh, rows=None):
    """dx, dW_ih, dW_hh, db as single GEMMs over all T·B rows; dg_* are (T, G·H, B).

    One reordering copy to (G·H, T·B) costs less than storing each step's gradients
    into that layout (rows of B values 4·T·B bytes apart) inside the loop. ``rows``:
    (source, destination) row slices, to write the weight gradients in another gate
    order straight from the GEMMs (the LSTM's internal order -> PyTorch's).
    """
    T, B, F = c.x.shape
    H = c.hs.shape[1]
    dgi = _reordered(dg_ih)  # (G·H, T·B)
    dgh = dgi
    if dg_hh is not None:
        dgh = _reordered(dg_hh)
    h_prev = _before(c.hs_bh, c.reverse)  # (T, B, H), contiguous
    dx = _workspace.empty((T, B, F), dgi.dtype)
    np.matmul(dgi.T, c.w_ih, out=dx.reshape(T * B, F))
    rows = rows or [(slice(None), slice(None))]

    def gemm(d, a):  # d aᵀ summed over all T·B rows, rows reordered
        out = _workspace.empty((d.shape[0], a.shape[1]), d.dtype)
        for src, dst in rows:
            np.matmul(d[src], a, out=out[dst])
        return out

    grads = {
        "weight_ih": gemm(dgi, c.x.reshape(T * B, F)),  # (G·H, F)
        "weight_hh": gemm(dgh, h_prev.reshape(T * B, H)),  # (G·H, H)
    }
    if c.has_bias:
        grads["bias_ih"] = np.empty(dgi.shape[0], dtype=dgi.dtype)
        grads["bias_hh"] = np.empty_like(grads["bias_ih"])
        for src, dst in rows:
            grads["bias_ih"][dst] = dgi[src].sum(axis=1)
            grads["bias_hh"][dst] = dgh[src].sum(axis=1) if dg_hh is not None else 0
        if dg_hh is None:  # one pre-activation feeds both biases
            grads["bias_hh"][...] = grads["bias_ih"]
    return dx, grads


# ----------------------------------------------------------------------------- vanilla RNN


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
    x, (hs,), w_ih, w_hh, b_ih, b_hh, pad, versions = _prepare(
        "RNN", 1, x, [("h0", h0)], weight_ih, weight_hh, bias_ih, bias_hh, mask, lengths, reverse
    )
    hs_bh, twin = _batch_major(hs, reverse)
    bias = None if b_ih is None else b_ih + b_hh
    for t, prev, nxt, xp_t in _projected_steps(x, w_ih, bias, reverse):
        h = hs[nxt]  # (H, B)
        np.dot(w_hh, hs[prev], out=h)
        h += xp_t
        if nonlinearity == "tanh":
            np.tanh(h, out=h)
        else:
            np.maximum(h, 0, out=h)
        if pad is not None:
            np.copyto(h, hs[prev], where=pad[t])  # carry the state through padding
        if twin:
            hs_bh[nxt] = h.T
    cache = _Cache(
        x, hs, hs, hs_bh, w_ih, w_hh, b_ih is not None, pad, reverse, nonlinearity == "relu",
        kind="rnn", versions=versions,
    )  # fmt: skip
    return (*_outputs(hs_bh, pad, reverse), cache)


def rnn_backward(dout, dh_n, cache: _Cache):
    """Backward of :func:`rnn_forward`.

    With dh = dout_t + dh_next (dout_t ignored at padding) and h_t = act(a_t):
    da_t = dh ⊙ (1 − h_t²) for tanh, dh ⊙ [h_t > 0] for relu, and 0 at padding;
    dh_prev = W_hhᵀ da_t, or dh itself at padding (the carry).
    Returns ``dx`` (T, B, F), ``dh0`` (B, H) and ``grads``.
    """
    c = _check_cache(cache, "rnn")
    _check_versions(c)
    dout_t, (dh,) = _check_upstream(c, dout, [dh_n], ["dh_n"])
    T, B, _ = c.x.shape
    H = c.hs.shape[1]
    d_all = _workspace.empty((T, H, B), dh.dtype)  # pre-activation gradients
    dh_prev = np.empty_like(dh)
    careful = False  # flush after every step: the gradient is vanishing
    chunks = _chunks(T, H * B, c.reverse)
    for (t0, t1), span in zip(chunks, _flush_spans(chunks), strict=True):
        # act'(a) for the chunk, 0 at padding
        h_new = _after(c.hs, c.reverse)[t0:t1]  # (K, H, B)
        if c.relu:
            act_d = (h_new > 0).astype(dh.dtype)
        else:
            act_d = np.multiply(h_new, h_new)
            np.subtract(1, act_d, out=act_d)
        if c.pad is not None:
            np.copyto(act_d, 0, where=c.pad[t0:t1])
        steps = range(t0, t1) if c.reverse else range(t1 - 1, t0 - 1, -1)
        for t in steps:
            dh += dout_t[t]
            da = d_all[t]
            np.multiply(dh, act_d[t - t0], out=da)
            if careful:
                _flush_subnormals_([da])
            np.dot(c.w_hh.T, da, out=dh_prev)  # (H, B)
            if c.pad is not None:
                np.copyto(dh_prev, dh, where=c.pad[t])
            dh, dh_prev = dh_prev, dh
            if careful:
                _flush_subnormals_([dh])
        if span is not None:
            lo, hi = span
            careful = _flush_subnormals_([dh], [d_all[lo:hi]])
    dx, grads = _weight_grads(c, d_all, None)
    return dx, dh.T.copy(), grads


# ----------------------------------------------------------------------------- LSTM


def _lstm_weights(w, H):
    """``w`` (4H, ·) in the internal order o, i, f, g with the sigmoid rows halved (exact).

    From PyTorch's i, f, g, o: the three sigmoids are one block for the forward, and the
    three gates whose gradient is a multiple of dc (i, f, g) one block for the backward.

    The forward then gets z/2 for the sigmoids straight from its GEMMs. The backward
    uses the same matrices, ``W = Pᵀ S⁻¹ w`` (P the permutation, S the halving), by
    carrying d' = S⁻¹ P d: its o, i, f rows are twice the true gate gradients, so
    Wᵀ d = wᵀ d', and the weight gradients are P^T S (d' xᵀ).
    """
    out = _workspace.empty_like(w)  # block copies: 3x faster than a gather by row index
    np.multiply(w[3 * H :], 0.5, out=out[:H])
    np.multiply(w[: 2 * H], 0.5, out=out[H : 3 * H])
    out[3 * H :] = w[2 * H : 3 * H]
    return out


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
    x, (hs, cs), w_ih, w_hh, b_ih, b_hh, pad, _ = _prepare(
        "LSTM", 4, x, [("h0", h0), ("c0", c0)], weight_ih, weight_hh, bias_ih, bias_hh,
        mask, lengths, reverse,
    )  # fmt: skip
    T, B, _ = x.shape
    H = w_hh.shape[1]
    w_ih, w_hh = _lstm_weights(w_ih, H), _lstm_weights(w_hh, H)  # o, i, f, g; σ rows halved
    bias = None if b_ih is None else _lstm_weights(b_ih + b_hh, H)
    gates = _workspace.empty((T, 4 * H, B), x.dtype)
    tanh_c = _workspace.empty((T, H, B), x.dtype)
    ig = np.empty((H, B), dtype=x.dtype)
    hs_bh, twin = _batch_major(hs, reverse)
    for t, prev, nxt, xp_t in _projected_steps(x, w_ih, bias, reverse):
        a = gates[t]  # (4H, B): pre-activations, then activations
        np.dot(w_hh, hs[prev], out=a)
        a += xp_t
        np.tanh(a, out=a)
        sig = a[: 3 * H]  # σ(z) = 0.5·tanh(z/2) + 0.5
        sig *= 0.5
        sig += 0.5
        o, i, f, g = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        c, h = cs[nxt], hs[nxt]
        np.multiply(f, cs[prev], out=c)
        np.multiply(i, g, out=ig)
        c += ig
        np.tanh(c, out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h)
        if pad is not None:  # carry both states through padding
            np.copyto(h, hs[prev], where=pad[t])
            np.copyto(c, cs[prev], where=pad[t])
        if twin:
            hs_bh[nxt] = h.T
    cache = _Cache(
        x, gates, hs, hs_bh, w_ih, w_hh, b_ih is not None, pad, reverse, cs=cs, tanh_c=tanh_c,
        kind="lstm",
    )  # fmt: skip
    out, h_n = _outputs(hs_bh, pad, reverse)
    c_n = (cs[0] if reverse else cs[-1]).T.copy()
    return out, (h_n, c_n), cache


def _lstm_factors(c: _Cache, t0: int, t1: int):
    """Per-step factors of the LSTM backward for steps [t0, t1), 0 at padding.

    e (K, 4, H, B) in the internal order o, i, f, g, so that the carried gate gradients
    (see _lstm_weights) are d'_o = dh ⊙ e[:, 0] and (d'_i, d'_f, d'_g) = dc ⊙ e[:, 1:]:
      e_o = 2 tanh(c_t) σ'(o),  e_i = 2 g σ'(i),  e_f = 2 c_{t−1} σ'(f),  e_g = i (1 − g²)
    with σ' = s (1 − s) and the 2 = S⁻¹ of the halved sigmoid rows (exact);
    dcdh (K, H, B) = o (1 − tanh²(c_t)) so that dc = dc_next + dh ⊙ dcdh;
    fc (K, H, B) = f (1 at padding) so that dc_prev = dc ⊙ fc.
    """
    a = c.gates[t0:t1]  # (K, 4H, B), order o, i, f, g
    K, G, B = a.shape
    H = G // 4
    o, i, f, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    tc = c.tanh_c[t0:t1]
    e = np.empty((K, 4, H, B), dtype=a.dtype)
    sd = np.subtract(1, a[:, : 3 * H])  # 2 σ' = 2 s (1 − s) for o, i, f
    sd *= a[:, : 3 * H]
    sd *= 2
    np.multiply(tc, sd[:, :H], out=e[:, 0])
    np.multiply(g, sd[:, H : 2 * H], out=e[:, 1])
    np.multiply(_before(c.cs, c.reverse)[t0:t1], sd[:, 2 * H :], out=e[:, 2])
    np.multiply(g, g, out=e[:, 3])
    np.subtract(1, e[:, 3], out=e[:, 3])
    e[:, 3] *= i
    dcdh = np.multiply(tc, tc)
    np.subtract(1, dcdh, out=dcdh)
    dcdh *= o
    fc = f  # a view of the cache: only read
    if c.pad is not None:
        p = c.pad[t0:t1]  # (K, 1, B)
        np.copyto(e, 0, where=p[:, None])
        np.copyto(dcdh, 0, where=p)
        fc = np.where(p, 1, f).astype(f.dtype, copy=False)
    return e, dcdh, fc


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


def lstm_backward(dout, dstate, cache: _Cache):
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
    dout_t, (dh, dc_next) = _check_upstream(c, dout, [dh_n, dc_n], ["dh_n", "dc_n"])
    T, B, _ = c.x.shape
    H = c.hs.shape[1]
    dgates = _workspace.empty((T, 4 * H, B), dh.dtype)  # d' (see _lstm_weights): o, i, f, g
    dgates4 = dgates.reshape(T, 4, H, B)  # the same memory, one block per gate
    dc = np.empty_like(dh)
    dh_prev = np.empty_like(dh)
    w_hh_t = c.w_hh.T  # (H, 4H)
    careful = False  # flush after every step: the gradient is vanishing
    chunks = _chunks(T, 8 * H * B, c.reverse)
    for (t0, t1), span in zip(chunks, _flush_spans(chunks), strict=True):
        e, dcdh, fc = _lstm_factors(c, t0, t1)
        steps = range(t0, t1) if c.reverse else range(t1 - 1, t0 - 1, -1)
        for t in steps:
            k, d, d4 = t - t0, dgates[t], dgates4[t]  # (4H, B) and (4, H, B)
            dh += dout_t[t]
            np.multiply(dh, dcdh[k], out=dc)  # 1. the cell gradient
            dc += dc_next
            np.multiply(e[k, 0], dh, out=d4[0])  # 2. d'_o
            np.multiply(e[k, 1:], dc, out=d4[1:])  # d'_i, d'_f, d'_g
            np.multiply(dc, fc[k], out=dc_next)  # 3. to the previous step
            if careful:
                _flush_subnormals_([d, dc_next])
            np.dot(w_hh_t, d, out=dh_prev)
            if c.pad is not None:
                np.copyto(dh_prev, dh, where=c.pad[t])
            dh, dh_prev = dh_prev, dh
            if careful:
                _flush_subnormals_([dh])
        if span is not None:
            lo, hi = span
            careful = _flush_subnormals_([dh, dc_next], [dgates[lo:hi]])
    # internal o | i, f, g rows -> PyTorch's i, f, g | o; dx = w_ihᵀ d' is already true
    rows = [(slice(0, H), slice(3 * H, 4 * H)), (slice(H, 4 * H), slice(0, 3 * H))]
    dx, grads = _weight_grads(c, dgates, None, rows)
    for g in grads.values():  # d' xᵀ -> S (d' xᵀ): halve the sigmoid rows i, f and o
        g[: 2 * H] *= 0.5
        g[3 * H :] *= 0.5
    return dx, (dh.T.copy(), dc_next.T.copy()), grads


# ----------------------------------------------------------------------------- GRU


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
    x, (hs,), w_ih, w_hh, b_ih, b_hh, pad, versions = _prepare(
        "GRU", 3, x, [("h0", h0)], weight_ih, weight_hh, bias_ih, bias_hh, mask, lengths, reverse
    )
    T, B, _ = x.shape
    H = w_hh.shape[1]
    half = np.ones((3 * H, 1), dtype=x.dtype)
    half[: 2 * H] = 0.5  # r and z get z/2 (exact)
    if b_ih is None:
        bias, b_hn = None, None
    else:
        bias = b_ih.copy()
        bias[: 2 * H] += b_hh[: 2 * H]  # b_hr, b_hz join the input projection
        bias *= half[:, 0]
        b_hn = b_hh[2 * H :, None]  # (H, 1): stays inside r ⊙ (·)
    w_ih_half = np.multiply(w_ih, half, out=_workspace.empty_like(w_ih))
    w_hh_half = np.multiply(w_hh, half, out=_workspace.empty_like(w_hh))
    gates = _workspace.empty((T, 3 * H, B), x.dtype)
    hn_part = _workspace.empty((T, H, B), x.dtype)
    rec = np.empty((3 * H, B), dtype=x.dtype)
    hs_bh, twin = _batch_major(hs, reverse)
    for t, prev, nxt, xp_t in _projected_steps(x, w_ih_half, bias, reverse):
        a = gates[t]  # (3H, B)
        np.dot(w_hh_half, hs[prev], out=rec)
        rz = a[: 2 * H]
        np.add(rec[: 2 * H], xp_t[: 2 * H], out=rz)
        np.tanh(rz, out=rz)
        rz *= 0.5  # σ(z) = 0.5·tanh(z/2) + 0.5
        rz += 0.5
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        hn = hn_part[t]
        if b_hn is None:
            hn[...] = rec[2 * H :]
        else:
            np.add(rec[2 * H :], b_hn, out=hn)
        np.multiply(r, hn, out=n)
        n += xp_t[2 * H :]
        np.tanh(n, out=n)
        h = hs[nxt]  # h' = n + z ⊙ (h − n)
        np.subtract(hs[prev], n, out=h)
        h *= z
        h += n
        if pad is not None:
            np.copyto(h, hs[prev], where=pad[t])
        if twin:
            hs_bh[nxt] = h.T
    cache = _Cache(
        x, gates, hs, hs_bh, w_ih, w_hh, b_ih is not None, pad, reverse, hn_part=hn_part,
        kind="gru", versions=versions,
    )  # fmt: skip
    return (*_outputs(hs_bh, pad, reverse), cache)


def _gru_factors(c: _Cache, t0: int, t1: int):
    """Per-step factors of the GRU backward for steps [t0, t1), 0 at padding.

    e (K, 3, H, B): dn = dh ⊙ e_n, dz = dh ⊙ e_z, dr = dn ⊙ e_r, with
      e_n = (1 − z)(1 − n²),  e_z = (h_{t−1} − n) z (1 − z),  e_r = (W_hn h + b_hn) r (1 − r).
    """
    a = c.gates[t0:t1]  # (K, 3H, B)
    K, G, B = a.shape
    H = G // 3
    r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
    e = np.empty((K, 3, H, B), dtype=a.dtype)
    e_r, e_z, e_n = e[:, 0], e[:, 1], e[:, 2]
    one_minus_z = np.subtract(1, z)
    np.multiply(n, n, out=e_n)
    np.subtract(1, e_n, out=e_n)
    e_n *= one_minus_z
    np.subtract(_before(c.hs, c.reverse)[t0:t1], n, out=e_z)
    e_z *= z
    e_z *= one_minus_z
    np.subtract(1, r, out=e_r)
    e_r *= r
    e_r *= c.hn_part[t0:t1]
    if c.pad is not None:
        np.copyto(e, 0, where=c.pad[t0:t1, None])
    return e


def gru_backward(dout, dh_n, cache: _Cache):
    """Backward of :func:`gru_forward`.

    Per step, with dh = dout_t + dh_next:
    dn = dh ⊙ (1 − z) ⊙ (1 − n²);  dz = dh ⊙ (h_{t−1} − n) ⊙ z(1 − z)
    dr = dn ⊙ (W_hn h + b_hn) ⊙ r(1 − r)
    the input side gets (dr, dz, dn), the recurrent side (dr, dz, dn ⊙ r), and
    dh_prev = dh ⊙ z + W_hhᵀ (dr, dz, dn ⊙ r); at padding dh carries back unchanged.
    Returns ``dx`` (T, B, F), ``dh0`` (B, H) and ``grads``.
    """
    c = _check_cache(cache, "gru")
    _check_versions(c)
    dout_t, (dh,) = _check_upstream(c, dout, [dh_n], ["dh_n"])
    T, B, _ = c.x.shape
    H = c.hs.shape[1]
    dg_ih = _workspace.empty((T, 3 * H, B), dh.dtype)  # (dr, dz, dn)
    dg_hh = _workspace.empty((T, 3 * H, B), dh.dtype)  # (dr, dz, dn ⊙ r)
    dhz = np.empty_like(dh)
    dh_prev = np.empty_like(dh)
    careful = False  # flush after every step: the gradient is vanishing
    chunks = _chunks(T, 6 * H * B, c.reverse)
    for (t0, t1), span in zip(chunks, _flush_spans(chunks), strict=True):
        e = _gru_factors(c, t0, t1)
        steps = range(t0, t1) if c.reverse else range(t1 - 1, t0 - 1, -1)
        for t in steps:
            k, d, dn = t - t0, dg_hh[t], dg_ih[t, 2 * H :]
            dh += dout_t[t]
            np.multiply(dh, e[k, 2], out=dn)
            np.multiply(dh, e[k, 1], out=d[H : 2 * H])  # dz
            np.multiply(dn, e[k, 0], out=d[:H])  # dr
            np.multiply(dn, c.gates[t, :H], out=d[2 * H :])  # dn ⊙ r
            if careful:
                _flush_subnormals_([d, dn])
            np.dot(c.w_hh.T, d, out=dh_prev)
            np.multiply(dh, c.gates[t, H : 2 * H], out=dhz)  # the direct path dh ⊙ z
            dh_prev += dhz
            if c.pad is not None:
                np.copyto(dh_prev, dh, where=c.pad[t])
            dh, dh_prev = dh_prev, dh
            if careful:
                _flush_subnormals_([dh])
        if span is not None:
            lo, hi = span
            careful = _flush_subnormals_([dh], [dg_hh[lo:hi], dg_ih[lo:hi, 2 * H :]])
    dg_ih[:, : 2 * H] = dg_hh[:, : 2 * H]
    dx, grads = _weight_grads(c, dg_ih, dg_hh)
    return dx, dh.T.copy(), grads
