"""Sequence classification (many-to-one): one label per line of text.

Data: UTF-8 lines ``text<TAB>label`` (split at the last tab; empty lines skipped).

Model (:class:`SeqClassifier`), for a padded batch of B texts of length ≤ T::

    e_t  = E[x_t]                                     (T, B, D_e)  embedding
    hᴸ   = final state of the last layer of an RNN | LSTM | GRU stack over e with the
           padding mask: each text's state after its last real character; with
           bidirectional=True the forward and reverse final states are concatenated
                                                      (B, D·H)
    z    = W · drop(hᴸ) + b                           (B, C)    logits, C labels
    L    = mean_b −log softmax(z_b)[y_b]

Backward: dL/dz → head → dL/dhᴸ is the gradient of the final state of the last layer
(dout = 0 everywhere, dstate = 0 for the other layers) → the stack → embedding.

Training (:func:`train_classifier`) writes a run directory with the checkpoint helpers
of :mod:`nprnn.checkpoint`: ``config.json`` (``"format": "nprnn-classifier"``,
``"task": "classify"``, the labels, their training counts, the vocabulary, the model and
the options), ``model.safetensors`` (latest weights), ``best.safetensors`` (lowest
validation loss), ``trainer.json`` and ``log.jsonl`` (one line per evaluation: ``step``,
``train_loss``, ``val_loss``, ``val_accuracy``, ``lr``). Metrics
(:func:`classification_metrics`): accuracy, per-class precision and recall (0 when the
class is never predicted / absent), the confusion matrix ``[true][predicted]`` in the
order of ``labels``, and ``majority_baseline``: the accuracy of always answering the most
frequent training label.

Command lines: ``main_train`` (``nprnn train --task classify``), ``main_predict``
(``nprnn predict DIR TEXT...``), ``main_eval`` (``nprnn eval DIR --data FILE`` on a
classifier run; :func:`is_classifier_run` tells the two kinds apart).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np

from nprnn.dense import Embedding, Linear
from nprnn.layers import GRU, LSTM, RNN
from nprnn.losses import softmax_cross_entropy
from nprnn.module import Stack
from nprnn.optim import LRSchedule, clip_grad_norm, make_optimizer
from nprnn.validation import as_float_dtype, as_rng, one_of, positive_int, real_in_range

from .runs import CheckpointError, RunDir, load_model, save_checkpoint
from .text import DataError, Vocab, read_text, split_train_val
from .viz import make_parser

__all__ = ["SeqClassifier", "read_labeled", "encode_batch", "classification_metrics",
           "train_classifier", "load_classifier", "evaluate_classifier", "predict",
           "is_classifier_run", "main_train", "main_predict", "main_eval"]  # fmt: skip

FORMAT = "nprnn-classifier"
MODELS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
BUNDLED = "bundled:first_names_gender.tsv"
PLOT = "loss.png"


# ----------------------------------------------------------------------------- data


def _parse_labeled(text: str, name: str) -> list[tuple[str, str]]:
    pairs = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(f"{name} line {n} has no tab: expected 'text<TAB>label' — "
                            "separate the text and its label with a tab")  # fmt: skip
        t, label = line.rsplit("\t", 1)
        if not t or not label.strip():
            raise DataError(f"{name} line {n} has an empty {'text' if not t else 'label'} — "
                            "every line needs 'text<TAB>label'")  # fmt: skip
        pairs.append((t, label.strip()))
    if not pairs:
        raise DataError(f"{name} holds no 'text<TAB>label' line — pass a labelled file")
    return pairs


def read_labeled(path, *, flag: str = "--data") -> list[tuple[str, str]]:
    """``[(text, label)]`` from a UTF-8 file of ``text<TAB>label`` lines (``bundled:NAME``
    reads a bundled corpus). Bad lines raise :class:`DataError` naming the line."""
    path = str(path)
    if path.startswith("bundled:"):
        ref = resources.files("nprnn.app") / "corpora" / path.removeprefix("bundled:")
        with resources.as_file(ref) as p:
            return _parse_labeled(read_text(p, flag=flag), repr(path))
    return _parse_labeled(read_text(path, flag=flag), repr(path))


def _as_pairs(data, flag: str) -> list[tuple[str, str]]:
    if isinstance(data, str | Path):
        return read_labeled(data, flag=flag)
    pairs = [(str(t), str(y)) for t, y in data]
    if not pairs:
        raise DataError(f"{flag}: no labelled examples")
    if any(not t for t, _ in pairs):
        raise DataError(f"{flag}: an example has an empty text")
    return pairs


def encode_batch(vocab: Vocab, texts) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (T, B) int64, mask (T, B) bool)``, right-padded with ``<pad>``; T = longest."""
    seqs = [vocab.encode(t) for t in texts]
    if any(len(s) == 0 for s in seqs):
        raise DataError("cannot classify an empty text — pass at least one character")
    return _pad(seqs, vocab.pad_id or 0)


