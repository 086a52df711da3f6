"""nprnn.classic: the notebook's API, with its four faults fixed."""

from __future__ import annotations

import re
import textwrap
import warnings

import numpy as np
import pytest

from helpers import rel_err
from nprnn import classic as C
from nprnn.gradcheck import gradcheck

GRAD_TOL = 1e-6
RNN_KEYS = ("Wax", "Waa", "Ba", "Wya", "By")
LSTM_KEYS = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo", "Wy", "by")


# ----------------------------------------------------------------------------- fixtures


def rnn_params(n_x, n_a, n_y, rng, scale=0.5):
    return {
        "Wax": rng.normal(scale=scale, size=(n_a, n_x)),
        "Waa": rng.normal(scale=scale, size=(n_a, n_a)),
        "Ba": rng.normal(scale=scale, size=(n_a, 1)),
        "Wya": rng.normal(scale=scale, size=(n_y, n_a)),
        "By": rng.normal(scale=scale, size=(n_y, 1)),
    }


def lstm_params(n_x, n_a, n_y, rng, scale=0.5):
    p = {}
    for g in "fico":
        p["W" + g] = rng.normal(scale=scale, size=(n_a, n_a + n_x))
        p["b" + g] = rng.normal(scale=scale, size=(n_a, 1))
    p["Wy"] = rng.normal(scale=scale, size=(n_y, n_a))
    p["by"] = rng.normal(scale=scale, size=(n_y, 1))
    return p


def one_hot(n_y, m, Tx, rng):
    return np.eye(n_y)[rng.integers(0, n_y, (m, Tx))].transpose(2, 0, 1)  # (n_y, m, Tx)


