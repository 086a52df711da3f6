"""Reuse: a layer called 2–3 times in one step gets exactly the gradient of the sum (torch);
backward without a pending forward, twice for one forward, or after no_grad raises."""

import numpy as np
import pytest

import nprnn

torch = pytest.importorskip("torch")
pack = torch.nn.utils.rnn.pack_padded_sequence
unpack = torch.nn.utils.rnn.pad_packed_sequence

TOL = {np.float64: 1e-10, np.float32: 1e-5}
CELLS = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = np.linalg.norm(a - b)
    return 0.0 if d == 0 else float(d / max(np.linalg.norm(a), np.linalg.norm(b)))


def _tensor(a, grad=False):
    t = torch.from_numpy(np.array(a))
    return t.requires_grad_(True) if grad else t


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_layer_used_three_times_matches_torch(cell, bidirectional, dtype):
    F, H, L = 3, 4, 2
    D = 2 if bidirectional else 1
    layer = getattr(nprnn, cell)(F, H, L, bidirectional=bidirectional, dtype=dtype, rng=0)
    tl = CELLS[cell](F, H, L, bidirectional=bidirectional)
    tl = tl.double() if dtype == np.float64 else tl
    tl.load_state_dict({k: _tensor(v) for k, v in layer.state_dict().items()})
    rng = np.random.default_rng(1)
    lstm = cell == "LSTM"
    uses = []  # three calls with different T, B, lengths, initial states
    for T, B in [(5, 3), (2, 4), (6, 2)]:
        x = rng.normal(size=(T, B, F)).astype(dtype)
        lengths = rng.integers(1, T + 1, size=B)
        s0 = [rng.normal(size=(D * L, B, H)).astype(dtype) for _ in range(2 if lstm else 1)]
        dout = rng.normal(size=(T, B, D * H)).astype(dtype)
        ds = [rng.normal(size=(D * L, B, H)).astype(dtype) for _ in s0]
        uses.append((x, lengths, s0, dout, ds))

    outs = []
    for x, lengths, s0, _, _ in uses:
        outs.append(layer(x, tuple(s0) if lstm else s0[0], lengths=lengths))
    assert layer.pending_forwards == 3
    back = {}
    for i in (2, 1, 0):  # latest first
        _, _, _, dout, ds = uses[i]
        back[i] = layer.backward(dout, tuple(ds) if lstm else ds[0])
    with pytest.raises(RuntimeError, match="no pending forward"):
        layer.backward(uses[0][3])

    total = 0
    tx, ts = [], []
    for x, lengths, s0, dout, ds in uses:
        xt = _tensor(x, True)
        st = [_tensor(s, True) for s in s0]
        out, fin = tl(pack(xt, torch.from_numpy(lengths), enforce_sorted=False),
                      tuple(st) if lstm else st[0])  # fmt: skip
        out, _ = unpack(out, total_length=x.shape[0])
        fin = fin if lstm else (fin,)
        total = total + (out * _tensor(dout)).sum()
        total = total + sum((f * _tensor(d)).sum() for f, d in zip(fin, ds, strict=True))
        tx.append(xt)
        ts.append(st)
    total.backward()
    tol = TOL[dtype]
    for i, (x, _, _, _, _) in enumerate(uses):
        out_np = outs[i][0]
        dx, dst = back[i]
        dst = dst if lstm else (dst,)
        assert rel(dx, tx[i].grad.numpy()) < tol, f"dx of use {i}"
        for d, t in zip(dst, ts[i], strict=True):
            assert rel(d, t.grad.numpy()) < tol, f"dstate of use {i}"
        assert out_np.shape == (x.shape[0], x.shape[1], D * H)
    for name, p in tl.named_parameters():
        assert rel(layer.grads[name], p.grad.numpy()) < tol, name


def test_lifo_order_matters():
    # backward in the wrong order (same shapes) gives another gradient: the LIFO pairing is
    # what the tests above check, and this one shows they could fail
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
    ga, gb = rng.normal(size=(4, 2, 5)), rng.normal(size=(4, 2, 5))
    grads = []
    for order in ((gb, ga), (ga, gb)):
        g = nprnn.GRU(3, 5, dtype=np.float64, rng=0)
        g(xa)
        g(xb)
        for d in order:
            g.backward(d)
        grads.append(g.grads["weight_hh_l0"].copy())
    assert rel(grads[0], grads[1]) > 1e-3


def _fresh_and_call():
    rng = np.random.default_rng(0)
    x3 = rng.normal(size=(4, 2, 3)).astype(np.float32)
    ids = rng.integers(0, 5, size=(4, 2))
    return [
        (nprnn.Linear(3, 2), lambda m: m(x3), np.ones((4, 2, 2), np.float32)),
        (nprnn.Embedding(5, 3), lambda m: m(ids), np.ones((4, 2, 3), np.float32)),
        (nprnn.Dropout(0.5, rng=0), lambda m: m(x3), np.ones((4, 2, 3), np.float32)),
        (nprnn.RNN(3, 2), lambda m: m(x3), None),
        (nprnn.LSTM(3, 2, bidirectional=True), lambda m: m(x3), None),
        (nprnn.GRU(3, 2, 2), lambda m: m(x3), None),
        (nprnn.Sequential(nprnn.Linear(3, 3), nprnn.GRU(3, 2)), lambda m: m(x3), None),
    ]


@pytest.mark.parametrize("i", range(7))
def test_backward_without_forward_twice_and_after_no_grad(i):
    module, call, dout = _fresh_and_call()[i]
    name = type(module).__name__
    msg = rf"^{name}\.backward\(\) called with no pending forward"
    with pytest.raises(RuntimeError, match=msg):
        module.backward(dout)
    call(module)
    module.backward(dout)
    with pytest.raises(RuntimeError, match=msg) as e:
        module.backward(dout)  # the forward was consumed
    assert "\n" not in str(e.value)
    with nprnn.no_grad():
        call(module)
    assert all(m.pending_forwards == 0 for m in module.modules())
    with pytest.raises(RuntimeError, match=msg):
        module.backward(dout)
    call(module)
    module.zero_grad()
    with pytest.raises(RuntimeError, match=msg):
        module.backward(dout)
