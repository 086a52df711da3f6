"""Module.to(device) and the CLI's --device on a machine without CuPy / a GPU: the clear
errors, the cpu round trip, and that the CPU path never imports cupy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nprnn
from nprnn import backends

HAS_CUPY = "cupy" in backends.available()
no_cupy = pytest.mark.skipif(HAS_CUPY, reason="CuPy and a GPU are present here")


def _model():
    return nprnn.LSTM(3, 4, rng=np.random.default_rng(0))


@no_cupy
def test_to_cuda_without_cupy_names_what_is_missing():
    m = _model()
    before = {k: v.copy() for k, v in m.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"to\('cuda'\).*pip install 'nprnn\[cupy\]'"):
        m.to("cuda")
    assert backends.backend() == "numpy"
    for k, v in m.state_dict().items():
        assert type(v) is np.ndarray and np.array_equal(v, before[k])


def test_to_cpu_and_dtype():
    m = _model()
    w = m.state_dict()
    assert m.to("cpu") is m
    for k, v in m.state_dict().items():
        assert v.dtype == w[k].dtype and np.array_equal(v, w[k])
    m.to("cpu", dtype=np.float32)
    assert all(v.dtype == np.float32 for v in m.state_dict().values())
    m.to(np.float64)
    assert all(v.dtype == np.float64 for v in m.state_dict().values())
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        m.to("gpu")
    with pytest.raises(TypeError, match="dtype twice"):
        m.to(np.float32, dtype=np.float64)


def test_cpu_training_step_never_imports_cupy():
    code = (
        "import sys, numpy as np, nprnn\n"
        "m = nprnn.LSTM(3, 4, rng=np.random.default_rng(0))\n"
        "x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)\n"
        "y = m(x)\n"
        "y = y[0] if isinstance(y, tuple) else y\n"
        "m.backward(np.ones_like(y))\n"
        "m.to('cpu')\n"
        "assert 'cupy' not in sys.modules, 'cupy imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@no_cupy
@pytest.mark.parametrize("cmd", ["train", "bench"])
def test_cli_device_cuda_without_cupy_exits_2_writing_nothing(cmd, tmp_path, capsys, monkeypatch):
    from nprnn.app import cli

    monkeypatch.chdir(tmp_path)
    argv = [cmd, "--device", "cuda"]
    if cmd == "train":
        argv += ["--out", str(tmp_path / "run"), "--steps", "1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("nprnn: error: --device cuda:") and "nprnn[cupy]" in err[0]
    assert list(tmp_path.iterdir()) == []
    assert backends.backend() == "numpy"


def test_help_names_device(capsys):
    from nprnn.app import cli

    for cmd in ("train", "bench"):
        cli.main([cmd, "--help"])
        assert "--device {cpu,cuda}" in capsys.readouterr().out


class _FakeDeviceArray(np.ndarray):
    """An ndarray whose type claims to be CuPy's: validation.array_module sends it to
    the (fake) ``cupy`` module, so the optimizer and clipping take their device paths."""


_FakeDeviceArray.__module__ = "cupy._fake"


@pytest.fixture
def fake_cupy(monkeypatch):
    import types

    mod = types.ModuleType("cupy")
    calls = []

    def __getattr__(name):
        calls.append(name)
        return getattr(np, name)

    mod.__getattr__ = __getattr__
    monkeypatch.setitem(sys.modules, "cupy", mod)
    return calls


def test_optimizer_and_clip_dispatch_on_device_arrays(fake_cupy):
    from nprnn.optim import SGD, Adam, clip_grad_norm

    rng = np.random.default_rng(0)
    host = {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3)}
    ghost = {k: rng.standard_normal(v.shape).astype(v.dtype) * 10 for k, v in host.items()}
    for cls in (lambda p: Adam(p, lr=1e-2), lambda p: SGD(p, lr=0.1, momentum=0.9)):
        hp = {k: v.copy() for k, v in host.items()}
        dp = {k: v.copy().view(_FakeDeviceArray) for k, v in host.items()}
        hg = {k: v.copy() for k, v in ghost.items()}
        dg = {k: v.copy().view(_FakeDeviceArray) for k, v in ghost.items()}
        fake_cupy.clear()
        n_dev = clip_grad_norm(dg, 1.0)
        assert "dot" in fake_cupy  # the device path summed on the "device"
        assert n_dev == clip_grad_norm(hg, 1.0)
        oh, od = cls(hp), cls(dp)
        for _ in range(2):
            oh.step(hg)
            od.step(dg)
        for k in host:
            np.testing.assert_array_equal(np.asarray(dp[k]), hp[k])  # same ops, same bits


@pytest.fixture
def counting_cupy(fake_cupy, monkeypatch):
    """The fake ``cupy`` of ``fake_cupy`` whose ``asarray`` (host → "device") and
    ``.get()`` ("device" → host) are counted: ``{"to_device": n, "to_host": n}``."""
    moved = {"to_device": 0, "to_host": 0}
    mod = sys.modules["cupy"]

    def asarray(a, dtype=None):
        moved["to_device"] += 1
        return np.array(a, dtype=dtype).view(_FakeDeviceArray)

    def get(self):
        moved["to_host"] += 1
        return np.asarray(self).copy()

    mod.asarray = asarray
    monkeypatch.setattr(_FakeDeviceArray, "get", get, raising=False)
    return moved


def _dense_head(dt, seed=0):
    emb = nprnn.Embedding(11, 6, dtype=dt, rng=np.random.default_rng(seed))
    lin = nprnn.Linear(6, 11, dtype=dt, rng=np.random.default_rng(seed + 1))
    return emb, lin


def _dense_step(emb, lin, ids, targets, mask):
    """Embedding → Linear → masked, smoothed, weighted cross-entropy → backward."""
    y = lin(emb(ids))
    w = np.linspace(0.5, 1.5, 11)
    loss, dy = nprnn.softmax_cross_entropy(y, targets, mask=mask, label_smoothing=0.1, weight=w)
    emb.backward(lin.backward(dy))
    return loss, y, dy


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_dense_and_loss_stay_on_the_device(counting_cupy, dt):
    """Host ids, targets, mask and class weights go to the device once each per call (not
    once per time step), nothing comes back but the loss, and the results are the host
    computation's bits."""
    counts = {}
    for T in (3, 40):
        rng = np.random.default_rng(T)
        ids, targets = rng.integers(0, 11, (T, 4)), rng.integers(0, 11, (T, 4))
        mask = rng.random((T, 4)) < 0.7
        h_emb, h_lin = _dense_head(dt)
        d_emb, d_lin = _dense_head(dt)
        for m in (d_emb, d_lin):
            for k in m._params:
                m._params[k] = m._params[k].view(_FakeDeviceArray)
                m._grads[k] = m._grads[k].view(_FakeDeviceArray)
        h = _dense_step(h_emb, h_lin, ids, targets, mask)
        counting_cupy.update(to_device=0, to_host=0)
        d = _dense_step(d_emb, d_lin, ids, targets, mask)
        counts[T] = dict(counting_cupy)
        assert d[0] == h[0]  # the loss: same bits
        for a, b in [(d[1], h[1]), (d[2], h[2])] + [
            (dm.grads[k], hm.grads[k]) for dm, hm in ((d_emb, h_emb), (d_lin, h_lin))
            for k in hm.grads
        ]:  # fmt: skip
            assert type(a) is _FakeDeviceArray
            np.testing.assert_array_equal(np.asarray(a), b)
    # ids, then the loss's mask, targets and weight: 4 copies in, none out, whatever T
    assert counts[3] == counts[40] == {"to_device": 4, "to_host": 0}, counts


def test_device_array_on_host_parameters_is_refused(fake_cupy):
    emb, lin = _dense_head(np.float64)
    x = np.zeros((2, 6)).view(_FakeDeviceArray)
    with pytest.raises(TypeError, match=r"x is a CuPy \(GPU\) array.*model.to\('cuda'\)"):
        lin(x)
