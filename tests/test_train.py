"""The training loop: evaluation, early stopping, divergence, interrupts, checkpoint state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nprnn.app.charlm import CharLM
from nprnn.app.files import load_arrays
from nprnn.app.lm import LMObjective, evaluate
from nprnn.app.runs import RunDir, load_best, load_checkpoint
from nprnn.app.text import Vocab
from nprnn.app.train import LoopOptions, Trainer
from nprnn.app.viz import plot_log as plot_losses

LINES = ["anna", "bob", "cleo", "dave", "eve", "fay", "gus", "hal", "ida", "jo", "kim", "lea"]


def make(tmp_path, *, mode="lines", name="run", seed=0, **kw):
    opts = LoopOptions(
        steps=kw.pop("steps", 12),
        eval_every=kw.pop("eval_every", 4),
        warmup=2,
        quiet=True,
        **{"decay": "cosine", **kw},
    )
    if mode == "lines":
        vocab = Vocab.build(LINES, lines_mode=True)
        train, val = LINES[:9], LINES[9:]
    else:
        text = " ".join(LINES) * 3
        vocab = Vocab.build([text], lines_mode=False)
        train, val = vocab.encode(text[:100]), vocab.encode(text[100:])
    model = CharLM(len(vocab), hidden=6, rng=np.random.default_rng([seed, 0]))
    run = RunDir(tmp_path / name)
    run.check_writable()
    objective = LMObjective(model, vocab, train, val, mode=mode, batch_size=3, seq_len=5, seed=seed)
    return Trainer(objective, opts, run, {"format": "test"}, resume_hint="nprnn train --resume")


def test_done_logs_each_evaluation_and_keeps_the_best(tmp_path):
    tr = make(tmp_path)
    tr.save()
    res = tr.run()
    assert res.status == "done" and res.step == 12
    log = tr.run_dir.read_log()
    assert [r["step"] for r in log] == [4, 8, 12]
    assert all(r["scheduled"] and math.isfinite(r["val_loss"]) for r in log)
    assert res.best_val_loss == min(r["val_loss"] for r in log)
    best = load_best(tr.run_dir)
    assert best is not None
    # the logged lr is the schedule's (warmup 2, cosine to 0.1 x lr over 12 steps)
    assert log[0]["lr"] == pytest.approx(tr.schedule.lr_at(3))


def test_off_schedule_final_evaluation_changes_no_record(tmp_path):
    tr = make(tmp_path, steps=10)
    res = tr.run()
    log = tr.run_dir.read_log()
    assert [(r["step"], r["scheduled"]) for r in log] == [(4, True), (8, True), (10, False)]
    assert res.best_step in (4, 8) and not log[-1]["best"]


def test_early_stopping_keeps_the_best_weights(tmp_path, monkeypatch):
    losses = iter([3.0, 2.0, 2.5, 2.4, 2.6, 1.0])
    tr = make(tmp_path, steps=40, patience=3)
    monkeypatch.setattr(tr.objective, "evaluate", lambda *a, **k: {"loss": (next(losses), 1)})
    snapshots = {}
    original = tr.save

    def save(*, best=False):
        original(best=best)
        snapshots[tr.step] = tr.model.state_dict()

    tr.save = save
    res = tr.run()
    assert res.status == "early_stopped" and res.step == 20
    assert res.best_step == 8 and res.best_val_loss == 2.0
    best = load_best(tr.run_dir)
    for k, v in best.items():
        assert np.array_equal(v, snapshots[8][k])
    # resuming an early-stopped run with the same patience does nothing
    again = make(tmp_path, steps=40, patience=3)
    _, _, arrays, state = load_checkpoint(tr.run_dir)
    again.load_state(arrays, state)
    assert again.run().status == "early_stopped" and again.step == 20


@pytest.mark.parametrize("bad", [float("nan"), 1e6])
def test_divergence_saves_nothing(tmp_path, monkeypatch, bad):
    tr = make(tmp_path, steps=12)
    tr.save()
    original = tr.model.loss_and_grad

    def loss_and_grad(*a, **k):
        loss, state = original(*a, **k)
        return (bad if tr.step == 5 else loss), state

    monkeypatch.setattr(tr.model, "loss_and_grad", loss_and_grad)
    res = tr.run()
    assert res.status == "diverged" and res.step == 5
    assert "step 6" in res.message and "checkpoint of step 4" in res.message
    assert "--lr" in res.message
    assert load_checkpoint(tr.run_dir)[3]["step"] == 4


def test_keyboard_interrupt_mid_step_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    tr = make(tmp_path)
    tr.save()
    original = tr.model.loss_and_grad

    def loss_and_grad(*a, **k):
        if tr.step == 6:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(tr.model, "loss_and_grad", loss_and_grad)
    res = tr.run()
    assert res.status == "interrupted" and "kept the last checkpoint" in res.message
    assert load_checkpoint(tr.run_dir)[3]["step"] == 4


def test_state_round_trip_continues_identically(tmp_path):
    kw = {"mode": "stream", "decay": "none"}  # so the schedule does not depend on steps
    a = make(tmp_path, name="a", **kw)
    a.run()
    b = make(tmp_path, name="b", steps=5, **kw)
    b.run()
    c = make(tmp_path, name="b", **kw)  # same run dir, full length
    _, weights, arrays, state = load_checkpoint(c.run_dir)
    c.model.load_state_dict(weights)
    c.load_state(arrays, state)
    assert c.step == 5 and c.carry is not None
    c.run()
    wa, wc = load_arrays(a.run_dir.model_path), load_arrays(c.run_dir.model_path)
    assert all(np.array_equal(wa[k], wc[k]) for k in wa)


def test_evaluate_stream_batch_one_is_the_sequential_score():
    vocab = Vocab.build(["abcab cab"], lines_mode=False)
    ids = vocab.encode("abcab cab abca")
    model = CharLM(len(vocab), hidden=5, rng=0)
    got = evaluate(model, vocab, ids, mode="stream", batch_size=1, seq_len=4)
    ref, n, _ = model.score(ids[:-1, None], ids[1:, None])
    assert n == len(ids) - 1 and got == pytest.approx(ref, rel=1e-6)


def test_plot_losses(tmp_path):
    pytest.importorskip("matplotlib")
    log = [{"step": 4, "train_loss": 3.0, "val_loss": 2.9}, {"step": 8, "val_loss": 2.5}]
    assert plot_losses(log, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plot_losses([], tmp_path / "none.png")


# ---------------------------------------------------------------------------- damaged state


def _damage(state, arrays, what):
    import copy

    state, arrays = copy.deepcopy(state), dict(arrays)
    if what == "record type":
        state["record"]["bad_evals"] = "x"
    elif what == "record nan":
        state["record"]["best_val"] = float("nan")
    elif what == "record keys":
        state["record"]["extra"] = 1
    elif what == "rng":
        state["model_rng"]["uinteger"] = -1
    elif what == "rng kind":
        state["model_rng"] = {"bit_generator": "Philox"}
    elif what == "step":
        state["step"] = True
    elif what == "stream shape":
        arrays["carry.0"] = np.zeros((1, 2, 6), np.float32)
    elif what == "stream nan":
        arrays["carry.1"] = np.full_like(arrays["carry.1"], np.nan)
    elif what == "stream missing":
        del arrays["carry.1"]
    elif what == "unknown array":
        arrays["junk"] = np.zeros(1, np.float32)
    elif what == "optimizer":
        state["optimizer"]["step"] = -1
    elif what == "batcher":
        state["batcher"]["position"] = 10**9
    return state, arrays


@pytest.mark.parametrize(
    "what",
    ["record type", "record nan", "record keys", "rng", "rng kind", "step", "stream shape",
     "stream nan", "stream missing", "unknown array", "optimizer", "batcher"],
)  # fmt: skip
def test_load_state_refuses_a_damaged_state_and_changes_nothing(tmp_path, what):
    from nprnn.app.errors import CheckpointError

    a = make(tmp_path, name="a", mode="stream", steps=5)
    a.run()
    _, _, arrays, state = load_checkpoint(a.run_dir)
    b = make(tmp_path, name="b", mode="stream")
    b.run()  # a state of its own, other than a's
    before = (b.step, b.record.copy(), b.model.rng.bit_generator.state, b.batcher.state_dict())
    opt = b.optimizer.state_arrays()
    stream = b.carry
    bad_state, bad_arrays = _damage(state, arrays, what)
    with pytest.raises(CheckpointError, match=r"damaged or foreign .* — ") as info:
        b.load_state(bad_arrays, bad_state)
    assert "\n" not in str(info.value)
    assert (b.step, b.record, b.model.rng.bit_generator.state, b.batcher.state_dict()) == before
    assert all(np.array_equal(v, b.optimizer.state_arrays()[k]) for k, v in opt.items())
    assert b.carry is stream
    b.load_state(arrays, state)  # the undamaged state still loads
    assert b.step == 5


def test_load_state_of_a_lines_run_with_a_bad_batcher_changes_nothing(tmp_path):
    from nprnn.app.errors import CheckpointError

    a = make(tmp_path, name="a", steps=5)
    a.run()
    _, _, arrays, state = load_checkpoint(a.run_dir)
    b = make(tmp_path, name="b")
    b.run()
    before = (b.batcher.state_dict(), b.optimizer.state_scalars())
    state["batcher"]["position"] = 10**6  # checked after the batcher took the RNG state
    with pytest.raises(CheckpointError, match="position"):
        b.load_state(arrays, state)
    assert (b.batcher.state_dict(), b.optimizer.state_scalars()) == before


def test_plot_losses_skips_damaged_log_entries(tmp_path):
    pytest.importorskip("matplotlib")
    log = [
        {"val_loss": 2.0},
        {"step": "x", "val_loss": 2.0},
        {"step": 2, "val_loss": "x"},
        {"step": True, "train_loss": 1.0},
        {"step": 3, "val_loss": float("nan")},
        [1],
    ]
    assert not plot_losses(log, tmp_path / "none.png")
    assert plot_losses([*log, {"step": 4, "val_loss": 2.5}], tmp_path / "loss.png")


# ---------------------------------------------------------------------------- the hooks


def test_the_data_parallel_hooks_are_called_once_per_step_in_order(tmp_path, monkeypatch):
    """Issue 13 hooks: shard after next_batch, average_gradients between backward and
    clipping (what it leaves in the grads is what is clipped and applied), sum_totals
    on every evaluation."""
    import nprnn.app.train as train_mod
    from nprnn.app.train import Parallel

    calls = []

    class Recording(Parallel):
        def shard(self, batch, objective):
            calls.append("shard")
            return batch

        def average_gradients(self, grads, loss, count, stop=False):
            assert any(np.any(g) for g in grads.values())  # after backward
            calls.append(("average", count))
            for g in grads.values():
                g[...] = 0  # a "global" gradient of zero: the step must change nothing
            return loss, count

        def sum_totals(self, totals):
            calls.append("sum")
            return totals

    real_clip = train_mod._clip
    monkeypatch.setattr(train_mod, "_clip", lambda g, m: calls.append("clip") or real_clip(g, m))
    tr = make(tmp_path, steps=4, eval_every=2)
    tr.parallel = Recording()
    before = tr.model.state_dict()
    tr.run()
    steps = [c for c in calls if c != "sum"]
    assert len(steps) == 12 and steps[0::3] == ["shard"] * 4 and steps[2::3] == ["clip"] * 4
    assert all(c[0] == "average" and c[1] > 0 for c in steps[1::3])
    assert calls.count("sum") == 2
    for k, v in tr.model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_a_process_that_does_not_write_writes_nothing(tmp_path):
    from nprnn.app.train import Parallel

    class Worker(Parallel):
        rank, size, writes = 1, 2, False

    tr = make(tmp_path, name="w", steps=4, eval_every=2)
    tr.parallel = Worker()
    res = tr.run()
    assert res.status == "done" and sorted(p.name for p in tr.run_dir.path.iterdir()) == []


def test_the_loop_runs_without_a_run_directory(tmp_path):
    tr = make(tmp_path, name="x", steps=4, eval_every=2)
    tr.run_dir = None
    res = tr.run()
    assert res.status == "done" and res.best_step in (2, 4)
    assert tr._resume_message(saved=True).startswith("interrupted — nothing was saved")
