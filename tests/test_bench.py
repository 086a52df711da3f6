"""nprnn bench: the table's arithmetic and its command line (timings are not tested)."""

import json

import numpy as np
import pytest

from nprnn import functional as F_
from nprnn.app import bench

TINY = [("lstm", 8, 2, 3, "tanh"), ("gru", 6, 3, 2, "tanh"), ("rnn", 5, 2, 4, "relu")]


def test_rows_are_consistent():
    rows = bench.run(repeat=1, shapes=TINY, notebook=True, torch_=False)
    assert [r["cell"] for r in rows] == ["lstm", "gru", "rnn-relu"]
    for r, (cell, H, B, T, _) in zip(rows, TINY, strict=True):
        flops = 6 * bench.GATES[cell] * H * (H + H) * B * T
        assert np.isclose(r["nprnn_gflops"], flops / r["nprnn_s"] / 1e9)
        assert np.isclose(r["notebook_over_nprnn"], r["notebook_s"] / r["nprnn_s"])
        assert r["elementwise_s"] == max(r["nprnn_s"] - r["floor_s"], 0.0)
        assert r["torch_s"] is None and r["torch_over_nprnn"] is None
        assert r["step_gemm_gflops"] > 0 and r["torch_step_gemm_gflops"] is None
    table = bench.format_table(rows, 100.0)
    assert f"| {rows[0]['step_gemm_gflops']:.0f} / — |" in table
    assert sum(ln.startswith("| ") for ln in table.splitlines()) == len(rows) + 1  # + header
    assert "100 GFLOP/s" in table


def test_torch_columns():
    pytest.importorskip("torch")
    (r,) = bench.run(repeat=1, shapes=TINY[:1], notebook=False, torch_=True)
    assert r["torch_s"] > 0 and np.isclose(r["torch_over_nprnn"], r["torch_s"] / r["nprnn_s"])
    assert r["torch_step_gemm_gflops"] > 0
    assert f"/ {r['torch_step_gemm_gflops']:.0f} |" in bench.format_table([r], 1.0)


def test_json_output(capsys, monkeypatch):
    monkeypatch.setattr(bench, "SHAPES", TINY[:1])
    monkeypatch.setattr(bench, "_gemm_rate", lambda: 1.0)
    assert bench.main(["--json", "--repeat", "1", "--no-notebook", "--no-torch"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["repeat"] == 1
    assert [r["cell"] for r in out["rows"]] == ["lstm"]


def _to_functional(cell, Ws, bs, H):
    """The notebook's per-gate (H, H + F) weights as PyTorch-layout weight_ih/hh, biases."""
    w_ih = np.vstack([W[:, H:] for W in Ws])
    w_hh = np.vstack([W[:, :H] for W in Ws])
    b = np.concatenate([v[:, 0] for v in bs])
    if cell == "gru":  # the n gate's bias sits inside r ⊙ (W_hn h + b_hn)
        b_ih = np.concatenate([b[: 2 * H], np.zeros(H)])
        b_hh = np.concatenate([np.zeros(2 * H), b[2 * H :]])
        return w_ih, w_hh, b_ih, b_hh
    return w_ih, w_hh, b, np.zeros_like(b)


@pytest.mark.parametrize("cell,nl", [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"),
                                     ("rnn", "relu")])  # fmt: skip
def test_notebook_reference_is_correct(cell, nl):
    """The bench's notebook algorithm computes the same gradients as the kernels."""
    rng = np.random.default_rng(1)
    F, H, B, T = 3, 4, 2, 5
    G = bench.GATES[cell]
    x = rng.standard_normal((F, B, T))
    Ws = [rng.standard_normal((H, H + F)) * 0.5 for _ in range(G)]
    bs = [rng.standard_normal((H, 1)) * 0.5 for _ in range(G)]
    da_out = rng.standard_normal((H, B, T))
    dx, dWs, dbs = bench.notebook_grads(cell, x, Ws, bs, da_out, nl)
    w_ih, w_hh, b_ih, b_hh = _to_functional(cell, Ws, bs, H)
    xt = x.transpose(2, 1, 0)  # (T, B, F)
    dout = da_out.transpose(2, 1, 0)
    if cell == "lstm":
        _, _, cache = F_.lstm_forward(xt, None, None, w_ih, w_hh, b_ih, b_hh)
        dxt, _, g = F_.lstm_backward(dout, None, cache)
    elif cell == "gru":
        _, _, cache = F_.gru_forward(xt, None, w_ih, w_hh, b_ih, b_hh)
        dxt, _, g = F_.gru_backward(dout, None, cache)
    else:
        _, _, cache = F_.rnn_forward(xt, None, w_ih, w_hh, b_ih, b_hh, nonlinearity=nl)
        dxt, _, g = F_.rnn_backward(dout, None, cache)
    want = _to_functional(cell, dWs, dbs, H)
    np.testing.assert_allclose(dx.transpose(2, 1, 0), dxt, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(want[0], g["weight_ih"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(want[1], g["weight_hh"], rtol=1e-10, atol=1e-12)
    if cell == "gru":
        np.testing.assert_allclose(want[2][: 2 * H], g["bias_ih"][: 2 * H], rtol=1e-10)
        np.testing.assert_allclose(want[3][2 * H :], g["bias_hh"][2 * H :], rtol=1e-10)
    else:
        np.testing.assert_allclose(want[2], g["bias_ih"], rtol=1e-10, atol=1e-12)
