"""nprnn.RNN / LSTM / GRU: exact gradients, padding rules, protocol and error messages."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nprnn
from nprnn import GRU, LSTM, RNN, IndRNN, gradcheck

KINDS = {
    "rnn_tanh": (RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, {}),
    "gru": (GRU, {}),
    "indrnn": (IndRNN, {}),  # no torch twin: checked by central differences only
}
T, B, F, H = 5, 4, 2, 3


def make(kind, dtype=np.float64, rng=0, **kw):
    cls, extra = KINDS[kind]
    return cls(F, H, **extra, **kw, dtype=dtype, rng=rng)


def n_states(layer):
    return 2 if isinstance(layer, LSTM) else 1


def pack(layer, arrays):
    return tuple(arrays) if isinstance(layer, LSTM) else arrays[0]


def unpack(layer, s):
    return list(s) if isinstance(layer, LSTM) else [s]


def holes_mask():
    """(T, B): a full row, a left-padded row, a row with holes, a row with no real step."""
    return np.array([[1, 0, 1, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0]])


def forward_backward(layer, x, states, g_out, g_states, **kw):
    out, sn = layer(x, pack(layer, states), **kw)
    dx, ds0 = layer.backward(g_out, pack(layer, g_states))
    return out, unpack(layer, sn), dx, unpack(layer, ds0)


def layer_gradcheck(layer, *, x_shape, mask=None, lengths=None, dropout_seed=None):
    """Central differences of L = Σ out·G + Σ h_n·G_h (+ Σ c_n·G_c) w.r.t. every
    parameter, x and the initial states, against layer.backward."""
    rng = np.random.default_rng(1)
    D = 2 if layer.bidirectional else 1
    x = rng.standard_normal(x_shape)
    bx = x_shape[0] if layer.batch_first else x_shape[1]
    names = ["h0", "c0"][: n_states(layer)]
    states = [rng.standard_normal((D * layer.num_layers, bx, H)) for _ in names]

    def run(xx, ss):
        if dropout_seed is not None:  # the same dropout masks at every evaluation
            layer.rng = np.random.default_rng(dropout_seed)
        out, sn = layer(xx, pack(layer, ss), mask=mask, lengths=lengths)
        return out, unpack(layer, sn)

    layer.zero_grad()
    out, sn = run(x, states)
    g_out = rng.standard_normal(out.shape)
    g_s = [rng.standard_normal(s.shape) for s in sn]

    def loss(out, sn):
        return np.sum(out * g_out) + sum(np.sum(s * g) for s, g in zip(sn, g_s, strict=True))

    dx, ds0 = layer.backward(g_out, pack(layer, g_s))
    analytic = {k: v.copy() for k, v in layer.grads.items()}
    analytic.update({"x": dx, **dict(zip(names, unpack(layer, ds0), strict=True))})
    base = layer.state_dict()
    point = {**base, "x": x, **dict(zip(names, states, strict=True))}

    def f(p):
        layer.load_state_dict({k: p[k] for k in base})
        with nprnn.no_grad():
            return loss(*run(p["x"], [p[n] for n in names]))

    errs = gradcheck(f, point, analytic, max_entries=25, rng=0)
    layer.load_state_dict(base)
    return errs


CONFIGS = {
    "single": ({}, {}),
    "stack_bi_mask": ({"num_layers": 2, "bidirectional": True}, {"mask": holes_mask()}),
    "bf_nobias_lengths": (
        {"num_layers": 2, "batch_first": True, "bias": False},
        {"lengths": np.array([5, 2, 0, 3])},
    ),
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_gradcheck(kind, config):
    kw, pad = CONFIGS[config]
    layer = make(kind, **kw)
    shape = (B, T, F) if layer.batch_first else (T, B, F)
    errs = layer_gradcheck(layer, x_shape=shape, **pad)
    assert len(errs) == len(layer.params) + 1 + n_states(layer)
    bad = {k: v for k, v in errs.items() if v > 1e-6}
    assert not bad, bad


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradcheck_with_dropout(kind):
    """Training mode, p = 0.5, 3 bidirectional layers, masks re-drawn identically."""
    layer = make(kind, num_layers=3, bidirectional=True, dropout=0.5).train()
    errs = layer_gradcheck(layer, x_shape=(T, B, F), lengths=[5, 1, 3, 4], dropout_seed=7)
    bad = {k: v for k, v in errs.items() if v > 1e-6}
    assert not bad, bad
    masks = layer.dropout_masks  # dropout really happened
    assert len(masks) == 2 and all(m is not None for m in masks)
    assert set(np.unique(masks[0])) == {0.0, 2.0}


def test_dropout_is_between_layers_with_stored_masks():
    """Train-mode output = layer 1 applied to (layer 0's output × mask), as torch does."""
    stack = LSTM(F, H, num_layers=2, dropout=0.3, batch_first=True, dtype=np.float64, rng=0)
    l0 = LSTM(F, H, batch_first=True, dtype=np.float64)
    l1 = LSTM(H, H, batch_first=True, dtype=np.float64)
    sd = stack.state_dict()
    l0.load_state_dict({k: v for k, v in sd.items() if k.endswith("l0")})
    l1.load_state_dict({k[:-1] + "0": v for k, v in sd.items() if k.endswith("l1")})
    x = np.random.default_rng(0).standard_normal((B, T, F))
    out, (h, c) = stack(x, lengths=[5, 4, 2, 1])
    (m,) = stack.dropout_masks
    assert m.shape == out.shape and 0 < np.mean(m == 0) < 1
    o0, (h0, _) = l0(x, lengths=[5, 4, 2, 1])
    o1, (h1, _) = l1(o0 * m, lengths=[5, 4, 2, 1])
    np.testing.assert_allclose(out, o1, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h, np.concatenate([h0, h1]), rtol=1e-13, atol=1e-15)
    # eval: no dropout, deterministic, equal to the composition without masks
    stack.eval()
    assert stack(x)[0] == pytest.approx(l1(l0(x)[0])[0], rel=1e-12)
    assert stack.dropout_masks == [None]


# ----------------------------------------------------------------------------- padding rules


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(list(KINDS)),
    bidirectional=st.booleans(),
    mask=arrays(np.bool_, (T, B)),
    seed=st.integers(0, 2**16),
)
def test_padding_content_is_irrelevant(kind, bidirectional, mask, seed):
    """Garbage in x and in dout at padded steps changes nothing at real steps, nor grads."""
    rng = np.random.default_rng(seed)
    layer = make(kind, num_layers=2, bidirectional=bidirectional)
    S = layer.num_directions * 2
    x = rng.standard_normal((T, B, F))
    states = [rng.standard_normal((S, B, H)) for _ in range(n_states(layer))]
    g_out = rng.standard_normal((T, B, layer.num_directions * H))
    g_s = [rng.standard_normal((S, B, H)) for _ in states]
    pad = ~mask
    x2, g2 = x.copy(), g_out.copy()
    x2[pad] = 100 * rng.standard_normal((pad.sum(), F))
    g2[pad] = 100 * rng.standard_normal((pad.sum(), g_out.shape[2]))
    res = []
    for xx, gg in ((x, g_out), (x2, g2)):
        layer.zero_grad()
        out, sn, dx, ds0 = forward_backward(layer, xx, states, gg, g_s, mask=mask)
        res.append((out, sn, dx, ds0, {k: v.copy() for k, v in layer.grads.items()}))
    (o1, s1, dx1, d1, g1), (o2, s2, dx2, d2, g2_) = res
    np.testing.assert_array_equal(o1, o2)
    assert np.all(o1[pad] == 0)  # output is 0 at padding
    np.testing.assert_array_equal(dx1, dx2)
    assert np.all(dx1[pad] == 0)
    for a, b in zip(s1 + d1, s2 + d2, strict=True):
        np.testing.assert_array_equal(a, b)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2_[k])


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_left_and_right_padding_agree(kind, bidirectional):
    layer = make(kind, num_layers=2, bidirectional=bidirectional)
    rng = np.random.default_rng(2)
    lengths = np.array([5, 3, 1, 0])
    shift = T - lengths  # left padding: the real steps of row b start at shift[b]
    right = np.arange(T)[:, None] < lengths[None, :]
    left = np.arange(T)[:, None] >= shift[None, :]
    x_r = rng.standard_normal((T, B, F)) * right[..., None]
    g_r = rng.standard_normal((T, B, layer.num_directions * H)) * right[..., None]
    x_l, g_l = np.zeros_like(x_r), np.zeros_like(g_r)
    for b in range(B):
        x_l[shift[b] :, b], g_l[shift[b] :, b] = x_r[: lengths[b], b], g_r[: lengths[b], b]
    S = layer.num_directions * 2
    states = [rng.standard_normal((S, B, H)) for _ in range(n_states(layer))]
    g_s = [rng.standard_normal((S, B, H)) for _ in states]
    res = []
    for xx, gg, m in ((x_r, g_r, right), (x_l, g_l, left)):
        layer.zero_grad()
        out, sn, dx, ds0 = forward_backward(layer, xx, states, gg, g_s, mask=m)
        res.append((out, sn, dx, ds0, {k: v.copy() for k, v in layer.grads.items()}))
    (o_r, s_r, dx_r, d_r, gr_r), (o_l, s_l, dx_l, d_l, gr_l) = res
    for b in range(B):
        n, s = lengths[b], shift[b]
        np.testing.assert_allclose(o_l[s:, b], o_r[:n, b], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx_l[s:, b], dx_r[:n, b], rtol=1e-12, atol=1e-14)
    for a, b_ in zip(s_l + d_l, s_r + d_r, strict=True):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-14)
    for k in gr_r:
        np.testing.assert_allclose(gr_l[k], gr_r[k], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("kind", list(KINDS))
def test_length_zero_row_keeps_initial_state(kind):
    layer = make(kind, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, F))
    states = [rng.standard_normal((4, B, H)) for _ in range(n_states(layer))]
    g_out = rng.standard_normal((T, B, 2 * H))
    g_s = [rng.standard_normal((4, B, H)) for _ in states]
    out, sn, dx, ds0 = forward_backward(layer, x, states, g_out, g_s, lengths=[5, 0, 2, 0])
    for b in (1, 3):
        assert np.all(out[:, b] == 0) and np.all(dx[:, b] == 0)
        for s, s0, d, g in zip(sn, states, ds0, g_s, strict=True):
            np.testing.assert_array_equal(s[:, b], s0[:, b])  # h_n = h0
            np.testing.assert_array_equal(d[:, b], g[:, b])  # dh0 = dh_n
    assert not np.allclose(sn[0][:, 0], states[0][:, 0])  # a real row does move


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_lengths_is_the_right_padding_mask(kind, batch_first):
    layer = make(kind, num_layers=2, bidirectional=True, batch_first=batch_first)
    rng = np.random.default_rng(4)
    shape = (B, T) if batch_first else (T, B)
    x = rng.standard_normal((*shape, F))
    g_out = rng.standard_normal((*shape, 2 * H))
    lengths = np.array([2, 5, 0, 3])
    mask = np.arange(T)[:, None] < lengths[None, :]  # (T, B)
    mask = mask.T if batch_first else mask
    results = []
    for kw in ({"lengths": lengths}, {"mask": mask.astype(np.float64)}):
        layer.zero_grad()
        out, sn, dx, ds0 = forward_backward(layer, x, [None] * n_states(layer), g_out,
                                            [None] * n_states(layer), **kw)  # fmt: skip
        results.append([out, *sn, dx, *ds0, *(g.copy() for g in layer.grads.values())])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("kind", list(KINDS))
