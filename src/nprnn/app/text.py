"""Text corpora for character language models: reading, vocabulary, batching.

API notes (additions to the first plan): ``read_text``/``read_lines`` take ``flag=``
(the option named in error messages, default ``"--data"``); ``Vocab`` has ``tokens``,
``specials``, ``offset`` and ``lines_mode``; ``iter_eval_stream`` yields
``(inputs, targets, mask)``; the batchers have ``epoch``, ``position`` and
``batches_per_epoch``.

Reading
    ``read_text(path)`` returns the file as one string: strict UTF-8 (a leading BOM is
    dropped, ``\\r\\n`` becomes ``\\n``); a missing, unreadable, empty, binary or
    undecodable file raises :class:`DataError` with a one-line message that says what
    is wrong and what to do. ``read_lines(path)`` returns its non-empty lines.

Vocabulary (:class:`Vocab`)
    The ids are the special tokens first, then the characters in sorted order.
    *Lines mode* has three specials, ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, so a
    line is read as ``<bos> c1 .. cn`` and predicts ``c1 .. cn <eos>``. *Stream mode*
    has no specials (``pad_id``, ``bos_id`` and ``eos_id`` are None): every output class
    is a character, and ``len(vocab) == len(vocab.chars)``.
    Unseen characters are an error, not an unknown token: ``encode`` raises
    :class:`DataError` naming them, because a model cannot score or generate a
    character it has never seen, and silently mapping it would distort the loss.

Batching (all arrays time-major, ids int64)
    ``LinesBatcher``: shuffled, length-bucketed batches of whole lines,
    ``(inputs (T, B), targets (T, B), mask (T, B) bool)``, right-padded with ``pad_id``.
    ``StreamBatcher``: truncated BPTT over ``B`` contiguous streams,
    ``(inputs (T, B), targets (T, B), reset)``; the caller carries the hidden state
    between chunks and zeroes it when ``reset`` is True.
    Both have ``state_dict()`` / ``load_state_dict(d)`` (JSON-able) so that a resumed
    batcher yields exactly the batches the uninterrupted one would have.
    ``iter_eval_batches`` / ``iter_eval_stream`` yield every prediction exactly once;
    both yield ``(inputs, targets, mask)`` (the stream one masks the ragged tail).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from nprnn.validation import as_rng, positive_int, real_in_range

SPECIALS = ("<pad>", "<bos>", "<eos>")
_POOL_BATCHES = 50  # length bucketing sorts pools of this many batches


class DataError(ValueError):
    """Bad training or evaluation data; the message is one line: what is wrong + what to do."""


# ----------------------------------------------------------------------------- reading


def read_text(path, *, flag: str = "--data") -> str:
    """The whole file at ``path`` as a str (strict UTF-8, ``\\r\\n`` -> ``\\n``, BOM dropped).

    ``flag`` names the command-line option in the error messages.
    Raises :class:`DataError` for a missing file, a directory, an unreadable,
    undecodable (the message gives the byte offset), binary (NUL bytes) or
    empty / whitespace-only file.
    """
    name = os.fspath(path)
    fix = f"pass an existing UTF-8 text file with {flag}"
    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"cannot read {name!r}: file not found — {fix}") from None
    except IsADirectoryError:
        raise DataError(f"cannot read {name!r}: it is a directory — {fix}") from None
    except PermissionError:
        raise DataError(f"cannot read {name!r}: permission denied — {fix}") from None
    except OSError as e:
        raise DataError(f"cannot read {name!r}: {e.strerror or e} — {fix}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise DataError(
            f"cannot read {name!r}: not valid UTF-8 at byte {e.start} "
            f"(0x{data[e.start]:02x}) — convert it to UTF-8 (e.g. iconv -t UTF-8) "
            f"and pass it with {flag}"
        ) from None
    if "\x00" in text:
        raise DataError(
            f"cannot read {name!r}: it contains NUL bytes (a binary file?) — "
            f"pass a UTF-8 text file with {flag}"
        )
    if not text.strip():
        raise DataError(f"{name!r} is empty (no text) — pass a file that holds text with {flag}")
    return text.replace("\r\n", "\n")


def read_lines(path, *, flag: str = "--data") -> list[str]:
    """The non-empty lines of the file (without their ``\\n``); :class:`DataError` if none."""
    lines = [ln for ln in read_text(path, flag=flag).split("\n") if ln]
    if not lines:  # unreachable after read_text's checks, kept as a guard
        raise DataError(f"{os.fspath(path)!r} holds no non-empty line — pass a text file")
    return lines


# ----------------------------------------------------------------------------- vocabulary


def _describe_chars(chars: Iterable[str], limit: int = 10) -> str:
    chars = sorted(set(chars))
    parts = [f"{c!r} (U+{ord(c):04X})" for c in chars[:limit]]
    if len(chars) > limit:
        parts.append(f"... ({len(chars) - limit} more)")
    return ", ".join(parts)


class Vocab:
    """Characters plus (in lines mode) the special tokens ``<pad>``, ``<bos>``, ``<eos>``.

    ``chars`` lists the ordinary characters in id order; their ids start after the
    specials (3 in lines mode, 0 in stream mode). ``encode`` refuses characters that
    are not in the vocabulary (:class:`DataError`); ``decode`` drops the specials.
    """

    def __init__(self, chars: Sequence[str], *, lines_mode: bool):
        if not isinstance(chars, Iterable):
            raise TypeError(
                f"chars must be a list of single characters, got {type(chars).__name__}"
            )
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        if not chars:
            raise DataError("the vocabulary is empty — the data holds no characters")
        self.chars: list[str] = chars
        self.lines_mode = bool(lines_mode)
        self.specials: tuple[str, ...] = SPECIALS if self.lines_mode else ()
        self.offset = len(self.specials)
        self.pad_id, self.bos_id, self.eos_id = (0, 1, 2) if self.lines_mode else (None,) * 3
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        order = np.argsort(codes, kind="stable")
        self._codes = codes[order]  # sorted code points, for searchsorted lookups
        self._ids = order.astype(np.int64) + self.offset
        self._table = np.array(list(self.specials) + chars, dtype=object)

    @classmethod
    def build(cls, texts: Iterable[str], *, lines_mode: bool) -> Vocab:
        """The vocabulary of all characters in ``texts`` (sorted by code point)."""
        if not isinstance(texts, Iterable):
            raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
        seen: set[str] = set()
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be strings, got {type(t).__name__}")
            seen.update(t)
        return cls(sorted(seen), lines_mode=lines_mode)

    def __len__(self) -> int:
        return self.offset + len(self.chars)

    @property
    def tokens(self) -> list[str]:
        """Every token in id order: the specials' names, then the characters."""
        return list(self.specials) + self.chars

    def __eq__(self, other) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.chars == other.chars and self.lines_mode == other.lines_mode

    def __repr__(self) -> str:
        mode = "lines" if self.lines_mode else "stream"
        return f"Vocab({len(self.chars)} chars, {mode} mode, size {len(self)})"

    def encode(self, text: str) -> np.ndarray:
        """The ids of ``text``'s characters, shape (len(text),) int64 (no specials added)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        pos = np.searchsorted(self._codes, codes)
        pos_c = np.minimum(pos, len(self._codes) - 1)
        ok = self._codes[pos_c] == codes
        if not ok.all():
            bad = {chr(int(c)) for c in np.unique(codes[~ok])}
            raise DataError(
                f"characters not in the vocabulary: {_describe_chars(bad)} — the model was "
                "trained on a different alphabet; use text made of the training characters"
            )
        return self._ids[pos_c]

    def decode(self, ids) -> str:
        """The text of ``ids`` (any shape, flattened), with special tokens dropped."""
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        arr = arr.reshape(-1)  # range-checked in its own dtype: a uint64 id stays as it is
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            bad = int(arr[(arr < 0) | (arr >= len(self))][0])
            raise ValueError(f"id {bad} is outside the vocabulary [0, {len(self)})")
        arr = arr.astype(np.int64)
        return "".join(self._table[arr[arr >= self.offset]])

    def to_dict(self) -> dict:
        """A JSON-able description: ``{"chars": [...], "lines_mode": bool}``."""
        return {"chars": list(self.chars), "lines_mode": self.lines_mode}

    @classmethod
    def from_dict(cls, d) -> Vocab:
        """Inverse of :meth:`to_dict`; a malformed dict raises :class:`DataError`."""
        fix = "the run's config.json is damaged — retrain or restore it"
        if not isinstance(d, dict) or set(d) != {"chars", "lines_mode"}:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise DataError(f"vocabulary must have keys chars, lines_mode, got {got} — {fix}")
        chars, lines_mode = d["chars"], d["lines_mode"]
        if not isinstance(lines_mode, bool):
            raise DataError(f"vocabulary lines_mode must be true/false, got {lines_mode!r} — {fix}")
        if not isinstance(chars, list):
            raise DataError(f"vocabulary chars must be a list, got {type(chars).__name__} — {fix}")
        try:
            return cls(chars, lines_mode=lines_mode)
        except ValueError as e:
            raise DataError(f"{e} — {fix}") from None


def _fingerprint(parts: Iterable[bytes]) -> str:
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
                f"{kind} state has {key}={d.get(key)!r} but this data/batcher has {want!r} — "
                "resume with the same data and batch options as the checkpoint"
            )


def _int_field(d: dict, key: str, low: int, high: int, kind: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise DataError(f"{kind} state has a bad {key}: {v!r} (expected an int in [{low}, {high}])")
    return v


# ----------------------------------------------------------------------------- lines mode


class LinesBatcher:
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

    def __init__(
        self, lines: Sequence[str], vocab: Vocab, *, batch_size: int, rng=None, bucket: bool = True
    ):
        _check_lines(lines)
        _check_lines_vocab(vocab, "LinesBatcher")
        if not lines:
            raise DataError("no lines to train on — pass a file with at least one line")
        self.vocab = vocab
        self.batch_size = positive_int("batch_size", batch_size)
        self.bucket = bool(bucket)
        self._rng = as_rng(rng)
        self._seqs = _encode_lines(lines, vocab)
        self._lengths = np.array([len(s) + 1 for s in self._seqs], dtype=np.int64)
        self._fp = _fingerprint(s.tobytes() for s in self._seqs)
        self.epoch = 0  # completed epochs
        self.position = 0  # batches served in the current epoch
        self._start_state = self._rng.bit_generator.state
        self._plan = self._make_plan()

    @property
    def batches_per_epoch(self) -> int:
        return len(self._plan)

    def _make_plan(self) -> list[np.ndarray]:
        n, B = len(self._seqs), self.batch_size
        perm = self._rng.permutation(n)
        if not self.bucket:
            return [perm[i : i + B] for i in range(0, n, B)]
        batches = []
        pool = B * _POOL_BATCHES
        for i in range(0, n, pool):
            chunk = perm[i : i + pool]
            chunk = chunk[np.argsort(self._lengths[chunk], kind="stable")]
            batches.extend(chunk[j : j + B] for j in range(0, len(chunk), B))
        order = self._rng.permutation(len(batches))
        return [batches[k] for k in order]

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next batch ``(inputs (T, B), targets (T, B), mask (T, B))``."""
        if self.position == len(self._plan):
            self.epoch += 1
            self.position = 0
            self._start_state = self._rng.bit_generator.state
            self._plan = self._make_plan()
        idx = self._plan[self.position]
        self.position += 1
        return _pack_lines([self._seqs[i] for i in idx], self.vocab)

    def state_dict(self) -> dict:
        """JSON-able position: epoch, batches served, and the rng state at the epoch start."""
        return {
            "kind": "lines",
            "epoch": self.epoch,
            "position": self.position,
            "rng_state": _rng_state_to_json(self._start_state),
            "batch_size": self.batch_size,
            "bucket": self.bucket,
            "n_lines": len(self._seqs),
            "fingerprint": self._fp,
        }

    def load_state_dict(self, d: dict) -> None:
        """Continue exactly where the batcher that produced ``d`` stopped."""
        _check_state(
            d,
            {
                "kind": "lines",
                "batch_size": self.batch_size,
                "bucket": self.bucket,
                "n_lines": len(self._seqs),
                "fingerprint": self._fp,
            },
            "lines batcher",
        )
        epoch = _int_field(d, "epoch", 0, 2**62, "lines batcher")
        from .runs import load_rng  # local import: checkpoint is optional for text

        self._rng.bit_generator.state = load_rng(d.get("rng_state")).bit_generator.state
        self._start_state = self._rng.bit_generator.state
        plan = self._make_plan()
        position = _int_field(d, "position", 0, len(plan), "lines batcher")
        self.epoch, self.position, self._plan = epoch, position, plan


