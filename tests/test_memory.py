"""Memory before work: the estimate of a training step's peak memory stays above what a
step really allocates (measured with tracemalloc, the kernels' buffer pool emptied
first), and the refusal is one line that says what to change."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

import nprnn
from nprnn.app import memory
from nprnn.app.charlm import CharLM
from nprnn.app.classifier import SeqClassifier
from nprnn.app.errors import UsageError


def _peak(fn) -> int:
    fn()  # warm-up: first-call allocations that a step does not repeat
    nprnn.release_workspace()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(
    "H, L, T, B, V", [(32, 1, 60, 8, 30), (16, 3, 40, 4, 80), (128, 2, 50, 32, 60)]
)
def test_the_lm_step_estimate_covers_the_measured_peak(cell, H, L, T, B, V):
    lm = CharLM(V, model=cell, hidden=H, layers=L, dropout=0.1, rng=0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    mask = np.ones((T, B), bool)

    def step():
        lm.zero_grad()
        lm.loss_and_grad(x, y, mask)

    measured = _peak(step)
    est = memory.step_bytes(cell=cell, hidden=H, layers=L, T=T, B=B, classes_per_step=V,
                            n_params=lm.num_parameters())  # fmt: skip
    assert measured <= est <= 6 * measured + 2**21, (measured, est)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_classifier_step_estimate_covers_the_measured_peak(bidirectional):
    T, B = 50, 16
    net = SeqClassifier(40, 3, model="gru", hidden=24, layers=2, bidirectional=bidirectional,
                        rng=0)  # fmt: skip
    rng = np.random.default_rng(0)
    ids, mask, y = rng.integers(0, 40, (T, B)), np.ones((T, B), bool), rng.integers(0, 3, B)

    def step():
        net.zero_grad()
        net.loss_and_grad(ids, mask, y)

    measured = _peak(step)
    est = memory.step_bytes(cell="gru", hidden=24, layers=2, T=T, B=B,
                            directions=2 if bidirectional else 1,
                            n_params=net.num_parameters())  # fmt: skip
    assert measured <= est, (measured, est)


def test_params_bytes_counts_weights_grads_buffers_and_checkpoint_copies():
    n = 1000
    assert memory.params_bytes(n, optimizer="adam") == 4 * n * (4 + 2 * 3)
    assert memory.params_bytes(n, itemsize=8, optimizer="sgd") == 8 * n * (3 + 2 * 2)


def test_procs_each_hold_the_weights_and_share_the_rows():
    """--procs N: N copies of the weights, gradients, buffers and per-step temporaries,
    one batch of activations between them."""
    n, kw = 5000, dict(cell="lstm", hidden=64, layers=1, T=30, n_params=5000)
    assert memory.params_bytes(n, procs=3) == 3 * memory.params_bytes(n)
    each = memory.step_bytes(B=0, **kw)  # what does not scale with the rows
    assert memory.step_bytes(B=64, procs=3, **kw) == memory.step_bytes(B=64, **kw) + 2 * each


def test_the_char_lm_check_counts_its_processes(monkeypatch, tmp_path):
    """Memory between the estimates for 1 and 2 processes: --procs 1 starts, --procs 2
    is refused (one line, exit 2, nothing written)."""
    from nprnn.app import cli, lmcli

    seen = []
    real = lmcli.check_fits

    def record(need, **kw):
        seen.append(need)
        return real(need, **kw)

    monkeypatch.setattr(lmcli, "check_fits", record)
    monkeypatch.setattr(lmcli, "available_bytes", lambda: 1)  # both refused: their estimates
    base = ["train", "--steps", "1", "--eval-every", "1", "--samples", "0", "--quiet"]
    for n in (1, 2):
        assert cli.main([*base, "--out", str(tmp_path / f"p{n}"), "--procs", str(n)]) == 2
    one, two = seen[0], seen[-1]
    assert two > one
    monkeypatch.setattr(lmcli, "available_bytes", lambda: (one + two) // 2)
    assert cli.main([*base, "--out", str(tmp_path / "p1b"), "--procs", "1"]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "p2b"), "--procs", "2"]) == 2
    assert not (tmp_path / "p2b").exists()


def test_check_fits_is_one_line_with_the_fix():
    memory.check_fits(10, what="x", fix="y", available=100)
    with pytest.raises(UsageError) as e:
        memory.check_fits(5 * 10**9, what="a step", fix="use less", available=10**9)
    assert e.value.what == "a step needs about 5.0 GB of memory, but 1.0 GB is available"
    assert e.value.fix == "use less" and "\n" not in str(e.value)


def test_available_bytes_is_a_positive_number_here():
    have = memory.available_bytes()
    assert have is None or (isinstance(have, int) and have > 0)
    assert math.isfinite(have or 1)