def _pad(seqs, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    T, B = max(len(s) for s in seqs), len(seqs)
    ids = np.full((T, B), pad_id, dtype=np.int64)  # (T, B)
    mask = np.zeros((T, B), dtype=bool)  # (T, B)
    for b, s in enumerate(seqs):
        ids[: len(s), b], mask[: len(s), b] = s, True
    return ids, mask


# ----------------------------------------------------------------------------- the model


class SeqClassifier(Stack):
    """Embedding → recurrent stack → final state(s) of the last layer → Linear.

    ``SeqClassifier(vocab_size, n_labels, *, model="lstm", hidden=64, layers=1,
    bidirectional=False, dropout=0.0, embedding_dim=None, dtype=np.float32, rng=None)``;
    ``embedding_dim=None`` uses ``hidden``. ``dropout`` acts between stacked layers and
    on the features before the head, in training mode only. Parameter names:
    ``embedding.weight``, ``rnn.weight_ih_l0`` ..., ``head.weight``, ``head.bias``.
    """

    parts = ("embedding", "rnn", "head")

    def __init__(self, vocab_size, n_labels, *, model="lstm", hidden=64, layers=1,
                 bidirectional=False, dropout=0.0, embedding_dim=None, dtype=np.float32,
                 rng=None):  # fmt: skip
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.n_labels = positive_int("n_labels", n_labels, minimum=2)
        self.model = one_of("model", model, tuple(MODELS))
        self.hidden = positive_int("hidden", hidden)
        self.num_layers = positive_int("layers", layers)
        self.bidirectional = bool(bidirectional)
        self.dropout = real_in_range("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim or self.hidden)
        self.dtype = as_float_dtype(dtype)
        self.rng = as_rng(rng)
        self.training = True
        D = 2 if self.bidirectional else 1
        self.embedding = Embedding(self.vocab_size, self.embedding_dim, dtype=self.dtype,
                                   rng=self.rng)  # fmt: skip
        self.rnn = MODELS[self.model](
            self.embedding_dim,
            self.hidden,
            self.num_layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout if self.num_layers > 1 else 0.0,
            dtype=self.dtype,
            rng=self.rng,
        )
        self.head = Linear(D * self.hidden, self.n_labels, dtype=self.dtype, rng=self.rng)
        self._drop = None

    def config(self) -> dict:
        """The architecture as a JSON-able dict (``from_config`` rebuilds it)."""
        return {"vocab_size": self.vocab_size, "n_labels": self.n_labels, "model": self.model,
                "hidden": self.hidden, "layers": self.num_layers,
                "bidirectional": self.bidirectional, "dropout": self.dropout,
                "embedding_dim": self.embedding_dim, "dtype": self.dtype.name}  # fmt: skip

    @classmethod
    def from_config(cls, cfg: dict, *, rng=None) -> SeqClassifier:
        c = dict(cfg)
        return cls(c.pop("vocab_size"), c.pop("n_labels"), **c, rng=rng)

    def train(self) -> SeqClassifier:
        self.training = True
        return self

    def eval(self) -> SeqClassifier:
        self.training = False
        return self

    # ------------------------------------------------------------------ forward / backward

    def logits(self, ids, mask) -> np.ndarray:
        """(T, B) ids and mask → logits (B, C); keeps what ``backward`` needs."""
        L, D = self.num_layers, (2 if self.bidirectional else 1)
        x = self.embedding(ids)  # (T, B, E)
        self.rnn.train(self.training)
        _, state = self.rnn(x, None, mask=mask)
        h_n = state[0] if isinstance(state, tuple) else state  # (D·L, B, H)
        feat = np.concatenate(list(h_n[(L - 1) * D :]), axis=1)  # (B, D·H), forward half first
        self._drop = None
        if self.training and self.dropout > 0:
            keep = self.rng.random(feat.shape, dtype=self.dtype) >= self.dropout
            self._drop = keep * self.dtype.type(1.0 / (1.0 - self.dropout))  # (B, D·H)
            feat = feat * self._drop
        return self.head(feat)

    def backward(self, dlogits) -> None:
        """Gradients of the last ``logits`` call, accumulated into ``grads()``."""
        L, D, H = self.num_layers, (2 if self.bidirectional else 1), self.hidden
        dfeat = self.head.backward(dlogits)  # (B, D·H)
        if self._drop is not None:
            dfeat = dfeat * self._drop
        B = dfeat.shape[0]
        dh_n = np.zeros((D * L, B, H), dtype=self.dtype)
        for d in range(D):
            dh_n[(L - 1) * D + d] = dfeat[:, d * H : (d + 1) * H]
        dx, _ = self.rnn.backward(None, (dh_n, None) if self.model == "lstm" else dh_n)
        self.embedding.backward(dx)

    def loss_and_grad(self, ids, mask, labels) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of a batch; adds the gradients into ``grads()``."""
        z = self.logits(ids, mask)
        loss, dz = softmax_cross_entropy(z, labels)
        self.backward(dz)
        return float(loss), float(np.mean(z.argmax(axis=1) == labels))

    def predict_proba(self, ids, mask) -> np.ndarray:
        """softmax(logits) (B, C) in evaluation mode (no dropout), float64."""
        was, self.training = self.training, False
        try:
            z = self.logits(ids, mask).astype(np.float64)
        finally:
            self.training = was
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- metrics


def _probs(model, vocab, texts, batch_size=256) -> np.ndarray:
    """(N, C) probabilities, in batches of texts of similar length (order kept)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), model.n_labels))
    for s in range(0, len(texts), batch_size):
        idx = order[s : s + batch_size]
        out[idx] = model.predict_proba(*encode_batch(vocab, [texts[i] for i in idx]))
    return out


