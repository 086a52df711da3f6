"""``nprnn train --procs N``: N processes on one machine, shared memory, no MPI.

- The exchange: every process sees every process's buffer, in rank order, over many
  collectives of changing sizes; the gradient average is Σ w_r g_r / Σ w_r summed in
  rank order; the carried state is gathered bit for bit.
- How many processes ``--procs 0`` picks; the ``--procs`` that cannot run.
- Whole runs: the same as one process (lines, stream, classify) to summation order, the
  same as ``mpiexec -n 2`` bit for bit; Ctrl-C and a bit-identical resume; a resume
  takes the run's ``--procs``, and a run from before ``--procs`` resumes in one process.
- Faults: a worker that raises or is killed, rank 0 killed: one line, nothing left
  running, and the checkpoint resumes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load_file

from helpers import logging_group, rel_err, run_group, start_group
from nprnn.app import local
from nprnn.app.errors import UsageError, WorkerFailed
from nprnn.app.local import LocalParallel, auto_procs, resolve_procs

pytestmark = pytest.mark.skipif(not local.supported(), reason="--procs N > 1 needs Linux")

MPIEXEC = Path(sys.executable).parent / "mpiexec"
HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and MPIEXEC.exists()
SCRIPTS = Path(__file__).parent / "procs_scripts"
TINY = ["--hidden", "12", "--threads", "1", "--warmup", "0", "--quiet"]


# ----------------------------------------------------------------------------- the exchange


def test_every_process_sees_every_buffer_in_rank_order():
    """3 processes, 200 collectives whose sizes and dtypes change (the shared file grows;
    the two slot sets alternate): each process gets, in rank order, exactly what each
    process wrote in that collective. A slot overwritten too early fails the check."""
    par = LocalParallel(3)

    def loop():
        for k in range(200):
            n = 5 + (k * 37) % 3000
            dtype = (np.float32, np.float64, np.uint32)[k % 3]

            def value(r, k=k, n=n, dtype=dtype):
                return (np.arange(n) * 7 + 1000 * r + k).astype(dtype)

            views = par._ex.parts(value(par.rank))
            for q, v in enumerate(views):
                if not np.array_equal(v, value(q)):
                    raise AssertionError(f"process {par.rank}, collective {k}: slot {q}")
        return "done"

    assert par.run(loop) == "done"


def test_the_gradient_average_is_the_weighted_mean_in_rank_order():
    """Each process's gradient is a mean over its count w_r of predictions; afterwards
    every process holds (Σ_r w_r g_r) / Σ_r w_r summed in rank order, bit for bit, and
    the global mean loss and count."""
    par, shape, counts = LocalParallel(3), (4, 5), (7, 0, 3)

    def grads_of(r):
        rng = np.random.default_rng(r)
        return {"b": rng.standard_normal(5).astype(np.float32),
                "a": rng.standard_normal(shape).astype(np.float32)}  # fmt: skip

    expect = {}
    for k in ("a", "b"):
        acc = grads_of(0)[k] * np.float32(counts[0])
        for r in (1, 2):
            acc = acc + grads_of(r)[k] * np.float32(counts[r])
        expect[k] = acc / np.float32(sum(counts))
    losses = (2.0, 9.0, 1.0)

    def loop():
        g = grads_of(par.rank)
        loss, n = par.average_gradients(g, losses[par.rank], counts[par.rank])
        if n != 10 or abs(loss - (7 * 2.0 + 3 * 1.0) / 10) > 1e-12:
            raise AssertionError(f"loss {loss}, count {n}")
        for k in g:
            if not np.array_equal(g[k], expect[k]):
                raise AssertionError(f"process {par.rank}: gradient {k}")
        return g

    got = par.run(loop)
    np.testing.assert_array_equal(got["a"], expect["a"])


def test_the_carried_state_is_gathered_bit_for_bit():
    """Stream mode's carried state (layers, rows, hidden), rows split 2 + 2 + 2 over 3
    processes; -0.0, a NaN payload and subnormals arrive unchanged in rank 0."""
    B = 6
    full = np.random.default_rng(0).standard_normal((2, B, 3))
    full[0, 0, 0], full[1, 5, 2] = -0.0, 5e-324
    full[0, 3, 1] = np.frombuffer(np.uint64(0x7FF8_0000_DEAD_BEEF).tobytes(), np.float64)[0]
    carry = (full, -full)
    par = LocalParallel(3)
    par.check_batch_size(B)

    def loop():
        mine = par.shard_carry(carry)
        return par.gather_carry(mine)

    got = par.run(loop)
    for g, want in zip(got, carry, strict=True):
        assert g.tobytes() == want.tobytes()


def test_a_run_leaves_no_file_descriptor_open():
    """Shared-memory files and doorbells are closed when the run ends (a Python caller
    may train many times in one process)."""
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        par = LocalParallel(3)
        assert par.run(lambda par=par: float(par.sum_totals({"loss": (1.0, 2)})["loss"][0])) == 3.0
    assert set(os.listdir("/proc/self/fd")) - before == set()


def test_a_worker_that_raises_in_a_collective_fails_rank_0_with_its_line():
    par = LocalParallel(2)

    def loop():
        if par.rank == 1:
            raise ValueError("bad rows")
        par._ex.barrier()

    with pytest.raises(WorkerFailed) as e:
        par.run(loop)
    assert e.value.line == (
        "process 1 of 2: error: bad rows — check the command's options (nprnn --help) "
        "(stopping the run)"
    )
    assert e.value.status == 2


# ----------------------------------------------------------------------------- how many


@pytest.mark.parametrize(
    "cores,batch,threads,want",
    [
        (2, 64, 1, 2),  # the default run on 2 cores
        (2, 32, 1, 2),
        (2, 31, 1, 1),  # fewer than 16 rows each
        (4, 48, 1, 3),  # 16 rows each
        (4, 50, 1, 2),  # 3 does not divide 50
        (8, 256, 1, 8),
        (2, 64, 2, 1),  # two BLAS threads each fill the 2 cores
        (8, 64, 0, 1),  # the library's thread count takes every core
        (1, 64, 1, 1),
    ],
)
def test_procs_0_is_one_per_core_with_16_rows_each(monkeypatch, cores, batch, threads, want):
    monkeypatch.setattr(local, "usable_cores", lambda: cores)
    assert auto_procs(batch, threads) == want


def test_procs_0_is_one_process_where_other_threads_run(monkeypatch):
    """A notebook's kernel runs threads of its own: no fork of them by default."""
    import threading

    monkeypatch.setattr(local, "usable_cores", lambda: 2)
    assert auto_procs(64, 1) == 2
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert auto_procs(64, 1) == 1
    finally:
        stop.set()
        t.join()
    assert auto_procs(64, 1) == 2


