"""nprnn.functional: exact gradients, PyTorch parity, masking properties, error messages."""

from __future__ import annotations

import contextlib
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (
    CELLS,
    loss_grads,
    make_problem,
    pre_activations,
    random_lengths,
    random_mask,
    random_upstream,
    reference_forward,
    rel_err,
    run_backward,
    run_forward,
    state_names,
    torch_reference,
    upstream_loss,
)
from nprnn import functional as F
from nprnn.backends.numpy_backend import NumpyBackend
from nprnn.gradcheck import gradcheck
from nprnn.kernels import driver
from nprnn.kernels.cells import get_cell

GRAD_TOL = 1e-6
SEED = 20240611


def _problem(cell, T, B, F_, H, seed, mask_kind, *, reverse=False, bias=True):
    """A float64 problem, mask and upstream gradients; RNN-relu avoids kinks (|pre| >= 1e-4)."""
    rng = np.random.default_rng(seed)
    while True:
        p = make_problem(cell, T, B, F_, H, rng, bias=bias)
        mask = random_mask(mask_kind, T, B, rng)
        if cell != "rnn_relu":
            break
        if np.abs(pre_activations(p, mask=mask, reverse=reverse)).min() >= 1e-4:
            break
    R, S = random_upstream(cell, T, B, H, rng)
    return p, mask, R, S