def make_mask(kind, Tx, m, rng):
    """None, or a (Tx, m) float mask: right/left padding with lengths 0 and Tx, or holes."""
    if kind == "none":
        return None
    if kind == "holes":
        mask = (rng.random((Tx, m)) < 0.6).astype(float)
        mask[0, 0] = 1  # at least one valid token
        if Tx > 1:
            mask[Tx // 2, -1] = 0  # and at least one padded step
        return mask
    lengths = rng.integers(0, Tx + 1, m)
    if m >= 3:
        lengths[:3] = (Tx, 0, max(1, Tx // 2))
    mask = (np.arange(Tx)[:, None] < lengths[None, :]).astype(float)
    return mask if kind == "right" else mask[::-1].copy()


def softmax0(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def sig(z):
    return 1 / (1 + np.exp(-z))


# ----------------------------------------------------------------------------- reference


def ref_rnn_forward(x, a0, P, mask=None):
    """The notebook's RNN equations, step by step, in float64."""
    n_x, m, Tx = x.shape
    a, y = [], []
    a_prev = a0
    for t in range(Tx):
        at = np.tanh(P["Wax"] @ x[:, :, t] + P["Waa"] @ a_prev + P["Ba"])
        if mask is not None:
            mt = mask[t].reshape(1, -1)
            at = mt * at + (1 - mt) * a_prev
        a.append(at)
        y.append(softmax0(P["Wya"] @ at + P["By"]))
        a_prev = at
    return np.stack(a, axis=2), np.stack(y, axis=2)


def ref_lstm_forward(x, a0, c0, P, mask=None, y_before_mask=False):
    """The notebook's LSTM equations in float64; y from the masked state unless
    ``y_before_mask`` (what the notebook itself did at padded steps)."""
    n_x, m, Tx = x.shape
    a, c, y, gates = [], [], [], []
    a_prev, c_prev = a0, c0
    for t in range(Tx):
        z = np.vstack((a_prev, x[:, :, t]))
        ft, it = sig(P["Wf"] @ z + P["bf"]), sig(P["Wi"] @ z + P["bi"])
        cct, ot = np.tanh(P["Wc"] @ z + P["bc"]), sig(P["Wo"] @ z + P["bo"])
        c_next = ft * c_prev + it * cct
        a_next = ot * np.tanh(c_next)
        y_unmasked = softmax0(P["Wy"] @ a_next + P["by"])
        if mask is not None:
            mt = mask[t].reshape(1, -1)
            a_next = mt * a_next + (1 - mt) * a_prev
            c_next = mt * c_next + (1 - mt) * c_prev
        y.append(y_unmasked if y_before_mask else softmax0(P["Wy"] @ a_next + P["by"]))
        a.append(a_next)
        c.append(c_next)
        gates.append((ft, it, cct, ot))
        a_prev, c_prev = a_next, c_next
    return np.stack(a, 2), np.stack(c, 2), np.stack(y, 2), gates


@pytest.mark.parametrize("mask_kind", ["none", "right", "left", "holes"])
@pytest.mark.parametrize("m", [1, 4])
def test_rnn_forward_equals_the_notebook_equations(mask_kind, m):
    rng = np.random.default_rng(1)
    n_x, n_a, n_y, Tx = 3, 4, 5, 6
    P = rnn_params(n_x, n_a, n_y, rng)
    x, a0 = rng.normal(size=(n_x, m, Tx)), rng.normal(size=(n_a, m))
    mask = make_mask(mask_kind, Tx, m, rng)
    a, y, caches = C.rnn_forward(x, a0, P, mask)
    ra, ry = ref_rnn_forward(x, a0, P, mask)
    assert a.shape == (n_a, m, Tx) and y.shape == (n_y, m, Tx)
    assert rel_err(a, ra) < 1e-13 and rel_err(y, ry) < 1e-13
    assert len(caches) == Tx
    for t, (at, a_prev, xt, params, mask_t) in enumerate(caches):
        assert rel_err(at, ra[:, :, t]) < 1e-13
        assert rel_err(a_prev, a0 if t == 0 else ra[:, :, t - 1]) < 1e-13
        assert np.array_equal(xt, x[:, :, t]) and params is P
        if mask is None:
            assert mask_t is None
        else:
            assert np.array_equal(mask_t, mask[t].reshape(1, -1))


@pytest.mark.parametrize("mask_kind", ["none", "right", "left", "holes"])
@pytest.mark.parametrize("m", [1, 4])
def test_lstm_forward_equals_the_notebook_equations(mask_kind, m):
    rng = np.random.default_rng(2)
    n_x, n_a, n_y, Tx = 3, 4, 5, 6
    P = lstm_params(n_x, n_a, n_y, rng)
    x = rng.normal(size=(n_x, m, Tx))
    a0, c0 = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))
    mask = make_mask(mask_kind, Tx, m, rng)
    a, c, y, caches = C.lstm_forward(x, a0, c0, P, mask)
    ra, rc, ry, rg = ref_lstm_forward(x, a0, c0, P, mask)
    assert rel_err(a, ra) < 1e-13 and rel_err(c, rc) < 1e-13 and rel_err(y, ry) < 1e-13
    # the notebook computed y at padded steps from the discarded state: same at real steps
    _, _, ny, _ = ref_lstm_forward(x, a0, c0, P, mask, y_before_mask=True)
    real = np.ones((Tx, m), bool) if mask is None else mask.astype(bool)
    assert rel_err(y.transpose(2, 1, 0)[real], ny.transpose(2, 1, 0)[real]) < 1e-13
    for t, cache in enumerate(caches):
        a_next, c_next, a_prev, c_prev, xt, params, gates, mask_t = cache
        assert rel_err(a_next, ra[:, :, t]) < 1e-13 and rel_err(c_next, rc[:, :, t]) < 1e-13
        assert rel_err(c_prev, c0 if t == 0 else rc[:, :, t - 1]) < 1e-13
        assert rel_err(a_prev, a0 if t == 0 else ra[:, :, t - 1]) < 1e-13
        assert np.array_equal(xt, x[:, :, t]) and params is P
        for g, rg_ in zip(gates, rg[t], strict=True):  # (ft, it, cct, ot)
            assert rel_err(g, rg_) < 1e-13


# ----------------------------------------------------------------------------- gradients


def rnn_gradcheck(x, a0, P, y_true, mask):
    a, y, caches = C.rnn_forward(x, a0, P, mask)
    g = C.rnn_backward(y, y_true, caches)
    assert set(g) == {"dx", "da0", "dWax", "dWaa", "dBa", "dWya", "dBy"}

    def f(q):
        return C.compute_loss(C.rnn_forward(q["x"], q["a0"], q, mask)[1], y_true, mask)

    params = {**P, "x": x, "a0": a0}
    errs = gradcheck(f, params, {k: g["d" + k] for k in params})
    bad = {k: e for k, e in errs.items() if not e < GRAD_TOL}
    assert not bad, f"relative errors {bad}"
    return g, errs


def lstm_gradcheck(x, a0, c0, P, y_true, mask):
    a, c, y, caches = C.lstm_forward(x, a0, c0, P, mask)
    g = C.lstm_backward(y, y_true, caches)
    want = {"dx", "da0", "dc0", "dWy", "dby"} | {f"d{p}{k}" for p in "Wb" for k in "fico"}
    assert set(g) == want

    def f(q):
        return C.compute_loss(C.lstm_forward(q["x"], q["a0"], q["c0"], q, mask)[2], y_true, mask)

    params = {**P, "x": x, "a0": a0, "c0": c0}
    errs = gradcheck(f, params, {k: g["d" + k] for k in params}, eps=1e-5)
    bad = {k: e for k, e in errs.items() if not e < GRAD_TOL}
    assert not bad, f"relative errors {bad}"
    return g, errs


CASES = [  # (m, Tx, mask kind)
    (4, 5, "none"), (4, 5, "right"), (4, 5, "left"), (4, 5, "holes"),
    (1, 5, "none"), (1, 5, "holes"), (3, 1, "none"), (3, 1, "holes"),
]  # fmt: skip


@pytest.mark.parametrize(("m", "Tx", "mask_kind"), CASES)
def test_rnn_backward_is_the_exact_gradient_of_compute_loss(m, Tx, mask_kind):
    rng = np.random.default_rng(3)
    n_x, n_a, n_y = 3, 4, 5
    P = rnn_params(n_x, n_a, n_y, rng)
    mask = make_mask(mask_kind, Tx, m, rng)
    rnn_gradcheck(rng.normal(size=(n_x, m, Tx)), rng.normal(size=(n_a, m)), P,
                  one_hot(n_y, m, Tx, rng), mask)  # fmt: skip


@pytest.mark.parametrize(("m", "Tx", "mask_kind"), CASES)
def test_lstm_backward_is_the_exact_gradient_of_compute_loss(m, Tx, mask_kind):
    rng = np.random.default_rng(4)
    n_x, n_a, n_y = 2, 3, 4
    P = lstm_params(n_x, n_a, n_y, rng)
    mask = make_mask(mask_kind, Tx, m, rng)
    lstm_gradcheck(rng.normal(size=(n_x, m, Tx)), rng.normal(size=(n_a, m)),
                   rng.normal(size=(n_a, m)), P, one_hot(n_y, m, Tx, rng), mask)  # fmt: skip


def _padded_batch(rng, n_x, lengths):
    seqs = [rng.normal(size=(n_x, n)) for n in lengths]
    return C.pad_sequences(seqs)


def test_gradients_for_sequences_from_pad_sequences_with_a_length_0_column():
    rng = np.random.default_rng(5)
    n_x, n_a, n_y = 3, 3, 4
    x, mask = _padded_batch(rng, n_x, [5, 0, 2, 4])
    m, Tx = x.shape[1:]
    y_true = one_hot(n_y, m, Tx, rng)
    a0 = rng.normal(size=(n_a, m))
    g, _ = rnn_gradcheck(x, a0, rnn_params(n_x, n_a, n_y, rng), y_true, mask)
    assert not g["dx"][:, 1].any() and not g["da0"][:, 1].any()  # nothing reaches column 1
    c0 = rng.normal(size=(n_a, m))
    g, _ = lstm_gradcheck(x, a0, c0, lstm_params(n_x, n_a, n_y, rng), y_true, mask)
    assert not g["dx"][:, 1].any() and not g["dc0"][:, 1].any()


def test_fault2_gradients_are_not_divided_by_m():
    """Unmasked, Tx=6: the notebook's parameter gradients were Tx = N/m times too large
    relative to compute_loss; here they match the loss's slope along a random direction."""
    rng = np.random.default_rng(6)
    n_x, n_a, n_y, m, Tx = 3, 4, 5, 3, 6
    P = rnn_params(n_x, n_a, n_y, rng)
    x, a0, y_true = (
        rng.normal(size=(n_x, m, Tx)),
        rng.normal(size=(n_a, m)),
        one_hot(n_y, m, Tx, rng),
    )
    _, y, caches = C.rnn_forward(x, a0, P)
    g = C.rnn_backward(y, y_true, caches)
    D = {k: rng.normal(size=v.shape) for k, v in P.items()}
    eps = 1e-6

    def loss(s):
        Q = {k: P[k] + s * D[k] for k in P}
        return C.compute_loss(C.rnn_forward(x, a0, Q)[1], y_true)

    slope = (loss(eps) - loss(-eps)) / (2 * eps)
    analytic = sum(np.sum(g["d" + k] * D[k]) for k in P)
    assert analytic == pytest.approx(slope, rel=1e-6)


def test_fault4_gradient_reaches_a0_through_left_padding():
    """A column whose first steps are padding carries a0 to its first real step: da0 is
    the gradient along that carry (the notebook's mask on da_prev made it 0)."""
    rng = np.random.default_rng(7)
    n_x, n_a, n_y, m, Tx = 2, 3, 4, 2, 5
    mask = np.ones((Tx, m))
    mask[:3, 1] = 0  # column 1: padding, padding, padding, real, real
    x, a0, y_true = (
        rng.normal(size=(n_x, m, Tx)),
        rng.normal(size=(n_a, m)),
        one_hot(n_y, m, Tx, rng),
    )
    g, _ = rnn_gradcheck(x, a0, rnn_params(n_x, n_a, n_y, rng), y_true, mask)
    assert np.abs(g["da0"][:, 1]).max() > 1e-3
    c0 = rng.normal(size=(n_a, m))
    g, _ = lstm_gradcheck(x, a0, c0, lstm_params(n_x, n_a, n_y, rng), y_true, mask)
    assert np.abs(g["da0"][:, 1]).max() > 1e-3 and np.abs(g["dc0"][:, 1]).max() > 1e-3


def test_fault4_final_state_loss_through_padding_with_the_cells():
    """L = compute_loss + Σ S ⊙ a[:, :, -1] (a classifier on the final state). With right
    padding a[:, :, -1] is the state after each column's last real step, carried through
    the padding; backprop with rnnCell_backward, starting from da = S, is exact."""
    rng = np.random.default_rng(8)
    n_x, n_a, n_y, m, Tx = 2, 3, 4, 3, 5
    mask = (np.arange(Tx)[:, None] < np.array([5, 2, 3])[None, :]).astype(float)
    P = rnn_params(n_x, n_a, n_y, rng)
    x, a0, y_true = (
        rng.normal(size=(n_x, m, Tx)),
        rng.normal(size=(n_a, m)),
        one_hot(n_y, m, Tx, rng),
    )
    S = rng.normal(size=(n_a, m))

    def f(q):
        a, y, _ = C.rnn_forward(q["x"], q["a0"], q, mask)
        return C.compute_loss(y, y_true, mask) + np.sum(S * a[:, :, -1])

    a, y, caches = C.rnn_forward(x, a0, P, mask)
    dz = (y - y_true) * mask.T[None] / mask.sum()
    da = S.copy()
    grads = {k: np.zeros_like(v) for k, v in P.items()}
    dx = np.zeros_like(x)
    for t in reversed(range(Tx)):
        gt = C.rnnCell_backward(da, dz[:, :, t], caches[t])
        dx[:, :, t] = gt["dxt"]
        da = gt["da_prev"]
        for k in P:
            grads[k] += gt["d" + k]
    errs = gradcheck(f, {**P, "x": x, "a0": a0}, {**grads, "x": dx, "a0": da})
    assert max(errs.values()) < GRAD_TOL, errs


def test_fault4_lstm_final_state_loss_through_padding_with_the_cells():
    """The same with lstmCell_backward and L = compute_loss + Σ S ⊙ a_T + Σ U ⊙ c_T."""
    rng = np.random.default_rng(9)
    n_x, n_a, n_y, m, Tx = 2, 3, 4, 3, 5
    mask = (np.arange(Tx)[:, None] < np.array([5, 2, 0])[None, :]).astype(float)
    P = lstm_params(n_x, n_a, n_y, rng)
    x, y_true = rng.normal(size=(n_x, m, Tx)), one_hot(n_y, m, Tx, rng)
    a0, c0 = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))
    S, U = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))

    def f(q):
        a, c, y, _ = C.lstm_forward(q["x"], q["a0"], q["c0"], q, mask)
        return C.compute_loss(y, y_true, mask) + np.sum(S * a[:, :, -1]) + np.sum(U * c[:, :, -1])

    a, c, y, caches = C.lstm_forward(x, a0, c0, P, mask)
    dz = (y - y_true) * mask.T[None] / mask.sum()
    da, dc = S.copy(), U.copy()
    grads = {k: np.zeros_like(v) for k, v in P.items()}
    dx = np.zeros_like(x)
    for t in reversed(range(Tx)):
        grads["Wy"] += dz[:, :, t] @ a[:, :, t].T
        grads["by"] += dz[:, :, t].sum(axis=1, keepdims=True)
        gt = C.lstmCell_backward(da + P["Wy"].T @ dz[:, :, t], dc, caches[t])
        dx[:, :, t] = gt["dxt"]
        da, dc = gt["da_prev"], gt["dc_prev"]
        for k in P:
            if k not in ("Wy", "by"):
                grads[k] += gt["d" + k]
    params = {**P, "x": x, "a0": a0, "c0": c0}
    errs = gradcheck(f, params, {**grads, "x": dx, "a0": da, "c0": dc}, eps=1e-5)
    assert max(errs.values()) < GRAD_TOL, errs
    assert np.array_equal(da[:, 2], S[:, 2]) and np.array_equal(dc[:, 2], U[:, 2])  # length 0


