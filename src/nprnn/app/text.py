"""Text for character models: reading files, the vocabulary, long lines, splits.

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
    is a character, and ``len(vocab) == len(vocab.chars)``. ``vocab.tokens[i]`` is the
    token of id ``i``, specials included; ``to_dict()`` (what ``config.json`` holds)
    lists exactly that.
    Unseen characters are an error, not an unknown token: ``encode`` raises
    :class:`DataError` naming them, because a model cannot score or generate a
    character it has never seen, and silently mapping it would distort the loss.

Long lines
    :func:`split_long_lines` cuts lines longer than ``max_len`` into pieces (the
    ``--max-len`` option of lines mode) and says how many it cut.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from nprnn.validation import positive_int, real_in_range

from .errors import DataError

__all__ = [
    "SPECIALS",
    "DataError",
    "read_text",
    "read_lines",
    "Vocab",
    "split_long_lines",
    "split_train_val",
    "split_text",
]

SPECIALS = ("<pad>", "<bos>", "<eos>")


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
        raise DataError(f"cannot read {name!r}: file not found", fix) from None
    except IsADirectoryError:
        raise DataError(f"cannot read {name!r}: it is a directory", fix) from None
    except PermissionError:
        raise DataError(f"cannot read {name!r}: permission denied", fix) from None
    except OSError as e:
        raise DataError(f"cannot read {name!r}: {e.strerror or e}", fix) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        raise DataError(
            f"cannot read {name!r}: not valid UTF-8 at byte {e.start} (0x{data[e.start]:02x})",
            f"convert it to UTF-8 (e.g. iconv -t UTF-8) and pass it with {flag}",
        ) from None
    if "\x00" in text:
        raise DataError(
            f"cannot read {name!r}: it contains NUL bytes (a binary file?)",
            f"pass a UTF-8 text file with {flag}",
        )
    if not text.strip():
        raise DataError(f"{name!r} is empty (no text)", f"pass a file that holds text with {flag}")
    return text.replace("\r\n", "\n")


def read_lines(path, *, flag: str = "--data") -> list[str]:
    """The non-empty lines of the file (without their ``\\n``); :class:`DataError` if none."""
    lines = [ln for ln in read_text(path, flag=flag).split("\n") if ln]
    if not lines:  # unreachable after read_text's checks, kept as a guard
        raise DataError(f"{os.fspath(path)!r} holds no non-empty line", "pass a text file")
    return lines


def split_long_lines(lines: Sequence[str], max_len: int | None) -> tuple[list[str], int]:
    """``(pieces, n_split)``: every line longer than ``max_len`` cut into consecutive
    pieces of at most ``max_len`` characters (in order; the others unchanged).
    ``n_split`` counts the lines that were cut; ``max_len=None`` cuts nothing."""
    if max_len is None:
        return list(lines), 0
    max_len = positive_int("max_len", max_len)
    out, n = [], 0
    for ln in lines:
        if len(ln) <= max_len:
            out.append(ln)
        else:
            n += 1
            out.extend(ln[i : i + max_len] for i in range(0, len(ln), max_len))
    return out, n


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
    specials (3 in lines mode, 0 in stream mode); ``tokens`` lists every token in id
    order. ``encode`` refuses characters that are not in the vocabulary
    (:class:`DataError`); ``decode`` drops the specials.
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
            raise DataError("the vocabulary is empty", "the data holds no characters")
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
                f"characters not in the vocabulary: {_describe_chars(bad)}",
                "the model was trained on a different alphabet; use text made of the "
                "training characters",
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
        """What ``config.json`` holds: ``{"tokens": [...], "lines_mode": bool}``, where
        ``tokens[i]`` is the token of id ``i`` (in lines mode ``<pad>``, ``<bos>``,
        ``<eos>`` first), one entry per row of the embedding and of the output layer."""
        return {"tokens": self.tokens, "lines_mode": self.lines_mode}

    @classmethod
    def from_dict(cls, d) -> Vocab:
        """Inverse of :meth:`to_dict` (also reads the ``{"chars", "lines_mode"}`` form of
        runs written before 0.2); a malformed dict raises :class:`DataError`."""
        fix = "the run's config.json is damaged — retrain or restore it"
        keys = set(d) if isinstance(d, dict) else None
        if keys not in ({"tokens", "lines_mode"}, {"chars", "lines_mode"}):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise DataError(f"vocabulary must have keys tokens, lines_mode, got {got}", fix)
        lines_mode = d["lines_mode"]
        if not isinstance(lines_mode, bool):
            raise DataError(f"vocabulary lines_mode must be true/false, got {lines_mode!r}", fix)
        key = "tokens" if "tokens" in d else "chars"
        chars = d[key]
        if not isinstance(chars, list):
            raise DataError(f"vocabulary {key} must be a list, got {type(chars).__name__}", fix)
        if key == "tokens":
            specials = list(SPECIALS) if lines_mode else []
            if chars[: len(specials)] != specials:
                raise DataError(
                    f"vocabulary tokens must start with {', '.join(specials)} in lines mode, "
                    f"got {chars[:3]!r}",
                    fix,
                )
            chars = chars[len(specials) :]
        try:
            return cls(chars, lines_mode=lines_mode)
        except DataError as e:
            raise DataError(e.what, fix) from None
        except ValueError as e:
            raise DataError(str(e), fix) from None


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
            f"cannot hold out validation data from {n} line(s)", "pass more lines or --val-data"
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
            f"cannot hold out validation text from {n} characters", "pass more text or --val-data"
        )
    n_val = min(max(round(n * f), 2), n - 2)
    return text[: n - n_val], text[n - n_val :]
