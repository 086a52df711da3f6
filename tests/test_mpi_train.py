"""``mpiexec -n 2 nprnn train``: the same run as one process (lines, stream, classify),
resume under MPI (bit for bit, and with another number of ranks), Ctrl-C, a rank killed
mid-run, a rank raising, a global batch the ranks cannot share.

Every job is launched with the environment's own ``mpiexec`` in a new session, and a
timeout kills the whole process group. The MPI tests skip only where mpi4py is absent
(``NPRNN_REQUIRE_MPI=1``, set by ``.ci/run``, turns that skip into a failure).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from helpers import logging_group, rel_err, run_group, start_group

MPIEXEC = Path(sys.executable).parent / "mpiexec"
SCRIPTS = Path(__file__).parent / "mpi_scripts"

mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists(),
    reason="mpi4py/MPICH not installed (pip install 'nprnn[mpi]')",
)
pytestmark = mpi

TINY = ["--hidden", "12", "--threads", "1", "--warmup", "0", "--quiet"]


def _cmd(n: int, args, script=None):
    prog = [sys.executable, str(script)] if script else [sys.executable, "-m", "nprnn"]
    if n == 0:  # one plain process, no MPI at all
        return [*prog, *args]
    return [str(MPIEXEC), "-n", str(n), *prog, *args]


def _start(n: int, args, script=None) -> subprocess.Popen:
    return start_group(_cmd(n, args, script))


def _run(n: int, args, *, timeout=120, script=None):
    return run_group(_cmd(n, args, script), timeout=timeout)


def _two_ranks_logging(out: Path, args, evaluations: int):
    """``mpiexec -n 2 nprnn ARGS``, yielded once ``out``'s log holds ``evaluations``
    lines; the process group is killed if it is still running when the block ends."""
    return logging_group(_cmd(2, args), out, evaluations)


def _weights(run: Path) -> dict:
    return load_file(str(run / "model.safetensors"))


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines() if ln]


def _max_rel(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(rel_err(a[k], b[k]) for k in a)


def _train(n, out, *args, timeout=120):
    proc = _run(n, ["train", "--out", str(out), *args], timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


# ----------------------------------------------------------------------------- equivalence

CASES = {
    "lines": ["--layers", "2", "--dropout", "0.3", "--batch-size", "4"],
    "stream": ["--mode", "stream", "--seq-len", "10", "--layers", "2", "--dropout", "0.3"],
    "classify": ["--task", "classify", "--layers", "2", "--dropout", "0.3", "--batch-size", "8"],
}


def _case_args(case, stream_text, short_lines):
    lm = ["--samples", "0"]
    if case == "lines":
        return [*CASES[case], *lm, "--data", str(short_lines), "--val-fraction", "0.15"]
    if case == "stream":
        return [*CASES[case], *lm, "--data", str(stream_text), "--batch-size", "4"]
    return CASES[case]


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_equal_one_process_f64(case, tmp_path, stream_text, short_lines):
    """f64, 100 steps (several epochs of the short data; dropout on): the weights agree
    to 1e-12 relative, the logged losses too."""
    args = [*_case_args(case, stream_text, short_lines), *TINY, "--dtype", "float64"]
    args += ["--steps", "100", "--eval-every", "25", "--seed", "3"]
    _train(0, tmp_path / "one", *args)
    _train(2, tmp_path / "two", *args)
    err = _max_rel(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    print(f"{case}: f64 weights, max relative difference after 100 steps {err:.2e}")
    assert err <= 1e-12
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [25, 50, 75, 100]
    for a, b in zip(one, two, strict=True):
        for k in ("train_loss", "val_loss"):
            assert abs(a[k] - b[k]) <= 1e-12 * abs(a[k]), (k, a, b)


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_equal_one_process_f32_every_step(case, tmp_path, stream_text, short_lines):
    """f32: the training loss of every step (and the validation loss) within 1e-5."""
    args = [*_case_args(case, stream_text, short_lines), *TINY, "--dtype", "float32"]
    args += ["--steps", "30", "--eval-every", "1", "--seed", "4"]
    _train(0, tmp_path / "one", *args)
    _train(2, tmp_path / "two", *args)
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert len(one) == len(two) == 30
    worst = max(
        abs(a[k] - b[k]) / abs(a[k])
        for a, b in zip(one, two, strict=True)
        for k in ("train_loss", "val_loss")
    )
    print(f"{case}: f32 losses, max relative difference over 30 steps {worst:.2e}")
    assert worst <= 1e-5


# ----------------------------------------------------------------------------- resume


def _stream_args(stream_text, steps, every=10):
    return [
        *CASES["stream"],
        "--data",
        str(stream_text),
        "--batch-size",
        "4",
        *TINY,
        "--dtype",
        "float64",
        "--steps",
        str(steps),
        "--eval-every",
        str(every),
        "--samples",
        "0",
    ]


def test_resume_after_ctrl_c_under_mpi_is_bit_identical(tmp_path, stream_text):
    """SIGINT to mpiexec at whatever step it lands: exit 130 after saving; the resumed
    2-rank run ends with the weights of an uninterrupted one, bit for bit (stream mode:
    the carried state and dropout generator go through the checkpoint)."""
    steps = 400
    args = _stream_args(stream_text, steps, every=1)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    _train(2, straight, *args, timeout=180)
    with _two_ranks_logging(stopped, ["train", "--out", str(stopped), *args], 5) as proc:
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted — saved a checkpoint at step" in err
    at = json.loads((stopped / "trainer.json").read_text())["step"]
    assert 5 <= at < steps
    _train(2, stopped, *args, "--resume", timeout=180)
    a, b = _weights(straight), _weights(stopped)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} after resuming at step {at}")


@pytest.mark.parametrize("first,then", [(2, 0), (0, 2)])
def test_resume_with_another_number_of_ranks(first, then, tmp_path, stream_text):
    """The checkpoint is the single process's (global carried state, one dropout
    generator): a run stopped at step 17 resumes under another number of ranks and ends
    where resuming under the same number does, to summation order."""
    same, other = tmp_path / "same", tmp_path / "other"
    for out, resume_with in ((same, first), (other, then)):
        _train(first, out, *_stream_args(stream_text, 17))
        _train(resume_with, out, *_stream_args(stream_text, 40), "--resume")
        assert _log(out)[-1]["step"] == 40
    err = _max_rel(_weights(same), _weights(other))
    print(f"resume {first or 1} -> {then or 1} ranks: max relative difference {err:.2e}")
    assert err <= 1e-12


# ----------------------------------------------------------------------------- faults


def _ours(out: Path) -> list[int]:
    """Pids of the processes running a command on ``out``."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if str(out).encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


