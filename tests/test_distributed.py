"""nprnn.distributed: no-ops without MPI; under mpiexec, exact gradient averaging and a
failing rank that ends the whole job (launched with the environment's own mpiexec)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nprnn
import nprnn.distributed as dist

SCRIPTS = Path(__file__).parent / "mpi_scripts"
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def test_without_mpi_everything_is_a_no_op():
    assert not dist.launched() and dist.comm() is None
    assert (dist.rank(), dist.size(), dist.is_distributed()) == (0, 1, False)
    lin = nprnn.Linear(3, 2, rng=0)
    lin.backward(np.ones((4, 2), np.float32)) if lin(
        np.ones((4, 3), np.float32)
    ) is not None else None
    before = {k: v.copy() for k, v in lin.grads.items()}
    assert dist.allreduce_grads(lin, weight=7) == 7.0
    for k, v in lin.grads.items():
        np.testing.assert_array_equal(v, before[k])
    x = np.arange(10)
    assert dist.shard(x) is x and dist.allreduce(3.5) == 3.5
    dist.broadcast_params(lin)
    with pytest.raises(ValueError, match="weight must be a finite number"):
        dist.allreduce_grads(lin, weight=float("nan"))
    with pytest.raises(TypeError, match="expected an nprnn.Module or a dict"):
        dist.allreduce_grads([1, 2])


def _mpiexec(n, script, *args, timeout=60):
    env = {k: v for k, v in os.environ.items() if k not in dist._LAUNCHER_VARS}
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    t0 = time.monotonic()
    cmd = [str(MPIEXEC), "-n", str(n), sys.executable, str(SCRIPTS / script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return proc, time.monotonic() - t0


mpi = pytest.mark.skipif(
    not MPIEXEC.exists() or __import__("importlib").util.find_spec("mpi4py") is None,
    reason="mpi4py/MPICH not installed (pip install 'nprnn[mpi]')",
)


@mpi
@pytest.mark.parametrize("n", [1, 2, 3])
def test_weighted_allreduce_equals_the_whole_batch(n, tmp_path):
    proc, _ = _mpiexec(n, "grads.py", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in rows) == list(range(n))
    for r in rows:
        assert r["size"] == n
        assert r["err"] < 1e-12, r  # f64: the global mean's gradient, to summation order
        assert r["spread"] == 0.0  # every rank holds rank 0's weights
        if n > 1:
            assert f"not divisible by the {n} MPI ranks" in r["shard_error"]


@mpi
def test_a_failing_rank_ends_the_job_with_one_line():
    proc, took = _mpiexec(2, "fail.py", timeout=30)
    assert proc.returncode != 0
    assert took < 30
    assert "nprnn: rank 1 of 2 failed: RuntimeError: disk full; aborting the job" in proc.stderr


def test_single_process_training_never_loads_mpi4py(tmp_path):
    """``import nprnn`` and a plain ``nprnn train`` (no mpiexec) leave mpi4py unloaded,
    even where it is installed."""
    code = (
        "import sys, nprnn\n"
        "from nprnn.app.cli import main\n"
        f"rc = main(['train', '--out', {str(tmp_path / 'run')!r}, '--steps', '3', "
        "'--eval-every', '3', '--hidden', '8', '--quiet', '--samples', '0'])\n"
        "assert rc == 0, rc\n"
        "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in dist._LAUNCHER_VARS}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
