"""The reference cells: one step forward and one step backward, as the equations read.

Batch-major arrays, PyTorch's gate order, no permuted or halved weights. Each cell is
two functions::

    new_state, saved = step(gi, gh, state)
    dgi, dgh, dprev = step_backward(dnew, saved)

- ``gi`` = x W_ihᵀ + b_ih and ``gh`` = h W_hhᵀ + b_hh, both (B, G·H): the two affine
  maps a cell reads (a cell adds them, except the GRU, which gates ``gh``'s n block);
- ``state`` / ``new_state``: a tuple of (B, H) arrays, ``(h,)`` or ``(h, c)``;
- ``dnew``: ∂L/∂new_state, one (B, H) array per state (the total: from the output and
  from the next step);
- ``saved``: a tuple that starts with the G gate activations, in the order of the
  cell's ``gate_names`` (what the activation view shows), then whatever else the
  backward reads;
- ``dgi``, ``dgh``: ∂L/∂gi and ∂L/∂gh; ``dprev``: the part of ∂L/∂state that does not
  go through gh, one entry per state, None where it is 0. The caller adds
  ``dgh W_hh`` to dprev[0]: the recurrence is the caller's (a matrix, or the diagonal
  of :mod:`nprnn.kernels.cells`'s IndRNN).

These are what :mod:`nprnn.classic`, the activation view, the tests' reference loop,
the notebook baseline of ``nprnn bench`` and the generation path (``layer.step``) run;
:mod:`nprnn.kernels.fast` computes the same in the layout and basis the driver's speed
needs. :func:`forward` and :func:`backward` below are the whole-sequence loop written
plainly (per-step GEMMs, per-step weight gradients), with masks and the reverse
direction: the driver must agree with them to float rounding.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sigmoid",
    "rnn_tanh_step",
    "rnn_tanh_step_backward",
    "rnn_relu_step",
    "rnn_relu_step_backward",
    "lstm_step",
    "lstm_step_backward",
    "gru_step",
    "gru_step_backward",
    "forward",
    "backward",
]


def sigmoid(a):
    """σ(a) = 1 / (1 + e^(−a)), as 0.5·tanh(a/2) + 0.5: the same function, no overflow."""
    return 0.5 * np.tanh(0.5 * a) + 0.5


def _gates(a, n):
    """The n gate blocks of a (B, n·H) array, views."""
    H = a.shape[-1] // n
    return [a[..., k * H : (k + 1) * H] for k in range(n)]


# ----------------------------------------------------------------------------- Elman RNN


def rnn_tanh_step(gi, gh, state):
    """h' = tanh(gi + gh)."""
    h = np.tanh(gi + gh)
    return (h,), (h,)


def rnn_tanh_step_backward(dnew, saved):
    """da = dh' ⊙ (1 − h'²); the pre-activation feeds gi and gh alike."""
    (h,) = saved
    da = dnew[0] * (1 - h * h)
    return da, da, (None,)


def rnn_relu_step(gi, gh, state):
    """h' = max(gi + gh, 0)."""
    h = np.maximum(gi + gh, 0)
    return (h,), (h,)


def rnn_relu_step_backward(dnew, saved):
    """da = dh' ⊙ [h' > 0]."""
    (h,) = saved
    da = dnew[0] * (h > 0)
    return da, da, (None,)


# ----------------------------------------------------------------------------- LSTM


def lstm_step(gi, gh, state):
    """i, f, o = σ(·), g = tanh(·) of gi + gh; c' = f ⊙ c + i ⊙ g; h' = o ⊙ tanh(c').

    Example:

    >>> import numpy as np
    >>> from nprnn.kernels.reference import lstm_step
    >>> zero = np.zeros((1, 8))                    # gi = gh = 0: every gate σ(0) = ½, g = 0
    >>> (h, c), saved = lstm_step(zero, zero, (np.zeros((1, 2)), np.ones((1, 2))))
    >>> c                                          # f·c + i·g = ½·1 + ½·0
    array([[0.5, 0.5]])
    >>> np.allclose(h, 0.5 * np.tanh(0.5))
    True
    """
    h, c = state
    ai, af, ag, ao = _gates(gi + gh, 4)
    i, f, g, o = sigmoid(ai), sigmoid(af), np.tanh(ag), sigmoid(ao)
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    h_new = o * tc
    return (h_new, c_new), (i, f, g, o, c, tc)