def classification_metrics(y_true, probs, labels, *, majority_label) -> dict:
    """Accuracy, precision/recall per label, confusion matrix [true][pred], loss, baseline.

    ``y_true`` (N,) int label indices; ``probs`` (N, C); ``labels`` the C names in index
    order; ``majority_label``: the most frequent training label (the baseline's answer).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    C, N = len(labels), len(y_true)
    pred = probs.argmax(axis=1)
    cm = np.zeros((C, C), dtype=np.int64)
    np.add.at(cm, (y_true, pred), 1)
    tp = np.diag(cm)
    col, row = cm.sum(axis=0), cm.sum(axis=1)  # predicted / true counts per label
    precision = np.divide(tp, col, out=np.zeros(C), where=col > 0)
    recall = np.divide(tp, row, out=np.zeros(C), where=row > 0)
    p_true = np.clip(probs[np.arange(N), y_true], 1e-300, None)
    return {
        "n": N,
        "accuracy": float(tp.sum() / N),
        "loss": float(-np.mean(np.log(p_true))),
        "labels": list(labels),
        "precision": {lab: float(v) for lab, v in zip(labels, precision, strict=True)},
        "recall": {lab: float(v) for lab, v in zip(labels, recall, strict=True)},
        "confusion_matrix": cm.tolist(),
        "majority_label": majority_label,
        "majority_baseline": float(np.mean(y_true == labels.index(majority_label))),
    }


def _label_ids(pairs, labels, flag) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({y for _, y in pairs if y not in index})
    if unknown:
        raise DataError(f"{flag}: labels {unknown} do not occur in the training data "
                        f"(known: {labels}) — use the training labels")  # fmt: skip
    return np.array([index[y] for _, y in pairs], dtype=np.int64)


def _evaluate(model, vocab, labels, majority, pairs, flag="--val-data") -> dict:
    y = _label_ids(pairs, labels, flag)
    return classification_metrics(y, _probs(model, vocab, [t for t, _ in pairs]), labels,
                                  majority_label=majority)  # fmt: skip


# ----------------------------------------------------------------------------- training


def _claim(run: RunDir, force: bool) -> None:
    if run.path.exists() and not run.path.is_dir():
        raise ValueError(f"--out {run.path} is a file — choose a directory")
    if run.is_run() or run.looks_foreign() or (run.path / PLOT).exists():
        if not force:
            raise ValueError(
                f"--out {run.path} is not empty (it holds a run or other files) "
                "— choose another --out, or pass --force to replace the run"
            )
        if run.looks_foreign() and not run.is_run():
            raise ValueError(f"--out {run.path} holds files that are not a run's — choose "
                             "another --out")  # fmt: skip
        for name in (*RunDir.KNOWN, PLOT):
            (run.path / name).unlink(missing_ok=True)
    run.check_writable()


def train_classifier(*, data=BUNDLED, val_data=None, val_fraction=0.1, test_fraction=0.0,
                     model="lstm", hidden=64, layers=1, bidirectional=False, dropout=0.3,
                     embedding_dim=None, batch_size=64, steps=2000, lr=3e-3, optimizer="adam",
                     clip=5.0, warmup=50, seed=0, out="runs/classify", eval_every=200,
                     force=False, quiet=True, dtype="float32", log=None) -> dict:  # fmt: skip
    """Train a :class:`SeqClassifier` and write a run directory in ``out``.

    ``data`` / ``val_data``: a path (or ``bundled:NAME``) of ``text<TAB>label`` lines,
    or a list of ``(text, label)`` pairs. Without ``val_data`` a seeded random
    ``val_fraction`` of ``data`` is held out; ``test_fraction`` > 0 first holds out a
    test split that training never sees (not even to pick the best checkpoint).
    Adam (by default) with global-norm clipping ``clip`` and a warmup + cosine learning
    rate; every ``eval_every`` steps and at the end: validation, a ``log.jsonl`` line, a
    checkpoint (the best validation loss also to ``best.safetensors``).

    Returns ``{"out", "steps", "train_seconds", "best_step", "val": metrics,
    ["test": metrics]}``, metrics of the best weights (see :func:`classification_metrics`).
    """
    log = log or sys.stderr
    steps, batch_size = positive_int("steps", steps), positive_int("batch_size", batch_size)
    eval_every = positive_int("eval_every", eval_every)
    pairs = _as_pairs(data, "--data")
    test = None
    if test_fraction:
        pairs, test = split_train_val(pairs, val_fraction=test_fraction, seed=seed + 1)
    if val_data is not None:
        val = _as_pairs(val_data, "--val-data")
    else:
        pairs, val = split_train_val(pairs, val_fraction=val_fraction, seed=seed)
    counts = Counter(y for _, y in pairs)
    labels = sorted(counts)
    if len(labels) < 2:
        raise DataError(f"the training data has only the label {labels} — a classifier needs "
                        "at least two labels")  # fmt: skip
    majority = max(labels, key=counts.__getitem__)  # ties: the first in sorted order
    vocab = Vocab.build([t for t, _ in pairs + val + (test or [])], lines_mode=True)
    y_train = _label_ids(pairs, labels, "--data")
    _label_ids(val, labels, "--val-data")
    if test:
        _label_ids(test, labels, "--data (test split)")
    net = SeqClassifier(len(vocab), len(labels), model=model, hidden=hidden, layers=layers,
                        bidirectional=bidirectional, dropout=dropout,
                        embedding_dim=embedding_dim, dtype=dtype,
                        rng=np.random.default_rng([seed, 0]))  # fmt: skip
    opt = make_optimizer(optimizer, net.params(), lr=lr)
    sched = LRSchedule(base_lr=lr, warmup_steps=min(warmup, steps), decay="cosine",
                       total_steps=steps)  # fmt: skip
    run = RunDir(Path(out))
    _claim(run, force)
    config = {"format": FORMAT, "version": 1, "task": "classify", "model": net.config(),
              "vocab": vocab.to_dict(), "labels": labels, "label_counts": dict(counts),
              "majority_label": majority,
              "train": {"batch_size": batch_size, "steps": steps, "lr": lr,
                        "optimizer": optimizer, "clip": clip, "warmup": warmup, "seed": seed,
                        "eval_every": eval_every, "val_fraction": val_fraction,
                        "test_fraction": test_fraction},
              "data": {"train": str(data) if isinstance(data, str | Path) else None,
                       "val": str(val_data) if isinstance(val_data, str | Path) else None,
                       "n_train": len(pairs), "n_val": len(val),
                       "n_test": len(test) if test else 0}}  # fmt: skip
    encoded = [vocab.encode(t) for t, _ in pairs]
    batch_rng = np.random.default_rng([seed, 1])
    order, pos = batch_rng.permutation(len(pairs)), 0
    best = {"val_loss": math.inf, "step": None}
    losses, t0 = [], time.perf_counter()

    def save(step, improved, entry):
        if entry is not None:
            run.append_log(entry)
        arrays = {f"opt.{k}": v for k, v in opt.state_arrays().items()}
        weights = net.state_dict()
        save_checkpoint(run, step=step, model_arrays=weights, trainer_arrays=arrays,
                        trainer_state={"step": step, "optimizer": opt.state_scalars(),
                                       "best_step": best["step"]},
                        config=config, best_arrays=weights if improved else None)  # fmt: skip

    save(0, False, None)
    for step in range(1, steps + 1):
        if pos + batch_size > len(order):  # a new epoch
            order, pos = batch_rng.permutation(len(pairs)), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        ids, mask = _pad([encoded[i] for i in idx], vocab.pad_id)  # (T, B) each
        opt.lr = sched.lr_at(step - 1)
        net.train().zero_grad()
        loss, _ = net.loss_and_grad(ids, mask, y_train[idx])
        if not math.isfinite(loss):
            raise ValueError(f"training diverged at step {step} (loss {loss}) — lower --lr")
        grads = net.grads()
        if clip > 0:
            clip_grad_norm(grads, clip)
        opt.step(grads)
        losses.append(loss)
        if step % eval_every == 0 or step == steps:
            m = _evaluate(net.eval(), vocab, labels, majority, val)
            improved = m["loss"] < best["val_loss"]
            if improved:
                best.update(val_loss=m["loss"], step=step)
            entry = {
                "step": step,
                "train_loss": float(np.mean(losses)),
                "val_loss": m["loss"],
                "val_accuracy": m["accuracy"],
                "lr": opt.lr,
                "best": improved,
            }
            save(step, improved, entry)
            losses = []
            if not quiet:
                print(f"step {step:>6}/{steps}  train {entry['train_loss']:.4f}  val "
                      f"{m['loss']:.4f}  val accuracy {m['accuracy']:.4f}"
                      f"{'  (best)' if improved else ''}", file=log, flush=True)  # fmt: skip
    secs = time.perf_counter() - t0
    net.load_state_dict(load_model(run, best=True)[1])
    res = {
        "out": str(run.path),
        "steps": steps,
        "train_seconds": round(secs, 2),
        "best_step": best["step"],
        "val": _evaluate(net.eval(), vocab, labels, majority, val),
    }
    if test:
        res["test"] = _evaluate(net, vocab, labels, majority, test, "--data (test split)")
    return res


# ----------------------------------------------------------------------------- using a run


def is_classifier_run(run_dir) -> bool:
    """Whether ``run_dir/config.json`` says ``"format": "nprnn-classifier"``."""
    try:
        with open(Path(run_dir) / RunDir.CONFIG, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("format") == FORMAT


def load_classifier(run_dir, *, which: str = "best"):
    """``(model, vocab, config)`` of a classifier run (``which``: ``best`` or ``last``)."""
    run = RunDir(Path(run_dir))
    if not run.is_run():
        raise CheckpointError(f"{run_dir} is not a run directory (no config.json) — pass the "
                              "--out directory of nprnn train --task classify")  # fmt: skip
    cfg, weights = load_model(run, best=which == "best")
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else None
        raise CheckpointError(f"{run_dir} holds no classifier (format {got!r}) — pass a "
                              "directory written by nprnn train --task classify")  # fmt: skip
    try:
        vocab = Vocab.from_dict(cfg["vocab"])
        model = SeqClassifier.from_config(cfg["model"])
        if model.n_labels != len(cfg["labels"]) or model.vocab_size != len(vocab):
            raise ValueError("the label or vocabulary sizes disagree with the model")
        model.load_state_dict(weights)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"the run in {run_dir} does not fit its config ({e}) — it is "
                              "damaged or foreign; retrain it") from None  # fmt: skip
    return model.eval(), vocab, cfg


def evaluate_classifier(run_dir, data, *, which: str = "best") -> dict:
    """Metrics (:func:`classification_metrics`) of a run on ``data`` (path or pairs)."""
    model, vocab, cfg = load_classifier(run_dir, which=which)
    pairs = _as_pairs(data, "--data")
    return _evaluate(model, vocab, cfg["labels"], cfg["majority_label"], pairs, "--data")


def predict(run_dir, texts, *, which: str = "best") -> list[dict]:
    """For each text, ``{label: probability}`` (in the run's label order; sums to 1)."""
    model, vocab, cfg = load_classifier(run_dir, which=which)
    texts = list(texts)
    if not texts:
        raise DataError("no text to classify — pass at least one")
    probs = _probs(model, vocab, texts)
    return [{lab: float(p) for lab, p in zip(cfg["labels"], row, strict=True)} for row in probs]


# ----------------------------------------------------------------------------- command lines


def main_train(argv=None) -> int:
    """``nprnn train --task classify [--data FILE] ...``: train, print one JSON line."""
    p = make_parser(
        "nprnn train --task classify",
        "Train a sequence classifier on "
        "'text<TAB>label' lines (default: the bundled first names and genders).",
    )
    a = p.add_argument
    a("--task", choices=("classify",), default="classify", help="what to train")
    a("--data", default=BUNDLED, help="training file of text<TAB>label lines, UTF-8")
    a("--val-data", help="validation file (default: hold out --val-fraction of --data)")
    a("--val-fraction", type=float, default=0.1, help="share of --data held out for validation")
    a(
        "--test-fraction",
        type=float,
        default=0.0,
        help="share of --data held out first as a test set, never used in training",
    )
    a("--model", choices=tuple(MODELS), default="lstm", help="recurrent cell")
    a("--hidden", type=int, default=64, help="hidden size (also the embedding size)")
    a("--layers", type=int, default=1, help="recurrent layers")
    a("--bidirectional", action="store_true", help="read the text both ways")
    a("--dropout", type=float, default=0.3, help="dropout between layers and before the head")
    a("--batch-size", type=int, default=64, help="texts per batch")
    a("--steps", type=int, default=2000, help="training steps")
    a("--lr", type=float, default=3e-3, help="peak learning rate")
    a("--optimizer", choices=("sgd", "adam", "adamw", "adagrad", "rmsprop"), default="adam")
    a("--clip", type=float, default=5.0, help="global gradient-norm clip (0: off)")
    a("--warmup", type=int, default=50, help="linear learning-rate warmup steps")
    a("--seed", type=int, default=0, help="seed of the initialisation, split, shuffling")
    a("--dtype", choices=("float32", "float64"), default="float32", help="float precision")
    a("--out", help="run directory (default: runs/<data>-<model>)")
    a("--force", action="store_true", help="replace the run in --out")
    a("--eval-every", type=int, default=200, help="evaluate and checkpoint every N steps")
    a("--quiet", action="store_true", help="no per-evaluation lines on stderr")
    args = p.parse_args(argv)
    for flag in ("val_fraction", "test_fraction"):
        v = getattr(args, flag)
        if not 0 <= v < 1 or (flag == "val_fraction" and v == 0):
            raise ValueError(f"--{flag.replace('_', '-')} must lie in (0, 1), got {v}")
    for flag in ("hidden", "layers", "batch_size", "steps", "eval_every"):
        positive_int("--" + flag.replace("_", "-"), getattr(args, flag))
    if args.seed < 0 or args.warmup < 0 or args.clip < 0 or not args.lr > 0:
        raise ValueError("--seed, --warmup and --clip must be >= 0 and --lr > 0")
    stem = Path(args.data.removeprefix("bundled:")).stem
    out = args.out or f"runs/{stem}-{args.model}"
    res = train_classifier(
        data=args.data, val_data=args.val_data, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, model=args.model, hidden=args.hidden,
        layers=args.layers, bidirectional=args.bidirectional, dropout=args.dropout,
        batch_size=args.batch_size, steps=args.steps, lr=args.lr, optimizer=args.optimizer,
        clip=args.clip, warmup=args.warmup, seed=args.seed, out=out,
        eval_every=args.eval_every, force=args.force, quiet=args.quiet, dtype=args.dtype,
    )  # fmt: skip
    try:
        from .viz import plot_log

        plot_log(RunDir(out).read_log(), Path(out) / PLOT, title=Path(out).name)
    except ValueError:  # no matplotlib: the plot is optional here
        pass
    print(json.dumps(res))
    return 0


def main_predict(argv=None) -> int:
    """``nprnn predict DIR TEXT...``: one JSON line per text with its label probabilities."""
    p = make_parser(
        "nprnn predict",
        "Label texts with a trained classifier; prints one JSON "
        "line per text: the text, the most likely label and all probabilities.",
    )
    p.add_argument("dir", metavar="DIR", help="run directory of nprnn train --task classify")
    p.add_argument("texts", metavar="TEXT", nargs="+", help="texts to classify")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    args = p.parse_args(argv)
    for text, probs in zip(args.texts, predict(args.dir, args.texts, which=args.checkpoint),
                           strict=True):  # fmt: skip
        print(json.dumps({"text": text, "label": max(probs, key=probs.get), "probs": probs},
                         ensure_ascii=False))  # fmt: skip
    return 0


def main_eval(argv=None) -> int:
    """``nprnn eval DIR --data FILE`` for a classifier run: one JSON line of metrics."""
    p = make_parser("nprnn eval", "Evaluate a classifier run on text<TAB>label lines.")
    p.add_argument("dir", metavar="DIR", help="run directory of nprnn train --task classify")
    p.add_argument("--data", required=True, help="file of text<TAB>label lines, UTF-8")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    args = p.parse_args(argv)
    print(json.dumps(evaluate_classifier(args.dir, args.data, which=args.checkpoint),
                     ensure_ascii=False))  # fmt: skip
    return 0