def _rank_pid(out: Path, rank: int) -> int | None:
    for pid in _ours(out):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in env:
            return pid
    return None


def test_a_rank_killed_mid_run_ends_the_job_and_the_checkpoint_resumes(tmp_path, stream_text):
    out = tmp_path / "killed"
    args = ["train", "--out", str(out), *_stream_args(stream_text, 100000, every=5)]
    with _two_ranks_logging(out, args, 3) as proc:
        victim = _rank_pid(out, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        proc.communicate(timeout=30)
        took = time.monotonic() - t0
    assert proc.returncode != 0
    assert took < 30
    time.sleep(0.2)
    assert _ours(out) == [], "processes left running"
    at = json.loads((out / "trainer.json").read_text())["step"]
    assert at >= 10  # 3 evaluations logged: the checkpoint of the 2nd at least committed
    _train(2, out, *_stream_args(stream_text, at + 5, every=5), "--resume")
    assert _log(out)[-1]["step"] == at + 5


def test_a_rank_raising_mid_run_aborts_with_one_line_naming_it(tmp_path):
    out = tmp_path / "raised"
    args = ["step", str(out), "--steps", "50", "--eval-every", "5", *TINY, "--batch-size", "4"]
    args += ["--samples", "0"]
    t0 = time.monotonic()
    proc = _run(2, args, timeout=30, script=SCRIPTS / "train_fail.py")
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 30
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("nprnn:")]
    assert lines == [
        "nprnn: rank 1 of 2: error: injected failure at step 7 — check the command's "
        "options (nprnn --help) (aborting the job)"
    ], proc.stderr
    at = json.loads((out / "trainer.json").read_text())["step"]
    assert at == 5  # the last committed checkpoint before the failure


def test_a_batch_the_ranks_cannot_share_is_one_usage_error(tmp_path):
    out = tmp_path / "odd"
    proc = _run(2, ["train", "--out", str(out), *TINY, "--batch-size", "5"], timeout=30)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [
        "nprnn: error: --batch-size 5 is not divisible by the 2 MPI ranks (each rank takes "
        "an equal share of the global batch) — pass a --batch-size that is a multiple of 2 "
        "(e.g. 4 or 6), or another mpiexec -n"
    ], proc.stderr
    assert not out.exists()


def test_a_setup_error_on_every_rank_is_printed_once(tmp_path):
    """--out is a file: the same error on both ranks, one line, exit 2."""
    out = tmp_path / "taken"
    out.write_text("not a directory")
    proc = _run(2, ["train", "--out", str(out), *TINY], timeout=30)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nprnn: error: --out"), proc.stderr


def test_a_setup_error_on_one_rank_stops_every_rank(tmp_path):
    """Only rank 1 fails to prepare its data: rank 0 does not wait for it in training;
    the job ends with exit 2 and rank 1's line alone, and nothing is written."""
    out = tmp_path / "half"
    proc = _run(2, ["setup", str(out), *TINY], timeout=30, script=SCRIPTS / "train_fail.py")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["nprnn: error: injected setup failure — nothing to do"], proc.stderr
    assert not (out / "trainer.json").exists()