def test_backward_accumulates_and_zero_grad_clears(kind):
    layer = make(kind, num_layers=2)
    x = np.random.default_rng(5).standard_normal((T, B, F))
    out, _ = layer(x)
    g = np.ones_like(out)
    layer.backward(g)
    once = {k: v.copy() for k, v in layer.grads.items()}
    refs = dict(layer.grads)
    layer(x)  # the same input again: backward consumes this second forward
    dx1, _ = layer.backward(g)
    for k in once:
        np.testing.assert_allclose(layer.grads[k], 2 * once[k], rtol=1e-14)
        assert np.any(once[k] != 0)
    layer.zero_grad()
    for k, v in layer.grads.items():
        assert v is refs[k] and not v.any()  # cleared in place


def test_params_are_read_at_every_call():
    """Optimizers update params in place: the next forward must use the new values."""
    layer = GRU(F, H, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((T, B, F))
    before, _ = layer(x)
    layer.params["weight_hh_l0"] *= 0.5
    layer.params["bias_ih_l0"] += 0.1
    after, _ = layer(x)
    fresh = GRU(F, H, dtype=np.float64)
    fresh.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(after, fresh(x)[0])
    assert not np.allclose(before, after)


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_stays_float32(kind):
    layer = make(kind, dtype=np.float32, num_layers=2, bidirectional=True, dropout=0.2)
    x = np.random.default_rng(0).standard_normal((T, B, F)).astype(np.float32)
    out, sn = layer(x, lengths=[5, 4, 0, 2])
    dx, ds0 = layer.backward(np.ones_like(out), pack(layer, [np.ones_like(s) for s in
                                                            unpack(layer, sn)]))  # fmt: skip
    for a in [out, dx, *unpack(layer, sn), *unpack(layer, ds0), *layer.params.values(),
              *layer.grads.values()]:  # fmt: skip
        assert a.dtype == np.float32


def test_lstm_state_parts_may_be_none():
    layer = LSTM(F, H, num_layers=2, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((T, B, F))
    h0 = np.random.default_rng(1).standard_normal((2, B, H))
    zeros = np.zeros_like(h0)
    a, (ha, ca) = layer(x, (h0, None))
    b, (hb, cb) = layer(x, (h0, zeros))
    c, _ = layer(x, [None, None])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, layer(x)[0])
    assert not np.array_equal(a, c)
    dx, (dh0, dc0) = layer.backward(None, (None, np.ones_like(cb)))
    assert dh0.shape == dc0.shape == (2, B, H) and dx.shape == x.shape


def test_int_input_is_converted():
    layer = LSTM(F, H, rng=0)
    xi = np.arange(T * B * F).reshape(T, B, F) % 3
    out_i, _ = layer(xi)
    out_f, _ = layer(xi.astype(np.float32))
    assert out_i.dtype == np.float32
    np.testing.assert_array_equal(out_i, out_f)


def test_state_dict_returns_copies_and_load_is_in_place():
    layer = LSTM(F, H, num_layers=2, rng=0)
    sd = layer.state_dict()
    sd["weight_ih_l0"][...] = 0
    assert np.any(layer.params["weight_ih_l0"] != 0)
    ref = layer.params["weight_ih_l0"]
    layer.load_state_dict({k: v.astype(np.float64).tolist() for k, v in sd.items()})
    assert layer.params["weight_ih_l0"] is ref and not ref.any()
    assert ref.dtype == np.float32


def test_same_seed_same_init():
    a, b, c = (LSTM(F, H, num_layers=2, rng=s) for s in (3, 3, 4))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)