def test_usable_cores_reads_a_cgroup_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "q").write_text("150000 100000\n")
    (tmp_path / "none").write_text("max 100000\n")
    assert local.usable_cores(str(tmp_path / "q")) == min(affinity, 1)
    assert local.usable_cores(str(tmp_path / "none")) == affinity
    assert local.usable_cores(str(tmp_path / "missing")) == affinity


def _opts(**kw):
    return SimpleNamespace(**{"procs": 0, "batch_size": 64, "threads": 1, "device": "cpu", **kw})


def test_procs_that_cannot_run_are_refused(monkeypatch):
    mpi2 = SimpleNamespace(size=2)
    with pytest.raises(UsageError, match=r"--procs 2 with mpiexec -n 2"):
        resolve_procs(_opts(procs=2), {"procs"}, mpi2)
    with pytest.raises(UsageError, match=r"--procs 2 with --device cuda"):
        resolve_procs(_opts(procs=2, device="cuda"), {"procs"}, SimpleNamespace(size=1))
    opts = _opts(procs=2)  # a stored --procs under mpiexec: MPI decides, 1 per rank
    assert resolve_procs(opts, set(), mpi2) is mpi2 and opts.procs == 1
    monkeypatch.setattr(local, "supported", lambda: False)
    with pytest.raises(UsageError, match=r"--procs 3 needs Linux"):
        resolve_procs(_opts(procs=3), {"procs"}, SimpleNamespace(size=1))
    opts = _opts()
    resolve_procs(opts, set(), SimpleNamespace(size=1))
    assert opts.procs == 1


