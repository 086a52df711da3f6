"""The kernel layer: the driver against the reference cells, cells as data, the seam."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from helpers import rel_err
from nprnn import backends
from nprnn import functional as F
from nprnn.backends.numpy_backend import NumpyBackend
from nprnn.gradcheck import gradcheck
from nprnn.kernels import cells, driver, fast, reference
from nprnn.kernels.cells import CELLS, Cell, get_cell, register

T, B, FE, H = 6, 4, 3, 5
MASKS = {
    "none": None,
    "holes": np.array(
        [[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 0, 1]]
    ),  # fmt: skip
}


def _problem(cell, seed, bias=True):
    rng = np.random.default_rng(seed)
    c = get_cell(cell)
    w = [rng.uniform(-0.6, 0.6, s) for s in c.param_shapes(FE, H, bias).values()]
    x = rng.standard_normal((T, B, FE))
    states = [rng.standard_normal((B, H)) for _ in c.states]
    dout = rng.standard_normal((T, B, H))
    dstates = [rng.standard_normal((B, H)) for _ in c.states]
    return c, x, states, w, dout, dstates


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_driver_equals_the_reference_loop(cell, reverse, mask, bias):
    """The fast driver and the plain per-step loop of the reference cells agree to float64
    rounding: outputs, final states, dx, initial-state gradients, every weight gradient."""
    c, x, states, w, dout, dstates = _problem(cell, 3, bias)
    m = MASKS[mask]
    out, fin, cache = F.sequence_forward(cell, x, states, w, mask=m, reverse=reverse)
    dx, d0, grads = F.sequence_backward(dout, dstates, cache)
    r_out, r_fin, rec = reference.forward(c, x, tuple(states), w, mask=m, reverse=reverse)
    r_dx, r_d0, r_grads = reference.backward(c, w, rec, dout, tuple(dstates), reverse=reverse)
    assert rel_err(out, r_out) < 1e-13
    for a, b in zip([*fin, dx, *d0], [*r_fin, r_dx, *r_d0], strict=True):
        assert rel_err(a, b) < 1e-12
    assert sorted(grads) == sorted(r_grads)
    for k in grads:
        assert rel_err(grads[k], r_grads[k]) < 1e-12, k


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_indrnn_gradcheck(reverse, mask):
    """The cell torch does not have: central differences in float64 (no torch parity)."""
    c, x, states, w, dout, dstates = _problem("indrnn", 5)
    names = list(c.param_shapes(FE, H))
    m = MASKS[mask]
    out, fin, cache = F.sequence_forward("indrnn", x, states, w, mask=m, reverse=reverse)
    dx, (dh0,), grads = F.sequence_backward(dout, dstates, cache)

    def loss(p):
        o, (h,), _ = F.sequence_forward("indrnn", p["x"], [p["h0"]], [p[n] for n in names],
                                        mask=m, reverse=reverse)  # fmt: skip
        return float(np.sum(o * dout) + np.sum(h * dstates[0]))

    point = {"x": x, "h0": states[0], **dict(zip(names, w, strict=True))}
    errs = gradcheck(loss, point, {"x": dx, "h0": dh0, **grads}, rng=0)
    assert max(errs.values()) < 1e-6, errs
    assert grads["weight_hh"].shape == (H,)  # one recurrent weight per unit


def test_cell_descriptions_drive_the_shapes():
    assert get_cell("lstm").param_shapes(3, 7) == {
        "weight_ih": (28, 3), "weight_hh": (28, 7), "bias_ih": (28,), "bias_hh": (28,)}  # fmt: skip
    assert get_cell("indrnn").param_shapes(3, 7, bias=False) == {
        "weight_ih": (7, 3), "weight_hh": (7,)}  # fmt: skip
    assert get_cell("gru").states == ("h",) and get_cell("lstm").states == ("h", "c")
    with pytest.raises(ValueError, match=r"unknown cell 'lstmm': expected one of \['gru', "):
        get_cell("lstmm")
    with pytest.raises(ValueError, match="already registered"):
        register(cells.LSTM)
    bad = Cell("bad", 2, ("c", "h"), reference.lstm_step, reference.lstm_step_backward, ("a", "b"))
    with pytest.raises(ValueError, match="states must start with 'h'"):
        register(bad)
    assert "bad" not in CELLS


def _source_names(module):
    tree = ast.parse(inspect.getsource(module))
    imports = set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Name):
            names.add(node.id)
    return imports, names


@pytest.mark.parametrize("module", [driver, fast], ids=["driver", "fast"])
def test_driver_and_fast_kernels_hold_no_host_only_call(module):
    """The seam stays real: arrays, ufuncs and GEMMs come from the backend object."""
    imports, names = _source_names(module)
    assert not imports & {"numpy", "ctypes", "sys", "cupy", "numba"}, imports
    assert not names & {"np", "numpy", "ctypes"}, names


class _Recording(NumpyBackend):
    """The NumPy backend, counting what the driver asks of it."""

    name = "recording"

    def __init__(self):
        self.calls = {"empty": 0, "matmul": 0, "flush": 0}

    def empty(self, shape, dtype):
        self.calls["empty"] += 1
        return super().empty(shape, dtype)

    def matmul(self, a, b, out):
        self.calls["matmul"] += 1
        return super().matmul(a, b, out)

    def flush_subnormals(self, carried, chunk=()):
        self.calls["flush"] += 1
        return super().flush_subnormals(carried, chunk)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_every_array_and_gemm_comes_from_the_backend(cell, monkeypatch):
    rec = _Recording()
    monkeypatch.setattr(backends, "_current", rec)
    c, x, states, w, dout, dstates = _problem(cell, 1)
    out, _, cache = F.sequence_forward(cell, x, states, w)
    assert rec.calls["matmul"] >= T + 1  # the projection and one GEMM per step
    before = dict(rec.calls)
    F.sequence_backward(dout, dstates, cache)
    assert rec.calls["matmul"] - before["matmul"] >= T + 3  # per step, then dx, dW_ih, dW_hh
    assert rec.calls["flush"] > before["flush"]
    assert backends.backend() == "recording"


def test_backend_selection(monkeypatch):
    monkeypatch.setattr(backends, "_current", None)
    monkeypatch.setenv("NPRNN_BACKEND", "numpy")
    assert backends.backend() == "numpy"
    with pytest.raises(ValueError, match=r"unknown backend 'tpu': expected one of \["):
        backends.set_backend("tpu")
    monkeypatch.setattr(backends, "_current", None)
    monkeypatch.setenv("NPRNN_BACKEND", "nope")
    with pytest.raises(ValueError, match="set NPRNN_BACKEND or call nprnn.set_backend"):
        backends.current()
    assert "numpy" in backends.available()


def test_inference_forward_keeps_nothing_and_agrees():
    """keep=False (the no-grad path) stores no per-step activations, same outputs."""
    for cell in sorted(CELLS):
        c, x, states, w, _, _ = _problem(cell, 2)
        pad = ~MASKS["holes"].astype(bool)[:, None, :]
        out, fin, cache = driver.forward(c, x, states, w, pad, False, keep=True)
        out2, fin2, none = driver.forward(c, x, states, w, pad, False, keep=False)
        assert none is None
        np.testing.assert_array_equal(out, out2)
        for a, b in zip(fin, fin2, strict=True):
            np.testing.assert_array_equal(a, b)


def test_cupy_backend_python_side_on_the_host(monkeypatch):
    """The CuPy backend's code, with NumPy standing in for CuPy (no GPU here): the
    driver through it gives the NumPy backend's results bit for bit (same ufuncs)."""
    from nprnn.backends.cupy_backend import CupyBackend

    shim = CupyBackend(xp=np, fused=False)
    assert shim.flush_subnormals([np.full(3, 1e-40, np.float32)]) is False
    assert shim.info()["backend"] == "cupy"
    for cell in sorted(CELLS):
        c, x, states, w, dout, dstates = _problem(cell, 7)
        pad = ~MASKS["holes"].astype(bool)[:, None, :]
        monkeypatch.setattr(backends, "_current", NumpyBackend())
        ref = driver.forward(c, x, states, w, pad, True)
        ref_b = driver.backward(ref[2], dout, dstates)
        monkeypatch.setattr(backends, "_current", shim)
        got = driver.forward(c, x, states, w, pad, True)
        got_b = driver.backward(got[2], dout, dstates)
        assert got[2].be is shim
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got_b[0], ref_b[0])
        for k in ref_b[2]:
            np.testing.assert_allclose(got_b[2][k], ref_b[2][k], rtol=1e-15, atol=0)
        # an embedded input: the shim gathers all steps at once, NumPy step by step
        T, B, F = x.shape
        table = x.reshape(T * B, F)[:5]  # (V, F)
        ids = np.random.default_rng(3).integers(0, 5, (T, B))
        monkeypatch.setattr(backends, "_current", NumpyBackend())
        ref = driver.forward(c, table, states, w, pad, True, ids=ids)
        ref_b = driver.backward(ref[2], dout, dstates)
        monkeypatch.setattr(backends, "_current", shim)
        got = driver.forward(c, table, states, w, pad, True, ids=ids)
        got_b = driver.backward(got[2], dout, dstates)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got_b[0], ref_b[0])


def test_cupy_backend_without_cupy_is_a_clear_error():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"the 'cupy' backend needs a package that is not"):
            backends.set_backend("cupy")
    else:  # pragma: no cover - a machine with CuPy: it loads or names the missing GPU
        try:
            backends.set_backend("cupy")
        except RuntimeError as e:
            assert "CUDA device" in str(e)
        finally:
            backends.set_backend("numpy")