# ----------------------------------------------------------------------------- cells


@pytest.mark.parametrize("mask_t", [None, [[1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]]])
def test_rnnCell_backward_gradcheck(mask_t):
    """L = ⟨da_next, at⟩ + ⟨dz ⊙ mask, Wya at + By⟩ for every returned gradient."""
    rng = np.random.default_rng(10)
    n_x, n_a, n_y, m = 3, 4, 2, 3
    P = rnn_params(n_x, n_a, n_y, rng)
    xt, a_prev = rng.normal(size=(n_x, m)), rng.normal(size=(n_a, m))
    da_next, dz = rng.normal(size=(n_a, m)), rng.normal(size=(n_y, m))
    mk = 1.0 if mask_t is None else np.array(mask_t)

    def f(q):
        at, _, _ = C.rnnCell_forward(q["xt"], q["a_prev"], q, mask_t)
        return np.sum(da_next * at) + np.sum(dz * mk * (q["Wya"] @ at + q["By"]))

    at, yt, cache = C.rnnCell_forward(xt, a_prev, P, mask_t)
    assert rel_err(yt, softmax0(P["Wya"] @ at + P["By"])) < 1e-14
    g = C.rnnCell_backward(da_next, dz, cache)
    assert set(g) == {"dxt", "da_prev", "dWax", "dWaa", "dBa", "dWya", "dBy"}
    params = {**P, "xt": xt, "a_prev": a_prev}
    grads = {k: g["d" + k] for k in P} | {"xt": g["dxt"], "a_prev": g["da_prev"]}
    errs = gradcheck(f, params, grads)
    assert max(errs.values()) < GRAD_TOL, errs
    if mask_t is not None:  # a padded column passes its whole gradient back (fault 4)
        pad = ~np.array(mask_t, bool)[0]
        want = (da_next + P["Wya"].T @ (dz * mk))[:, pad]
        assert np.allclose(g["da_prev"][:, pad], want) and not g["dxt"][:, pad].any()


