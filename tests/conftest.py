"""Test configuration.

With ``NPRNN_REQUIRE_TORCH=1`` (set by ``.ci/run``) the torch parity tests must run:
torch missing is an error, and any test skipped for want of torch fails the session.
"""

import os

import pytest

REQUIRE_TORCH = os.environ.get("NPRNN_REQUIRE_TORCH") == "1"


def pytest_configure(config):
    if REQUIRE_TORCH:
        try:
            import torch  # noqa: F401
        except ImportError as e:  # pragma: no cover
            raise pytest.UsageError(
                "NPRNN_REQUIRE_TORCH=1 but torch is not importable: pip install torch==2.13.0"
            ) from e


def pytest_collectreport(report):
    if REQUIRE_TORCH and report.skipped and "torch" in str(report.longrepr):
        raise pytest.UsageError(f"torch-dependent module skipped in CI: {report.nodeid}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_TORCH and rep.skipped and "torch" in str(rep.longrepr).lower():
        rep.outcome = "failed"
        rep.longrepr = f"skipped for want of torch while NPRNN_REQUIRE_TORCH=1: {rep.longrepr}"