def test_repr_like_torch():
    assert repr(LSTM(10, 20, num_layers=2, bidirectional=True)) == (
        "LSTM(10, 20, num_layers=2, bidirectional=True)"
    )
    assert repr(GRU(3, 4)) == "GRU(3, 4)"
    r = RNN(3, 4, nonlinearity="relu", bias=False, batch_first=True, dtype=np.float64)
    assert repr(r) == "RNN(3, 4, nonlinearity='relu', bias=False, batch_first=True, dtype=float64)"


def test_train_eval_return_self():
    layer = GRU(F, H)
    assert layer.training is True
    assert layer.eval() is layer and layer.training is False
    assert layer.train() is layer and layer.training is True


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_dropout_with_one_layer_warns_at_the_callers_line(cls):
    with pytest.warns(UserWarning, match="num_layers=1") as rec:
        cls(F, H, dropout=0.5)
    assert rec[0].filename == __file__


# ----------------------------------------------------------------------------- errors


def test_error_x_ndim():
    with pytest.raises(
        ValueError, match=re.escape("x must be 3-D (T, B, input_size), got shape (5, 2)")
    ):
        LSTM(F, H)(np.zeros((5, 2), np.float32))


def test_error_x_empty():
    with pytest.raises(ValueError, match="at least one step"):
        GRU(F, H)(np.zeros((0, 3, F), np.float32))