@pytest.mark.parametrize("mask_t", [None, [[1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]]])
def test_lstmCell_backward_gradcheck(mask_t):
    """L = ⟨da_next, a_next⟩ + ⟨dc_next, c_next⟩; weights come from parameters (fault 3)."""
    rng = np.random.default_rng(11)
    n_x, n_a, n_y, m = 2, 3, 2, 3
    P = lstm_params(n_x, n_a, n_y, rng)
    xt, a_prev, c_prev = (rng.normal(size=s) for s in ((n_x, m), (n_a, m), (n_a, m)))
    da, dc = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))

    def f(q):
        a_next, c_next, _, _ = C.lstmCell_forward(q["xt"], q["a_prev"], q["c_prev"], q, mask_t)
        return np.sum(da * a_next) + np.sum(dc * c_next)

    a_next, c_next, yt, cache = C.lstmCell_forward(xt, a_prev, c_prev, P, mask_t)
    assert rel_err(yt, softmax0(P["Wy"] @ a_next + P["by"])) < 1e-14
    g = C.lstmCell_backward(da, dc, cache)
    wb = [k for k in P if k not in ("Wy", "by")]
    params = {**{k: P[k] for k in wb}, "xt": xt, "a_prev": a_prev, "c_prev": c_prev}
    grads = {k: g["d" + k] for k in wb} | {
        "xt": g["dxt"], "a_prev": g["da_prev"], "c_prev": g["dc_prev"],
    }  # fmt: skip
    errs = gradcheck(lambda q: f({**P, **q}), params, grads)
    assert max(errs.values()) < GRAD_TOL, errs
    if mask_t is not None:
        pad = ~np.array(mask_t, bool)[0]
        assert np.array_equal(g["dc_prev"][:, pad], dc[:, pad])
        assert np.allclose(g["da_prev"][:, pad], da[:, pad])


def test_fast_and_per_step_paths_agree():
    """A plain list of caches (a copy, or built with the cell functions as in the notebook)
    takes the per-step path and gives the same gradients as the fast path."""
    rng = np.random.default_rng(12)
    n_x, n_a, n_y, m, Tx = 3, 4, 5, 3, 6
    x, y_true = rng.normal(size=(n_x, m, Tx)), one_hot(n_y, m, Tx, rng)
    a0, c0 = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))
    mask = make_mask("holes", Tx, m, rng)
    P = rnn_params(n_x, n_a, n_y, rng)
    _, y, caches = C.rnn_forward(x, a0, P, mask)
    fast = C.rnn_backward(y, y_true, caches)
    slow = C.rnn_backward(y, y_true, list(caches))
    by_hand, a_prev = [], a0
    for t in range(Tx):
        a_prev, _, cache = C.rnnCell_forward(x[:, :, t], a_prev, P, mask[t].reshape(1, -1))
        by_hand.append(cache)
    cells = C.rnn_backward(y, y_true, by_hand)
    for k in fast:
        assert rel_err(fast[k], slow[k]) < 1e-12 and rel_err(fast[k], cells[k]) < 1e-12, k
    L = lstm_params(n_x, n_a, n_y, rng)
    _, _, y, caches = C.lstm_forward(x, a0, c0, L, mask)
    fast = C.lstm_backward(y, y_true, caches)
    slow = C.lstm_backward(y, y_true, caches[:])
    by_hand, a_prev, c_prev = [], a0, c0
    for t in range(Tx):
        a_prev, c_prev, _, cache = C.lstmCell_forward(x[:, :, t], a_prev, c_prev, L,
                                                      mask[t].reshape(1, -1))  # fmt: skip
        by_hand.append(cache)
    cells = C.lstm_backward(y, y_true, by_hand)
    for k in fast:
        assert rel_err(fast[k], slow[k]) < 1e-12 and rel_err(fast[k], cells[k]) < 1e-12, k


# ----------------------------------------------------------------------------- the notebook

