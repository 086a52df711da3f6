"""The notebook's API, fixed: ``nprnn.classic``.

The twelve functions of the seed notebook with the same names, arguments, return
values, dictionary keys and layouts, so code written against the notebook runs
unchanged::

    x      (n_x, m, Tx)   inputs, e.g. one-hot columns, padded by pad_sequences
    mask   (Tx, m)        1 for a real token, 0 for padding
    a0/c0  (n_a, m)       initial hidden / cell state
    y_pred (n_y, m, Tx)   softmax predictions

RNN (parameters ``Wax, Waa, Ba, Wya, By``)::

    a⟨t⟩ = tanh(Wax x⟨t⟩ + Waa a⟨t−1⟩ + Ba)        ŷ⟨t⟩ = softmax(Wya a⟨t⟩ + By)

LSTM (parameters ``Wf, bf, Wi, bi, Wc, bc, Wo, bo, Wy, by``; z = [a⟨t−1⟩; x⟨t⟩])::

    Γf = σ(Wf z + bf)   Γi = σ(Wi z + bi)   c̃ = tanh(Wc z + bc)   Γo = σ(Wo z + bo)
    c⟨t⟩ = Γf ⊙ c⟨t−1⟩ + Γi ⊙ c̃       a⟨t⟩ = Γo ⊙ tanh(c⟨t⟩)   ŷ⟨t⟩ = softmax(Wy a⟨t⟩ + by)

With a mask, a padded step carries the state: a⟨t⟩ = m a_new + (1 − m) a⟨t−1⟩ (and the
same for c), exactly as in the notebook, and ŷ⟨t⟩ is computed from that carried state.

What is fixed (the notebook's faults):

1. ``pad_sequences`` keeps the sequences' dtype and values (it truncated floats to ints).
2. ``rnn_backward`` / ``lstm_backward`` return the exact gradients of
   ``compute_loss(y_pred, y_true, mask)`` — the mean over valid tokens — for every entry,
   parameters, ``dx``, ``da0`` and ``dc0`` alike (the notebook divided the parameter
   gradients by ``m`` and left ``dx``/``da0`` unscaled).
3. ``lstmCell_backward`` reads ``Wf, Wi, Wc, Wo`` from ``parameters`` (``NameError``).
4. At padded steps the gradient passes back along the carried state (the notebook
   multiplied ``da_prev``/``dc_prev`` by the mask and cut it).

``rnn_forward`` / ``lstm_forward`` and their backwards run on the kernels of
:mod:`nprnn.functional` (the input projection as a few large GEMMs, one fused gate GEMM per step).
They still return the notebook's ``caches``: a list of per-step tuples with the same
fields, so ``caches[0]`` unpacks as before and the cell functions accept them. The list
also carries the kernel's cache, which the sequence backward uses; a plain list of
per-step caches (built with the cell functions, or a copy) takes the per-step path,
which computes the same gradients.

Computation runs in the floating dtype NumPy's promotion gives the inputs: float32
stays float32, float64 or integer inputs give float64.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from . import functional as F
from ._classic_checks import (
    LSTM_KEYS,
    RNN_KEYS,
    _Caches,
    _carried,
    _cast,
    _check_caches,
    _dlogits,
    _dtype,
    _lstm_dims,
    _lstm_step_cache,
    _mask,
    _mask_t,
    _params,
    _predictions,
    _rnn_dims,
    _rnn_step_cache,
    _sequence_input,
    _state,
    _steps_mask,
)
from .kernels import reference as ref
from .validation import check_shape, float_array, format_shape

__all__ = [
    "softmax",
    "sigmoid",
    "pad_sequences",
    "rnnCell_forward",
    "rnn_forward",
    "compute_loss",
    "rnnCell_backward",
    "rnn_backward",
    "lstmCell_forward",
    "lstm_forward",
    "lstmCell_backward",
    "lstm_backward",
]

EPSILON = 1e-8  # compute_loss clips probabilities to [EPSILON, 1 − EPSILON]


# ----------------------------------------------------------------------------- helpers


def softmax(x):
    """Softmax over axis 0 (the classes): x (n_classes, ...), columns sum to 1.

    softmax(x)_k = exp(x_k − max) / Σ_j exp(x_j − max)

    Differs from the notebook: no difference (it is :func:`nprnn.functional.softmax`
    along axis 0).
    """
    return F.softmax(x, axis=0)


def sigmoid(x):
    """σ(x) = 1 / (1 + e^(−x)), elementwise.

    Differs from the notebook: no clipping at ±500 and no overflow warning in float32
    (exp is only taken of −|x|); float32 stays float32.
    """
    return F.sigmoid(x)


def pad_sequences(sequences, max_len=None, padding_value=0):
    """Pad a list of sequences (embedding_size, seq_len_i) to one array.

    Arguments:
    sequences -- list of arrays of shape (embedding_size, seq_len_i) holding real numbers
                 (float, int or bool); seq_len_i may be 0
    max_len -- int, length to pad to; None: the longest sequence
    padding_value -- finite real number written at padded positions (default 0); it must
                     fit the result dtype (e.g. -1 or 300 do not fit uint8 sequences)

    Returns:
    padded_seqs -- array (embedding_size, batch_size, max_len) with the sequences' dtype
                   (promoted with padding_value, e.g. int sequences padded with 0.5 give
                   float64)
    mask -- array (max_len, batch_size), 1 for valid tokens, 0 for PAD; float, in the
            sequences' float dtype (float64 for non-float sequences)

    Differs from the notebook: keeps the sequences' dtype and values (the notebook
    allocated ints and truncated floats); clear errors for bad input or max_len too small.

    Example:

    >>> import numpy as np
    >>> from nprnn.classic import pad_sequences
    >>> padded, mask = pad_sequences([np.array([[0.25, 0.5]]), np.array([[1.5]])])
    >>> padded                                     # (n_x, m, Tx): the floats are kept
    array([[[0.25, 0.5 ],
            [1.5 , 0.  ]]])
    >>> mask                                       # (Tx, m)
    array([[1., 1.],
           [1., 0.]])
    """
    if isinstance(sequences, np.ndarray) and sequences.ndim == 3:
        sequences = list(sequences)
    if isinstance(sequences, (str, bytes, Mapping)) or not isinstance(
        sequences, (Sequence, np.ndarray)
    ):
        raise TypeError(
            "sequences must be a list of (embedding_size, seq_len) arrays, "
            f"got {type(sequences).__name__}"
        )
    seqs = []
    for i, s in enumerate(sequences):
        if s is None:
            raise TypeError(f"sequences[{i}] must be an array (embedding_size, seq_len), got None")
        try:
            a = np.asarray(s)
        except ValueError:  # a ragged nested list
            raise ValueError(
                f"sequences[{i}] is ragged: its rows have different lengths — pass an array "
                "(embedding_size, seq_len)"
            ) from None
        if a.dtype.kind not in "biuf":
            raise TypeError(f"sequences[{i}] must hold real numbers, got dtype {a.dtype}")
        seqs.append(a)
    if not seqs:
        raise ValueError("sequences is empty: pass a list of (embedding_size, seq_len) arrays")
    for i, s in enumerate(seqs):
        if s.ndim != 2:
            raise ValueError(
                f"sequences[{i}] has shape {format_shape(s.shape)}: "
                "expected (embedding_size, seq_len)"
            )
        if s.shape[0] != seqs[0].shape[0]:
            raise ValueError(
                f"sequences[{i}] has embedding_size {s.shape[0]} but sequences[0] has "
                f"{seqs[0].shape[0]}: all sequences must share it"
            )
    lengths = [s.shape[1] for s in seqs]
    if max_len is None:
        max_len = max(lengths)
    elif isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 0:
        raise ValueError(f"max_len must be None or an integer >= 0, got {max_len!r}")
    too_long = [i for i, n in enumerate(lengths) if n > max_len]
    if too_long:
        i = too_long[0]
        raise ValueError(
            f"sequences[{i}] has length {lengths[i]} > max_len={max_len}: "
            "raise max_len or shorten the sequence"
        )
    dtype = _padding_dtype([s.dtype for s in seqs], padding_value)
    padded = np.full((seqs[0].shape[0], len(seqs), max_len), padding_value, dtype=dtype)
    mask = np.zeros((max_len, len(seqs)), dtype=dtype if dtype.kind == "f" else np.float64)
    for i, s in enumerate(seqs):
        padded[:, i, : lengths[i]] = s
        mask[: lengths[i], i] = 1
    return padded, mask


def _padding_dtype(dtypes, padding_value) -> np.dtype:
    """NumPy's promotion of the sequences' dtypes with ``padding_value``, which must be a
    finite real number (bool, int or float) that the result dtype holds."""
    pv = padding_value
    shown = repr(pv) if len(repr(pv)) <= 40 else repr(pv)[:37] + "..."
    real = isinstance(pv, (numbers.Real, np.bool_)) or (
        isinstance(pv, np.number) and pv.dtype.kind in "iuf"
    )
    if not real:
        raise TypeError(f"padding_value must be a real number, got {shown}")
    try:
        finite = bool(np.isfinite(float(pv)))
    except OverflowError:  # an int beyond float64
        finite = False
    if not finite:
        raise ValueError(f"padding_value must be a finite real number, got {shown}")
    dts = list(dict.fromkeys(dtypes))
    try:
        dtype = np.result_type(*dts, pv)
        fits = dtype.kind == "b" or (
            np.iinfo(dtype).min <= int(pv) <= np.iinfo(dtype).max
            if dtype.kind in "iu"
            else abs(float(pv)) <= float(np.finfo(dtype).max)
        )
    except OverflowError:  # a Python int beyond the sequences' integer dtype
        dtype, fits = np.result_type(*dts), False
    if not fits:
        wider = "np.float64" if dtype.kind == "f" else "np.int64"
        raise ValueError(
            f"padding_value {shown} does not fit the sequences' dtype {dtype}: pass a value "
            f"that it holds, or convert the sequences first (.astype({wider}))"
        )
    return dtype


def compute_loss(y_pred, y_true, mask=None):
    """Mean cross-entropy over valid tokens.

    loss = −(1/N) Σ_{valid t, i} Σ_k y_true[k, i, t] · log(clip(y_pred[k, i, t], ε, 1 − ε))

    with ε = 1e-8 and N = Σ mask (m·Tx without a mask).

    Arguments:
    y_pred -- (n_y, m, Tx) predicted probabilities (after softmax)
    y_true -- (n_y, m, Tx) one-hot (or soft) targets
    mask -- (Tx, m) of 0/1, or None

    Returns:
    loss -- scalar (a NumPy scalar of the working dtype)

    Differs from the notebook: padded positions are skipped rather than multiplied by 0
    (so anything finite may sit there), a mask with no valid token gives 0.0 instead of
    nan, and shapes/values are checked.
    """
    y_pred, y_true = _predictions(y_pred, y_true)
    n_y, m, Tx = y_pred.shape
    mk = _mask(mask, Tx, m, ref="y_pred is (n_y, m={m}, Tx={Tx})")
    p = np.clip(y_pred, EPSILON, 1 - EPSILON)
    ce = -np.sum(y_true * np.log(p), axis=0)  # (m, Tx)
    if mk is None:
        return ce.dtype.type(ce.sum() / (m * Tx))
    n_tokens = int(mk.sum())
    if n_tokens == 0:
        return ce.dtype.type(0)
    return ce.dtype.type(ce[mk.T].sum() / n_tokens)


# ----------------------------------------------------------------------------- RNN


def rnnCell_forward(xt, a_prev, parameters, mask_t=None):
    """One step of the RNN cell.

    a_next = tanh(Wax xt + Waa a_prev + Ba), carried (a_next = a_prev) where mask_t is 0;
    yt_pred = softmax(Wya a_next + By).

    Arguments:
    xt -- (n_x, m) input at step t
    a_prev -- (n_a, m) hidden state at step t−1
    parameters -- dict with Wax (n_a, n_x), Waa (n_a, n_a), Ba (n_a, 1), Wya (n_y, n_a),
                  By (n_y, 1)
    mask_t -- (1, m) of 0/1, or None

    Returns:
    at -- (n_a, m) next hidden state
    yt_pred -- (n_y, m) prediction
    cache -- (at, a_prev, xt, parameters, mask_t) for rnnCell_backward

    Differs from the notebook: inputs are validated (shapes, keys, 0/1 mask).
    """
    P = _params(parameters, RNN_KEYS)
    xt = float_array("xt", xt, ndim=2)
    n_x, m = xt.shape
    n_a, _ = _rnn_dims(P, n_x)
    a_prev = float_array("a_prev", a_prev, ndim=2)
    check_shape("a_prev", a_prev, (n_a, m), hint=f"n_a={n_a} from parameters['Waa'], m={m} from xt")
    dt = _dtype(xt, a_prev, *P.values())
    xt, a_prev = _cast(dt, xt, a_prev)
    Wax, Waa, Ba, Wya, By = _cast(dt, *(P[k] for k in RNN_KEYS))
    mk = _mask_t(mask_t, m, dt)
    (h,), _ = ref.rnn_tanh_step((Wax @ xt + Ba).T, (Waa @ a_prev).T, (a_prev.T,))
    at = h.T  # (n_a, m)
    if mk is not None:
        at = np.where(mk > 0.5, at, a_prev)  # keep the previous state at PAD positions
    yt_pred = softmax(Wya @ at + By)  # (n_y, m)
    return at, yt_pred, (at, a_prev, xt, parameters, mk)


def rnn_forward(x, a0, parameters, mask=None):
    """RNN forward over every step (on the fast kernel :func:`nprnn.functional.rnn_forward`).

    Arguments:
    x -- (n_x, m, Tx) inputs (padded)
    a0 -- (n_a, m) initial hidden state
    parameters -- dict with Wax, Waa, Ba, Wya, By (see rnnCell_forward)
    mask -- (Tx, m) of 0/1, or None

    Returns:
    a -- (n_a, m, Tx) hidden states (the carried state at padded steps)
    y_pred -- (n_y, m, Tx) predictions
    caches -- list of the Tx per-step caches (at, a_prev, xt, parameters, mask_t)

    Differs from the notebook: runs on the fused kernels, validates its inputs, and its
    caches also carry the kernel's cache for rnn_backward.
    """
    P = _params(parameters, RNN_KEYS)
    x = _sequence_input(x)
    n_x, m, Tx = x.shape
    n_a, n_y = _rnn_dims(P, n_x)
    a0 = _state("a0", a0, n_a, m, "parameters['Waa']")
    dt = _dtype(x, a0, *P.values())
    a0, x = _cast(dt, a0, x)
    Wax, Waa, Ba, Wya, By = _cast(dt, *(P[k] for k in RNN_KEYS))
    mk = _mask(mask, Tx, m)
    xs = np.ascontiguousarray(x.transpose(2, 1, 0))  # (Tx, m, n_x)
    out, _, fc = F.rnn_forward(xs, a0.T, Wax, Waa, Ba[:, 0], np.zeros(n_a, dt), mask=mk)
    A = _carried(out, mk, a0.T)  # (Tx, m, n_a) states after each step
    z = A.reshape(Tx * m, n_a) @ Wya.T + By[:, 0]  # (Tx·m, n_y)
    Y = F.softmax(z, axis=-1).reshape(Tx, m, n_y)
    a = np.ascontiguousarray(A.transpose(2, 1, 0))  # (n_a, m, Tx)
    y_pred = np.ascontiguousarray(Y.transpose(2, 1, 0))  # (n_y, m, Tx)
    mf = None if mk is None else mk.astype(dt)
    caches = _Caches(
        (A[t].T, a0 if t == 0 else A[t - 1].T, xs[t].T, parameters,
         None if mf is None else mf[t].reshape(1, m))
        for t in range(Tx)
    )  # fmt: skip
    caches.fast = ("RNN", fc, A, Wya, mk)
    return a, y_pred, caches


def rnnCell_backward(da_next, dz_t, cache):
    """Backward of one RNN step: the gradients of L = ⟨da_next, at⟩ + ⟨dz_t ⊙ mask_t, z_t⟩.

    z_t = Wya at + By are the logits; dz_t at padded columns is ignored (padded
    predictions do not enter the loss). With dtanh = (da_next + Wyaᵀ dz_t)(1 − at²) ⊙ mask_t:
    dWax = dtanh xtᵀ, dWaa = dtanh a_prevᵀ, dxt = Waxᵀ dtanh,
    da_prev = Waaᵀ dtanh + (1 − mask_t)(da_next + Wyaᵀ dz_t).

    Arguments:
    da_next -- (n_a, m) gradient from the later steps w.r.t. at
    dz_t -- (n_y, m) gradient w.r.t. the logits before softmax at step t
    cache -- (at, a_prev, xt, parameters, mask_t) from rnnCell_forward

    Returns:
    gradients -- dict dxt (n_x, m), da_prev (n_a, m), dWax, dWaa, dBa, dWya, dBy

    Differs from the notebook: at padded columns da_prev is the gradient carried back
    along the state (the notebook zeroed it); every field of the cache is checked (type,
    and shape against the others and the parameters), errors start with ``cache:``.
    """
    step = _rnn_step_cache(cache)
    n_a, m = step[0].shape
    n_y = step[3]["Wya"].shape[0]
    da_next = float_array("da_next", da_next, ndim=2)
    check_shape("da_next", da_next, (n_a, m))
    dz_t = float_array("dz_t", dz_t, ndim=2)
    check_shape("dz_t", dz_t, (n_y, m))
    return _rnn_cell_backward(da_next, dz_t, step)


def _rnn_cell_backward(da_next, dz_t, step):
    """rnnCell_backward on a validated cache (see :func:`_rnn_step_cache`)."""
    a_next, a_prev, xt, P, mk = step
    dt = _dtype(da_next, dz_t, a_next, a_prev, xt, *P.values())
    Wax, Waa, _, Wya, _ = _cast(dt, *(P[k] for k in RNN_KEYS))
    if mk is not None:
        mk = mk.astype(dt)
        dz_t = dz_t * mk
    dWya = dz_t @ a_next.T  # (n_y, n_a)
    dBy = dz_t.sum(axis=1, keepdims=True)
    da_total = da_next + Wya.T @ dz_t  # (n_a, m)
    dtanh = ref.rnn_tanh_step_backward((da_total.T,), (a_next.T,))[0].T
    if mk is not None:
        dtanh *= mk  # no parameter update from PAD columns
    da_prev = Waa.T @ dtanh
    if mk is not None:
        da_prev += (1 - mk) * da_total  # the carry a_next = a_prev at PAD columns
    return {
        "dxt": (Wax.T @ dtanh).astype(dt, copy=False),
        "da_prev": da_prev.astype(dt, copy=False),
        "dWax": (dtanh @ xt.T).astype(dt, copy=False),
        "dWaa": (dtanh @ a_prev.T).astype(dt, copy=False),
        "dBa": dtanh.sum(axis=1, keepdims=True).astype(dt, copy=False),
        "dWya": dWya.astype(dt, copy=False),
        "dBy": dBy.astype(dt, copy=False),
    }


def rnn_backward(y_pred, y_true, caches):
    """Exact gradients of ``compute_loss(y_pred, y_true, mask)`` for an rnn_forward pass.

    The mask is the one stored in ``caches``. With N valid tokens the gradient of the
    logits is dz = (ŷ − y) / N at valid tokens and 0 at padding; it is then propagated
    through time, along the carried state at padded steps.

    Clipping: compute_loss clips ŷ to [1e-8, 1 − 1e-8]. The gradient here is that of the
    unclipped cross-entropy, −Σ y log ŷ, so it is exact wherever no target-weighted
    probability is clipped (every practical case); where one is (a confident wrong
    prediction, ŷ < 1e-8) compute_loss is flat but the gradient keeps the cross-entropy's
    slope, so training can still correct it. For targets whose columns do not sum to 1
    the logit gradient is ŷ·Σ_k y_k − y, the exact derivative.

    Arguments:
    y_pred -- (n_y, m, Tx) predictions from rnn_forward
    y_true -- (n_y, m, Tx) targets
    caches -- the caches rnn_forward returned (or a list of rnnCell_forward caches)

    Returns:
    gradients -- dict dx (n_x, m, Tx), da0 (n_a, m), dWax, dWaa, dBa, dWya, dBy

    Differs from the notebook: exact gradients of compute_loss for every entry (the
    notebook divided the parameter gradients by m only), and the gradient passes back
    through padded steps.
    """
    y_pred, y_true = _predictions(y_pred, y_true)
    fast, steps = _check_caches(
        caches, "(at, a_prev, xt, parameters, mask_t) rnn_forward", y_pred, "RNN"
    )
    n_y, m, Tx = y_pred.shape
    if fast is not None:
        _, fc, A, Wya, mk = fast
        dt = A.dtype
        dz = _dlogits(y_pred.astype(dt, copy=False), y_true.astype(dt, copy=False), mk)
        d2 = np.ascontiguousarray(dz.transpose(2, 1, 0)).reshape(Tx * m, n_y)  # (Tx·m, n_y)
        n_a = A.shape[2]
        dout = (d2 @ Wya).reshape(Tx, m, n_a)  # (Tx, m, n_a)
        dxs, dh0, g = F.rnn_backward(dout, None, fc)
        return {
            "dx": np.ascontiguousarray(dxs.transpose(2, 1, 0)),
            "da0": np.ascontiguousarray(dh0.T),
            "dWax": g["weight_ih"],
            "dWaa": g["weight_hh"],
            "dBa": g["bias_ih"][:, None],
            "dWya": d2.T @ A.reshape(Tx * m, n_a),
            "dBy": d2.sum(axis=0)[:, None],
        }
    # per-step path: a plain list of rnnCell_forward caches (validated above)
    a_next, _, xt, _, _ = steps[0]
    dt = _dtype(y_pred, a_next)
    dz = _dlogits(y_pred, y_true, _steps_mask(steps, m))
    grads = None
    da = np.zeros_like(a_next, dtype=dt)
    dx = np.zeros((xt.shape[0], m, Tx), dtype=dt)
    for t in reversed(range(Tx)):
        g = _rnn_cell_backward(da, dz[:, :, t], steps[t])
        dx[:, :, t] = g["dxt"]
        da = g["da_prev"]
        if grads is None:
            grads = {k: g[k].copy() for k in ("dWax", "dWaa", "dBa", "dWya", "dBy")}
        else:
            for k in grads:
                grads[k] += g[k]
    return {"dx": dx, "da0": da, **grads}


# ----------------------------------------------------------------------------- LSTM


def lstmCell_forward(xt, a_prev, c_prev, parameters, mask_t=None):
    """One step of the LSTM cell (equations in the module docstring).

    Arguments:
    xt -- (n_x, m) input at step t
    a_prev, c_prev -- (n_a, m) hidden and cell state at step t−1
    parameters -- dict with Wf, Wi, Wc, Wo (n_a, n_a + n_x), bf, bi, bc, bo (n_a, 1),
                  Wy (n_y, n_a), by (n_y, 1)
    mask_t -- (1, m) of 0/1, or None

    Returns:
    a_next, c_next -- (n_a, m) next states (carried where mask_t is 0)
    yt_pred -- (n_y, m) prediction from a_next
    cache -- (a_next, c_next, a_prev, c_prev, xt, parameters, (ft, it, cct, ot), mask_t)

    Differs from the notebook: yt_pred is computed from the masked a_next, like the
    notebook's RNN (the notebook's LSTM used the discarded state at padded columns;
    padded predictions never enter the loss); inputs are validated.
    """
    P = _params(parameters, LSTM_KEYS)
    xt = float_array("xt", xt, ndim=2)
    n_x, m = xt.shape
    n_a, _ = _lstm_dims(P, n_x)
    src = f"n_a={n_a} from parameters['Wf'], m={m} from xt"
    a_prev = float_array("a_prev", a_prev, ndim=2)
    check_shape("a_prev", a_prev, (n_a, m), hint=src)
    c_prev = float_array("c_prev", c_prev, ndim=2)
    check_shape("c_prev", c_prev, (n_a, m), hint=src)
    dt = _dtype(xt, a_prev, c_prev, *P.values())
    xt, a_prev, c_prev = _cast(dt, xt, a_prev, c_prev)
    Wf, bf, Wi, bi, Wc, bc, Wo, bo, Wy, by = _cast(dt, *(P[k] for k in LSTM_KEYS))
    mk = _mask_t(mask_t, m, dt)
    W = np.vstack((Wi, Wf, Wc, Wo))  # (4 n_a, n_a + n_x): PyTorch's gate order i, f, g, o
    gi = (W[:, n_a:] @ xt + np.vstack((bi, bf, bc, bo))).T  # (m, 4 n_a)
    gh = (W[:, :n_a] @ a_prev).T
    (h, c), (it, ft, cct, ot, _, _) = ref.lstm_step(gi, gh, (a_prev.T, c_prev.T))
    a_next, c_next = h.T, c.T
    ft, it, cct, ot = ft.T, it.T, cct.T, ot.T
    if mk is not None:
        keep = mk > 0.5
        a_next = np.where(keep, a_next, a_prev)
        c_next = np.where(keep, c_next, c_prev)
    yt_pred = softmax(Wy @ a_next + by)
    cache = (a_next, c_next, a_prev, c_prev, xt, parameters, (ft, it, cct, ot), mk)
    return a_next, c_next, yt_pred, cache


def lstm_forward(x, a0, c0, parameters, mask=None):
    """LSTM forward over every step (on the fast kernel :func:`nprnn.functional.lstm_forward`).

    Arguments:
    x -- (n_x, m, Tx) inputs (padded)
    a0, c0 -- (n_a, m) initial hidden and cell state
    parameters -- dict with Wf, bf, Wi, bi, Wc, bc, Wo, bo, Wy, by (see lstmCell_forward)
    mask -- (Tx, m) of 0/1, or None

    Returns:
    a -- (n_a, m, Tx) hidden states (carried at padded steps)
    c -- (n_a, m, Tx) cell states (carried at padded steps)
    y_pred -- (n_y, m, Tx) predictions, from a
    caches -- list of the Tx per-step caches of lstmCell_forward's structure

    Differs from the notebook: runs on the fused kernels; at padded steps y_pred comes
    from the carried state (the notebook's LSTM used the discarded one; padded
    predictions never enter the loss); inputs are validated.
    """
    P = _params(parameters, LSTM_KEYS)
    x = _sequence_input(x)
    n_x, m, Tx = x.shape
    n_a, n_y = _lstm_dims(P, n_x)
    a0 = _state("a0", a0, n_a, m, "parameters['Wf']")
    c0 = _state("c0", c0, n_a, m, "parameters['Wf']")
    dt = _dtype(x, a0, c0, *P.values())
    x, a0, c0 = _cast(dt, x, a0, c0)
    Wf, bf, Wi, bi, Wc, bc, Wo, bo, Wy, by = _cast(dt, *(P[k] for k in LSTM_KEYS))
    mk = _mask(mask, Tx, m)
    # PyTorch layout, gate order i, f, g, o; z = [a; x] so W[:, :n_a] multiplies a
    Ws = (Wi, Wf, Wc, Wo)
    w_hh = np.concatenate([W[:, :n_a] for W in Ws])  # (4n_a, n_a)
    w_ih = np.concatenate([W[:, n_a:] for W in Ws])  # (4n_a, n_x)
    b = np.concatenate((bi, bf, bc, bo))[:, 0]  # (4n_a,)
    xs = np.ascontiguousarray(x.transpose(2, 1, 0))  # (Tx, m, n_x)
    out, _, fc = F.lstm_forward(xs, a0.T, c0.T, w_ih, w_hh, b, np.zeros_like(b), mask=mk)
    A = _carried(out, mk, a0.T)  # (Tx, m, n_a) states after each step
    # The kernel keeps c and the gates to itself: recompute them from the states, with
    # two GEMMs over all Tx·m rows and an element-wise scan (no recurrent GEMM). Rows in
    # order i, f, o, g with the sigmoid rows halved (exact): σ(z) = 0.5·tanh(z/2) + 0.5.
    A_prev = np.concatenate((a0.T[None], A[:-1]))  # (Tx, m, n_a)
    H3 = 3 * n_a
    half = np.ones((4 * n_a, 1), dt)
    half[:H3] = 0.5
    order = (Wi, Wf, Wo, Wc)
    pre = xs.reshape(Tx * m, n_x) @ (np.concatenate([W[:, n_a:] for W in order]) * half).T
    pre += A_prev.reshape(Tx * m, n_a) @ (np.concatenate([W[:, :n_a] for W in order]) * half).T
    pre += (np.concatenate((bi, bf, bo, bc)) * half)[:, 0]  # (Tx·m, 4n_a)
    np.tanh(pre, out=pre)
    pre[:, :H3] *= 0.5
    pre[:, :H3] += 0.5
    it, ft, ot, cct = (pre[:, k * n_a : (k + 1) * n_a].reshape(Tx, m, n_a) for k in range(4))
    C = np.empty_like(A)  # (Tx, m, n_a) cell states after each step
    c_prev = c0.T
    for t in range(Tx):
        C[t] = ft[t] * c_prev + it[t] * cct[t]
        if mk is not None:
            np.copyto(C[t], c_prev, where=~mk[t][:, None])
        c_prev = C[t]
    z = A.reshape(Tx * m, n_a) @ Wy.T + by[:, 0]  # (Tx·m, n_y)
    Y = F.softmax(z, axis=-1).reshape(Tx, m, n_y)
    a = np.ascontiguousarray(A.transpose(2, 1, 0))
    c = np.ascontiguousarray(C.transpose(2, 1, 0))
    y_pred = np.ascontiguousarray(Y.transpose(2, 1, 0))
    mf = None if mk is None else mk.astype(dt)
    caches = _Caches(
        (A[t].T, C[t].T, a0 if t == 0 else A[t - 1].T, c0 if t == 0 else C[t - 1].T,
         xs[t].T, parameters, (ft[t].T, it[t].T, cct[t].T, ot[t].T),
         None if mf is None else mf[t].reshape(1, m))
        for t in range(Tx)
    )  # fmt: skip
    caches.fast = ("LSTM", fc, A, Wy, mk)
    return a, c, y_pred, caches


def lstmCell_backward(da_next, dc_next, cache):
    """Backward of one LSTM step: the gradients of L = ⟨da_next, a_next⟩ + ⟨dc_next, c_next⟩.

    With τ = tanh(c_next): dΓo = da_next τ;  dc = dc_next + da_next Γo (1 − τ²);
    dΓf = dc c_prev;  dΓi = dc c̃;  dc̃ = dc Γi;  through σ' = s(1 − s), tanh' = 1 − c̃²
    (masked at PAD columns); dW = dgate [a_prev; xt]ᵀ; [da_prev; dxt] = Σ Wᵀ dgate;
    dc_prev = dc Γf. At PAD columns da_prev = da_next and dc_prev = dc_next (the carry).

    Arguments:
    da_next -- (n_a, m) total gradient w.r.t. a_next (later steps and this step's output)
    dc_next -- (n_a, m) gradient w.r.t. c_next
    cache -- from lstmCell_forward

    Returns:
    gradients -- dict dxt, da_prev, dc_prev, dWf, dWi, dWc, dWo, dbf, dbi, dbc, dbo

    Differs from the notebook: reads Wf, Wi, Wc, Wo from parameters (NameError before),
    and at padded columns passes da_next/dc_next back along the carry (it zeroed them);
    every field of the cache is checked (type, and shape against the others and the
    parameters), errors start with ``cache:``.
    """
    step = _lstm_step_cache(cache)
    n_a, m = step[0].shape
    da_next = float_array("da_next", da_next, ndim=2)
    check_shape("da_next", da_next, (n_a, m))
    dc_next = float_array("dc_next", dc_next, ndim=2)
    check_shape("dc_next", dc_next, (n_a, m))
    return _lstm_cell_backward(da_next, dc_next, step)


def _lstm_cell_backward(da_next, dc_next, step):
    """lstmCell_backward on a validated cache (see :func:`_lstm_step_cache`)."""
    _, c_next, a_prev, c_prev, xt, P, (ft, it, cct, ot), mk = step
    n_a = c_next.shape[0]
    dt = _dtype(da_next, dc_next, c_next, xt, *P.values())
    Wf, _, Wi, _, Wc, _, Wo, _, _, _ = _cast(dt, *(P[k] for k in LSTM_KEYS))
    if mk is not None:
        mk = mk.astype(dt)
    saved = (it.T, ft.T, cct.T, ot.T, c_prev.T, np.tanh(c_next).T)
    da, _, (_, dc_prev) = ref.lstm_step_backward((da_next.T, dc_next.T), saved)
    da, dc_prev = da.T, dc_prev.T  # (4 n_a, m) in the order i, f, g, o; (n_a, m)
    raw = dict(zip("ifco", np.split(da, 4), strict=True))
    if mk is not None:
        for k in raw:
            raw[k] = raw[k] * mk  # no parameter update from PAD columns
    z = np.vstack((a_prev, xt))  # (n_a + n_x, m)
    dz = Wf.T @ raw["f"] + Wi.T @ raw["i"] + Wc.T @ raw["c"] + Wo.T @ raw["o"]
    da_prev, dxt = dz[:n_a], dz[n_a:]
    if mk is not None:
        da_prev = da_prev + (1 - mk) * da_next  # the carry at PAD columns
        dc_prev = np.where(mk > 0.5, dc_prev, dc_next)
    out = {"dxt": dxt, "da_prev": da_prev, "dc_prev": dc_prev}
    for k in "fico":
        out[f"dW{k}"] = raw[k] @ z.T
    for k in "fico":
        out[f"db{k}"] = raw[k].sum(axis=1, keepdims=True)
    return {k: v.astype(dt, copy=False) for k, v in out.items()}


def lstm_backward(y_pred, y_true, caches):
    """Exact gradients of ``compute_loss(y_pred, y_true, mask)`` for an lstm_forward pass.

    The mask is the one stored in ``caches``; the logit gradient is (ŷ − y) / N at valid
    tokens and 0 at padding, propagated through time and along the carried (a, c) at
    padded steps. Clipping in compute_loss: as in :func:`rnn_backward`, the gradient is
    that of the unclipped cross-entropy, exact wherever no probability a target weights is
    clipped to [1e-8, 1 − 1e-8].

    Arguments:
    y_pred -- (n_y, m, Tx) predictions from lstm_forward
    y_true -- (n_y, m, Tx) targets
    caches -- the caches lstm_forward returned (or a list of lstmCell_forward caches)

    Returns:
    gradients -- dict dx (n_x, m, Tx), da0, dc0 (n_a, m), dWf, dWi, dWc, dWo,
                 dbf, dbi, dbc, dbo, dWy, dby

    Differs from the notebook: exact gradients of compute_loss for every entry (no /m,
    consistent dx/da0/dc0), it runs (the notebook raised NameError), and the gradient
    passes back through padded steps.
    """
    y_pred, y_true = _predictions(y_pred, y_true)
    fast, steps = _check_caches(caches, "(a_next, c_next, ...) lstm_forward", y_pred, "LSTM")
    n_y, m, Tx = y_pred.shape
    if fast is not None:
        _, fc, A, Wy, mk = fast
        dt = A.dtype
        dz = _dlogits(y_pred.astype(dt, copy=False), y_true.astype(dt, copy=False), mk)
        d2 = np.ascontiguousarray(dz.transpose(2, 1, 0)).reshape(Tx * m, n_y)
        n_a = A.shape[2]
        dout = (d2 @ Wy).reshape(Tx, m, n_a)
        dxs, (dh0, dc0), g = F.lstm_backward(dout, None, fc)
        gi, gh, gb = g["weight_ih"], g["weight_hh"], g["bias_ih"]  # order i, f, g, o
        res = {
            "dx": np.ascontiguousarray(dxs.transpose(2, 1, 0)),
            "da0": np.ascontiguousarray(dh0.T),
            "dc0": np.ascontiguousarray(dc0.T),
        }
        sl = {k: slice(s * n_a, (s + 1) * n_a) for k, s in (("i", 0), ("f", 1), ("c", 2), ("o", 3))}
        for k in "fico":
            res[f"dW{k}"] = np.hstack((gh[sl[k]], gi[sl[k]]))  # z = [a; x]
        for k in "fico":
            res[f"db{k}"] = gb[sl[k]][:, None]
        res["dWy"] = d2.T @ A.reshape(Tx * m, n_a)
        res["dby"] = d2.sum(axis=0)[:, None]
        return res
    # per-step path: a plain list of lstmCell_forward caches (validated above)
    a_next, _, _, _, xt, P, _, _ = steps[0]
    Wy = P["Wy"]
    dt = _dtype(y_pred, a_next, Wy)
    Wy = Wy.astype(dt, copy=False)
    dz = _dlogits(y_pred, y_true, _steps_mask(steps, m))
    da = np.zeros_like(a_next, dtype=dt)
    dc = np.zeros_like(da)
    dx = np.zeros((xt.shape[0], m, Tx), dtype=dt)
    dWy = np.zeros_like(Wy)
    dby = np.zeros((n_y, 1), dtype=dt)
    grads = None
    for t in reversed(range(Tx)):
        a_t = steps[t][0]
        dz_t = dz[:, :, t]  # already 0 at padding
        dWy += dz_t @ a_t.T
        dby += dz_t.sum(axis=1, keepdims=True)
        g = _lstm_cell_backward(da + Wy.T @ dz_t, dc, steps[t])
        dx[:, :, t] = g["dxt"]
        da, dc = g["da_prev"], g["dc_prev"]
        keys = [f"d{p}{k}" for p in "Wb" for k in "fico"]
        if grads is None:
            grads = {k: g[k].copy() for k in keys}
        else:
            for k in keys:
                grads[k] += g[k]
    return {"dx": dx, "da0": da, "dc0": dc, **grads, "dWy": dWy, "dby": dby}
