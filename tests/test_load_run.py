"""``nprnn.load_run(DIR)``: the trained model and vocabulary of a run, from Python."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nprnn
from nprnn.app import cli
from nprnn.app.charlm import CharLM
from nprnn.app.errors import CheckpointError
from nprnn.module import Module

NAMES = "anna bob cleo dave eve fay gus hal ida jo kim lea".split()
TINY = ["--hidden", "8", "--batch-size", "4", "--eval-every", "4", "--warmup", "2",
        "--samples", "0", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    (d / "n.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    (d / "c.tsv").write_text("".join(f"{n}\t{n[-1] == 'a'}\n" for n in NAMES * 2))
    assert cli.main(["train", "--data", str(d / "n.txt"), "--out", str(d / "lm"), "--steps",
                     "8", *TINY]) == 0  # fmt: skip
    assert cli.main(["train", "--task", "classify", "--data", str(d / "c.tsv"), "--out",
                     str(d / "cls"), "--steps", "4", "--hidden", "4", "--eval-every", "2",
                     "--quiet"]) == 0  # fmt: skip
    return d


def test_a_language_model_run(runs, capsys):
    capsys.readouterr()
    run = nprnn.load_run(runs / "lm")
    assert isinstance(run.model, CharLM) and isinstance(run.model, Module)
    assert (
        run.vocab.tokens == json.loads((runs / "lm" / "config.json").read_text())["vocab"]["tokens"]
    )
    names = run.sample(4, seed=0, temperature=0.8)
    assert len(names) == 4 and all(set(n) <= set(run.vocab.chars) for n in names)
    assert run.sample(3, temperature=0) == run.sample(3, temperature=0, seed=5)
    text = "anna\nbob\n"
    got = run.score(text)
    (runs / "held.txt").write_text(text)
    assert cli.main(["eval", str(runs / "lm"), "--data", str(runs / "held.txt")]) == 0
    want = json.loads(capsys.readouterr().out)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-12)
    assert got["bits_per_char"] == pytest.approx(got["loss"] / np.log(2))
    assert run.score(text, mode="stream")["loss"] > 0
    last = nprnn.load_run(runs / "lm", which="last")
    assert sorted(last.model.state_dict()) == sorted(run.model.state_dict())


def test_a_classifier_run(runs):
    run = nprnn.load_run(runs / "cls")
    assert run.labels == ["False", "True"]
    (probs,) = run.predict(["anna"])
    assert set(probs) == {"False", "True"} and sum(probs.values()) == pytest.approx(1.0)
    m = run.score([("anna", "True"), ("bob", "False")])
    assert m["n"] == 2 and 0 <= m["accuracy"] <= 1


def test_bad_runs_are_one_line_errors(runs, tmp_path):
    with pytest.raises(CheckpointError, match="not a run directory"):
        nprnn.load_run(tmp_path)
    with pytest.raises(ValueError, match="which"):
        nprnn.load_run(runs / "lm", which="worst")