def lstm_step_backward(dnew, saved):
    """Chain rule through the LSTM step, one line per step back."""
    dh, dc_next = dnew
    i, f, g, o, c_prev, tc = saved
    do = dh * tc
    dc = dc_next + dh * o * (1 - tc * tc)
    di, df, dg = dc * g, dc * c_prev, dc * i
    dc_prev = dc * f
    da = np.concatenate(
        [di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=-1
    )  # (B, 4H)
    return da, da, (None, dc_prev)


# ----------------------------------------------------------------------------- GRU


def gru_step(gi, gh, state):
    """r, z = σ(gi + gh); n = tanh(gi_n + r ⊙ gh_n); h' = (1 − z) ⊙ n + z ⊙ h."""
    (h,) = state
    gi_r, gi_z, gi_n = _gates(gi, 3)
    gh_r, gh_z, gh_n = _gates(gh, 3)
    r, z = sigmoid(gi_r + gh_r), sigmoid(gi_z + gh_z)
    n = np.tanh(gi_n + r * gh_n)
    h_new = (1 - z) * n + z * h
    return (h_new,), (r, z, n, gh_n, h)


def gru_step_backward(dnew, saved):
    """dn, dz, dr in turn; gh's n block is seen through r, and h' = … + z ⊙ h directly."""
    (dh,) = dnew
    r, z, n, gh_n, h_prev = saved
    dn = dh * (1 - z) * (1 - n * n)  # through tanh
    dz = dh * (h_prev - n) * z * (1 - z)
    dr = dn * gh_n * r * (1 - r)
    dgi = np.concatenate([dr, dz, dn], axis=-1)  # (B, 3H)
    dgh = np.concatenate([dr, dz, dn * r], axis=-1)
    return dgi, dgh, (dh * z,)


# ----------------------------------------------------------------------------- sequences


def forward(cell, x, state, weights, mask=None, reverse=False):
    """The plain BPTT forward loop: x (T, B, F), state a tuple of (B, H) arrays,
    weights ``[weight_ih, weight_hh, bias_ih, bias_hh]`` (biases may be absent), mask
    (T, B) of 0/1 or None. At a padding step the state is carried and the output is 0.
    Returns ``out`` (T, B, H), the final state and the per-step records for
    :func:`backward`."""
    w_ih, w_hh, *b = weights
    b_ih, b_hh = b if b else (0, 0)
    T = x.shape[0]
    outs, records = [None] * T, [None] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        gi = x[t] @ w_ih.T + b_ih
        gh = cell.recurrence.step(w_hh, state[0]) + b_hh
        new, saved = cell.step(gi, gh, state)
        keep = np.ones((x.shape[1], 1), bool) if mask is None else mask[t][:, None] > 0
        new = tuple(np.where(keep, s_new, s) for s_new, s in zip(new, state, strict=True))
        records[t] = (x[t], state[0], saved, keep)
        outs[t] = new[0] * keep
        state = new
    return np.stack(outs), state, records


def backward(cell, weights, records, dout, dstate, reverse=False):
    """The plain BPTT backward loop: per-step chain rule and per-step weight gradients.
    ``dout`` (T, B, H), ``dstate`` a tuple of (B, H) arrays. Returns ``dx`` (T, B, F),
    ``dstate0`` and ``{weight_ih, weight_hh[, bias_ih, bias_hh]}``."""
    w_ih, w_hh, *b = weights
    grads = {"weight_ih": np.zeros_like(w_ih), "weight_hh": np.zeros_like(w_hh)}
    if b:
        grads["bias_ih"], grads["bias_hh"] = np.zeros_like(b[0]), np.zeros_like(b[1])
    T = len(records)
    dx = [None] * T
    for t in range(T) if reverse else range(T - 1, -1, -1):
        x_t, h_prev, saved, keep = records[t]
        dnew = (dstate[0] + dout[t] * keep, *dstate[1:])
        dgi, dgh, dprev = cell.step_backward(dnew, saved)
        dgi, dgh = dgi * keep, dgh * keep  # no gate at a padding step
        grads["weight_ih"] += dgi.T @ x_t
        grads["weight_hh"] += cell.recurrence.grad(dgh, h_prev)
        if b:
            grads["bias_ih"] += dgi.sum(axis=0)
            grads["bias_hh"] += dgh.sum(axis=0)
        dx[t] = dgi @ w_ih
        back = [0 if d is None else d for d in dprev]
        back[0] = back[0] + cell.recurrence.step_backward(w_hh, dgh)
        dstate = tuple(np.where(keep, d, dn) for d, dn in zip(back, dnew, strict=True))
    return np.stack(dx), dstate, grads
