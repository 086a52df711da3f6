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