def test_error_feature_size():
    with pytest.raises(ValueError, match=r"x has 3 features .* but input_size=2"):
        GRU(F, H)(np.zeros((T, B, 3), np.float32))


def test_error_state_shape():
    layer = GRU(F, H, num_layers=2)
    with pytest.raises(ValueError, match=re.escape("h0 has shape (1, 4, 3): expected (2, 4, 3)")):
        layer(np.zeros((T, B, F), np.float32), np.zeros((1, B, H), np.float32))


def test_error_lstm_state_not_a_pair():
    with pytest.raises(TypeError, match=r"state must be a pair \(h0, c0\) or None"):
        LSTM(F, H)(np.zeros((T, B, F), np.float32), np.zeros((1, B, H), np.float32))


def test_error_mask_shape():
    msg = "mask has shape (5, 3) but x is (T=5, B=4): expected (5, 4)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        LSTM(F, H)(np.zeros((T, B, F), np.float32), mask=np.ones((5, 3)))
    msg = "mask has shape (5, 4) but x is (B=4, T=5): expected (4, 5)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        LSTM(F, H, batch_first=True)(np.zeros((B, T, F), np.float32), mask=np.ones((5, 4)))


def test_error_mask_values():
    mask = np.ones((T, B))
    mask[2, 1] = 2
    with pytest.raises(
        ValueError, match=re.escape("mask must hold only 0 and 1, got 2.0 at index (2, 1)")
    ):
        RNN(F, H)(np.zeros((T, B, F), np.float32), mask=mask)