def test_a_config_from_before_procs_resumes_in_one_process_unless_given():
    """merge_resumed: the stored count is taken; a config without one (a run from before
    --procs) gives 1, not the default 0 (auto); a given --procs wins."""
    from nprnn.app.declare import merge_resumed, parse
    from nprnn.app.options import TrainLM

    def merged(argv, train):
        opts, given = parse(TrainLM, argv, "nprnn train")
        merge_resumed(opts, given, {"train": train})
        return opts.procs

    assert parse(TrainLM, [], "nprnn train")[0].procs == 0
    assert merged([], {"procs": 3}) == 3
    assert merged([], {}) == 1
    assert merged(["--procs", "2"], {}) == 2
    assert merged(["--procs", "0"], {"procs": 3}) == 0  # resolved to auto afterwards


# ----------------------------------------------------------------------------- whole runs


def _command(args, *, mpi=False, script=None):
    prog = [sys.executable, str(script)] if script else [sys.executable, "-m", "nprnn"]
    return [str(MPIEXEC), "-n", "2", *prog, *args] if mpi else [*prog, *args]


def _start(args, **kw):
    return start_group(_command(args, **kw))


def _run(args, *, timeout=120, **kw):
    return run_group(_command(args, **kw), timeout=timeout)


def _train(out, *args, **kw):
    proc = _run(["train", "--out", str(out), *args], **kw)
    assert proc.returncode == 0, proc.stderr
    return proc


def _weights(run):
    return load_file(str(Path(run) / "model.safetensors"))


def _log(run):
    return [json.loads(ln) for ln in (Path(run) / "log.jsonl").read_text().splitlines() if ln]


def _config(run):
    return json.loads((Path(run) / "config.json").read_text())


def _bitwise(a: dict, b: dict, what: str) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} {what}")


def _case(case, stream_text, short_lines):
    lm = ["--samples", "0", "--layers", "2", "--dropout", "0.3"]
    if case == "lines":
        return [*lm, "--batch-size", "4", "--data", str(short_lines), "--val-fraction", "0.15"]
    if case == "stream":
        return [*lm, "--mode", "stream", "--seq-len", "10", "--data", str(stream_text),
                "--batch-size", "4"]  # fmt: skip
    return ["--task", "classify", "--layers", "2", "--dropout", "0.3", "--batch-size", "8"]


CASES = ("lines", "stream", "classify")


@pytest.mark.parametrize("case", CASES)
def test_two_processes_equal_one_f64(case, tmp_path, stream_text, short_lines):
    """f64, 100 steps, dropout on: weights and logged losses agree to 1e-12 relative."""
    args = [*_case(case, stream_text, short_lines), *TINY, "--dtype", "float64"]
    args += ["--steps", "100", "--eval-every", "25", "--seed", "3"]
    _train(tmp_path / "one", *args, "--procs", "1")
    _train(tmp_path / "two", *args, "--procs", "2")
    assert _config(tmp_path / "two")["train"]["procs"] == 2
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    err = max(rel_err(a[k], b[k]) for k in a)
    print(f"{case}: f64 weights after 100 steps, 1 vs 2 processes: {err:.2e}")
    assert 0 < err <= 1e-12  # not the same run: a sum over halves is rounded otherwise
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [25, 50, 75, 100]
    for x, y in zip(one, two, strict=True):
        for k in ("train_loss", "val_loss"):
            assert abs(x[k] - y[k]) <= 1e-12 * abs(x[k]), (k, x, y)


