"""nprnn bench: the table's arithmetic and its command line (timings are not tested)."""

import json

import numpy as np

from nprnn import bench

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
    table = bench.format_table(rows, 100.0)
    assert sum(ln.startswith("| ") for ln in table.splitlines()) == len(rows) + 1  # + header
    assert "100 GFLOP/s" in table


def test_json_output(capsys, monkeypatch):
    monkeypatch.setattr(bench, "SHAPES", TINY[:1])
    monkeypatch.setattr(bench, "_gemm_rate", lambda: 1.0)
    assert bench.main(["--json", "--repeat", "1", "--no-notebook", "--no-torch"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["repeat"] == 1
    assert [r["cell"] for r in out["rows"]] == ["lstm"]
