"""The language model's data, objective and scoring (what ``nprnn train`` trains and
``nprnn eval`` measures).

Data (:func:`prepare`): the training text (a file or the bundled first names), the
validation text or a held-out share, lines longer than ``--max-len`` split, the
vocabulary built (or taken from the run being resumed).

Scoring (:func:`score_text`): the mean cross-entropy in nats per predicted token, in
either reading of a text, whatever the run's mode:

- *lines*: every non-empty line from a zero state, read as start + characters,
  predicting characters + end (a lines-mode run has ``<bos>``/``<eos>``; a stream-mode
  run uses its newline character as both);
- *stream*: the whole text as one sequence with the state carried across chunks (a
  lines-mode run reads it as ``<bos> line <eos> <bos> line <eos> ...``, predicting every
  character and every ``<eos>``, never the ``<bos>`` after it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from nprnn import softmax_cross_entropy

from .batches import LinesBatcher, StreamBatcher, iter_eval_stream, pack_sequences
from .errors import DataError
from .text import Vocab, read_text, split_long_lines, split_text, split_train_val
from .train import Objective

__all__ = [
    "BUNDLED",
    "text_sha256",
    "LMData",
    "prepare",
    "LMObjective",
    "score",
    "score_text",
    "evaluate",
    "bundled_path",
]

BUNDLED = "bundled:first_names.txt"


def bundled_path(name: str):
    """A context manager giving the path of the bundled corpus ``name``."""
    return resources.as_file(resources.files("nprnn.app") / "corpora" / name)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class LMData:
    """The prepared data of a run: train/val (lines or id arrays), vocabulary, records."""

    train: list | np.ndarray
    val: list | np.ndarray
    vocab: Vocab
    record: dict  # config.json's "data" section
    label: str  # what the training data is called in messages
    longest: int  # lines mode: the longest line (train or val), in characters
    n_split: int  # lines mode: lines cut by --max-len


def _read(data, val_data):
    if data is None or data == BUNDLED:
        with bundled_path(BUNDLED.removeprefix("bundled:")) as p:
            text = read_text(p)
        label = BUNDLED
    else:
        text, label = read_text(data, flag="--data"), str(Path(data).resolve())
    val = read_text(val_data, flag="--val-data") if val_data else None
    return text, val, label


def prepare(
    *,
    data,
    val_data,
    mode: str,
    val_fraction: float,
    seed: int,
    max_len=None,
    vocab: Vocab | None = None,
) -> LMData:
    """Read, split and encode the data of a run (see the module docstring); ``vocab``:
    the vocabulary of the run being resumed (unseen characters are then an error)."""
    text, val_text, label = _read(data, val_data)
    record = {
        "train": label,
        "val": str(Path(val_data).resolve()) if val_data else None,
        "train_sha256": text_sha256(text),
        "val_sha256": text_sha256(val_text) if val_text else None,
    }
    lines_mode = mode == "lines"
    if lines_mode:
        lines = [ln for ln in text.split("\n") if ln]
        if val_text is not None:
            train, val = lines, [ln for ln in val_text.split("\n") if ln]
            if not val:
                raise DataError("--val-data holds no non-empty line", "pass a file with lines")
        else:
            train, val = split_train_val(lines, val_fraction=val_fraction, seed=seed)
        train, n1 = split_long_lines(train, max_len)
        val, n2 = split_long_lines(val, max_len)
        everything = [*train, *val]
    else:
        train, val = (
            (text, val_text)
            if val_text is not None
            else split_text(text, val_fraction=val_fraction)
        )
        everything, n1, n2 = [train, val], 0, 0
    if vocab is None:
        vocab = Vocab.build(everything, lines_mode=lines_mode)
    if lines_mode:  # unseen characters fail now, not after training
        vocab.encode("".join(everything))
        longest = max(len(s) for s in everything)
    else:
        train, val = vocab.encode(train), vocab.encode(val)
        longest = 0
        if len(val) < 2:
            raise DataError(
                "the validation text needs at least 2 characters",
                "pass a longer --val-data or a larger --val-fraction",
            )
    return LMData(train, val, vocab, record, label.removeprefix("bundled:"), longest, n1 + n2)


# ----------------------------------------------------------------------------- objective


class LMObjective(Objective):
    """Next-character prediction with :class:`~nprnn.app.charlm.CharLM`: lines mode
    (padded, masked batches of lines) or stream mode (truncated BPTT, the state carried
    from batch to batch and saved with every checkpoint)."""

    unit = "chars"

    def __init__(
        self,
        model,
        vocab: Vocab,
        train,
        val,
        *,
        mode: str,
        batch_size: int,
        seq_len: int | None,
        seed: int,
    ):
        self.model, self.vocab, self.mode, self.val = model, vocab, mode, val
        self.batch_size, self.seq_len = batch_size, seq_len
        if mode == "lines":
            rng = np.random.default_rng([seed, 1])
            self.batcher = LinesBatcher(train, vocab, batch_size=batch_size, rng=rng)
        else:
            self.batcher = StreamBatcher(train, batch_size=batch_size, seq_len=seq_len)

    def loss_and_grad(self, batch, carry):
        if self.mode == "lines":
            inputs, targets, mask = batch
            state = None
        else:
            inputs, targets, reset = batch
            mask, state = None, (None if reset else carry)
        loss, new_state = self.model.loss_and_grad(inputs, targets, mask, state)
        n = int(np.count_nonzero(mask)) if mask is not None else int(np.size(targets))
        return loss, n, (new_state if self.mode == "stream" else None)

    def evaluate(self, part: int = 0, parts: int = 1) -> dict:
        total, count = score(
            self.model,
            self.vocab,
            self.val,
            mode=self.mode,
            batch_size=self.batch_size,
            seq_len=self.seq_len or 256,
            part=part,
            parts=parts,
        )
        return {"loss": (total, count)}

    def check_carry(self, arrays: list):
        if not arrays:
            return None
        m = self.model
        want = len(m.rnn.cell.states)
        if self.mode != "stream" or len(arrays) != want:
            raise ValueError(
                f"{len(arrays)} carried state arrays (expected {want} in stream "
                "mode, none in lines mode)"
            )
        shape = (m.num_layers, self.batch_size, m.hidden)
        for i, a in enumerate(arrays):
            if a.shape != shape or a.dtype != m.dtype:
                raise ValueError(f"carry.{i} is {a.dtype} {a.shape}, expected {m.dtype} {shape}")
        got = [np.array(a, copy=True) for a in arrays]
        return tuple(got) if want == 2 else got[0]

    def batch_axes(self, batch) -> tuple:
        return (1, 1, 1) if self.mode == "lines" else (1, 1, None)


# ----------------------------------------------------------------------------- scoring


def _lines_totals(model, seqs, *, bos, eos, pad, batch_size, part, parts):
    total, count = 0.0, 0
    for i, s in enumerate(range(0, len(seqs), batch_size)):
        if i % parts != part:
            continue
        inputs, targets, mask = pack_sequences(seqs[s : s + batch_size], bos=bos, eos=eos, pad=pad)
        loss, n, _ = model.score(inputs, targets, mask)
        total, count = total + loss * n, count + n
    return total, count


def _stream_totals(model, ids, *, batch_size, seq_len, skip, part, parts):
    """Summed loss over the chunks of ``ids``; targets equal to ``skip`` are not counted
    (their steps are still read: the mask the recurrent stack sees is the padding's)."""
    total, count, state = 0.0, 0, None
    for inputs, targets, mask in iter_eval_stream(ids, batch_size, seq_len):
        inputs, targets, mask = (
            inputs[:, part::parts],
            targets[:, part::parts],
            mask[:, part::parts],
        )
        if inputs.shape[1] == 0:
            break
        if skip is None:
            loss, n, state = model.score(inputs, targets, mask, state)
            total, count = total + loss * n, count + n
            continue
        logits, state = model.logits(inputs, state, mask)
        counted = mask & (targets != skip)
        s, _ = softmax_cross_entropy(logits, targets, mask=counted, reduction="sum")
        total, count = total + float(s), count + int(np.count_nonzero(counted))
    return total, count


def score(
    model,
    vocab: Vocab,
    data,
    *,
    mode: str,
    batch_size: int,
    seq_len: int,
    part: int = 0,
    parts: int = 1,
) -> tuple[float, int]:
    """``(summed cross-entropy, predictions)`` of data in the run's own mode: a list of
    lines (lines mode) or an id array (stream mode; ``batch_size`` contiguous streams,
    each from a zero state: 1 gives the exact sequential score). ``part`` of ``parts``:
    every ``parts``-th batch (lines) or stream (stream), for sharding."""
    if mode == "lines":
        seqs = [vocab.encode(ln) for ln in data]
        return _lines_totals(
            model,
            seqs,
            bos=vocab.bos_id,
            eos=vocab.eos_id,
            pad=vocab.pad_id,
            batch_size=batch_size,
            part=part,
            parts=parts,
        )
    return _stream_totals(
        model, data, batch_size=batch_size, seq_len=seq_len, skip=None, part=part, parts=parts
    )


def score_text(
    model, vocab: Vocab, text: str, *, mode: str, batch_size: int, seq_len: int
) -> tuple[float, int]:
    """``(summed cross-entropy, predictions)`` of ``text`` read in ``mode``, whatever the
    run's mode (see the module docstring)."""
    lines = [ln for ln in text.split("\n") if ln]
    if vocab.lines_mode:
        if mode == "lines":
            return score(model, vocab, lines, mode="lines", batch_size=batch_size, seq_len=seq_len)
        if not lines:
            raise DataError("--data holds no non-empty line", "pass a text with lines")
        ids = np.concatenate([np.r_[vocab.bos_id, vocab.encode(ln), vocab.eos_id] for ln in lines])
        return _stream_totals(
            model,
            ids.astype(np.int64),
            batch_size=batch_size,
            seq_len=seq_len,
            skip=vocab.bos_id,
            part=0,
            parts=1,
        )
    if mode == "stream":
        return score(
            model, vocab, vocab.encode(text), mode="stream", batch_size=batch_size, seq_len=seq_len
        )
    if "\n" not in vocab.chars:
        raise DataError(
            "--mode lines needs a newline to start and end each line, and this "
            "stream run was trained on text without one",
            "use --mode stream",
        )
    if not lines:
        raise DataError("--data holds no non-empty line", "pass a text with lines")
    nl = int(vocab.encode("\n")[0])
    return _lines_totals(
        model,
        [vocab.encode(ln) for ln in lines],
        bos=nl,
        eos=nl,
        pad=0,
        batch_size=batch_size,
        part=0,
        parts=1,
    )


def evaluate(model, vocab: Vocab, data, *, mode: str, batch_size: int, seq_len: int) -> float:
    """Mean cross-entropy (nats per predicted token) of :func:`score`."""
    total, count = score(model, vocab, data, mode=mode, batch_size=batch_size, seq_len=seq_len)
    if count == 0:
        raise ValueError("nothing to evaluate: the data holds no predictable character")
    return total / count
