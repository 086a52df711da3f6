"""The sequence classifier: its data (``text<TAB>label`` lines), model and metrics.

Data: UTF-8 lines ``text<TAB>label`` (split at the last tab; empty lines skipped).

Model (:class:`SeqClassifier`, an :class:`nprnn.module.Module` of public parts), for a
padded batch of B texts of length ≤ T::

    e_t  = E[x_t]                                     (T, B, D_e)  embedding
    hᴸ   = final state of the last layer of an RNN | LSTM | GRU stack over e with the
           padding mask: each text's state after its last real character; with
           bidirectional=True the forward and reverse final states are concatenated
                                                      (B, D·H)
    z    = W · drop(hᴸ) + b                           (B, C)    logits, C labels
    L    = mean_b −log softmax(z_b)[y_b]

Backward: dL/dz → head → dL/dhᴸ is the gradient of the final state of the last layer
(dout = 0 everywhere, dstate = 0 for the other layers) → the stack → embedding.

Metrics (:func:`classification_metrics`): accuracy, per-class precision and recall (0
when the class is never predicted / absent), the confusion matrix ``[true][predicted]``
in the order of ``labels``, and ``majority_baseline``: the accuracy of always answering
the most frequent training label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import nprnn
from nprnn.grad_mode import no_grad
from nprnn.module import Module
from nprnn.validation import (
    as_float_dtype,
    as_rng,
    format_shape,
    one_of,
    positive_int,
    real_in_range,
)

from .errors import DataError
from .lm import bundled_path
from .models import MODELS, embedded_backward, embedded_forward
from .models import param_shapes as _stack_shapes
from .text import Vocab, read_text

__all__ = [
    "SeqClassifier",
    "read_labeled",
    "read_labeled_text",
    "as_pairs",
    "encode_batch",
    "pad_ids",
    "probabilities",
    "classification_metrics",
    "label_ids",
    "evaluate_pairs",
    "EVAL_BATCH",
]

EVAL_BATCH = 256


# ----------------------------------------------------------------------------- data


def _parse_labeled(text: str, name: str) -> list[tuple[str, str]]:
    pairs = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(
                f"{name} line {n} has no tab: expected 'text<TAB>label'",
                "separate the text and its label with a tab",
            )
        t, label = line.rsplit("\t", 1)
        if not t or not label.strip():
            raise DataError(
                f"{name} line {n} has an empty {'text' if not t else 'label'}",
                "every line needs 'text<TAB>label'",
            )
        pairs.append((t, label.strip()))
    if not pairs:
        raise DataError(f"{name} holds no 'text<TAB>label' line", "pass a labelled file")
    return pairs


def read_labeled_text(path, flag: str) -> str:
    path = str(path)
    if path.startswith("bundled:"):
        with bundled_path(path.removeprefix("bundled:")) as p:
            return read_text(p, flag=flag)
    return read_text(path, flag=flag)


def read_labeled(path, *, flag: str = "--data") -> list[tuple[str, str]]:
    """``[(text, label)]`` from a UTF-8 file of ``text<TAB>label`` lines (``bundled:NAME``
    reads a bundled corpus). Bad lines raise :class:`DataError` naming the line."""
    return _parse_labeled(read_labeled_text(path, flag), repr(str(path)))


def as_pairs(data, flag: str) -> list[tuple[str, str]]:
    """``data`` (a path, ``bundled:NAME``, or (text, label) pairs) as a list of pairs."""
    if isinstance(data, str | Path):
        return read_labeled(data, flag=flag)
    pairs = [(str(t), str(y)) for t, y in data]
    if not pairs:
        raise DataError(f"{flag}: no labelled examples", "pass at least one text<TAB>label")
    if any(not t for t, _ in pairs):
        raise DataError(f"{flag}: an example has an empty text", "give every example a text")
    return pairs


def encode_batch(vocab: Vocab, texts) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (T, B) int64, mask (T, B) bool)``, right-padded with ``<pad>``; T = longest."""
    seqs = [vocab.encode(t) for t in texts]
    if any(len(s) == 0 for s in seqs):
        raise DataError("cannot classify an empty text", "pass at least one character")
    return pad_ids(seqs, vocab.pad_id or 0)