def test_error_lengths_out_of_range():
    with pytest.raises(
        ValueError, match=re.escape("lengths must lie in [0, T=5], got 6 at index 1")
    ):
        RNN(F, H)(np.zeros((T, B, F), np.float32), lengths=[5, 6, 1, 1])


def test_error_mask_and_lengths():
    with pytest.raises(ValueError, match="either mask or lengths"):
        RNN(F, H)(np.zeros((T, B, F), np.float32), mask=np.ones((T, B)), lengths=[1] * B)


def test_error_float64_into_float32_layer():
    with pytest.raises(TypeError, match="x has dtype float64 but this computation is float32"):
        LSTM(F, H)(np.zeros((T, B, F)))
    with pytest.raises(TypeError, match="c0 has dtype float32 but this computation is float64"):
        LSTM(F, H, dtype=np.float64)(np.zeros((T, B, F)), (None, np.zeros((1, B, H), np.float32)))


def test_error_nan_in_x_names_the_index_in_users_layout():
    x = np.zeros((B, T, F), np.float32)
    x[3, 1, 0] = np.nan
    with pytest.raises(
        ValueError, match=re.escape("x contains a non-finite value (nan) at index (3, 1, 0)")
    ):
        GRU(F, H, batch_first=True)(x)


def test_error_inf_in_h0():
    h0 = np.zeros((1, B, H), np.float32)
    h0[0, 2, 1] = np.inf
    with pytest.raises(
        ValueError, match=re.escape("h0 contains a non-finite value (inf) at index (0, 2, 1)")
    ):
        RNN(F, H)(np.zeros((T, B, F), np.float32), h0)


def test_error_backward_before_forward():
    with pytest.raises(RuntimeError, match=re.escape("LSTM.backward() called with no pending")):
        LSTM(F, H).backward(None, None)


