"""The CuPy backend on a real GPU: exactness against NumPy and torch, fused steps, and no
host round trip per time step. Skipped where CuPy or a CUDA device is absent (CI runs on
CPUs); ``benchmarks/gpu_check.sh`` runs this file on a GPU machine."""

from __future__ import annotations

import numpy as np
import pytest

import nprnn
from nprnn import backends
from nprnn import functional as F
from nprnn.backends.cupy_backend import CupyBackend
from nprnn.backends.numpy_backend import NumpyBackend
from nprnn.gradcheck import gradcheck
from nprnn.kernels import driver
from nprnn.kernels.cells import CELLS, get_cell

cp = pytest.importorskip("cupy", reason="no CuPy here: the GPU tests run on a CUDA machine")
try:
    _devices = cp.cuda.runtime.getDeviceCount()
except Exception:  # CuPy without a driver
    _devices = 0
pytestmark = pytest.mark.skipif(_devices == 0, reason="no CUDA device here")


def _rel(a, b):
    a = np.asarray(cp.asnumpy(a) if isinstance(a, cp.ndarray) else a, np.float64)
    b = np.asarray(cp.asnumpy(b) if isinstance(b, cp.ndarray) else b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def _problem(cell, dt, T=7, B=5, F=4, H=6, seed=0):
    rng = np.random.default_rng(seed)
    c = get_cell(cell)
    w = [rng.uniform(-0.5, 0.5, s).astype(dt) for s in c.param_shapes(F, H).values()]
    x = rng.standard_normal((T, B, F)).astype(dt)
    states = [rng.standard_normal((B, H)).astype(dt) for _ in c.states]
    mask = rng.random((T, B)) < 0.8
    mask[:, 0] = True
    dout = rng.standard_normal((T, B, H)).astype(dt)
    dstates = [rng.standard_normal((B, H)).astype(dt) for _ in c.states]
    return c, x, states, w, ~mask[:, None, :], dout, dstates


def _run(be, c, x, states, w, pad, dout, dstates, reverse, monkeypatch):
    monkeypatch.setattr(backends, "_current", be)
    dev = (lambda a: a) if be.device == "cpu" else cp.asarray
    out, fin, cache = driver.forward(c, dev(x), [dev(s) for s in states], [dev(a) for a in w],
                                     dev(pad), reverse)  # fmt: skip
    dx, d0, grads = driver.backward(cache, dev(dout), [dev(d) for d in dstates])
    return [out, *fin, dx, *d0, *(grads[k] for k in sorted(grads))]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "xp"])
@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_driver_on_the_gpu_equals_numpy(cell, reverse, dt, fused, monkeypatch):
    c, x, states, w, pad, dout, dstates = _problem(cell, dt)
    ref = _run(NumpyBackend(), c, x, states, w, pad, dout, dstates, reverse, monkeypatch)
    got = _run(CupyBackend(fused=fused), c, x, states, w, pad, dout, dstates, reverse,
               monkeypatch)  # fmt: skip
    tol = 1e-12 if dt == np.float64 else 1e-5
    for a, b in zip(got, ref, strict=True):
        assert isinstance(a, cp.ndarray)
        assert _rel(a, b) < tol


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_gradcheck_on_the_device(cell):
    nprnn.set_backend("cupy")
    try:
        c, x, states, w, pad, dout, dstates = _problem(cell, np.float64, T=4, B=3, F=2, H=3)
        names = list(c.param_shapes(2, 3))
        mask = ~pad[:, 0, :]

        def f(p):
            ws = [cp.asarray(p[n]) for n in names]
            out, _, _ = F.sequence_forward(cell, cp.asarray(p["x"]), None, ws, mask=mask)
            return float(cp.sum(out * cp.asarray(dout)))

        out, fin, cache = F.sequence_forward(cell, cp.asarray(x), None,
                                             [cp.asarray(a) for a in w], mask=mask)  # fmt: skip
        dx, _, grads = F.sequence_backward(cp.asarray(dout), None, cache)
        point = {"x": x, **dict(zip(names, w, strict=True))}
        analytic = {"x": cp.asnumpy(dx), **{k: cp.asnumpy(v) for k, v in grads.items()}}
        errs = gradcheck(f, point, analytic, rng=0)
        assert max(errs.values()) < 1e-6, errs
    finally:
        nprnn.set_backend("numpy")


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_layer_on_the_device_matches_torch(kind):
    torch = pytest.importorskip("torch")
    nprnn.set_backend("cupy")
    try:
        layer = getattr(nprnn, kind)(4, 6, num_layers=2, bidirectional=True, dtype=np.float64,
                                     rng=0)  # fmt: skip
        tl = getattr(torch.nn, kind)(4, 6, num_layers=2, bidirectional=True).double()
        tl.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
        for k in list(layer._params):
            layer._params[k] = cp.asarray(layer._params[k])
            layer._grads[k] = cp.zeros_like(layer._params[k])
        x = np.random.default_rng(1).standard_normal((7, 3, 4))
        lengths = [7, 4, 1]
        out, _ = layer(cp.asarray(x), lengths=lengths)
        g = np.random.default_rng(2).standard_normal(out.shape)
        dx, _ = layer.backward(cp.asarray(g))
        xt = torch.tensor(x, requires_grad=True)
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths))
        t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(tl(packed)[0], total_length=7)
        (t_out * torch.tensor(g)).sum().backward()
        assert _rel(out, t_out.detach().numpy()) < 1e-10
        assert _rel(dx, xt.grad.numpy()) < 1e-10
        for name, p in tl.named_parameters():
            assert _rel(layer.grads[name], p.grad.numpy()) < 1e-10, name
    finally:
        nprnn.set_backend("numpy")


