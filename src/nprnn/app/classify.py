"""Sequence classification (many-to-one) as a training run: ``nprnn train --task
classify``, ``nprnn eval`` / ``nprnn predict`` on a classifier run, and the same from
Python (:func:`train_classifier`, :func:`evaluate_classifier`, :func:`predict`).

Training runs the shared loop of :mod:`.train` (so ``--resume``, ``--patience``,
``--decay``, Ctrl-C and divergence behave as for the language model) and writes a run
directory whose ``config.json`` has ``"format": "nprnn-classifier"``, the labels, their
training counts, the vocabulary, the model and the options; ``log.jsonl`` has
``val_accuracy`` too. The model, its data and metrics are in :mod:`.classifier`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from nprnn import distributed as dist
from nprnn.validation import (
    positive_int,
)

from . import commands
from . import options as O
from .batches import EpochBatcher, fingerprint
from .classifier import (
    EVAL_BATCH,
    SeqClassifier,
    as_pairs,
    evaluate_pairs,
    label_ids,
    pad_ids,
    probabilities,
    read_labeled_text,
)
from .declare import stored
from .errors import DataError, UsageError
from .lm import text_sha256
from .load import VERSIONS, read_run
from .memory import check_fits, params_bytes, step_bytes
from .runs import RunDir
from .text import Vocab, split_train_val
from .train import Objective

__all__ = [
    "ClassifierObjective",
    "train_classifier",
    "is_classifier_run",
    "load_classifier",
    "evaluate_classifier",
    "predict",
    "cmd_train",
    "cmd_eval",
    "cmd_predict",
    "FORMAT",
    "BUNDLED",
]

FORMAT = "nprnn-classifier"
VERSION = VERSIONS[FORMAT]
BUNDLED = "bundled:first_names_gender.tsv"


# ----------------------------------------------------------------------------- training


class _TextBatcher(EpochBatcher):
    """Shuffled batches of encoded texts, an epoch's incomplete last batch left out:
    ``(ids (T, B), mask (T, B), labels (B,))``."""

    kind = "examples"

    def __init__(self, encoded, labels, *, batch_size, rng, pad_id):
        self._encoded, self._labels, self._pad_id = encoded, labels, pad_id
        fp = fingerprint([*(s.tobytes() for s in encoded), labels.tobytes()])
        super().__init__(
            len(encoded), batch_size=batch_size, rng=rng, fingerprint=fp, drop_last=True
        )

    def next_batch(self):
        idx = self.next_indices()
        ids, mask = pad_ids([self._encoded[i] for i in idx], self._pad_id)  # (T, B) each
        return ids, mask, self._labels[idx]


class ClassifierObjective(Objective):
    """Cross-entropy of the label of each text; validation loss and accuracy."""

    unit = "texts"

    def __init__(self, model, vocab, labels, train_pairs, val_pairs, *, batch_size, seed):
        self.model, self.vocab, self.labels = model, vocab, labels
        self.val_texts = [t for t, _ in val_pairs]
        self.val_y = label_ids(val_pairs, labels, "--val-data")
        y = label_ids(train_pairs, labels, "--data")
        encoded = [vocab.encode(t) for t, _ in train_pairs]
        self.batcher = _TextBatcher(
            encoded,
            y,
            batch_size=batch_size,
            rng=np.random.default_rng([seed, 1]),
            pad_id=vocab.pad_id,
        )

    def loss_and_grad(self, batch, carry):
        ids, mask, y = batch
        loss, _ = self.model.loss_and_grad(ids, mask, y)
        return loss, len(y), None

    def evaluate(self, part: int = 0, parts: int = 1) -> dict:
        probs = probabilities(self.model, self.vocab, self.val_texts, part=part, parts=parts)
        done = probs.sum(axis=1) > 0
        y, p = self.val_y[done], probs[done]
        p_true = np.clip(p[np.arange(len(y)), y], 1e-300, None)
        n = int(len(y))
        return {
            "loss": (float(-np.log(p_true).sum()), n),
            "accuracy": (float(np.sum(p.argmax(axis=1) == y)), n),
        }

    def batch_axes(self, batch) -> tuple:
        return (1, 1, 0)


def _data_section(data, val_data, pairs, val, test) -> dict:
    def path(d):
        return str(d) if isinstance(d, str | Path) else None

    def sha(d):
        return text_sha256(read_labeled_text(d, "--data")) if isinstance(d, str | Path) else None

    return {
        "train": path(data),
        "val": path(val_data),
        "train_sha256": sha(data),
        "val_sha256": sha(val_data),
        "n_train": len(pairs),
        "n_val": len(val),
        "n_test": len(test) if test else 0,
    }


def _prepare(opts, prev):
    pairs = as_pairs(opts.data, "--data")
    test = None
    if opts.test_fraction:
        pairs, test = split_train_val(pairs, val_fraction=opts.test_fraction, seed=opts.seed + 1)
    if opts.val_data is not None:
        val = as_pairs(opts.val_data, "--val-data")
    else:
        pairs, val = split_train_val(pairs, val_fraction=opts.val_fraction, seed=opts.seed)
    counts = Counter(y for _, y in pairs)
    labels = sorted(counts)
    if len(labels) < 2:
        raise DataError(
            f"the training data has only the label {labels}",
            "a classifier needs at least two labels",
        )
    majority = max(labels, key=counts.__getitem__)  # ties: the first in sorted order
    if prev is not None:
        vocab = prev.vocab
        if labels != prev.extra["labels"]:
            raise UsageError(
                f"the --data labels {labels} differ from the run's {prev.extra['labels']}",
                "pass the same data, or start a new run",
            )
    else:
        vocab = Vocab.build([t for t, _ in pairs + val + (test or [])], lines_mode=True)
    label_ids(val, labels, "--val-data")
    if test:
        label_ids(test, labels, "--data (test split)")
    return pairs, val, test, labels, majority, counts, vocab


def _build(opts, prev, holder: dict):
    pairs, val, test, labels, majority, counts, vocab = _prepare(opts, prev)
    record = _data_section(opts.data, opts.val_data, pairs, val, test)
    if prev is not None:
        for key, fl in (("train_sha256", "--data"), ("val_sha256", "--val-data")):
            if record[key] != prev.config["data"].get(key):
                raise UsageError(
                    f"the {fl} data differs from the one the run in {opts.out} was trained on",
                    "pass the same file, or start a new run",
                )
    cfg = {
        "vocab_size": len(vocab),
        "n_labels": len(labels),
        "model": opts.model,
        "hidden": opts.hidden,
        "layers": opts.layers,
        "bidirectional": opts.bidirectional,
        "dropout": opts.dropout,
        "embedding_dim": None,
        "dtype": opts.dtype,
    }
    n_params = sum(math.prod(s) for s in SeqClassifier.param_shapes(cfg).values())
    item = np.dtype(opts.dtype).itemsize
    T = max(len(t) for t, _ in pairs + val + (test or []))
    kw = dict(
        cell=opts.model,
        hidden=opts.hidden,
        layers=opts.layers,
        T=T,
        directions=2 if opts.bidirectional else 1,
        n_params=n_params,
        itemsize=item,
        procs=opts.procs,  # resolved before any build (commands.train)
    )
    need = params_bytes(n_params, itemsize=item, optimizer=opts.optimizer, procs=opts.procs) + max(
        step_bytes(B=opts.batch_size, **kw), step_bytes(B=EVAL_BATCH, **kw) // 2
    )
    check_fits(
        need,
        what=f"a training step on texts of up to {T:,} characters ({n_params:,} parameters)",
        fix="pass shorter texts, or a smaller --batch-size, --hidden or --layers",
    )
    net = (
        prev.model
        if prev is not None
        else SeqClassifier(
            len(vocab),
            len(labels),
            model=opts.model,
            hidden=opts.hidden,
            layers=opts.layers,
            bidirectional=opts.bidirectional,
            dropout=opts.dropout,
            dtype=opts.dtype,
            rng=np.random.default_rng([opts.seed, 0]),
        )
    )
    config = {
        "format": FORMAT,
        "version": VERSION,
        "task": "classify",
        "model": net.config(),
        "vocab": vocab.to_dict(),
        "labels": labels,
        "label_counts": dict(counts),
        "majority_label": majority,
        "train": stored(opts)["train"],
        "data": record,
    }
    objective = ClassifierObjective(
        net, vocab, labels, pairs, val, batch_size=opts.batch_size, seed=opts.seed
    )
    holder.update(vocab=vocab, labels=labels, majority=majority, val=val, test=test)
    start = (
        f"{{verb}}: {net.model} classifier, hidden {net.hidden} x {net.num_layers} "
        f"layer(s){', bidirectional' if net.bidirectional else ''}, {len(labels)} labels, "
        f"{len(pairs):,} texts -> {opts.out}"
    )
    return commands.Built(objective, config, start)


def _run(opts, given: set) -> tuple[int, dict | None]:
    """Train (or resume); ``(exit status, result dict or None)``."""
    if opts.out is None:
        data = opts.data if isinstance(opts.data, str | Path) else "classify"
        opts.out = f"runs/{Path(str(data).removeprefix('bundled:')).stem}-{opts.model}"
    if opts.resume and "data" not in given:
        prev_cfg = _peek_config(opts.out)
        if prev_cfg is not None:
            opts.data = prev_cfg.get("data", {}).get("train") or opts.data
            opts.val_data = opts.val_data or prev_cfg.get("data", {}).get("val")
    holder: dict = {}
    result, trainer, run, _ = commands.train_and_plot(
        opts,
        given,
        kind=FORMAT,
        out=opts.out,
        build=lambda o, p: _build(o, p, holder),
        resume_hint=f"nprnn train --task classify --out {opts.out} --resume",
    )
    if not trainer.parallel.writes:  # another MPI rank: rank 0 reports
        return commands.silent_status(result), None
    status = commands.exit_status(result, True)
    if status is not None:
        return status, None
    net = trainer.model
    net.load_state_dict(read_run(run, "best", FORMAT).model.state_dict())
    v, labels, majority = holder["vocab"], holder["labels"], holder["majority"]
    res = {
        "out": str(run.path),
        "steps": result.step,
        "best_step": result.best_step,
        "val": evaluate_pairs(net.eval(), v, labels, majority, holder["val"]),
    }
    if holder["test"]:
        res["test"] = evaluate_pairs(
            net, v, labels, majority, holder["test"], "--data (test split)"
        )
    return 0, res


def _peek_config(out) -> dict | None:
    try:
        with open(Path(out) / RunDir.CONFIG, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def train_classifier(*, data=BUNDLED, out="runs/classify", quiet=True, **kw) -> dict:
    """Train a :class:`SeqClassifier` into the run directory ``out`` (as ``nprnn train
    --task classify``; keyword arguments are its options, e.g. ``steps=200``,
    ``resume=True``). ``data`` / ``val_data``: a path (or ``bundled:NAME``) of
    ``text<TAB>label`` lines, or a list of ``(text, label)`` pairs.

    Returns ``{"out", "steps", "best_step", "val": metrics, ["test": metrics]}``, the
    metrics of the best weights (see :func:`classification_metrics`). A run that
    diverges or is interrupted raises :class:`UsageError` saying so. Under ``mpiexec``
    the ranks other than 0 return None (rank 0 reports).
    """
    opts = O.TrainClassifier(data=data, out=str(out), quiet=quiet, **kw)
    given = {"data", "out", "quiet", *kw}
    for f in ("steps", "batch_size", "eval_every", "hidden", "layers"):
        positive_int(f, getattr(opts, f))
    status, res = _run(opts, given)
    if res is None and not (status == 0 and dist.rank() != 0):  # MPI: rank 0 has res
        raise UsageError(
            f"training did not finish (exit status {status})",
            f"continue with train_classifier(out={str(out)!r}, resume=True)",
        )
    return res


# ----------------------------------------------------------------------------- using a run


def is_classifier_run(run_dir) -> bool:
    """Whether ``run_dir/config.json`` says ``"format": "nprnn-classifier"``."""
    cfg = _peek_config(run_dir)
    return cfg is not None and cfg.get("format") == FORMAT


def load_classifier(run_dir, *, which: str = "best"):
    """``(model, vocab, config)`` of a classifier run (``which``: ``best`` or ``last``)."""
    loaded = read_run(RunDir(Path(run_dir)), which, FORMAT)
    return loaded.model.eval(), loaded.vocab, loaded.config


def evaluate_classifier(run_dir, data, *, which: str = "best") -> dict:
    """Metrics (:func:`classification_metrics`) of a run on ``data`` (path or pairs)."""
    model, vocab, cfg = load_classifier(run_dir, which=which)
    return evaluate_pairs(
        model, vocab, cfg["labels"], cfg["majority_label"], as_pairs(data, "--data"), "--data"
    )


def predict(run_dir, texts, *, which: str = "best") -> list[dict]:
    """For each text, ``{label: probability}`` (in the run's label order; sums to 1)."""
    model, vocab, cfg = load_classifier(run_dir, which=which)
    texts = list(texts)
    if not texts:
        raise DataError("no text to classify", "pass at least one")
    probs = probabilities(model, vocab, texts)
    return [{lab: float(p) for lab, p in zip(cfg["labels"], row, strict=True)} for row in probs]


# ----------------------------------------------------------------------------- commands


def cmd_train(opts, given: set) -> int:
    """``nprnn train --task classify``: train, print one JSON line of metrics."""
    status, res = _run(opts, given)
    if res is not None:
        print(json.dumps(res))
    return status


def cmd_eval(opts, given: set) -> int:
    """``nprnn eval DIR --data FILE`` on a classifier run: one JSON line of metrics."""
    print(
        json.dumps(
            evaluate_classifier(opts.dir, opts.data, which=opts.checkpoint), ensure_ascii=False
        )
    )
    return 0


def cmd_predict(opts, given: set) -> int:
    """``nprnn predict DIR TEXT...``: one JSON line per text with its label probabilities."""
    for text, probs in zip(
        opts.texts, predict(opts.dir, opts.texts, which=opts.checkpoint), strict=True
    ):
        print(
            json.dumps(
                {"text": text, "label": max(probs, key=probs.get), "probs": probs},
                ensure_ascii=False,
            )
        )
    return 0