@pytest.mark.parametrize("kind", list(KINDS))
def test_reuse_is_lifo_and_each_forward_is_consumed_once(kind):
    """f(a); f(b); backward(db); backward(da) = the gradient of both uses, states too."""
    rng = np.random.default_rng(11)
    layer = make(kind, num_layers=2, bidirectional=True)
    xa, xb = rng.standard_normal((2, T, B, F))
    oa, _ = layer(xa, lengths=[T, 2, 0, 1])
    ob, _ = layer(xb)
    ga, gb = rng.standard_normal((2,) + oa.shape)
    dxb, dsb = layer.backward(gb)
    dxa, dsa = layer.backward(ga)
    both = {k: v.copy() for k, v in layer.grads.items()}
    with pytest.raises(RuntimeError, match="no pending forward"):
        layer.backward(ga)  # both forwards consumed
    for x, g, dx, kw in ((xa, ga, dxa, {"lengths": [T, 2, 0, 1]}), (xb, gb, dxb, {})):
        layer.zero_grad()
        layer(x, **kw)
        dx1, _ = layer.backward(g)
        np.testing.assert_array_equal(dx1, dx)
        for k in both:
            both[k] -= layer.grads[k]
    for v in both.values():  # what is left after subtracting each use's own gradient
        np.testing.assert_allclose(v, 0, atol=1e-12)


def test_no_grad_keeps_nothing_and_zero_grad_drops_pending():
    import nprnn

    layer = LSTM(F, H, dtype=np.float64)
    x = np.ones((T, B, F))
    with nprnn.no_grad():
        out, _ = layer(x)
    assert layer.pending_forwards == 0
    with pytest.raises(RuntimeError, match="no pending forward"):
        layer.backward(out)
    layer(x)
    layer(x)
    assert layer.pending_forwards == 2
    layer.zero_grad()
    assert layer.pending_forwards == 0


def test_refused_backward_keeps_the_forward():
    layer = GRU(F, H, dtype=np.float64)
    out, _ = layer(np.ones((T, B, F)))
    with pytest.raises(ValueError, match="dout"):
        layer.backward(np.ones((T + 1, B, H)))
    assert layer.pending_forwards == 1
    layer.backward(out)
    assert layer.pending_forwards == 0


def test_failed_forward_leaves_nothing_to_backpropagate():
    layer = GRU(F, H)
    layer(np.zeros((T, B, F), np.float32))
    with pytest.raises(ValueError):
        layer(np.zeros((T, B, 7), np.float32))
    assert layer.pending_forwards == 1  # only the good forward
    layer.backward(None)
    with pytest.raises(RuntimeError, match="no pending forward"):
        layer.backward(None)


def test_error_dout_shape():
    layer = LSTM(F, H, bidirectional=True, batch_first=True)
    layer(np.zeros((B, T, F), np.float32))
    msg = "dout has shape (5, 4, 6): expected (4, 5, 6) (it must match out)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        layer.backward(np.zeros((T, B, 2 * H), np.float32))


def test_error_dstate_shape():
    layer = GRU(F, H)
    layer(np.zeros((T, B, F), np.float32))
    with pytest.raises(ValueError, match=re.escape("dh_n has shape (4, 3): expected (1, 4, 3)")):
        layer.backward(None, np.zeros((B, H), np.float32))


def test_error_load_state_dict_names_every_problem():
    layer = LSTM(F, H, num_layers=2)
    sd = layer.state_dict()
    del sd["bias_hh_l1"]
    sd["bias_hh_l2"] = np.zeros(4 * H)
    sd["weight_ih_l0"] = np.zeros((4 * H, F + 1))
    before = layer.state_dict()
    msg = ("load_state_dict: missing keys ['bias_hh_l1']; unexpected keys ['bias_hh_l2']; "
           "weight_ih_l0 has shape (12, 3), expected (12, 2)")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(msg)):
        layer.load_state_dict(sd)
    for k, v in before.items():  # nothing was changed
        np.testing.assert_array_equal(layer.params[k], v)


