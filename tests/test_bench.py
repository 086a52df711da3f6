"""nprnn bench: the table's arithmetic and its command line (timings are not tested)."""

import json

import numpy as np
import pytest

from nprnn.app import bench, benchwork

TINY = [("lstm", 8, 2, 3, "tanh"), ("gru", 6, 3, 2, "tanh"), ("rnn", 5, 2, 4, "relu")]


def test_rows_are_consistent():
    rows = bench.run(repeat=1, shapes=TINY, notebook=True, torch_=False)
    assert [r["cell"] for r in rows] == ["lstm", "gru", "rnn-relu"]
    for r, (cell, H, B, T, nl) in zip(rows, TINY, strict=True):
        flops = 6 * bench.cell_for(cell, nl).gates * H * (H + H) * B * T
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
    argv = ["--json", "--repeat", "1", "--no-notebook", "--no-torch", "--no-workloads"]
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["repeat"] == 1 and out["meta"]["backend"] == "numpy"
    assert [r["cell"] for r in out["rows"]] == ["lstm"] and out["workloads"] == []


def test_the_procs_row_only_at_default_threads(capsys, monkeypatch):
    """The workload rows: the --procs row where nprnn train would use several processes
    and the bench runs each library at its default threads; never under --threads N
    (torch at N threads against nprnn's several cores would be no like-for-like row)."""
    from nprnn.app.local import auto_procs

    monkeypatch.setattr(bench, "SHAPES", TINY[:1])
    monkeypatch.setattr(bench, "_gemm_rate", lambda: 1.0)
    monkeypatch.setattr(benchwork, "GEN", {"vocab": 8, "hidden": 8, "layers": 1})
    procs = auto_procs(benchwork.TRAIN["batch_size"], 1)
    for threads, want in (("0", procs > 1), ("1", False)):
        argv = ["--json", "--repeat", "1", "--no-notebook", "--no-torch", "--threads", threads]
        assert bench.main(argv) == 0
        names = [w["workload"] for w in json.loads(capsys.readouterr().out)["workloads"]]
        assert names[:2] == [
            "generate, 1×8 LSTM, B = 1",
            "char-LM train step, names, H = 128, B = 64",
        ]
        assert names[2:] == ([f"char-LM train step, names, H = 128, B = 64, --procs {procs} × "
                              "1 thread"] if want else [])  # fmt: skip


def test_bench_cells_are_the_registered_ones():
    assert [bench.cell_for(*a).name for a in [("lstm",), ("gru",), ("rnn", "relu")]] == [
        "lstm",
        "gru",
        "rnn_relu",
    ]
    assert bench.cell_for("rnn", "tanh").gates == 1 and bench.cell_for("lstm").gates == 4


def test_workload_table():
    work = [
        {"workload": "gen", "unit": "chars/s", "nprnn": 5000.0, "torch": 1000.0, "ratio": 5.0},
        {"workload": "train", "unit": "ms/step", "nprnn": 9.0, "torch": None, "ratio": None},
    ]
    assert bench.format_workloads(work).splitlines()[2:] == [
        "| gen | chars/s | 5000.0 | 1000.0 | 5.00 |",
        "| train | ms/step | 9.0 | — | — |",
    ]


def test_generation_row_without_torch():
    row = benchwork.generation(chars=20, repeat=1, torch_=False)
    assert row["nprnn"] > 0 and row["torch"] is None and row["ratio"] is None


def test_torch_train_workload_does_the_same_work():
    """The torch side of the training row trains the same model on the same batches:
    after three steps both hold the same weights (float32)."""
    torch = pytest.importorskip("torch")
    model, opt, batches = benchwork._train_setup(3)
    init = model.state_dict()
    theirs, mods = benchwork._theirs(torch, model, batches)
    benchwork._ours(model, opt, batches)()
    theirs()
    got = {f"{p}.{k}": v.numpy() for p, m in zip(("embedding", "rnn", "head"), mods, strict=True)
           for k, v in m.state_dict().items()}  # fmt: skip
    sd = model.state_dict()
    assert sorted(got) == sorted(sd)
    assert min(float(np.abs(sd[k] - init[k]).max()) for k in sd) > 1e-3  # both trained
    for k, v in sd.items():
        np.testing.assert_allclose(v, got[k], rtol=0, atol=2e-5, err_msg=k)


def test_procs_train_workload_trains_what_one_process_trains():
    """The --procs row steps as nprnn train --procs 2 does: each process its rows of every
    batch, the gradients averaged over both; after three steps rank 0's model holds what
    one process trains on whole batches (float64: summation order apart)."""
    model, opt, batches = benchwork._train_setup(3, np.float64)
    twin, twin_opt, _ = benchwork._train_setup(3, np.float64)
    init = model.state_dict()
    benchwork._ours(model, opt, batches)()
    benchwork._ours_procs(twin, twin_opt, batches, 2)()
    want, got = model.state_dict(), twin.state_dict()
    assert min(float(np.abs(want[k] - init[k]).max()) for k in want) > 1e-3  # both trained
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-12, err_msg=k)