def _rng_state_to_json(state: dict) -> dict:
    from .runs import _jsonable_rng_state

    return _jsonable_rng_state(state)


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


def _pack_lines(seqs: Sequence[np.ndarray], vocab: Vocab):
    T = max(len(s) for s in seqs) + 1
    B = len(seqs)
    inputs = np.full((T, B), vocab.pad_id, dtype=np.int64)  # (T, B)
    targets = np.full((T, B), vocab.pad_id, dtype=np.int64)  # (T, B)
    mask = np.zeros((T, B), dtype=bool)  # (T, B)
    for b, s in enumerate(seqs):
        n = len(s)
        inputs[0, b] = vocab.bos_id
        inputs[1 : n + 1, b] = s
        targets[:n, b] = s
        targets[n, b] = vocab.eos_id
        mask[: n + 1, b] = True
    return inputs, targets, mask


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


# ----------------------------------------------------------------------------- stream mode


class StreamBatcher:
    """Truncated-BPTT chunks of ``B`` parallel contiguous streams of one long text.

    ``ids`` (N,) is cut into B streams of ``L = N // B`` ids (the last ``N mod B`` ids
    are dropped); stream b is ``ids[b*L : (b+1)*L]``. ``next_batch()`` returns
    ``(inputs (T, B), targets (T, B), reset)`` with ``inputs[t, b] = stream_b[s + t]``
    and ``targets[t, b] = stream_b[s + t + 1]``: each chunk continues the previous one,
    so the caller carries the hidden state; T = ``seq_len`` except on the last chunk
    of a pass (``L - 1`` predictions per stream in all). ``reset`` is True on the first
    chunk of every pass (including the very first): zero the state then.
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
                f"of at least 2 characters — lower --batch-size or pass more text"
            )
        self._streams = arr[: L * self.batch_size].astype(np.int64).reshape(self.batch_size, L)
        self._fp = _fingerprint([self._streams.tobytes()])
        self.epoch = 0  # completed passes
        self.position = 0  # stream offset of the next chunk

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

    def state_dict(self) -> dict:
        return {
            "kind": "stream",
            "epoch": self.epoch,
            "position": self.position,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "n_ids": int(self._streams.size),
            "fingerprint": self._fp,
        }

    def load_state_dict(self, d: dict) -> None:
        _check_state(
            d,
            {
                "kind": "stream",
                "batch_size": self.batch_size,
                "seq_len": self.seq_len,
                "n_ids": int(self._streams.size),
                "fingerprint": self._fp,
            },
            "stream batcher",
        )
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
        raise DataError("the evaluation text needs at least 2 characters — pass more text")
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


# ----------------------------------------------------------------------------- splits


def split_train_val(items: Sequence, *, val_fraction: float, seed: int = 0):
    """``(train, val)`` lists: a seeded random ``val_fraction`` of ``items`` held out.

    ``round(n * val_fraction)`` items go to validation, clamped so that both parts get
    at least one item; both keep the original order. Needs ``len(items) >= 2``.
    """
    if isinstance(items, (str, bytes)) or not (
        hasattr(items, "__len__") and hasattr(items, "__getitem__")
    ):
        what = "a str (use split_text)" if isinstance(items, str) else type(items).__name__
        raise TypeError(f"items must be a list (of lines), got {what}")
    f = real_in_range("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True)
    n = len(items)
    if n < 2:
        raise DataError(
            f"cannot hold out validation data from {n} line(s) — pass more lines or --val-data"
        )
    n_val = min(max(round(n * f), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(perm[:n_val])
    train_idx = np.sort(perm[n_val:])
    return [items[i] for i in train_idx], [items[i] for i in val_idx]


def split_text(text: str, *, val_fraction: float) -> tuple[str, str]:
    """``(train, val)``: the last ``val_fraction`` of ``text`` is validation (each >= 2 chars)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    f = real_in_range("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True)
    n = len(text)
    if n < 4:
        raise DataError(
            f"cannot hold out validation text from {n} characters — pass more text or --val-data"
        )
    n_val = min(max(round(n * f), 2), n - 2)
    return text[: n - n_val], text[n - n_val :]