def test_error_load_state_dict_non_finite():
    layer = GRU(F, H)
    sd = layer.state_dict()
    sd["weight_hh_l0"][1, 2] = np.nan
    with pytest.raises(
        ValueError,
        match=re.escape("weight_hh_l0 contains a non-finite value (nan) at index (1, 2)"),
    ):
        layer.load_state_dict(sd)
    sd = layer.state_dict()
    sd["bias_ih_l0"] = sd["bias_ih_l0"].astype(np.float64)
    sd["bias_ih_l0"][0] = 1e300  # finite in float64, inf in the layer's float32
    with pytest.raises(ValueError, match="bias_ih_l0 contains a non-finite value"):
        layer.load_state_dict(sd)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"hidden_size": 0}, ValueError, "hidden_size must be an integer >= 1, got 0"),
        ({"input_size": 2.5}, TypeError, "input_size must be an integer"),
        ({"num_layers": 0}, ValueError, "num_layers must be an integer >= 1"),
        ({"dropout": 1.0}, ValueError, r"dropout must lie in \[0.0, 1.0\), got 1.0"),
        ({"dropout": -0.1}, ValueError, "dropout must lie in"),
        ({"nonlinearity": "sigmoid"}, ValueError, "nonlinearity must be one of 'tanh', 'relu'"),
        ({"dtype": np.int32}, TypeError, "dtype must be np.float32 or np.float64, got int32"),
        ({"dtype": "float16"}, TypeError, "dtype must be np.float32 or np.float64"),
        ({"rng": "seed"}, TypeError, "rng must be a np.random.Generator"),
    ],
)
def test_error_constructor_args(kwargs, exc, match):
    args = {"input_size": F, "hidden_size": H, **kwargs}
    with pytest.raises(exc, match=match):
        RNN(args.pop("input_size"), args.pop("hidden_size"), **args)


def test_public_names():
    assert {"RNN", "LSTM", "GRU"} <= set(nprnn.__all__)


# ----------------------------------------------------------------------------- inference


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_grad_forward_equals_the_training_forward(kind):
    layer = make(kind, num_layers=2, bidirectional=True).eval()
    x = np.random.default_rng(2).standard_normal((T, B, F))
    out, sn = layer(x, lengths=[5, 0, 3, 1])
    with nprnn.no_grad():
        out2, sn2 = layer(x, lengths=[5, 0, 3, 1])
    np.testing.assert_array_equal(out, out2)
    for a, b in zip(unpack(layer, sn), unpack(layer, sn2), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", list(KINDS))
def test_step_equals_the_sequence_forward(kind, dtype):
    """step() one step at a time (reference cells) = the driver over the sequence."""
    layer = make(kind, dtype=dtype, num_layers=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, F)).astype(dtype)
    s0 = [rng.standard_normal((3, B, H)).astype(dtype) for _ in range(n_states(layer))]
    with nprnn.no_grad():
        out, sn = layer(x, pack(layer, s0))
    state = pack(layer, s0)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for t in range(T):
        o, state = layer.step(x[t], state)
        assert rel_err(o, out[t]) < tol
    for a, b in zip(unpack(layer, state), unpack(layer, sn), strict=True):
        assert rel_err(a, b) < tol
    table = layer.project(x[0])  # the first layer's projection given instead of x_0
    o2, _ = layer.step(projected=table, state=pack(layer, s0))
    assert rel_err(o2, out[0]) < tol
    assert layer.pending_forwards == 0


def test_step_refuses_what_it_cannot_do():
    with pytest.raises(
        ValueError, match="step\\(\\) runs one time step forward and needs bidirectional=False"
    ):
        LSTM(F, H, bidirectional=True).step(np.zeros((B, F), np.float32))
    with pytest.raises(TypeError, match="x_t or projected=, exactly one"):
        GRU(F, H).step()
    with pytest.raises(ValueError, match="x_t has shape"):
        GRU(F, H).step(np.zeros((B, F + 1), np.float32))


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("kind", list(KINDS))
def test_stepper_equals_the_sequence_forward_and_snapshots_the_weights(kind):
    layer = make(kind, num_layers=2)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, B, F))
    s0 = [rng.standard_normal((2, B, H)) for _ in range(n_states(layer))]
    with nprnn.no_grad():
        out, sn = layer(x, pack(layer, s0))
    gen = layer.stepper(pack(layer, s0))
    before = layer.state_dict()
    for p in layer.params.values():
        p += 1.0  # after the snapshot: the stepper keeps the weights it was made with
    for t in range(T):
        assert rel_err(gen.step(x[t]), out[t]) < 1e-12
    for a, b in zip(unpack(layer, gen.state), unpack(layer, sn), strict=True):
        assert rel_err(a, b) < 1e-12
    layer.load_state_dict(before)
    with pytest.raises(ValueError, match="the input has 1 rows but this stepper holds 4"):
        gen.step(x[0, :1])
    assert layer.stepper(batch=3).state[0 if kind == "lstm" else slice(None)].shape[-2] == 3