def _gradcheck(cell, p, R, S, **kw):
    grads = loss_grads(cell, p, R, S, **kw)
    errs = gradcheck(lambda q: upstream_loss(cell, q, R, S, **kw), p, grads)
    bad = {k: e for k, e in errs.items() if not e < GRAD_TOL}
    assert not bad, f"{cell} {kw}: relative errors {bad}"
    return errs


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("mask_kind", ["none", "right", "left", "holes"])
@pytest.mark.parametrize("BH", [(1, 3), (3, 1), (1, 1), (4, 3)], ids=["B1", "H1", "B1H1", "B4H3"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_per_step_reference(cell, reverse, BH, mask_kind):
    """out (0 at padding) and the final states (state after the last real step) equal a
    plain per-step loop, for any B and H including 1."""
    B, H = BH
    rng = np.random.default_rng(SEED + 4)
    p = make_problem(cell, 5, B, 2, H, rng)
    mask = random_mask(mask_kind, 5, B, rng)
    out, states, _ = run_forward(cell, p, mask=mask, reverse=reverse)
    r_out, r_states = reference_forward(cell, p, mask=mask, reverse=reverse)
    assert rel_err(out, r_out) < 1e-13
    for name, s, r in zip(state_names(cell), states, r_states, strict=True):
        assert rel_err(s, r) < 1e-13, f"final {name[0]}_n"


# ----------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("mask_kind", ["none", "right", "left", "holes"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_every_input(cell, reverse, mask_kind):
    """dx, dh0 (dc0) and every weight agree with central differences (float64)."""
    p, mask, R, S = _problem(cell, 4, 4, 3, 3, SEED, mask_kind, reverse=reverse)
    _gradcheck(cell, p, R, S, mask=mask, reverse=reverse)


@pytest.mark.parametrize("shape", [(5, 1), (1, 4), (1, 1)], ids=["B1", "T1", "T1B1"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_small_shapes(cell, reverse, shape):
    T, B = shape
    p, mask, R, S = _problem(cell, T, B, 2, 3, SEED + 1, "holes", reverse=reverse)
    _gradcheck(cell, p, R, S, mask=mask, reverse=reverse)
    _gradcheck(cell, p, R, S, reverse=reverse)


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_lengths_and_no_bias(cell):
    """``lengths=`` (including 0 and T) and bias=False differentiate exactly too."""
    p, _, R, S = _problem(cell, 4, 4, 3, 3, SEED + 2, "none", bias=False)
    lengths = random_lengths(4, 4, np.random.default_rng(0))
    assert set(lengths) >= {0, 4}
    for reverse in (False, True):
        errs = _gradcheck(cell, p, R, S, lengths=lengths, reverse=reverse)
        assert "bias_ih" not in errs


def test_gradcheck_would_catch_a_masking_bug():
    """Sanity of the setup: cutting the carry at padding (the seed's fault 4) is detected."""
    cell = "lstm"
    p, mask, R, S = _problem(cell, 4, 3, 2, 3, SEED, "holes")
    grads = loss_grads(cell, p, R, S, mask=mask)
    # the gradient of the loss where dh0 is computed as if padding cut the carry
    wrong = dict(grads, h0=grads["h0"] * mask.all(axis=0)[:, None])
    if np.array_equal(wrong["h0"], grads["h0"]):
        pytest.skip("this mask has no column with padding")
    errs = gradcheck(lambda q: upstream_loss(cell, q, R, S, mask=mask), p, wrong)
    assert errs["h0"] > 1e-3


# ----------------------------------------------------------------------------- torch parity


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("packing", ["none", "mask", "lengths"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_torch_parity(torch, cell, reverse, dtype, packing):
    """Outputs, final states and all gradients match torch.nn.{RNN,LSTM,GRU} + autograd."""
    tol = 1e-10 if dtype == np.float64 else 1e-5
    rng = np.random.default_rng(SEED + 3)
    T, B, F_, H = 6, 5, 4, 5
    p = make_problem(cell, T, B, F_, H, rng, dtype=dtype)
    R, S = random_upstream(cell, T, B, H, rng, dtype=dtype)
    lengths = None if packing == "none" else random_lengths(T, B, rng, min_len=1)
    kw = {"reverse": reverse}
    if packing == "mask":
        kw["mask"] = np.arange(T)[:, None] < lengths[None, :]
    elif packing == "lengths":
        kw["lengths"] = lengths
    out, states, cache = run_forward(cell, p, **kw)
    dx, d0, g = run_backward(cell, cache, R, S)
    grads = {"x": dx, **dict(zip(state_names(cell), d0, strict=True)), **g}
    t_out, t_states, t_grads = torch_reference(cell, p, R, S, lengths=lengths, reverse=reverse)
    errs = {"out": rel_err(out, t_out)}
    errs.update(
        {f"state{i}": rel_err(a, b) for i, (a, b) in enumerate(zip(states, t_states, strict=True))}
    )
    errs.update({f"d{k}": rel_err(grads[k], t_grads[k]) for k in p})
    assert out.dtype == dtype and all(v.dtype == dtype for v in grads.values())
    bad = {k: e for k, e in errs.items() if not e < tol}
    assert not bad, f"relative errors above {tol}: {bad}"


# ----------------------------------------------------------------------------- properties

PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _full_grads(cell, p, R, S, **kw):
    out, states, _ = run_forward(cell, p, **kw)
    return out, states, loss_grads(cell, p, R, S, **kw)


@PROPS
@given(
    cell=st.sampled_from(CELLS), reverse=st.booleans(), T=st.integers(1, 5),
    B=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_padding_content_never_matters(cell, reverse, T, B, seed):
    """Changing x and dout at padding changes no output, final state or gradient."""
    rng = np.random.default_rng(seed)
    p = make_problem(cell, T, B, 3, 3, rng)
    mask = random_mask("holes", T, B, rng)
    R, S = random_upstream(cell, T, B, 3, rng)
    q = dict(p, x=np.where(mask[:, :, None], p["x"], rng.normal(scale=10, size=p["x"].shape)))
    R2 = np.where(mask[:, :, None], R, rng.normal(size=R.shape))
    out1, st1, g1 = _full_grads(cell, p, R, S, mask=mask, reverse=reverse)
    out2, st2, g2 = _full_grads(cell, q, R2, S, mask=mask, reverse=reverse)
    assert rel_err(out1, out2) < 1e-12
    assert np.all(out1[~mask] == 0)
    for a, b in zip(st1, st2, strict=True):
        assert rel_err(a, b) < 1e-12
    for k in g1:
        assert rel_err(g1[k], g2[k]) < 1e-12, k
    assert np.all(g1["x"][~mask] == 0)


@PROPS
@given(
    cell=st.sampled_from(CELLS), reverse=st.booleans(), T=st.integers(1, 5),
    B=st.integers(1, 4), kind=st.sampled_from(["right", "left", "holes"]),
    seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_padded_batch_equals_each_sequence_alone(cell, reverse, T, B, kind, seed):
    """Each column of a masked batch computes what its real steps compute on their own."""
    rng = np.random.default_rng(seed)
    H = 3
    p = make_problem(cell, T, B, 2, H, rng)
    mask = random_mask(kind, T, B, rng)
    R, S = random_upstream(cell, T, B, H, rng)
    out, states, g = _full_grads(cell, p, R, S, mask=mask, reverse=reverse)
    names = state_names(cell)
    wsum = {k: np.zeros_like(p[k]) for k in p if k.startswith(("weight", "bias"))}
    for b in range(B):
        real = mask[:, b]
        if not real.any():  # a length-0 sequence keeps its state and passes S back
            for i, n in enumerate(names):
                assert np.array_equal(states[i][b], p[n][b])
                assert np.array_equal(g[n][b], S[i][b])
            assert not out[:, b].any() and not g["x"][:, b].any()
            continue
        pb = dict(p, x=p["x"][real, b : b + 1], **{n: p[n][b : b + 1] for n in names})
        Rb, Sb = R[real, b : b + 1], tuple(s[b : b + 1] for s in S)
        ob, sb, gb = _full_grads(cell, pb, Rb, Sb, reverse=reverse)
        assert rel_err(out[real, b], ob[:, 0]) < 1e-10
        for i, n in enumerate(names):
            assert rel_err(states[i][b], sb[i][0]) < 1e-10
            assert rel_err(g[n][b], gb[n][0]) < 1e-10
        assert rel_err(g["x"][real, b], gb["x"][:, 0]) < 1e-10
        for k in wsum:
            wsum[k] += gb[k]
    for k in wsum:
        assert rel_err(g[k], wsum[k]) < 1e-10, k


@PROPS
@given(
    cell=st.sampled_from(CELLS), reverse=st.booleans(), T=st.integers(1, 6),
    B=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_left_and_right_padding_agree(cell, reverse, T, B, seed):
    """The same sequences right- and left-padded give the same results, shifted."""
    rng = np.random.default_rng(seed)
    H = 3
    p = make_problem(cell, T, B, 2, H, rng)
    lengths = random_lengths(T, B, rng)
    right = np.arange(T)[:, None] < lengths[None, :]
    left = right[::-1]
    R, S = random_upstream(cell, T, B, H, rng)

    def to_left(a):  # move each column's first L_b steps to its end
        a = a.copy()
        for b, n in enumerate(lengths):
            a[:, b] = np.roll(a[:, b], T - n, axis=0)
        return a

    pl = dict(p, x=to_left(p["x"]))
    o_r, s_r, g_r = _full_grads(cell, p, R, S, mask=right, reverse=reverse)
    o_l, s_l, g_l = _full_grads(cell, pl, to_left(R), S, mask=left, reverse=reverse)
    assert rel_err(to_left(o_r), o_l) < 1e-12
    for a, b in zip(s_r, s_l, strict=True):
        assert rel_err(a, b) < 1e-12
    assert rel_err(to_left(g_r["x"]), g_l["x"]) < 1e-12
    for k in g_r:
        if k != "x":
            assert rel_err(g_r[k], g_l[k]) < 1e-12, k


@pytest.mark.parametrize("cell", CELLS)
def test_cache_backpropagates_twice_and_none_means_zeros(cell):
    p, mask, R, S = _problem(cell, 4, 3, 2, 3, SEED, "holes")
    _, _, cache = run_forward(cell, p, mask=mask)
    first = run_backward(cell, cache, R, S)
    second = run_backward(cell, cache, R, S)
    assert np.array_equal(first[0], second[0])
    zeros = run_backward(cell, cache, np.zeros_like(R), tuple(np.zeros_like(s) for s in S))
    nones = run_backward(cell, cache, None, None)
    assert np.array_equal(zeros[0], nones[0]) and not nones[0].any()
    for k in zeros[2]:
        assert np.array_equal(zeros[2][k], nones[2][k])


@pytest.mark.parametrize("shape", [(3, 1, 3), (3, 4, 1), (3, 3, 3)], ids=["B1", "H1", "B3H3"])
@pytest.mark.parametrize("cell", CELLS)
def test_backward_leaves_its_arguments_untouched(cell, shape):
    """backward must not write into dout or the final-state gradients (nor the forward
    into x / h0 / weights), whatever B and H are."""
    T, B, H = shape
    rng = np.random.default_rng(7)
    p = make_problem(cell, T, B, 2, H, rng)
    mask = np.ones((T, B), bool)
    mask[1, 0] = False
    R, S = random_upstream(cell, T, B, H, rng)
    saved = {k: v.copy() for k, v in p.items()}
    R0, S0 = R.copy(), tuple(s.copy() for s in S)
    w = [p.get(n) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if cell == "lstm":
        _, _, cache = F.lstm_forward(p["x"], p["h0"], p["c0"], *w, mask=mask)
        F.lstm_backward(R, S, cache)
    elif cell == "gru":
        _, _, cache = F.gru_forward(p["x"], p["h0"], *w, mask=mask)
        F.gru_backward(R, S[0], cache)
    else:
        _, _, cache = F.rnn_forward(p["x"], p["h0"], *w, nonlinearity=cell[4:], mask=mask)
        F.rnn_backward(R, S[0], cache)
    assert np.array_equal(R, R0), "dout was modified"
    for s, s0 in zip(S, S0, strict=True):
        assert np.array_equal(s, s0), "a final-state gradient was modified"
    for k in p:
        assert np.array_equal(p[k], saved[k]), f"{k} was modified"


# ----------------------------------------------------------------------------- error messages


def _rnn_args(T=5, B=3, F_=2, H=4, dtype=np.float64):
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(T, B, F_)).astype(dtype),
        rng.normal(size=(H, F_)).astype(dtype),
        rng.normal(size=(H, H)).astype(dtype),
    )


def _raises(exc, text):
    return pytest.raises(exc, match=re.escape(text))


def test_error_mask_shape():
    x, wi, wh = _rnn_args()
    with _raises(ValueError, "mask has shape (5, 4) but x is (T=5, B=3): expected (5, 3)"):
        F.rnn_forward(x, None, wi, wh, mask=np.ones((5, 4)))


def test_error_weight_shape():
    x, wi, _ = _rnn_args()
    with _raises(ValueError, "weight_hh has shape (4, 3): expected (4, 4)"):
        F.rnn_forward(x, None, wi, np.zeros((4, 3)))


def test_error_lstm_weight_rows():
    x, _, _ = _rnn_args()
    with _raises(ValueError, "weight_ih has 6 rows"):
        F.lstm_forward(x, None, None, np.zeros((6, 2)), np.zeros((6, 4)))


def test_error_h0_shape():
    x, wi, wh = _rnn_args()
    with _raises(ValueError, "h0 has shape (2, 4): expected (3, 4)"):
        F.rnn_forward(x, np.zeros((2, 4)), wi, wh)


def test_error_c0_shape():
    x, _, _ = _rnn_args()
    with _raises(ValueError, "c0 has shape (3, 5): expected (3, 4)"):
        F.lstm_forward(x, None, np.zeros((3, 5)), np.zeros((16, 2)), np.zeros((16, 4)))


def test_error_dtype_mixing():
    x, wi, wh = _rnn_args(dtype=np.float32)
    with _raises(TypeError, "weight_hh has dtype float64 but this computation is float32"):
        F.gru_forward(x, None, np.zeros((12, 2), np.float32), np.zeros((12, 4)))
    with _raises(TypeError, "h0 has dtype float64 but this computation is float32"):
        F.rnn_forward(x, np.zeros((3, 4)), wi, wh)


def test_error_nan_in_x_names_the_index():
    x, wi, wh = _rnn_args()
    x[3, 1, 0] = np.nan
    with _raises(ValueError, "x contains a non-finite value (nan) at index (3, 1, 0)"):
        F.rnn_forward(x, None, wi, wh)


def test_error_lengths_out_of_range():
    x, wi, wh = _rnn_args()
    with _raises(ValueError, "lengths must lie in [0, T=5], got 6 at index 2"):
        F.rnn_forward(x, None, wi, wh, lengths=[5, 0, 6])
    with _raises(ValueError, "lengths must lie in [0, T=5], got -1 at index 0"):
        F.rnn_forward(x, None, wi, wh, lengths=[-1, 0, 2])


def test_error_mask_values_not_binary():
    x, wi, wh = _rnn_args()
    mask = np.ones((5, 3))
    mask[2, 1] = 0.5
    with _raises(ValueError, "mask must hold only 0 and 1, got 0.5 at index (2, 1)"):
        F.rnn_forward(x, None, wi, wh, mask=mask)


def test_error_mask_and_lengths_together():
    x, wi, wh = _rnn_args()
    with _raises(ValueError, "pass either mask or lengths, not both"):
        F.rnn_forward(x, None, wi, wh, mask=np.ones((5, 3)), lengths=[1, 2, 3])


def test_error_nonlinearity():
    x, wi, wh = _rnn_args()
    with _raises(ValueError, "nonlinearity must be one of 'tanh', 'relu', got 'sigmoid'"):
        F.rnn_forward(x, None, wi, wh, nonlinearity="sigmoid")


def test_error_upstream_shape():
    x, wi, wh = _rnn_args()
    _, _, cache = F.rnn_forward(x, None, wi, wh)
    with _raises(ValueError, "dout has shape (5, 3, 3): expected (5, 3, 4)"):
        F.rnn_backward(np.zeros((5, 3, 3)), None, cache)
    with _raises(ValueError, "dh_n has shape (3, 3): expected (3, 4)"):
        F.rnn_backward(None, np.zeros((3, 3)), cache)


def test_error_ragged_mask_and_huge_lengths():
    x, wi, wh = _rnn_args()
    with _raises(ValueError, "mask must be a rectangular array, got a ragged nested sequence"):
        F.rnn_forward(x, None, wi, wh, mask=[[1, 1, 1]] * 4 + [[1, 1]])
    with _raises(ValueError, "x must be a rectangular array"):
        F.rnn_forward([[[1.0, 2.0]], [[1.0]]], None, wi, wh)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        with _raises(ValueError, "lengths must lie in [0, T=5], got 1e+300 at index 1"):
            F.rnn_forward(x, None, wi, wh, lengths=[5.0, 1e300, 0.0])
        with _raises(ValueError, "lengths must lie in [0, T=5], got 7 at index 0"):
            F.rnn_forward(x, None, wi, wh, lengths=[7.0, 1.0, 0.0])
        with _raises(ValueError, "lengths must lie in [0, T=5], got 18446744073709551615"):
            F.rnn_forward(x, None, wi, wh, lengths=np.array([2**64 - 1, 1, 1], np.uint64))
    _, h_n, _ = F.rnn_forward(x, None, wi, wh, lengths=np.array([5, 1, 0], np.uint64))
    _, h_ref, _ = F.rnn_forward(x, None, wi, wh, lengths=[5.0, 1.0, 0.0])
    np.testing.assert_array_equal(h_n, h_ref)


# ----------------------------------------------------------------------------- caches, dstate


def _caches():
    x = np.random.default_rng(1).normal(size=(3, 2, 2))
    out = {}
    for cell, G in (("rnn", 1), ("lstm", 4), ("gru", 3)):
        w_ih, w_hh = np.full((G * 4, 2), 0.1), np.full((G * 4, 4), 0.1)
        states = (None, None) if cell == "lstm" else (None,)
        out[cell] = getattr(F, f"{cell}_forward")(x, *states, w_ih, w_hh)[2]
    return out


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backward_checks_its_cache(cell):
    caches = _caches()
    back = getattr(F, f"{cell}_backward")
    want = f"cache must be the cache returned by {cell}_forward, got "
    for junk, got in [(None, "None"), ("cache", "'cache'"), (0, "0"), ({}, "a dict")]:
        with _raises(TypeError, want + got):
            back(None, None, junk)
    for other in set(caches) - {cell}:
        with _raises(
            TypeError, want + f"the cache of {other}_forward: pass it to {other}_backward"
        ):
            back(None, None, caches[other])
    back(None, None, caches[cell])  # the right one still works


def test_lstm_backward_dstate_is_a_pair_or_none():
    c = _caches()["lstm"]
    dh = np.ones((2, 4))
    ref = F.lstm_backward(None, (dh, None), c)
    for ok in ([dh, None], (dh, np.zeros((2, 4)))):
        dx, _, _ = F.lstm_backward(None, ok, c)
        np.testing.assert_array_equal(dx, ref[0])
    zero = F.lstm_backward(None, None, c)
    np.testing.assert_array_equal(zero[0], F.lstm_backward(None, (None, None), c)[0])
    want = "dstate must be a pair (dh_n, dc_n) or None, got "
    for bad, got in [
        (3, "3"),
        ((None, None, None), "a tuple of 3 items"),
        ([dh], "a list of 1 items"),
        (np.zeros((3, 2, 4)), "an array of shape (3, 2, 4)"),
        (np.zeros((2, 2, 4)), "an array of shape (2, 2, 4)"),
        (dh, "an array of shape (2, 4)"),
    ]:
        with _raises(TypeError, want + got):
            F.lstm_backward(None, bad, c)


# ----------------------------------------------------------------------------- activations


@contextlib.contextmanager
def _strict():
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("f", [F.sigmoid, F.softmax, F.log_softmax])
def test_activations_validate_x(f):
    for bad, exc, text in [
        (None, TypeError, "x must be an array, got None"),
        (np.array([1 + 1j, 2]), TypeError, "x must hold real numbers, got dtype complex128"),
        (np.array(["a", "b"]), TypeError, "x must hold real numbers, got dtype <U1"),
        (np.array([None, 1]), TypeError, "x must hold real numbers, got dtype object"),
        (np.array([0.0, np.inf]), ValueError, "x contains a non-finite value (inf) at index (1,)"),
        (np.array([np.nan]), ValueError, "x contains a non-finite value (nan) at index (0,)"),
        ([[1.0], [1.0, 2.0]], ValueError, "x must be a rectangular array"),
    ]:
        with _strict(), _raises(exc, text):
            f(bad)
    with _strict():
        for empty in (np.zeros((0, 3)), np.zeros((3, 0)), np.zeros(0, np.float32)):
            r = f(empty)
            assert r.shape == empty.shape and r.dtype == empty.dtype
        for ints in (np.array([True, False]), np.array([1, 2, 3]), [0, 1]):
            r = f(ints)
            assert r.dtype == np.float64
            np.testing.assert_array_equal(r, f(np.asarray(ints, dtype=np.float64)))


@pytest.mark.parametrize("f", [F.softmax, F.log_softmax])
def test_softmax_axis_is_checked(f):
    x = np.zeros((2, 3))
    with _raises(ValueError, "axis must lie in [-2, 2) for x of shape (2, 3), got 2"):
        f(x, axis=2)
    with _raises(TypeError, "axis must be an int, got 1.0"):
        f(x, axis=1.0)
    np.testing.assert_allclose(np.exp(F.log_softmax(x, axis=0)), F.softmax(x, axis=0))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_activations_at_the_extremes_of_the_dtype(dt):
    """No FloatingPointError under np.seterr(all='raise'), no warning, right limits."""
    big = np.finfo(dt).max
    x = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], dt)
    huge = np.array([big, -big, 0.0], dt)
    with _strict():
        s, sm, ls = F.sigmoid(x), F.softmax(x), F.log_softmax(x)
        assert s.dtype == sm.dtype == ls.dtype == dt
        assert s[0, 0] == 0 and s[0, 2] == 0.5 and s[0, -1] == 1
        assert sm[0, -1] == 1 and ls[0, -1] == 0 and sm[0, 0] == 0
        assert F.softmax(huge).tolist() == [1.0, 0.0, 0.0]
        lh = F.log_softmax(huge)  # −2·max is below the dtype's range: −inf, its rounding
        assert lh[0] == 0 and lh[1] == -np.inf and lh[2] == -big
        assert F.sigmoid(huge).tolist() == [1.0, 0.0, 0.5]


def test_flush_subnormals_zeroes_only_vanishing_entries():
    tiny = np.finfo(np.float32).tiny
    dh = np.array([[1.0, tiny * 2.0**10, tiny * 2.0**40, 0.0]], dtype=np.float32)
    chunk = np.array([[tiny / 4, 1e-3, -tiny * 2.0**20, 5.0]], dtype=np.float32)
    assert NumpyBackend().flush_subnormals([dh], [chunk]) is True  # 2^40·tiny is near: careful mode
    np.testing.assert_array_equal(dh, [[1.0, 0.0, tiny * 2.0**40, 0.0]])
    np.testing.assert_array_equal(chunk, np.array([[0.0, 1e-3, 0.0, 5.0]], dtype=np.float32))
    big = np.array([[1.0, -2.0]], dtype=np.float32)
    untouched = np.array([[tiny / 4]], dtype=np.float32)
    assert NumpyBackend().flush_subnormals([big], [untouched]) is False  # nothing near: chunk kept
    assert untouched[0, 0] == np.float32(tiny / 4)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_vanishing_gradient_float32_matches_float64(cell):
    """A long sequence whose gradient vanishes into the float32 subnormal range: the
    float32 kernels (which flush it) agree with float64 (which does not need to)."""
    rng = np.random.default_rng(0)
    T, B, Fe, H = 300, 4, 2, 8
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    x = rng.random((T, B, Fe))
    w = [rng.uniform(-0.3, 0.3, s) for s in [(G * H, Fe), (G * H, H), (G * H,), (G * H,)]]
    dh_n = rng.standard_normal((B, H))
    res = {}
    for dt in (np.float64, np.float32):
        args = [a.astype(dt) for a in [x, *w]]
        if cell == "lstm":
            _, _, cache = F.lstm_forward(args[0], None, None, *args[1:])
            dx, (dh0, _), g = F.lstm_backward(None, (dh_n.astype(dt), None), cache)
        else:
            fwd, bwd = (F.rnn_forward, F.rnn_backward) if cell == "rnn" else (
                F.gru_forward, F.gru_backward)  # fmt: skip
            _, _, cache = fwd(args[0], None, *args[1:])
            dx, dh0, g = bwd(None, dh_n.astype(dt), cache)
        res[dt] = (dx, g)
    dx64, g64 = res[np.float64]
    dx32, g32 = res[np.float32]
    assert np.abs(dx64[0]).max() < 1e-30  # the gradient really vanished on the way
    assert not np.any((dx32 != 0) & (np.abs(dx32) < np.finfo(np.float32).tiny))
    for k in g64:
        err = np.linalg.norm(g32[k] - g64[k]) / np.linalg.norm(g64[k])
        assert err < 1e-5, (k, err)
    assert np.linalg.norm(dx32 - dx64) / np.linalg.norm(dx64) < 1e-5


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru", "indrnn"])
def test_cache_is_independent_of_the_callers_weights(cell):
    """The cache holds the weights its forward used: an optimizer step (or a row swap)
    between forward and backward changes nothing the backward computes."""
    rng = np.random.default_rng(1)
    c = get_cell(cell)
    x = rng.standard_normal((3, 2, 4))
    w = [rng.standard_normal(s) for s in c.param_shapes(4, 5).values()]
    _, _, cache = F.sequence_forward(cell, x, None, w)
    dx, _, g = F.sequence_backward(np.ones((3, 2, 5)), None, cache)
    w[0] += 1.0
    w[1][[0, 1]] = w[1][[1, 0]]  # a row swap keeps every sum
    dx2, _, g2 = F.sequence_backward(np.ones((3, 2, 5)), None, cache)
    np.testing.assert_array_equal(dx, dx2)
    np.testing.assert_array_equal(g["weight_hh"], g2["weight_hh"])


# ----------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("mask_kind", ["none", "holes"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_any_chunking_gives_the_same_result(cell, reverse, mask_kind, monkeypatch):
    """The forward projects the inputs per chunk of steps, the backward computes its
    factors per chunk: any chunking (one step, uneven chunks with a short last one, one
    chunk for all) gives the same outputs and gradients; a many-chunk run passes gradcheck."""
    T, B = 11, 3
    p, mask, R, S = _problem(cell, T, B, 3, 4, SEED + 9, mask_kind, reverse=reverse)
    kw = dict(mask=mask, reverse=reverse)

    def chunking(proj_cols, chunk_steps):
        monkeypatch.setattr(driver, "_PROJ_COLS", proj_cols)
        monkeypatch.setattr(driver, "_CHUNK_STEPS", chunk_steps)
        monkeypatch.setattr(driver, "_CHUNK_ELEMS", 10**9)

    chunking(10**9, 10**9)
    ref_out, ref_states, _ = run_forward(cell, p, **kw)
    ref = loss_grads(cell, p, R, S, **kw)
    for proj_cols, chunk_steps in [(1, 1), (7, 4), (12, 2), (10**9, 3)]:  # 1, 3, 4, T steps
        chunking(proj_cols, chunk_steps)
        out, states, _ = run_forward(cell, p, **kw)
        assert rel_err(out, ref_out) < 1e-14
        for s, r in zip(states, ref_states, strict=True):
            assert rel_err(s, r) < 1e-14
        got = loss_grads(cell, p, R, S, **kw)
        for k in ref:
            assert rel_err(got[k], ref[k]) < 1e-13, f"{k} with {proj_cols}, {chunk_steps}"
    chunking(7, 3)
    _gradcheck(cell, p, R, S, **kw)
