"""Sequence classification: exact gradients, masks, training end to end, metrics, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nprnn.app import classify, cli
from nprnn.app.classifier import SeqClassifier, classification_metrics, encode_batch, read_labeled
from nprnn.app.errors import CheckpointError, DataError
from nprnn.app.text import Vocab
from nprnn.gradcheck import gradcheck
from nprnn.losses import softmax_cross_entropy

# a learnable toy rule: label "a" if the text ends with 'a', else "b"
TOY = ["anna", "bella", "bob", "carl", "dora", "ed", "ella", "fred", "gina", "hal", "ida",
       "jon", "kara", "lou", "mira", "ned", "olga", "pat", "rita", "sam", "tina", "vic",
       "wanda", "xav", "yara", "zed", "abba", "bert", "cora", "dan"]  # fmt: skip


def _toy_pairs():
    return [(t, "a" if t.endswith("a") else "b") for t in TOY]


def _write(path, pairs):
    path.write_text("".join(f"{t}\t{y}\n" for t, y in pairs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("clf")
    data = _write(d / "toy.tsv", _toy_pairs())
    res = classify.train_classifier(data=str(data), val_fraction=0.2, model="gru", hidden=8,
                                    batch_size=8, steps=40, lr=1e-2, warmup=0, eval_every=20,
                                    out=str(d / "run"), seed=0)  # fmt: skip
    return d, res


# ----------------------------------------------------------------------------- the model


def _gradcheck(net, ids, mask, labels) -> tuple[dict, dict]:
    """(relative errors of the analytic gradients against central differences, the
    gradients); the dropout generator is rewound before every loss, so each call draws
    the masks the analytic pass used."""
    rng_state = net.rng.bit_generator.state

    def f(p):
        net.load_state_dict(p)
        net.rng.bit_generator.state = rng_state
        return softmax_cross_entropy(net.logits(ids, mask), labels)[0]

    base = net.state_dict()
    net.rng.bit_generator.state = rng_state
    net.zero_grad()
    net.loss_and_grad(ids, mask, labels)
    grads = {k: v.copy() for k, v in net.grads.items()}
    return gradcheck(f, base, grads), grads


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradients_match_central_differences(model, dropout):
    vocab = Vocab.build(TOY, lines_mode=True)
    net = SeqClassifier(len(vocab), 3, model=model, hidden=3, layers=2, bidirectional=True,
                        dropout=dropout, embedding_dim=2, dtype=np.float64, rng=0)  # fmt: skip
    ids, mask = encode_batch(vocab, ["anna", "ed", "wanda", "b"])  # variable lengths
    assert ids.size <= len(vocab)  # the plain path: embedding, then the stack
    errs, grads = _gradcheck(net, ids, mask, np.array([0, 2, 1, 2]))
    assert max(errs.values()) < 1e-6, errs
    assert np.linalg.norm(grads["rnn.weight_hh_l1_reverse"]) > 0


@pytest.mark.parametrize("model", ["lstm", "rnn"])
def test_gradients_on_the_embedded_path(model):
    """A batch with more ids than characters runs the stack on the projected embedding
    table (forward_embedded); its gradients still match central differences."""
    vocab = Vocab.build(TOY, lines_mode=True)
    net = SeqClassifier(len(vocab), 2, model=model, hidden=3, layers=2, bidirectional=True,
                        embedding_dim=2, dtype=np.float64, rng=2)  # fmt: skip
    texts = TOY[:12]  # (more texts: weight_hh_l0's gradient gets tiny and the central
    # differences lose digits, on the plain path just as on this one)
    ids, mask = encode_batch(vocab, texts)
    assert len(vocab) < ids.size
    errs, grads = _gradcheck(net, ids, mask, np.array([int(t.endswith("a")) for t in texts]))
    assert max(errs.values()) < 1e-6, errs
    assert np.linalg.norm(grads["embedding.weight"]) > 0


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_padding_does_not_change_a_texts_prediction(model):
    vocab = Vocab.build(TOY, lines_mode=True)
    net = SeqClassifier(len(vocab), 2, model=model, hidden=5, layers=2, bidirectional=True,
                        rng=1).eval()  # fmt: skip
    alone = net.predict_proba(*encode_batch(vocab, ["ed"]))
    padded = net.predict_proba(*encode_batch(vocab, ["wanda", "ed"]))
    np.testing.assert_allclose(padded[1], alone[0], rtol=1e-5)
    assert not np.allclose(padded[0], alone[0])


def test_metrics_are_consistent():
    y = np.array([0, 0, 0, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 0, 1, 0, 0]] * 0.7 + 0.1
    m = classification_metrics(y, probs, ["x", "y", "z"], majority_label="x")
    assert m["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx({"x": 2 / 4, "y": 1 / 2, "z": 0.0})
    assert m["recall"] == pytest.approx({"x": 2 / 3, "y": 1 / 2, "z": 0.0})
    assert m["majority_baseline"] == pytest.approx(3 / 6)
    assert m["loss"] == pytest.approx(-np.log(0.8) * 3 / 6 - np.log(0.1) * 3 / 6)


# ----------------------------------------------------------------------------- end to end


def test_training_writes_a_run_and_learns(run_dir):
    d, res = run_dir
    run = d / "run"
    for name in ("config.json", "model.safetensors", "best.safetensors", "log.jsonl"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["task"] == "classify" and cfg["labels"] == ["a", "b"]
    assert set(cfg["vocab"]["tokens"][3:]) <= set("".join(TOY))
    log = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 40]
    assert all({"train_loss", "val_loss", "val_accuracy"} <= set(r) for r in log)
    assert classify.is_classifier_run(run)
    assert res["val"]["n"] == 6


def test_evaluate_keys_and_confusion_totals(run_dir):
    d, _ = run_dir
    m = classify.evaluate_classifier(d / "run", _toy_pairs())
    assert {"accuracy", "precision", "recall", "confusion_matrix", "labels",
            "majority_baseline"} <= set(m)  # fmt: skip
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == len(TOY) == m["n"]
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    n_b = sum(1 for t in TOY if not t.endswith("a"))
    assert cm[1].sum() == n_b
    assert m["majority_baseline"] == pytest.approx(n_b / len(TOY))  # "b" is the majority
    assert m["accuracy"] > m["majority_baseline"]  # the rule is easy: it must be learnt


def test_predict_gives_probabilities(run_dir, capsys):
    d, _ = run_dir
    out = classify.predict(d / "run", ["nora", "bob", "a"])
    assert len(out) == 3
    for probs in out:
        assert set(probs) == {"a", "b"}
        assert sum(probs.values()) == pytest.approx(1.0)
    assert cli.main(["predict", str(d / "run"), "nora", "bob"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in lines] == ["nora", "bob"]
    assert all(r["label"] == max(r["probs"], key=r["probs"].get) for r in lines)


def test_main_train_and_eval_print_json(tmp_path, capsys):
    data = _write(tmp_path / "toy.tsv", _toy_pairs())
    out = tmp_path / "r"
    argv = ["train", "--task", "classify", "--data", str(data), "--steps", "4", "--hidden", "4",
            "--eval-every", "2", "--out", str(out), "--bidirectional", "--quiet",
            "--test-fraction", "0.2"]  # fmt: skip
    assert cli.main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["test"]["n"] == 6 and res["val"]["n"] == 2
    assert cli.main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main([*argv, "--force"]) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--data", str(data)]) == 0
    m = json.loads(capsys.readouterr().out)
    assert sum(map(sum, m["confusion_matrix"])) == len(TOY)


# ----------------------------------------------------------------------------- bad input


def test_bad_data_lines(tmp_path):
    (tmp_path / "b.tsv").write_text("ann\tf\nbob m\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2 has no tab"):
        read_labeled(tmp_path / "b.tsv")
    (tmp_path / "c.tsv").write_text("ann\tf\n\tm\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty text"):
        read_labeled(tmp_path / "c.tsv")
    with pytest.raises(DataError, match="two labels"):
        classify.train_classifier(data=[("a", "x"), ("b", "x"), ("c", "x")], out=tmp_path / "o")


def test_unknown_labels_characters_and_foreign_runs(run_dir, tmp_path):
    d, _ = run_dir
    with pytest.raises(DataError, match="labels"):
        classify.evaluate_classifier(d / "run", [("anna", "c")])
    with pytest.raises(DataError, match="not in the vocabulary"):
        classify.predict(d / "run", ["Zoë"])
    with pytest.raises(CheckpointError):
        classify.predict(tmp_path, ["anna"])
    assert (
        cli.main(["train", "--task", "classify", "--model", "cnn", "--out", str(tmp_path / "x")])
        == 2
    )


def test_bundled_corpus_reads():
    pairs = read_labeled(classify.BUNDLED)
    assert len(pairs) == 4832
    assert {y for _, y in pairs} == {"female", "male"}
