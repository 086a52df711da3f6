"""Batching for training and evaluation, all arrays time-major, ids int64.

``EpochBatcher``: batches of item indices, every item once per epoch, a fresh shuffle
each epoch (optionally bucketed by length). ``LinesBatcher`` (language model, lines
mode) builds on it: shuffled, length-bucketed batches of whole lines,
``(inputs (T, B), targets (T, B), mask (T, B) bool)``, right-padded with ``pad_id``.
``StreamBatcher``: truncated BPTT over ``B`` contiguous streams,
``(inputs (T, B), targets (T, B), reset)``; the caller carries the hidden state between
chunks and zeroes it when ``reset`` is True.

Every batcher has ``state_dict()`` / ``load_state_dict(d)`` (JSON-able) so that a
resumed batcher yields exactly the batches the uninterrupted one would have; a state
that does not fit (other data, other options, out-of-range fields) raises
:class:`~nprnn.app.errors.DataError` and changes nothing.
``iter_eval_batches`` / ``iter_eval_stream`` yield every prediction exactly once; both
yield ``(inputs, targets, mask)`` (the stream one masks the ragged tail).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from nprnn.validation import as_rng, positive_int

from .errors import DataError
from .files import jsonable_rng_state, load_rng
from .text import Vocab

__all__ = [
    "EpochBatcher",
    "LinesBatcher",
    "StreamBatcher",
    "iter_eval_batches",
    "iter_eval_stream",
    "pack_sequences",
    "fingerprint",
]

_POOL_BATCHES = 50  # length bucketing sorts pools of this many batches
_RESUME_FIX = "resume with the same data and batch options as the checkpoint"


def fingerprint(parts: Iterable[bytes]) -> str:
    """A short SHA-256 of a sequence of byte strings (lengths included)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:16]


def _check_state(d, expected: dict, kind: str) -> None:
    if not isinstance(d, dict):
        raise DataError(f"{kind} state must be a dict, got {type(d).__name__}")
    for key, want in expected.items():
        if d.get(key) != want:
            raise DataError(
                f"{kind} state has {key}={d.get(key)!r} but this data/batcher has {want!r}",
                _RESUME_FIX,
            )