NOTEBOOK_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from nprnn.classic import *

    np.random.seed(0)
    vocab_size, n_a = 5, 8
    seqs = [np.eye(vocab_size)[:, np.random.randint(0, vocab_size, L)] for L in (7, 4, 6, 2)]
    x, _ = pad_sequences([s[:, :-1] for s in seqs])
    y_true, mask = pad_sequences([s[:, 1:] for s in seqs])
    n_x, m, Tx = x.shape

    parameters = {
        "Wax": np.random.randn(n_a, n_x) * 0.1, "Waa": np.random.randn(n_a, n_a) * 0.1,
        "Ba": np.zeros((n_a, 1)), "Wya": np.random.randn(vocab_size, n_a) * 0.1,
        "By": np.zeros((vocab_size, 1)),
    }
    a0 = np.zeros((n_a, m))
    losses = []
    for it in range(150):
        a, y_pred, caches = rnn_forward(x, a0, parameters, mask)
        losses.append(compute_loss(y_pred, y_true, mask))
        gradients = rnn_backward(y_pred, y_true, caches)
        for key in parameters:
            parameters[key] -= 1.0 * gradients["d" + key]
    (a_next, a_prev, xt, params_0, mask_0) = caches[0]
    a_final, _, _ = rnn_forward(x, a0, parameters, mask)

    a_step = a0
    for t in range(Tx):
        a_step, yt_pred, cache = rnnCell_forward(x[:, :, t], a_step, parameters,
                                                 mask[t].reshape(1, -1))
    gradients_t = rnnCell_backward(np.zeros((n_a, m)), y_pred[:, :, -1] - y_true[:, :, -1],
                                   caches[-1])

    lstm_parameters = {}
    for g in ("f", "i", "c", "o"):
        lstm_parameters["W" + g] = np.random.randn(n_a, n_a + n_x) * 0.1
        lstm_parameters["b" + g] = np.zeros((n_a, 1))
    lstm_parameters["Wy"] = np.random.randn(vocab_size, n_a) * 0.1
    lstm_parameters["by"] = np.zeros((vocab_size, 1))
    lstm_losses = []
    for it in range(150):
        a, c, y_pred, caches = lstm_forward(x, a0, np.zeros((n_a, m)), lstm_parameters, mask)
        lstm_losses.append(compute_loss(y_pred, y_true, mask))
        lstm_gradients = lstm_backward(y_pred, y_true, caches)
        for key in lstm_parameters:
            lstm_parameters[key] -= 1.0 * lstm_gradients["d" + key]
    (a_next, c_next, a_prev, c_prev, xt, params_0, gates, mask_0) = caches[0]
    (ft, it_, cct, ot) = gates
    lstm_gradients_t = lstmCell_backward(np.ones_like(a_next), np.zeros_like(c_next), caches[-1])
    probs = softmax(np.random.randn(vocab_size, m))
    s = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    """
)


def test_a_notebook_script_runs_unchanged():
    ns = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and without warnings
        exec(compile(NOTEBOOK_SCRIPT, "<notebook>", "exec"), ns)
    assert ns["losses"][-1] < 0.8 * ns["losses"][0]
    assert ns["lstm_losses"][-1] < 0.8 * ns["lstm_losses"][0]
    assert ns["x"].dtype == np.float64 and ns["mask"].dtype == np.float64
    assert ns["params_0"] is ns["lstm_parameters"] and ns["mask_0"].shape == (1, ns["m"])
    assert rel_err(ns["a_step"], ns["a_final"][:, :, -1]) < 1e-13
    assert set(ns["gradients"]) == {"dx", "da0", "dWax", "dWaa", "dBa", "dWya", "dBy"}
    assert set(ns["gradients_t"]) == {"dxt", "da_prev", "dWax", "dWaa", "dBa", "dWya", "dBy"}
    assert {"dc_prev", "dWf", "dbo"} <= set(ns["lstm_gradients_t"])
    for k, v in ns["lstm_parameters"].items():
        assert ns["lstm_gradients"]["d" + k].shape == v.shape
    assert ns["ft"].shape == (8, ns["m"])
    np.testing.assert_allclose(ns["probs"].sum(axis=0), 1)
    assert ns["s"].tolist() == [0.0, 0.5, 1.0]


def test_cell_stepping_reproduces_rnn_forward():
    rng = np.random.default_rng(13)
    n_x, n_a, n_y, m, Tx = 3, 4, 5, 3, 4
    P = rnn_params(n_x, n_a, n_y, rng)
    x, a0 = rng.normal(size=(n_x, m, Tx)), rng.normal(size=(n_a, m))
    mask = make_mask("holes", Tx, m, rng)
    a, y, _ = C.rnn_forward(x, a0, P, mask)
    a_t = a0
    for t in range(Tx):
        a_t, y_t, _ = C.rnnCell_forward(x[:, :, t], a_t, P, mask[t].reshape(1, -1))
        assert rel_err(a_t, a[:, :, t]) < 1e-13 and rel_err(y_t, y[:, :, t]) < 1e-13


# ----------------------------------------------------------------------------- pad_sequences


def test_pad_sequences_keeps_float_values_and_dtype():
    """Fault 1: the notebook padded into an int array and truncated 0.25 to 0."""
    for dt in (np.float64, np.float32):
        seqs = [np.full((2, 3), 0.25, dt), np.array([[1.5], [-2.75]], dt), np.zeros((2, 0), dt)]
        padded, mask = C.pad_sequences(seqs)
        assert padded.dtype == dt and mask.dtype == dt
        assert padded.shape == (2, 3, 3) and mask.shape == (3, 3)
        assert np.array_equal(padded[:, 0], seqs[0])
        assert np.array_equal(padded[:, 1, :1], seqs[1]) and not padded[:, 1, 1:].any()
        assert not padded[:, 2].any()
        assert mask.tolist() == [[1, 1, 0], [1, 0, 0], [1, 0, 0]]


def test_pad_sequences_max_len_and_padding_value():
    seqs = [np.arange(6).reshape(2, 3), np.array([[7], [8]])]
    padded, mask = C.pad_sequences(seqs, max_len=5, padding_value=-1)
    assert padded.dtype == seqs[0].dtype and mask.dtype == np.float64
    assert padded[:, 0].tolist() == [[0, 1, 2, -1, -1], [3, 4, 5, -1, -1]]
    assert padded[:, 1].tolist() == [[7, -1, -1, -1, -1], [8, -1, -1, -1, -1]]
    assert mask[:, 1].tolist() == [1, 0, 0, 0, 0]
    padded, _ = C.pad_sequences(seqs, padding_value=0.5)  # the value survives
    assert padded.dtype == np.float64 and padded[0, 1, 1] == 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([],), "sequences is empty"),
        (([np.zeros(3)],), "sequences[0] has shape (3,): expected (embedding_size, seq_len)"),
        (([np.zeros((2, 1)), np.zeros((3, 1))],), "sequences[1] has embedding_size 3"),
        (([np.zeros((2, 1)), np.zeros((2, 4))], 3), "sequences[1] has length 4 > max_len=3"),
        (([np.zeros((2, 1))], -1), "max_len must be None or an integer >= 0"),
    ],
)
def test_pad_sequences_errors(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        C.pad_sequences(*args)


# ----------------------------------------------------------------------------- helpers, loss


def test_softmax_and_sigmoid_match_the_notebook():
    rng = np.random.default_rng(14)
    z = rng.normal(scale=5, size=(4, 3))
    assert rel_err(C.softmax(z), softmax0(z)) < 1e-15
    assert rel_err(C.sigmoid(z), 1 / (1 + np.exp(-np.clip(z, -500, 500)))) < 1e-15
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = C.sigmoid(np.array([-1000, -100, 0, 100], np.float32))
    assert s.dtype == np.float32 and s.tolist() == [0.0, pytest.approx(0, abs=1e-40), 0.5, 1.0]
    assert C.softmax(z.astype(np.float32)).dtype == np.float32


def test_compute_loss_matches_the_notebook_formula():
    rng = np.random.default_rng(15)
    n_y, m, Tx = 4, 3, 5
    y_pred = softmax0(rng.normal(size=(n_y, m, Tx)))
    y_true = one_hot(n_y, m, Tx, rng)
    mask = make_mask("right", Tx, m, rng)
    ce = -np.sum(y_true * np.log(np.clip(y_pred, 1e-8, 1 - 1e-8)), axis=0)
    assert C.compute_loss(y_pred, y_true) == pytest.approx(ce.sum() / (m * Tx), rel=1e-14)
    assert C.compute_loss(y_pred, y_true, mask) == pytest.approx(
        np.sum(ce * mask.T) / mask.sum(), rel=1e-14
    )
    # whatever sits at padded positions is ignored; no valid token gives 0
    junk = y_true.copy()
    junk[:, ~mask.T.astype(bool)] = 7.0
    assert C.compute_loss(y_pred, junk, mask) == C.compute_loss(y_pred, y_true, mask)
    assert C.compute_loss(y_pred, y_true, np.zeros((Tx, m))) == 0.0


def test_saturated_predictions_get_the_cross_entropy_gradient():
    """Where compute_loss's clip at 1e-8 is active (a confident wrong prediction) its value
    is flat, but rnn_backward returns the slope of the unclipped cross-entropy, as its
    docstring says: check against −Σ y log ŷ / N without the clip."""
    rng = np.random.default_rng(16)
    n_x, n_a, n_y, m, Tx = 2, 3, 4, 2, 3
    P = rnn_params(n_x, n_a, n_y, rng, scale=0.3)
    P["By"][0] = 40.0  # ŷ of classes 1..3 ≈ e^-40 < 1e-8
    x, a0 = rng.normal(size=(n_x, m, Tx)), rng.normal(size=(n_a, m))
    y_true = np.zeros((n_y, m, Tx))
    y_true[1] = 1  # always the wrong class
    _, y, caches = C.rnn_forward(x, a0, P)
    assert y[1].max() < 1e-8
    g = C.rnn_backward(y, y_true, caches)

    def unclipped(q):
        yq = C.rnn_forward(q["x"], q["a0"], q)[1]
        return -np.sum(y_true * np.log(yq)) / (m * Tx)

    params = {**P, "x": x, "a0": a0}
    errs = gradcheck(unclipped, params, {k: g["d" + k] for k in params})
    assert max(errs.values()) < GRAD_TOL, errs
    assert np.abs(g["dBy"]).max() > 0.1  # while compute_loss is flat there


def test_float32_in_float32_out():
    rng = np.random.default_rng(17)
    n_x, n_a, n_y, m, Tx = 3, 4, 5, 2, 4
    P64 = rnn_params(n_x, n_a, n_y, rng)
    seqs = [rng.normal(size=(n_x, n)).astype(np.float32) for n in (4, 2)]
    x, mask = C.pad_sequences(seqs)
    P = {k: v.astype(np.float32) for k, v in P64.items()}
    a0 = np.zeros((n_a, m), np.float32)
    y_true = one_hot(n_y, m, Tx, rng).astype(np.float32)
    a, y, caches = C.rnn_forward(x, a0, P, mask)
    g = C.rnn_backward(y, y_true, caches)
    assert a.dtype == y.dtype == np.float32
    assert all(v.dtype == np.float32 for v in g.values())
    a64, y64, c64 = C.rnn_forward(x.astype(np.float64), a0.astype(np.float64), P64, mask)
    g64 = C.rnn_backward(y64, y_true.astype(np.float64), c64)
    assert rel_err(y, y64) < 1e-5
    for k in g:
        assert rel_err(g[k], g64[k]) < 1e-4, k
    L = {k: v.astype(np.float32) for k, v in lstm_params(n_x, n_a, n_y, rng).items()}
    a, c, y, caches = C.lstm_forward(x, a0, a0, L, mask)
    g = C.lstm_backward(y, y_true, caches)
    assert a.dtype == c.dtype == y.dtype == np.float32
    assert all(v.dtype == np.float32 for v in g.values())


def test_integer_one_hot_inputs_and_mixed_dtypes_promote_like_numpy():
    rng = np.random.default_rng(19)
    n_x, n_a, n_y, m, Tx = 4, 3, 4, 2, 3
    seqs = [np.eye(n_x, dtype=np.int64)[:, rng.integers(0, n_x, n)] for n in (3, 1)]
    x, mask = C.pad_sequences(seqs)
    assert x.dtype == np.int64 and mask.dtype == np.float64
    P = {k: v.astype(np.float32) for k, v in rnn_params(n_x, n_a, n_y, rng).items()}
    a, y, caches = C.rnn_forward(x, np.zeros((n_a, m)), P, mask)  # int x, float64 a0
    assert a.dtype == np.float64
    ra, ry = ref_rnn_forward(x.astype(float), np.zeros((n_a, m)), P, mask)
    assert rel_err(y, ry) < 1e-13
    g = C.rnn_backward(y, one_hot(n_y, m, Tx, rng).astype(np.int64), caches)
    assert g["dWax"].dtype == np.float64


# ----------------------------------------------------------------------------- errors


def _rnn_setup(m=3, Tx=5):
    rng = np.random.default_rng(18)
    return rng.normal(size=(3, m, Tx)), np.zeros((4, m)), rnn_params(3, 4, 5, rng)


def _raises(exc, text):
    return pytest.raises(exc, match=re.escape(text))


def test_error_missing_parameter_is_named():
    x, a0, P = _rnn_setup()
    del P["Waa"]
    with _raises(ValueError, "parameters is missing 'Waa' (expected keys Wax, Waa, Ba, Wya, By)"):
        C.rnn_forward(x, a0, P)
    rng = np.random.default_rng(0)
    L = lstm_params(3, 4, 5, rng)
    del L["bo"]
    with _raises(ValueError, "parameters is missing 'bo' (expected keys Wf, bf, Wi, bi, Wc, bc, "
                 "Wo, bo, Wy, by)"):  # fmt: skip
        C.lstm_forward(x, a0, a0, L)


def test_error_parameters_not_a_dict():
    x, a0, _ = _rnn_setup()
    with _raises(TypeError, "parameters must be a dict with keys Wax, Waa, Ba, Wya, By, got list"):
        C.rnn_forward(x, a0, [1, 2])


def test_error_x_does_not_match_the_parameters():
    x, a0, P = _rnn_setup()
    with _raises(ValueError, "parameters['Wax'] has shape (4, 3): expected (4, 2) "
                 "(n_a=4 from parameters['Waa'], n_x=2 from x)"):  # fmt: skip
        C.rnn_forward(x[:2], a0, P)
    L = lstm_params(3, 4, 5, np.random.default_rng(0))
    with _raises(ValueError, "parameters['Wf'] has shape (4, 7): expected (4, 6)"):
        C.lstm_forward(x[:2], a0, a0, L)


def test_error_bias_shape():
    x, a0, P = _rnn_setup()
    P["Ba"] = P["Ba"][:, 0]
    with _raises(ValueError, "parameters['Ba'] must be 2-D, got shape (4,)"):
        C.rnn_forward(x, a0, P)


def test_error_mask_shape_is_tx_by_m():
    x, a0, P = _rnn_setup()
    with _raises(ValueError, "mask has shape (3, 5) but x is (n_x, m=3, Tx=5): "
                 "expected (Tx, m) = (5, 3)"):  # fmt: skip
        C.rnn_forward(x, a0, P, np.ones((3, 5)))


def test_error_mask_values():
    x, a0, P = _rnn_setup()
    mask = np.ones((5, 3))
    mask[4, 2] = 2
    with _raises(ValueError, "mask must hold only 0 and 1, got 2.0 at index (4, 2)"):
        C.rnn_forward(x, a0, P, mask)


def test_error_state_shape():
    x, a0, P = _rnn_setup()
    with _raises(ValueError, "a0 has shape (4, 2): expected (4, 3) "
                 "(n_a=4 from parameters['Waa'], m=3 from x)"):  # fmt: skip
        C.rnn_forward(x, a0[:, :2], P)
    L = lstm_params(3, 4, 5, np.random.default_rng(0))
    with _raises(ValueError, "c0 has shape (3, 3): expected (4, 3)"):
        C.lstm_forward(x, a0, a0[:3], L)


def test_error_nan_in_x():
    x, a0, P = _rnn_setup()
    x[1, 2, 3] = np.nan
    with _raises(ValueError, "x contains a non-finite value (nan) at index (1, 2, 3)"):
        C.rnn_forward(x, a0, P)


def test_error_empty_sequence_axis():
    x, a0, P = _rnn_setup(Tx=0)
    with _raises(ValueError, "x has shape (3, 3, 0): it needs m >= 1 sequences and Tx >= 1"):
        C.rnn_forward(x, a0, P)


def test_error_backward_shapes():
    x, a0, P = _rnn_setup()
    _, y, caches = C.rnn_forward(x, a0, P)
    with _raises(ValueError, "y_true has shape (5, 3, 4): expected (5, 3, 5)"):
        C.rnn_backward(y, y[:, :, :4], caches)
    with _raises(ValueError, "caches has 4 steps but y_pred has Tx=5"):
        C.rnn_backward(y, y, caches[:4])
    with _raises(ValueError, "mask has shape (5, 2) but y_pred is (n_y, m=3, Tx=5)"):
        C.compute_loss(y, y, np.ones((5, 2)))


def test_error_cell_inputs():
    x, a0, P = _rnn_setup()
    with _raises(ValueError, "mask_t has shape (1, 2): expected (1, m) = (1, 3)"):
        C.rnnCell_forward(x[:, :, 0], a0, P, np.ones((1, 2)))
    with _raises(ValueError, "a_prev has shape (4, 2): expected (4, 3)"):
        C.rnnCell_forward(x[:, :, 0], a0[:, :2], P)
    with _raises(TypeError, "cache must be the 5-tuple"):
        C.rnnCell_backward(a0, np.zeros((5, 3)), (1, 2))


def test_error_empty_predictions():
    """compute_loss/backward refuse an empty y_pred (m = 0 or Tx = 0), as x is refused."""
    for shape in ((2, 0, 3), (2, 3, 0), (0, 3, 2)):
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            with _raises(ValueError, f"y_pred has shape {shape}: it needs n_y >= 1"):
                C.compute_loss(np.zeros(shape), np.zeros(shape))
    x, a0, P = _rnn_setup(Tx=2)
    caches = C.rnn_forward(x, a0, P)[2]
    with _raises(ValueError, "y_pred has shape (5, 3, 0)"):
        C.rnn_backward(np.zeros((5, 3, 0)), np.zeros((5, 3, 0)), caches)


@pytest.mark.parametrize("lstm", [False, True])
@pytest.mark.parametrize("per_step", [False, True])
def test_error_backward_n_y_differs_from_the_parameters(lstm, per_step):
    rng = np.random.default_rng(20)
    n_x, n_a, n_y, m, Tx = 3, 4, 2, 2, 5
    x, a0 = rng.normal(size=(n_x, m, Tx)), np.zeros((n_a, m))
    if lstm:
        caches = C.lstm_forward(x, a0, a0, lstm_params(n_x, n_a, n_y, rng))[3]
        back, w = C.lstm_backward, "Wy"
    else:
        caches = C.rnn_forward(x, a0, rnn_params(n_x, n_a, n_y, rng))[2]
        back, w = C.rnn_backward, "Wya"
    if per_step:
        caches = list(caches)
    where = "caches[0]" if per_step else "caches"
    y3 = np.full((3, m, Tx), 1 / 3)
    with _raises(ValueError, f"y_pred has n_y=3 classes but the parameters in {where} have "
                 f"n_y=2 ({w} is (2, 4)): expected y_pred and y_true of shape (n_y, m, Tx) = "
                 "(2, 2, 5)"):  # fmt: skip
        back(y3, y3, caches)


def _rnn_cell_cache():
    rng = np.random.default_rng(21)
    P = rnn_params(3, 4, 2, rng)
    return C.rnnCell_forward(rng.normal(size=(3, 5)), rng.normal(size=(4, 5)), P)[2]


def _lstm_cell_cache():
    rng = np.random.default_rng(22)
    P = lstm_params(3, 4, 2, rng)
    a = rng.normal(size=(4, 5))
    return C.lstmCell_forward(rng.normal(size=(3, 5)), a, a, P, np.ones((1, 5)))[3]


@pytest.mark.parametrize(
    ("i", "junk", "exc", "message"),
    [
        (0, None, TypeError, "cache: at must be an array, got None"),
        (0, np.zeros((4, 6)), ValueError, "cache: at has shape (4, 6): expected (4, 5) "
         "(n_a=4 from parameters['Waa'], m=5 from xt)"),
        (1, np.zeros((3, 5)), ValueError, "cache: a_prev has shape (3, 5): expected (4, 5)"),
        (2, None, TypeError, "cache: xt must be an array, got None"),
        (2, np.zeros((2, 5)), ValueError, "cache: parameters['Wax'] has shape (4, 3): expected "
         "(4, 2)"),
        (2, np.array([["a"]]), TypeError, "cache: xt must hold real numbers, got dtype <U1"),
        (3, None, TypeError, "cache: parameters must be a dict"),
        (4, np.ones((1, 4)), ValueError, "cache: mask_t has shape (1, 4): expected (1, m)"),
        (4, np.full((1, 5), 2.0), ValueError, "cache: mask must hold only 0 and 1"),
    ],
)  # fmt: skip
def test_error_rnn_cell_cache_fields(i, junk, exc, message):
    cache = _rnn_cell_cache()
    bad = cache[:i] + (junk,) + cache[i + 1 :]
    with _raises(exc, message):
        C.rnnCell_backward(np.zeros((4, 5)), np.zeros((2, 5)), bad)


@pytest.mark.parametrize(
    ("i", "junk", "exc", "message"),
    [
        (0, None, TypeError, "cache: a_next must be an array, got None"),
        (1, np.zeros((1, 1, 1)), ValueError, "cache: c_next must be 2-D, got shape (1, 1, 1)"),
        (1, np.zeros((4, 6)), ValueError, "cache: c_next has shape (4, 6): expected (4, 5)"),
        (2, np.zeros((5, 5)), ValueError, "cache: a_prev has shape (5, 5): expected (4, 5)"),
        (3, [[1.0]], ValueError, "cache: c_prev has shape (1, 1): expected (4, 5)"),
        (4, None, TypeError, "cache: xt must be an array, got None"),
        (4, np.zeros((2, 5)), ValueError, "cache: parameters['Wf'] has shape (4, 7): expected"),
        (5, {}, ValueError, "cache: parameters is missing 'Wf'"),
        (6, None, TypeError, "cache: gates must be the 4-tuple (ft, it, cct, ot), got NoneType"),
        (6, (1, 2, 3), TypeError, "cache: gates must be the 4-tuple (ft, it, cct, ot), got a "
         "tuple of length 3"),
        (6, (np.zeros((4, 5)),) * 3 + (None,), TypeError, "cache: ot must be an array, got None"),
        (6, (np.zeros((4, 4)),) * 4, ValueError, "cache: ft has shape (4, 4): expected (4, 5)"),
        (7, np.zeros((1, 4)), ValueError, "cache: mask_t has shape (1, 4)"),
    ],
)  # fmt: skip
def test_error_lstm_cell_cache_fields(i, junk, exc, message):
    cache = _lstm_cell_cache()
    bad = cache[:i] + (junk,) + cache[i + 1 :]
    with _raises(exc, message):
        C.lstmCell_backward(np.zeros((4, 5)), np.zeros((4, 5)), bad)


def test_error_cache_length_and_nan():
    cache = _lstm_cell_cache()
    msg = (
        "cache must be the 8-tuple (a_next, c_next, a_prev, c_prev, xt, parameters, gates, "
        "mask_t) lstmCell_forward returned, got a tuple of length 7"
    )
    with _raises(TypeError, msg):
        C.lstmCell_backward(np.zeros((4, 5)), np.zeros((4, 5)), cache[:7])
    bad = (np.full((4, 5), np.nan),) + cache[1:]
    with _raises(ValueError, "cache: a_next contains a non-finite value (nan) at index (0, 0)"):
        C.lstmCell_backward(np.zeros((4, 5)), np.zeros((4, 5)), bad)


@pytest.mark.parametrize("lstm", [False, True])
def test_error_per_step_caches_name_the_step(lstm):
    rng = np.random.default_rng(23)
    n_x, n_a, n_y, m, Tx = 3, 4, 2, 2, 4
    x, a0 = rng.normal(size=(n_x, m, Tx)), np.zeros((n_a, m))
    if lstm:
        _, _, y, caches = C.lstm_forward(x, a0, a0, lstm_params(n_x, n_a, n_y, rng))
        back, ix = C.lstm_backward, 4
    else:
        _, y, caches = C.rnn_forward(x, a0, rnn_params(n_x, n_a, n_y, rng))
        back, ix = C.rnn_backward, 2
    steps = list(caches)
    steps[2] = steps[2][:ix] + (None,) + steps[2][ix + 1 :]
    with _raises(TypeError, "caches[2]: xt must be an array, got None"):
        back(y, y, steps)
    steps = list(caches)
    steps[1] = None
    with _raises(TypeError, "caches[1] must be the "):
        back(y, y, steps)
    # a step from another pass (other n_x, same parameters shape but different x width)
    other = list(caches)
    small = rnn_params(2, n_a, n_y, rng) if not lstm else lstm_params(2, n_a, n_y, rng)
    if lstm:
        other[3] = C.lstmCell_forward(np.zeros((2, m)), a0, a0, small)[3]
    else:
        other[3] = C.rnnCell_forward(np.zeros((2, m)), a0, small)[2]
    with _raises(ValueError, "caches[3] holds a state (4, 2) and xt (2, 2) but caches[0] holds "
                 "(4, 2) and (3, 2): all steps must come from one forward pass"):  # fmt: skip
        back(y, y, other)
    # the validated per-step path still gives the kernel's gradients
    fast, slow = back(y, y, caches), back(y, y, list(caches))
    for k in fast:
        assert rel_err(slow[k], fast[k]) < 1e-12, k


@pytest.mark.parametrize(
    ("seqs", "pv", "exc", "message"),
    [
        ([np.ones((2, 3), np.uint8)], None, TypeError, "padding_value must be a real number, "
         "got None"),
        ([np.ones((2, 3), np.uint8)], "x", TypeError, "padding_value must be a real number"),
        ([np.ones((2, 3), np.uint8)], 1j, TypeError, "padding_value must be a real number"),
        ([np.ones((2, 3))], np.nan, ValueError, "padding_value must be a finite real number, "
         "got nan"),
        ([np.ones((2, 3), np.uint8)], -1, ValueError, "padding_value -1 does not fit the "
         "sequences' dtype uint8: pass a value that it holds, or convert the sequences first "
         "(.astype(np.int64))"),
        ([np.ones((2, 3), np.uint8)], 300, ValueError, "padding_value 300 does not fit"),
        ([np.ones((2, 3), np.int64)], 2**70, ValueError, "does not fit the sequences' dtype int64"),
        ([np.ones((2, 3), np.float32)], 1e39, ValueError, "does not fit the sequences' dtype "
         "float32: pass a value that it holds, or convert the sequences first "
         "(.astype(np.float64))"),
        ([np.array([["a", "b"]])], 0, TypeError, "sequences[0] must hold real numbers, got dtype "
         "<U1"),
        ([np.ones((2, 1)), np.ones((2, 1), complex)], 0, TypeError, "sequences[1] must hold real "
         "numbers, got dtype complex128"),
        ([np.ones((2, 1)), None], 0, TypeError, "sequences[1] must be an array"),
        ([[[1.0, 2.0], [3.0]]], 0, ValueError, "sequences[0] is ragged"),
        (None, 0, TypeError, "sequences must be a list of (embedding_size, seq_len) arrays, "
         "got NoneType"),
        ("ab", 0, TypeError, "sequences must be a list of (embedding_size, seq_len) arrays, "
         "got str"),
    ],
)  # fmt: skip
def test_pad_sequences_validates_padding_value_and_dtypes(seqs, pv, exc, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _raises(exc, message):
            C.pad_sequences(seqs, 4, pv)


def test_pad_sequences_promotes_like_numpy():
    u8 = [np.ones((2, 3), np.uint8)]
    assert C.pad_sequences(u8, 4, 255)[0].dtype == np.uint8
    padded, _ = C.pad_sequences(u8, 4, 0.5)
    assert padded.dtype == np.float64 and padded[0, 0, 3] == 0.5
    padded, _ = C.pad_sequences(u8, 4, np.int64(-1))  # a NumPy scalar's dtype counts
    assert padded.dtype == np.int64 and padded[0, 0, 3] == -1
    padded, mask = C.pad_sequences([np.ones((2, 1), bool)], 3, False)
    assert padded.dtype == bool and mask.dtype == np.float64 and not padded[:, 0, 1:].any()
    f16, _ = C.pad_sequences([np.ones((2, 1), np.float16)], 2, 300)
    assert f16.dtype == np.float16 and f16[0, 0, 1] == 300