def pad_ids(seqs, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    T, B = max(len(s) for s in seqs), len(seqs)
    ids = np.full((T, B), pad_id, dtype=np.int64)  # (T, B)
    mask = np.zeros((T, B), dtype=bool)  # (T, B)
    for b, s in enumerate(seqs):
        ids[: len(s), b], mask[: len(s), b] = s, True
    return ids, mask


# ----------------------------------------------------------------------------- the model


class SeqClassifier(Module):
    """Embedding → recurrent stack → final state(s) of the last layer → Linear.

    ``SeqClassifier(vocab_size, n_labels, *, model="lstm", hidden=64, layers=1,
    bidirectional=False, dropout=0.0, embedding_dim=None, dtype=np.float32, rng=None)``;
    ``embedding_dim=None`` uses ``hidden``. ``dropout`` acts between stacked layers and
    on the features before the head, in training mode only. Parameter names:
    ``embedding.weight``, ``rnn.weight_ih_l0`` ..., ``head.weight``, ``head.bias``.
    """

    def __init__(
        self,
        vocab_size,
        n_labels,
        *,
        model="lstm",
        hidden=64,
        layers=1,
        bidirectional=False,
        dropout=0.0,
        embedding_dim=None,
        dtype=np.float32,
        rng=None,
    ):
        super().__init__(as_float_dtype(dtype))
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.n_labels = positive_int("n_labels", n_labels, minimum=2)
        self.model = one_of("model", model, tuple(MODELS))
        self.hidden = positive_int("hidden", hidden)
        self.num_layers = positive_int("layers", layers)
        self.bidirectional = bool(bidirectional)
        self.dropout = real_in_range("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim or self.hidden)
        self.rng = as_rng(rng)
        D, dt = (2 if self.bidirectional else 1), self.dtype
        self.embedding = nprnn.Embedding(
            self.vocab_size, self.embedding_dim, dtype=dt, rng=self.rng
        )
        self.rnn = MODELS[self.model](
            self.embedding_dim,
            self.hidden,
            self.num_layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout if self.num_layers > 1 else 0.0,
            dtype=dt,
            rng=self.rng,
        )
        self.head = nprnn.Linear(D * self.hidden, self.n_labels, dtype=dt, rng=self.rng)

    def config(self) -> dict:
        """The architecture as a JSON-able dict (``from_config`` rebuilds it)."""
        return {
            "vocab_size": self.vocab_size,
            "n_labels": self.n_labels,
            "model": self.model,
            "hidden": self.hidden,
            "layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
            "embedding_dim": self.embedding_dim,
            "dtype": self.dtype.name,
        }

    @staticmethod
    def param_shapes(cfg: dict) -> dict:
        """``{name: shape}`` of the model ``cfg`` describes, without building it."""
        V, C, H = (positive_int(k, cfg[k]) for k in ("vocab_size", "n_labels", "hidden"))
        L = positive_int("layers", cfg["layers"])
        E = positive_int("embedding_dim", cfg.get("embedding_dim") or H)
        D = 2 if cfg["bidirectional"] else 1
        model = one_of("model", cfg["model"], tuple(MODELS))
        shapes = {"embedding.weight": (V, E), **_stack_shapes(model, E, H, L, directions=D)}
        shapes["head.weight"], shapes["head.bias"] = (C, D * H), (C,)
        return shapes

    @classmethod
    def from_config(cls, cfg: dict, *, rng=None, weights=None) -> SeqClassifier:
        """Build from :meth:`config`'s dict; ``weights`` are compared with it first."""
        if not isinstance(cfg, dict):
            raise TypeError(f"model config must be a dict, got {type(cfg).__name__}")
        if weights is not None:
            shapes = cls.param_shapes(cfg)
            bad = sorted(set(shapes) ^ set(weights)) or [
                k for k, s in shapes.items() if tuple(np.shape(weights[k])) != s
            ]
            if bad:
                k = bad[0]
                got = format_shape(np.shape(weights[k])) if k in weights else "missing"
                raise ValueError(
                    f"the weights do not fit this model: {k} is {got}, expected "
                    f"{format_shape(shapes[k]) if k in shapes else 'nothing'}"
                )
        c = dict(cfg)
        model = cls(c.pop("vocab_size"), c.pop("n_labels"), **c, rng=rng)
        if weights is not None:
            model.load_state_dict(weights)
        return model

    # ------------------------------------------------------------------ forward / backward

    def forward(self, ids, mask) -> np.ndarray:
        """(T, B) ids and mask → logits (B, C); outside no_grad keeps what backward needs."""
        L, D = self.num_layers, (2 if self.bidirectional else 1)
        _, state, embedded = embedded_forward(self.embedding, self.rnn, ids, None, mask)
        h_n = state[0] if isinstance(state, tuple) else state  # (D·L, B, H)
        feat = np.concatenate(list(h_n[(L - 1) * D :]), axis=1)  # (B, D·H), forward half first
        drop = None
        if self.training and self.dropout > 0:
            keep = self.rng.random(feat.shape, dtype=self.dtype) >= self.dropout
            drop = keep * self.dtype.type(1.0 / (1.0 - self.dropout))  # (B, D·H)
            feat = feat * drop
        self._save_for_backward((drop, embedded))
        return self.head(feat)

    logits = forward

    def backward(self, dlogits) -> None:
        """Gradients of the latest pending forward, accumulated into ``grads``."""
        drop, embedded = self._saved_for_backward()
        L, D, H = self.num_layers, (2 if self.bidirectional else 1), self.hidden
        dfeat = self.head.backward(dlogits)  # (B, D·H)
        if drop is not None:
            dfeat = dfeat * drop
        B = dfeat.shape[0]
        dh_n = np.zeros((D * L, B, H), dtype=self.dtype)
        for d in range(D):
            dh_n[(L - 1) * D + d] = dfeat[:, d * H : (d + 1) * H]
        n_states = len(self.rnn.cell.states)  # the LSTM's c gets no gradient from the head
        dx, _ = self.rnn.backward(
            None, dh_n if n_states == 1 else (dh_n,) + (None,) * (n_states - 1)
        )
        embedded_backward(self.embedding, dx, embedded)

    def loss_and_grad(self, ids, mask, labels) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of a batch; adds the gradients into ``grads``."""
        z = self.forward(ids, mask)
        loss, dz = nprnn.softmax_cross_entropy(z, labels)
        self.backward(dz)
        return float(loss), float(np.mean(z.argmax(axis=1) == labels))

    def predict_proba(self, ids, mask) -> np.ndarray:
        """softmax(logits) (B, C) in evaluation mode (no dropout), float64."""
        was = self.training
        self.eval()
        try:
            with no_grad():
                z = self.forward(ids, mask).astype(np.float64)
        finally:
            self.train(was)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- metrics


def probabilities(model, vocab, texts, batch_size=EVAL_BATCH, part=0, parts=1) -> np.ndarray:
    """(N, C) probabilities, in batches of texts of similar length (order kept); with
    ``parts`` > 1 only the batches ``i % parts == part`` are computed (others are 0)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.n_labels))
    for i, s in enumerate(range(0, len(texts), batch_size)):
        if i % parts == part:
            idx = order[s : s + batch_size]
            out[idx] = model.predict_proba(*encode_batch(vocab, [texts[j] for j in idx]))
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


def label_ids(pairs, labels, flag) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({y for _, y in pairs if y not in index})
    if unknown:
        raise DataError(
            f"{flag}: labels {unknown} do not occur in the training data (known: {labels})",
            "use the training labels",
        )
    return np.array([index[y] for _, y in pairs], dtype=np.int64)


def evaluate_pairs(model, vocab, labels, majority, pairs, flag="--val-data") -> dict:
    """:func:`classification_metrics` of ``model`` on (text, label) ``pairs``."""
    y = label_ids(pairs, labels, flag)
    return classification_metrics(
        y, probabilities(model, vocab, [t for t, _ in pairs]), labels, majority_label=majority
    )