def _int_field(d: dict, key: str, low: int, high: int, kind: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise DataError(f"{kind} state has a bad {key}: {v!r} (expected an int in [{low}, {high}])")
    return v


# ----------------------------------------------------------------------------- epochs


class EpochBatcher:
    """Index batches: each epoch a seeded shuffle of ``range(n_items)`` cut into batches.

    ``bucket_lengths`` (n_items,): sort each pool of 50 batches' worth of items by
    length before cutting, then shuffle the batch order (similar lengths, little
    padding). ``drop_last``: leave out an epoch's incomplete last batch (unless the
    whole data is smaller than one batch). ``rng`` (Generator or seed) belongs to the
    batcher. ``fingerprint`` identifies the data in :meth:`state_dict`.
    ``next_indices()`` returns the next batch's item indices.
    """

    kind = "epoch"
    count_key = "n_items"

    def __init__(
        self,
        n_items: int,
        *,
        batch_size: int,
        rng=None,
        fingerprint: str = "",
        bucket_lengths=None,
        drop_last: bool = False,
    ):
        self.n_items = positive_int("n_items", n_items, minimum=0)
        self.batch_size = positive_int("batch_size", batch_size)
        self.bucket = bucket_lengths is not None
        self._lengths = None if bucket_lengths is None else np.asarray(bucket_lengths)
        self.drop_last = bool(drop_last)
        self._fp = fingerprint
        self._rng = as_rng(rng)
        self.epoch = 0  # completed epochs
        self.position = 0  # batches served in the current epoch
        self._start_state = self._rng.bit_generator.state
        self._plan = self._make_plan()

    @property
    def batches_per_epoch(self) -> int:
        return len(self._plan)

    def _make_plan(self) -> list[np.ndarray]:
        n, B = self.n_items, self.batch_size
        perm = self._rng.permutation(n)
        if not self.bucket:
            if self.drop_last and n >= B:
                return [perm[i : i + B] for i in range(0, n - B + 1, B)]
            return [perm[i : i + B] for i in range(0, n, B)]
        batches = []
        pool = B * _POOL_BATCHES
        for i in range(0, n, pool):
            chunk = perm[i : i + pool]
            chunk = chunk[np.argsort(self._lengths[chunk], kind="stable")]
            batches.extend(chunk[j : j + B] for j in range(0, len(chunk), B))
        order = self._rng.permutation(len(batches))
        return [batches[k] for k in order]

    def next_indices(self) -> np.ndarray:
        """The item indices of the next batch (a new epoch starts when one is used up)."""
        if self.position == len(self._plan):
            self.epoch += 1
            self.position = 0
            self._start_state = self._rng.bit_generator.state
            self._plan = self._make_plan()
        idx = self._plan[self.position]
        self.position += 1
        return idx

    def _identity(self) -> dict:
        return {
            "kind": self.kind,
            "batch_size": self.batch_size,
            "bucket": self.bucket,
            self.count_key: self.n_items,
            "fingerprint": self._fp,
        }

    def state_dict(self) -> dict:
        """JSON-able position: epoch, batches served, and the rng state at the epoch start."""
        return {
            **self._identity(),
            "epoch": self.epoch,
            "position": self.position,
            "rng_state": jsonable_rng_state(self._start_state),
        }

    def load_state_dict(self, d: dict) -> None:
        """Continue exactly where the batcher that produced ``d`` stopped; all or nothing."""
        who = f"{self.kind} batcher"
        _check_state(d, self._identity(), who)
        epoch = _int_field(d, "epoch", 0, 2**62, who)
        rng_state = load_rng(d.get("rng_state")).bit_generator.state
        before = self._rng.bit_generator.state
        self._rng.bit_generator.state = rng_state
        plan = self._make_plan()
        try:
            position = _int_field(d, "position", 0, len(plan), who)
        except DataError:
            self._rng.bit_generator.state = before
            raise
        self._start_state = rng_state
        self.epoch, self.position, self._plan = epoch, position, plan


# ----------------------------------------------------------------------------- lines


def pack_sequences(seqs: Sequence[np.ndarray], *, bos: int, eos: int, pad: int):
    """``(inputs (T, B), targets (T, B), mask (T, B) bool)`` of ``bos + s`` predicting
    ``s + eos`` for each id sequence ``s``, right-padded with ``pad``; T = longest + 1."""
    B = len(seqs)
    n = np.fromiter(map(len, seqs), dtype=np.int64, count=B)  # (B,) line lengths
    T = int(n.max()) + 1
    inputs = np.full((T, B), pad, dtype=np.int64)  # (T, B)
    targets = np.full((T, B), pad, dtype=np.int64)  # (T, B)
    # every character at once (a loop over the rows cost ~0.2 ms a batch of 64):
    # character j of line b sits at step t = j of the targets, t = j + 1 of the inputs
    total = int(n.sum())
    rows = np.repeat(np.arange(B), n)
    steps = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    chars = np.concatenate(seqs) if total else np.zeros(0, dtype=np.int64)
    inputs[0] = bos
    inputs[steps + 1, rows] = chars
    targets[steps, rows] = chars
    targets[n, np.arange(B)] = eos
    mask = np.arange(T)[:, None] <= n  # (T, B): the n + 1 real steps of each line
    return inputs, targets, mask


def _pack_lines(seqs, vocab: Vocab):
    return pack_sequences(seqs, bos=vocab.bos_id, eos=vocab.eos_id, pad=vocab.pad_id)


class LinesBatcher(EpochBatcher):
    """Shuffled batches of whole lines, padded on the right: ``next_batch()`` gives
    ``inputs (T, B)``, ``targets (T, B)`` int64 and ``mask (T, B)`` bool, time-major.

    A line ``c1..cn`` is the input ``<bos> c1..cn`` and the target ``c1..cn <eos>``
    (n + 1 steps); T is the longest of the batch; padding holds ``pad_id`` and mask 0.
    Each epoch visits every line once: the lines are shuffled with ``rng``; with
    ``bucket=True`` each pool of 50 batches' worth of lines is sorted by length and
    cut into batches, and the batch order is shuffled, so batches hold lines of
    similar length and little compute is padding. The last batch of an epoch may be
    smaller than ``batch_size``. ``rng`` (Generator or int seed) belongs to the
    batcher: its state is part of :meth:`state_dict`.
    """

    kind = "lines"
    count_key = "n_lines"

    def __init__(
        self, lines: Sequence[str], vocab: Vocab, *, batch_size: int, rng=None, bucket: bool = True
    ):
        _check_lines(lines)
        _check_lines_vocab(vocab, "LinesBatcher")
        if not lines:
            raise DataError("no lines to train on", "pass a file with at least one line")
        positive_int("batch_size", batch_size)
        self.vocab = vocab
        self._seqs = _encode_lines(lines, vocab)
        lengths = np.array([len(s) + 1 for s in self._seqs], dtype=np.int64)
        super().__init__(
            len(self._seqs),
            batch_size=batch_size,
            rng=rng,
            fingerprint=fingerprint(s.tobytes() for s in self._seqs),
            bucket_lengths=lengths if bucket else None,
        )

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next batch ``(inputs (T, B), targets (T, B), mask (T, B))``."""
        return _pack_lines([self._seqs[i] for i in self.next_indices()], self.vocab)


def _check_lines(lines) -> None:
    """``lines`` must be a sequence (list, tuple) of str; a bare str is refused."""
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Sequence):
        what = "a str (wrap it in a list)" if isinstance(lines, str) else type(lines).__name__
        raise TypeError(f"lines must be a list of strings, got {what}")


def _check_lines_vocab(vocab, who: str) -> None:
    if not isinstance(vocab, Vocab):
        raise TypeError(
            f"vocab must be a Vocab (Vocab.build(texts, lines_mode=True)), "
            f"got {type(vocab).__name__}"
        )
    if vocab.bos_id is None:
        raise ValueError(f"{who} needs a lines-mode vocabulary (with <bos>, <eos>)")


def _encode_lines(lines: Sequence[str], vocab: Vocab) -> list[np.ndarray]:
    """Each line's ids (one ``encode`` call over the concatenation: fast for many lines)."""
    _check_lines(lines)
    for ln in lines:
        if not isinstance(ln, str):
            raise TypeError(f"lines must be strings, got {type(ln).__name__}")
    if not lines:
        return []
    ids = vocab.encode("".join(lines))
    return np.split(ids, np.cumsum([len(ln) for ln in lines])[:-1])


def iter_eval_batches(lines: Sequence[str], vocab: Vocab, batch_size: int) -> Iterator[tuple]:
    """Every line exactly once, in order: ``(inputs (T, B), targets (T, B), mask (T, B))``.

    The arguments are checked and every line encoded when this is called (before any
    batch is yielded), so bad input raises here, not on the first ``next``.
    """
    _check_lines(lines)
    _check_lines_vocab(vocab, "iter_eval_batches")
    B = positive_int("batch_size", batch_size)
    seqs = _encode_lines(lines, vocab)  # encode all first: fail before any batch
    return (_pack_lines(seqs[i : i + B], vocab) for i in range(0, len(seqs), B))


# ----------------------------------------------------------------------------- stream


class StreamBatcher:
    """Truncated-BPTT chunks of ``B`` parallel contiguous streams of one long text.

    ``ids`` (N,) is cut into B streams of ``L = N // B`` ids (the last ``N mod B`` ids
    are dropped); stream b is ``ids[b*L : (b+1)*L]``. ``next_batch()`` returns
    ``(inputs (T, B), targets (T, B), reset)`` with ``inputs[t, b] = stream_b[s + t]``
    and ``targets[t, b] = stream_b[s + t + 1]``: each chunk continues the previous one,
    so the caller carries the hidden state; T = ``seq_len`` except on the last chunk
    of a pass (``L - 1`` predictions per stream in all). ``reset`` is True on the first
    chunk of every pass (including the very first): zero the state then.
    ``stream_length`` is L.
    """

    def __init__(self, ids, *, batch_size: int, seq_len: int):
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise TypeError(f"ids must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        self.batch_size = positive_int("batch_size", batch_size)
        self.seq_len = positive_int("seq_len", seq_len)
        L = len(arr) // self.batch_size
        if L < 2:
            raise DataError(
                f"the text ({len(arr)} characters) is too short for {self.batch_size} streams "
                f"of at least 2 characters",
                "lower --batch-size or pass more text",
            )
        self._streams = arr[: L * self.batch_size].astype(np.int64).reshape(self.batch_size, L)
        self._fp = fingerprint([self._streams.tobytes()])
        self.epoch = 0  # completed passes
        self.position = 0  # stream offset of the next chunk

    @property
    def stream_length(self) -> int:
        return self._streams.shape[1]

    @property
    def batches_per_epoch(self) -> int:
        return -(-(self._streams.shape[1] - 1) // self.seq_len)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """The next chunk ``(inputs (T, B), targets (T, B), reset)``."""
        L = self._streams.shape[1]
        if self.position >= L - 1:
            self.epoch += 1
            self.position = 0
        s = self.position
        e = min(s + self.seq_len, L - 1)
        inputs = np.ascontiguousarray(self._streams[:, s:e].T)  # (T, B)
        targets = np.ascontiguousarray(self._streams[:, s + 1 : e + 1].T)  # (T, B)
        self.position = e
        return inputs, targets, s == 0

    def _identity(self) -> dict:
        return {
            "kind": "stream",
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "n_ids": int(self._streams.size),
            "fingerprint": self._fp,
        }

    def state_dict(self) -> dict:
        return {**self._identity(), "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, d: dict) -> None:
        _check_state(d, self._identity(), "stream batcher")
        epoch = _int_field(d, "epoch", 0, 2**62, "stream batcher")
        pos = _int_field(d, "position", 0, self._streams.shape[1] - 1, "stream batcher")
        self.epoch, self.position = epoch, pos


def iter_eval_stream(ids, batch_size: int, seq_len: int) -> Iterator[tuple]:
    """Chunks ``(inputs (T, B'), targets (T, B'), mask (T, B'))`` predicting each of the
    N - 1 next characters of ``ids`` (N,) exactly once.

    The N - 1 predictions are split into ``B' <= batch_size`` contiguous streams of
    ``P = ceil((N - 1) / batch_size)`` predictions (the last stream may be shorter: its
    tail is masked out, inputs there are 0). Carry the state from chunk to chunk,
    starting from zeros; with ``batch_size=1`` this is the exact sequential score.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise TypeError(f"ids must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    B = positive_int("batch_size", batch_size)
    T = positive_int("seq_len", seq_len)
    n_pred = len(arr) - 1
    if n_pred < 1:
        raise DataError("the evaluation text needs at least 2 characters", "pass more text")
    P = -(-n_pred // B)
    B = -(-n_pred // P)
    inputs = np.zeros((P, B), dtype=np.int64)  # (P, B')
    targets = np.zeros((P, B), dtype=np.int64)  # (P, B')
    mask = np.zeros((P, B), dtype=bool)  # (P, B')
    for b in range(B):
        s, e = b * P, min((b + 1) * P, n_pred)
        inputs[: e - s, b] = arr[s:e]
        targets[: e - s, b] = arr[s + 1 : e + 1]
        mask[: e - s, b] = True
    for t in range(0, P, T):
        yield inputs[t : t + T], targets[t : t + T], mask[t : t + T]