@pytest.mark.parametrize("layer", [LSTM, GRU, RNN, IndRNN])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("B", [1, 5])
def test_forward_embedded_equals_forward_of_the_gathered_rows(layer, batch_first, bidirectional, B):
    """forward_embedded(E, ids) is forward(E[ids]): outputs, states, parameter gradients,
    and its dx is the scatter of forward's dx into E's rows (f64, masked, 2 layers)."""
    rng = np.random.default_rng(B + 2 * batch_first + 4 * bidirectional)
    V, F, H, T = 7, 4, 6, 9
    lay = layer(F, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first,
                dtype=np.float64, rng=1)  # fmt: skip
    E, ids = rng.standard_normal((V, F)), rng.integers(0, V, (T, B))
    mask = rng.random((T, B)) < 0.8
    mask[0] = True
    x = E[ids].swapaxes(0, 1) if batch_first else E[ids]
    out, state = lay(x, mask=mask.T if batch_first else mask)
    dout = rng.standard_normal(out.shape)
    dx, dstate = lay.backward(dout)
    want = {k: g.copy() for k, g in lay.grads.items()}
    lay.zero_grad()
    dE = np.zeros_like(E)
    np.add.at(dE, ids.reshape(-1), (dx.swapaxes(0, 1) if batch_first else dx).reshape(-1, F))

    out2, state2 = lay.forward_embedded(E, ids, mask=mask)
    dE2, dstate2 = lay.backward(dout)
    assert np.abs(out2 - out).max() < 1e-13
    for a, b in zip(np.atleast_1d(state), np.atleast_1d(state2), strict=True):
        assert np.abs(a - b).max() < 1e-13
    assert dE2.shape == E.shape and np.abs(dE2 - dE).max() < 1e-12
    for k, g in want.items():
        assert np.abs(lay.grads[k] - g).max() < 1e-12, k
    for a, b in zip(np.atleast_1d(dstate), np.atleast_1d(dstate2), strict=True):
        assert np.abs(a - b).max() < 1e-12


def test_forward_embedded_checks_its_inputs():
    lay = LSTM(4, 6, rng=0)
    E = np.zeros((7, 4), np.float32)
    with pytest.raises(ValueError, match=r"weight has shape \(7, 5\)"):
        lay.forward_embedded(np.zeros((7, 5), np.float32), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match=r"ids"):
        lay.forward_embedded(E, np.full((3, 2), 7))
    with pytest.raises(ValueError, match=r"ids must be 2-D"):
        lay.forward_embedded(E, np.zeros(3, int))
    with pytest.raises(TypeError, match=r"ids must hold integer ids"):
        lay.forward_embedded(E, np.zeros((3, 2)))


@pytest.mark.parametrize("layer", [LSTM, GRU, RNN, IndRNN])
def test_step_trusted_is_step_projected(layer):
    lay = layer(4, 5, num_layers=2, dtype=np.float64, rng=0)
    table = lay.project(np.random.default_rng(1).standard_normal((6, 4)))  # (V, G·H)
    a, b = lay.stepper(batch=3), lay.stepper(batch=3)
    for ids in ([0, 1, 2], [5, 5, 0], [3, 4, 1]):
        np.testing.assert_array_equal(
            a.step(projected=table[ids]), b.step_trusted(b.table(table)[ids])
        )
    for x, y in zip(np.atleast_1d(a.state), np.atleast_1d(b.state), strict=True):
        np.testing.assert_array_equal(x, y)
