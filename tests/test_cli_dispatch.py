"""``nprnn`` hands task, predict, viz, plot, bench, ``train --task classify`` and the eval
of a classifier run to their modules, with the same one-line error contract."""

import json
import platform
import subprocess
import sys

import pytest

from nprnn.app import cli

NAMES = "Anna\tfemale\nBob\tmale\nCleo\tfemale\nDave\tmale\nEve\tfemale\nFay\tfemale\n" * 3


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_top_level_help_lists_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in ("train", "sample", "eval", "bench", "task", "predict", "viz", "plot"):
        assert name in out


@pytest.mark.parametrize("argv", [["--task", "classify"], ["--task=classify"]])
def test_train_task_classify_has_its_own_options(capsys, argv):
    code, out, _ = run(capsys, "train", *argv, "--help")
    assert code == 0 and "--bidirectional" in out and "--test-fraction" in out
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--bidirectional" not in out and "--seq-len" in out


def test_classifier_train_predict_eval(tmp_path, capsys):
    data = tmp_path / "names.tsv"
    data.write_text(NAMES, encoding="utf-8")
    out_dir = tmp_path / "cls"
    code, out, err = run(capsys, "train", "--task", "classify", "--data", data, "--steps", 6,
                         "--eval-every", 3, "--hidden", 8, "--out", out_dir, "--quiet")  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "predict", out_dir, "Anna", "Bob")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["Anna", "Bob"]
    for r in rows:
        assert sum(r["probs"].values()) == pytest.approx(1.0)
        assert r["label"] == max(r["probs"], key=r["probs"].get)
    code, out, err = run(capsys, "eval", out_dir, "--data", data)
    assert code == 0, err
    metrics = json.loads(out)
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"] == NAMES.count("\n")


def test_delegated_errors_are_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "predict", tmp_path / "missing", "Anna")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("nprnn: error: ")
    code, _, err = run(capsys, "task", "adding", "--T", 0)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_task_prints_one_json_line(capsys, tmp_path):
    code, out, err = run(capsys, "task", "adding", "--T", 5, "--steps", 2, "--hidden", 4,
                         "--quiet", "--out", tmp_path / "t")  # fmt: skip
    assert code == 0, err
    (line,) = out.strip().splitlines()
    res = json.loads(line)
    assert res["task"] == "adding" and res["T"] == 5 and res["mse"] >= 0


def test_delegated_commands_run_on_one_blas_thread(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "set_blas_threads", lambda n: calls.append(n) or True)
    code, _, err = run(capsys, "task", "adding", "--T", 3, "--steps", 1, "--hidden", 2,
                       "--quiet", "--out", tmp_path / "t")  # fmt: skip
    assert code == 0, err
    assert calls == [1]
    calls.clear()
    from nprnn.app import bench

    monkeypatch.setattr(bench, "cmd_bench", lambda opts, given: 0)
    assert cli.main(["bench", "--json"]) == 0
    assert calls == []  # bench has its own --threads


def test_a_resume_takes_the_runs_blas_threads_unless_given(monkeypatch, capsys, tmp_path):
    # OpenBLAS sums a GEMM's long inner dimension in other blocks at another thread
    # count, so the thread count is part of what makes a resume bit-identical.
    calls = []
    monkeypatch.setattr(cli, "set_blas_threads", lambda n: calls.append(n) or True)
    out = tmp_path / "t"
    base = ["task", "adding", "--T", 3, "--hidden", 2, "--quiet", "--out", out]
    code, _, err = run(capsys, *base, "--steps", 1, "--threads", 2)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["train"]["threads"] == 2
    calls.clear()
    code, _, err = run(capsys, *base, "--steps", 2, "--resume")
    assert code == 0, err
    assert calls == [1, 2]  # the CLI's default first, then the run's
    calls.clear()
    code, _, err = run(capsys, *base, "--steps", 3, "--resume", "--threads", 1)
    assert code == 0, err
    assert calls == [1]
    assert json.loads((out / "config.json").read_text())["train"]["threads"] == 1


def test_a_run_stored_before_threads_were_stored_still_resumes(capsys, tmp_path):
    out = tmp_path / "t"
    base = ["task", "adding", "--T", 3, "--hidden", 2, "--quiet", "--out", out]
    code, _, err = run(capsys, *base, "--steps", 1)
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    del cfg["train"]["threads"]
    (out / "config.json").write_text(json.dumps(cfg))
    code, _, err = run(capsys, *base, "--steps", 2, "--resume")
    assert code == 0, err


_THREADS_PROBE = """
import json
import numpy
from threadpoolctl import threadpool_info
from nprnn.app import cli
def counts():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
own = counts()  # a fresh process: the library's own count
cli.set_blas_threads(1)
one = counts()
cli.set_blas_threads(0)
print(json.dumps([own, one, counts()]))
"""


def test_blas_threads_zero_restores_the_librarys_own_count():
    probe = [sys.executable, "-c", _THREADS_PROBE]
    own, one, back = json.loads(subprocess.run(probe, capture_output=True, text=True,
                                               check=True).stdout)  # fmt: skip
    assert own and set(one) == {1}
    assert back == own


_HEAP_PROBE = """
import sys
import numpy as np
from nprnn.app import cli
if sys.argv[1] == "1":
    assert cli.keep_freed_memory()
a = np.ones(2 << 20, dtype=np.uint8)  # 2 MB: above glibc's first mmap threshold (128 KB)
lo, hi = next(
    (int(r.split("-")[0], 16), int(r.split()[0].split("-")[1], 16))
    for r in open("/proc/self/maps") if r.rstrip().endswith("[heap]")
)
print(lo <= a.ctypes.data < hi)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_the_command_keeps_large_arrays_on_the_heap():
    """With keep_freed_memory, a 2 MB array comes from the heap (reused when freed);
    without, glibc maps it fresh from the system (and unmaps it on free)."""
    placed = [
        subprocess.run(
            [sys.executable, "-c", _HEAP_PROBE, flag], capture_output=True, text=True, check=True
        ).stdout.strip()  # fmt: skip
        for flag in ("0", "1")
    ]
    assert placed == ["False", "True"]
