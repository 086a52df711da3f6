"""Long-range tasks: generators, exact per-step state gradients, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nprnn import functional as F
from nprnn.app import cli, gradnorms, tasks
from nprnn.app.gradnorms import state_grad_norms
from nprnn.app.tasks import TaskNet, adding_batch, copy_batch

# ----------------------------------------------------------------------------- generators


def test_adding_batch_layout_and_targets():
    x, y = adding_batch(np.random.default_rng(0), 50, 20)
    assert x.shape == (20, 50, 2) and y.shape == (50,)
    assert x.dtype == np.float32 and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert (markers.sum(axis=0) == 2).all()  # exactly two markers per sequence
    assert (markers[:10].sum(axis=0) == 1).all() and (markers[10:].sum(axis=0) == 1).all()
    np.testing.assert_allclose(y, (values * markers).sum(axis=0), rtol=1e-6)


def test_adding_batch_odd_length_and_minimum():
    x, _ = adding_batch(np.random.default_rng(1), 200, 3)
    m = x[..., 1]
    assert (m[:1].sum(axis=0) == 1).all() and (m[1:].sum(axis=0) == 1).all()
    with pytest.raises(ValueError, match="T"):
        adding_batch(np.random.default_rng(0), 4, 1)


def test_generators_are_deterministic_given_the_rng():
    a = adding_batch(np.random.default_rng(7), 8, 30)
    b = adding_batch(np.random.default_rng(7), 8, 30)
    c = adding_batch(np.random.default_rng(8), 8, 30)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    p = copy_batch(np.random.default_rng(7), 8, 5, 4, 6)
    q = copy_batch(np.random.default_rng(7), 8, 5, 4, 6)
    for u, v in zip(p, q, strict=True):
        np.testing.assert_array_equal(u, v)


def test_adding_mean_predictor_baseline_is_one_sixth():
    _, y = adding_batch(np.random.default_rng(3), 200_000, 4, dtype=np.float64)
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 3e-3
    assert abs(np.mean(y) - 1.0) < 5e-3


def test_copy_batch_layout():
    S, T, A = 4, 6, 5
    ids, targets = copy_batch(np.random.default_rng(0), 9, T, S, A)
    assert ids.shape == (2 * S + T + 1, 9) and targets.shape == (S, 9)
    np.testing.assert_array_equal(ids[:S], targets)
    assert ((targets >= 0) & (targets < A)).all()
    assert (ids[S : S + T] == A).all()  # blanks
    assert (ids[S + T] == A + 1).all()  # the delimiter
    assert (ids[S + T + 1 :] == A).all()  # blanks while answering


def test_copy_baseline_accuracy_is_chance():
    # the best constant guess scores 1/A on uniform symbols
    _, targets = copy_batch(np.random.default_rng(0), 20_000, 3, 8, 8)
    best_constant = max(np.mean(targets == k) for k in range(8))
    assert abs(best_constant - 1 / 8) < 0.01


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru"])
def test_stepwise_state_gradients_match_the_whole_sequence_backward(model):
    rng = np.random.default_rng(0)
    net = TaskNet(model, 2, 5, 1, dtype=np.float64, rng=1)
    x, y = adding_batch(rng, 3, 9, dtype=np.float64)
    res = state_grad_norms(net, x, y)
    # the whole-sequence layer backward from the same dL/dh_T: same dh0 and weight gradients
    net.zero_grad()
    pred = net.head(net.final_state(x))[:, 0]
    dh_T = ((2.0 / 3) * (pred - y))[:, None] * net.head.params["weight"]  # (B, H)
    _, d0 = net.rnn.backward(None, (dh_T[None], None) if model == "lstm" else dh_T[None])
    dh0 = d0[0] if model == "lstm" else d0
    np.testing.assert_allclose(res["dh0"], dh0[0], rtol=1e-10, atol=1e-14)
    for k, g in res["grads"].items():
        np.testing.assert_allclose(g, net.rnn.grads[k + "_l0"], rtol=1e-10, atol=1e-14)
    assert res["h"].shape == (9,) and np.isclose(res["h"][-1], np.linalg.norm(dh_T))


def test_state_gradient_at_a_middle_step_equals_backward_of_the_suffix():
    """‖∂L/∂h_t‖ = ‖dh0‖ of the suffix x[t+1:] run from h_t (RNN, float64)."""
    rng = np.random.default_rng(2)
    net = TaskNet("rnn", 2, 6, 1, dtype=np.float64, rng=3)
    x, y = adding_batch(rng, 4, 12, dtype=np.float64)
    norms = state_grad_norms(net, x, y)["h"]
    w = [net.rnn.params[n + "_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    t = 5
    out, _, _ = F.rnn_forward(x[: t + 1], None, *w)
    h_t = out[-1]
    _, h_n, cache = F.rnn_forward(x[t + 1 :], h_t, *w)
    pred = net.head(h_n)[:, 0]
    dh = ((2.0 / 4) * (pred - y))[:, None] * net.head.params["weight"]
    _, dh_t, _ = F.rnn_backward(None, dh, cache)
    assert np.isclose(norms[t], np.linalg.norm(dh_t), rtol=1e-10)


def test_tanh_rnn_gradients_vanish_at_initialisation():
    rnn = gradnorms.gradient_norms("rnn", 60, hidden=32, batch_size=8)
    assert rnn.shape == (60,)
    assert rnn[0] < 1e-6 * rnn[-1]


def test_lstm_learns_a_short_adding_problem():
    res = tasks.train_adding("lstm", 8, hidden=16, batch_size=32, steps=300, lr=1e-2)
    assert res["mse"] < 0.5 * res["baseline_mse"]
    assert abs(res["baseline_mse"] - 1 / 6) < 0.03


# ----------------------------------------------------------------------------- command line


def _json_line(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


def test_main_adding_prints_one_json_line(capsys, tmp_path):
    rc = cli.main(
        [
            "task",
            "adding",
            "--out",
            str(tmp_path / "a"),
            "--model",
            "gru",
            "--T",
            "6",
            "--steps",
            "3",
            "--hidden",
            "4",
            "--batch-size",
            "5",
            "--quiet",
        ]
    )
    assert rc == 0
    res = _json_line(capsys)
    assert {"mse", "baseline_mse", "model", "T"} <= set(res)
    assert res["model"] == "gru" and res["T"] == 6
    assert 0.08 < res["baseline_mse"] < 0.26


def test_main_copy_prints_one_json_line(capsys, tmp_path):
    rc = cli.main(
        [
            "task",
            "copy",
            "--out",
            str(tmp_path / "c"),
            "--model",
            "rnn",
            "--T",
            "3",
            "--steps",
            "2",
            "--hidden",
            "4",
            "--symbols",
            "3",
            "--alphabet",
            "4",
            "--quiet",
        ]
    )
    assert rc == 0
    res = _json_line(capsys)
    assert {"accuracy", "baseline_accuracy"} <= set(res)
    assert res["baseline_accuracy"] == 0.25 and 0 <= res["accuracy"] <= 1


def test_main_grad_norms_json_and_png(capsys, tmp_path):
    rc = cli.main(["task", "grad-norms", "--T", "10", "--hidden", "4", "--batch-size", "3",
                   "--models", "rnn,lstm", "--no-plot"])  # fmt: skip
    assert rc == 0
    res = _json_line(capsys)
    assert set(res["norms"]) == {"rnn", "lstm"} and res["out"] is None
    pytest.importorskip("matplotlib")
    out = tmp_path / "g.png"
    assert cli.main(["task", "grad-norms", "--T", "10", "--hidden", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, match",
    [
        (["adding", "--T", "1", "--steps", "1"], "T"),
        (["adding", "--model", "cnn", "--T", "5"], "invalid choice"),
        (["adding"], "--T"),
        (["copy", "--T", "4", "--lr", "-1"], "lr"),
        (["grad-norms", "--models", "rnn,xyz", "--no-plot"], "models"),
        (["tetris"], "adding, copy, grad-norms"),
    ],
)
def test_bad_input_is_a_one_line_error(argv, match, capsys, tmp_path):
    assert cli.main(["task", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and match in err, err
    assert not (tmp_path / "o").exists()


def test_a_task_run_resumes_bit_identically_after_ctrl_c(tmp_path, capsys, monkeypatch):
    """The tasks use the one training loop: Ctrl-C saves (exit 130), --resume continues
    to the weights of an uninterrupted run."""
    import os
    import signal

    from nprnn.app.files import load_arrays
    from nprnn.app.train import Trainer

    common = ["task", "copy", "--T", "3", "--steps", "8", "--hidden", "4", "--symbols", "2",
              "--alphabet", "3", "--eval-every", "3", "--quiet"]  # fmt: skip
    assert cli.main([*common, "--out", str(tmp_path / "a")]) == 0
    original = Trainer._train_step

    def interrupted(self):
        res = original(self)
        if self.step == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return res

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_train_step", interrupted)
        assert cli.main([*common, "--out", str(tmp_path / "b")]) == 130
    assert "nprnn task copy --T 3" in capsys.readouterr().err
    assert cli.main([*common, "--out", str(tmp_path / "b"), "--resume"]) == 0
    wa, wb = (load_arrays(tmp_path / r / "model.safetensors") for r in "ab")
    assert all(wa[k].tobytes() == wb[k].tobytes() for k in wa)
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["task"] == "copy" and res["steps"] == 8