def test_no_host_round_trip_per_time_step(monkeypatch):
    """Device→host copies and syncs per call stay the same whether T is 5 or 60."""
    nprnn.set_backend("cupy")
    counts = {"n": 0}
    for name in ("get", "__bool__", "item", "__float__", "__int__"):
        orig = getattr(cp.ndarray, name)

        def wrapped(self, *a, _orig=orig, **k):
            counts["n"] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(cp.ndarray, name, wrapped)
    try:
        layer = nprnn.LSTM(8, 16, num_layers=2)
        for k in list(layer._params):
            layer._params[k] = cp.asarray(layer._params[k])
            layer._grads[k] = cp.zeros_like(layer._params[k])
        per_T = {}
        for T in (5, 60):
            x = cp.random.standard_normal((T, 4, 8), dtype=cp.float32)
            counts["n"] = 0
            out, _ = layer(x)
            layer.backward(cp.ones_like(out))
            per_T[T] = counts["n"]
        assert per_T[5] == per_T[60], per_T
    finally:
        nprnn.set_backend("numpy")


def test_charlm_step_on_the_device_equals_the_host_and_copies_per_call(monkeypatch):
    """A whole char-LM training step (embedding, stack, dropout off, head, loss, Adam) on
    the GPU: same loss and weights as on the host (float64), and the host↔device copies
    per step do not grow with T."""
    from nprnn.app.charlm import CharLM
    from nprnn.optim import Adam

    def run(device, T):
        m = CharLM(13, hidden=8, layers=2, dtype=np.float64, rng=np.random.default_rng(0))
        m.to(device)
        opt = Adam(m.params, lr=1e-2)
        rng = np.random.default_rng(T)
        ids, tgt = rng.integers(0, 13, (T, 3)), rng.integers(0, 13, (T, 3))
        mask = rng.random((T, 3)) < 0.8
        m.zero_grad()
        loss, _ = m.loss_and_grad(ids, tgt, mask=mask)
        opt.step(m.grads)
        return loss, {k: cp.asnumpy(v) for k, v in m.state_dict().items()}

    counts = {"n": 0}
    orig = cp.asarray

    def counted(*a, **k):
        counts["n"] += 1
        return orig(*a, **k)

    per_T = {}
    try:
        for T in (4, 40):
            h_loss, h_w = run("cpu", T)
            monkeypatch.setattr(cp, "asarray", counted)
            counts["n"] = 0
            d_loss, d_w = run("cuda", T)
            monkeypatch.setattr(cp, "asarray", orig)
            per_T[T] = counts["n"]
            assert abs(d_loss - h_loss) <= 1e-12 * abs(h_loss)
            for k in h_w:
                assert _rel(d_w[k], h_w[k]) < 1e-10, k
    finally:
        nprnn.set_backend("numpy")
    assert per_T[4] == per_T[40], per_T