@pytest.mark.skipif(not HAVE_MPI, reason="mpi4py/MPICH not installed (pip install 'nprnn[mpi]')")
@pytest.mark.parametrize("case", CASES)
def test_two_processes_equal_mpiexec_n_2_bit_for_bit(case, tmp_path, stream_text, short_lines):
    """The same arithmetic as MPI (:mod:`nprnn.app.parallel`): a sum of two is the same
    in either order, so --procs 2 and mpiexec -n 2 give the same bits (f32)."""
    args = [*_case(case, stream_text, short_lines), *TINY, "--steps", "40", "--eval-every", "10"]
    _train(tmp_path / "procs", *args, "--procs", "2")
    _train(tmp_path / "mpi", *args, mpi=True)
    _bitwise(_weights(tmp_path / "procs"), _weights(tmp_path / "mpi"), "--procs 2 vs mpiexec")
    assert [r["val_loss"] for r in _log(tmp_path / "procs")] == [
        r["val_loss"] for r in _log(tmp_path / "mpi")
    ]


def test_the_default_trains_in_procs_0_processes_and_stores_the_count(tmp_path, monkeypatch):
    _train(tmp_path / "run", *TINY, "--steps", "3", "--eval-every", "3", "--samples", "0")
    # the command's process runs no other thread; this test's process might
    monkeypatch.setattr(local.threading, "active_count", lambda: 1)
    assert _config(tmp_path / "run")["train"]["procs"] == auto_procs(64, 1)


