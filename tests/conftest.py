"""Test configuration.

With ``NPRNN_REQUIRE_TORCH=1`` (set by ``.ci/run``) the torch parity tests must run:
torch missing is an error, and any test skipped for want of torch fails the session.
With ``NPRNN_REQUIRE_MPI=1`` (also set by ``.ci/run``) the same holds for the MPI tests
(mpi4py and the environment's ``mpiexec``, from ``pip install 'nprnn[mpi]'``).
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REQUIRE_TORCH = os.environ.get("NPRNN_REQUIRE_TORCH") == "1"
REQUIRE_MPI = os.environ.get("NPRNN_REQUIRE_MPI") == "1"
# what the MPI tests' skip reasons say: "mpi4py/MPICH not installed (pip install 'nprnn[mpi]')"
_MPI_WORDS = ("mpi4py", "nprnn[mpi]")


def _required(longrepr) -> str | None:
    """The requirement a skip report is about (``NPRNN_REQUIRE_*`` set), or None."""
    text = str(longrepr)
    if REQUIRE_TORCH and "torch" in text.lower():
        return "torch while NPRNN_REQUIRE_TORCH=1"
    if REQUIRE_MPI and any(w in text for w in _MPI_WORDS):
        return "mpi4py/MPICH while NPRNN_REQUIRE_MPI=1"
    return None


def pytest_configure(config):
    if REQUIRE_TORCH:
        try:
            import torch  # noqa: F401
        except ImportError as e:  # pragma: no cover
            raise pytest.UsageError(
                "NPRNN_REQUIRE_TORCH=1 but torch is not importable: pip install torch==2.13.0"
            ) from e
    if REQUIRE_MPI:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        if importlib.util.find_spec("mpi4py") is None or not mpiexec.exists():
            raise pytest.UsageError(  # pragma: no cover
                f"NPRNN_REQUIRE_MPI=1 but mpi4py or {mpiexec} is missing: pip install -e '.[mpi]'"
            )


def pytest_collectreport(report):
    if report.skipped and _required(report.longrepr):
        raise pytest.UsageError(f"module skipped for want of {_required(report.longrepr)}: "
                                f"{report.nodeid}")  # fmt: skip


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped:
        why = _required(rep.longrepr)
        if why:
            rep.outcome = "failed"
            rep.longrepr = f"skipped for want of {why}: {rep.longrepr}"


# ----------------------------------------------------------------------------- shared data
# Small texts for the data-parallel runs (tests/test_mpi_train.py, tests/test_local_train.py).


@pytest.fixture(scope="session")
def stream_text(tmp_path_factory):
    """600 words of a small vocabulary, for stream mode."""
    import numpy as np

    rng = np.random.default_rng(5)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "\n"]
    path = tmp_path_factory.mktemp("data") / "stream.txt"
    path.write_text(" ".join(rng.choice(words, 600)))
    return path


@pytest.fixture(scope="session")
def short_lines(tmp_path_factory):
    """24 lines, 21 of them for training at --val-fraction 0.15: the last batch of an
    epoch at --batch-size 4 holds one line, so one of 2 processes has no rows in it."""
    import numpy as np

    rng = np.random.default_rng(6)
    path = tmp_path_factory.mktemp("data") / "lines.txt"
    abc = list("abcdefgh")
    path.write_text("\n".join("".join(rng.choice(abc, rng.integers(2, 12))) for _ in range(24)))
    return path