def _stream(stream_text, steps, every=10):
    return [*_case("stream", stream_text, None), *TINY, "--dtype", "float64",
            "--steps", str(steps), "--eval-every", str(every)]  # fmt: skip


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` and that run its command (its workers)."""
    mine = Path(f"/proc/{pid}/cmdline").read_bytes()
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and (p / "cmdline").read_bytes() == mine:
                out.append(int(p.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _logging(args, out: Path, evaluations: int):
    """``nprnn ARGS``, yielded once ``out``'s log holds ``evaluations`` lines; its whole
    process group (the command, its workers) is killed when the block ends."""
    return logging_group(_command(args), out, evaluations)


def test_ctrl_c_then_resume_is_bit_identical(tmp_path, stream_text):
    """SIGINT to the command's own process alone (its worker learns it through the
    gradient average): exit 130 after one checkpoint; the resumed run ends with the
    weights of an uninterrupted one, bit for bit (stream mode: carried state, dropout)."""
    args = [*_stream(stream_text, 400, every=1), "--procs", "2"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    _train(straight, *args, timeout=180)
    with _logging(["train", "--out", str(stopped), *args], stopped, 5) as proc:
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted — saved a checkpoint at step" in err
    at = json.loads((stopped / "trainer.json").read_text())["step"]
    assert 5 <= at < 400
    _train(stopped, *args, "--resume", timeout=180)
    _bitwise(_weights(straight), _weights(stopped), f"after resuming at step {at}")


def test_a_resume_takes_the_runs_procs_and_an_old_run_resumes_in_one(tmp_path, stream_text):
    """A --procs 2 run resumed without --procs continues in 2 processes (bit for bit with
    a straight run); a run whose config predates --procs continues in one; a resume
    with another --procs continues to summation order. (No decay: the schedule then
    does not depend on --steps, so 17 + 23 steps are 40 steps.)"""
    for n in (2, 1):
        straight, resumed = tmp_path / f"straight{n}", tmp_path / f"resumed{n}"
        _train(straight, *_stream(stream_text, 40), "--decay", "none", "--procs", str(n))
        _train(resumed, *_stream(stream_text, 17), "--decay", "none", "--procs", str(n))
        if n == 1:  # as written before --procs existed
            cfg = _config(resumed)
            del cfg["train"]["procs"]
            (resumed / "config.json").write_text(json.dumps(cfg))
        _train(resumed, *_stream(stream_text, 40), "--resume")
        assert _config(resumed)["train"]["procs"] == n
        _bitwise(_weights(straight), _weights(resumed), f"--procs {n} resumed without --procs")
    # --procs may change on resume: the checkpoint is one process's (global carried
    # state), so 2 -> 1 agrees with 2 -> 2 to summation order
    other = tmp_path / "other"
    _train(other, *_stream(stream_text, 17), "--decay", "none", "--procs", "2")
    _train(other, *_stream(stream_text, 40), "--resume", "--procs", "1")
    assert _config(other)["train"]["procs"] == 1
    a, b = _weights(tmp_path / "straight2"), _weights(other)
    err = max(rel_err(a[k], b[k]) for k in a)
    print(f"resume 2 -> 1 processes: max relative difference {err:.2e}")
    assert 0 < err <= 1e-12


def test_a_batch_the_processes_cannot_share_is_one_usage_error(tmp_path):
    out = tmp_path / "odd"
    proc = _run(["train", "--out", str(out), *TINY, "--batch-size", "5", "--procs", "2"])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "nprnn: error: --batch-size 5 is not divisible by the 2 processes (--procs) (each "
        "process takes an equal share of the global batch) — pass a --batch-size that is a "
        "multiple of 2 (e.g. 4 or 6), or another --procs"
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    "kind,status,line",
    [
        ("value", 2, "nprnn: process 1 of 2: error: injected failure at step 7 — check the "
                     "command's options (nprnn --help) (stopping the run)"),
        ("bug", 1, "nprnn: process 1 of 2: RuntimeError: injected failure at step 7 "
                   "(stopping the run)"),
    ],
)  # fmt: skip
def test_a_worker_raising_mid_run_ends_the_run_with_one_line_naming_it(kind, status, line,
                                                                        tmp_path):  # fmt: skip
    out = tmp_path / "raised"
    args = [kind, str(out), *TINY, "--steps", "50", "--eval-every", "5", "--batch-size", "4"]
    args += ["--procs", "2", "--samples", "0"]
    t0 = time.monotonic()
    proc = _run(args, timeout=60, script=SCRIPTS / "worker_fail.py")
    assert time.monotonic() - t0 < 30
    assert proc.returncode == status, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("nprnn:")] == [line]
    if kind == "bug":  # the worker's traceback comes first, as an uncaught exception's
        assert "Traceback" in proc.stderr and "RuntimeError" in proc.stderr
    assert json.loads((out / "trainer.json").read_text())["step"] == 5


def test_a_worker_killed_mid_run_ends_the_run_and_the_checkpoint_resumes(tmp_path, stream_text):
    out = tmp_path / "killed"
    args = ["train", "--out", str(out), *_stream(stream_text, 100000, every=5), "--procs", "2"]
    with _logging(args, out, 3) as proc:
        (worker,) = _children(proc.pid)
        os.kill(worker, signal.SIGKILL)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    assert proc.returncode == 1
    assert took < 10
    assert err.splitlines() == [
        "nprnn: process 1 of 2 died (killed by signal 9, SIGKILL): the run keeps its last "
        "checkpoint"
    ]
    at = json.loads((out / "trainer.json").read_text())["step"]
    assert at >= 10
    _train(out, *_stream(stream_text, at + 5, every=5), "--procs", "2", "--resume")
    assert _log(out)[-1]["step"] == at + 5


def test_a_worker_whose_rank_0_is_killed_exits(tmp_path, stream_text):
    out = tmp_path / "orphan"
    args = ["train", "--out", str(out), *_stream(stream_text, 100000, every=5), "--procs", "2"]
    with _logging(args, out, 2) as proc:
        (worker,) = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(worker), "the worker outlived its rank 0 by 5 s"
