"""Reading corpora, the vocabulary, lines and stream batching, splits."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nprnn.app.batches import (
    LinesBatcher,
    StreamBatcher,
    iter_eval_batches,
    iter_eval_stream,
    pack_sequences,
)
from nprnn.app.errors import DataError
from nprnn.app.text import Vocab, read_lines, read_text, split_text, split_train_val

NAMES = ["ann", "bob", "al", "christina", "x", "eve", "maximilian", "jo", "li", "sue", "ted"]


def random_lines(n, seed=0, max_len=40):
    rng = np.random.default_rng(seed)
    alphabet = list("abcdefghij")
    return ["".join(rng.choice(alphabet, size=rng.integers(1, max_len))) for _ in range(n)]


# ----------------------------------------------------------------------------- files


def test_read_text_normalises(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbfh\xc3\xa9llo\r\nworld\r\n")
    assert read_text(f) == "héllo\nworld\n"
    assert read_lines(f) == ["héllo", "world"]
    f.write_bytes(b"a\n\n\nb  \n\n")
    assert read_lines(f) == ["a", "b  "]


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "file not found — pass an existing UTF-8 text file with --data"),
        (b"", "is empty"),
        (b"  \n\t\r\n", "is empty"),
        (b"abc\xffdef", r"not valid UTF-8 at byte 3 \(0xff\)"),
        (b"ok\n\xc3", "not valid UTF-8 at byte 3"),
        (b"\x00\x01\x02binary", "NUL bytes"),
    ],
)
def test_read_text_errors(tmp_path, content, match):
    f = tmp_path / "data.txt"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(DataError, match=match) as e:
        read_text(f)
    msg = str(e.value)
    assert "\n" not in msg and "data.txt" in msg
    with pytest.raises(DataError):
        read_lines(f)


def test_read_text_directory_and_flag(tmp_path):
    with pytest.raises(DataError, match="is a directory — .* with --val-data"):
        read_text(tmp_path, flag="--val-data")


# ----------------------------------------------------------------------------- vocab


def test_vocab_lines_mode_ids_and_round_trip():
    v = Vocab.build(["bca", "ab"], lines_mode=True)
    assert v.chars == ["a", "b", "c"] and len(v) == 6
    assert (v.pad_id, v.bos_id, v.eos_id) == (0, 1, 2)
    ids = v.encode("cab")
    assert ids.dtype == np.int64 and ids.tolist() == [5, 3, 4]
    assert v.decode([1, 5, 3, 4, 2, 0, 0]) == "cab"
    assert v.decode(np.array([[3], [4]])) == "ab"
    d = json.loads(json.dumps(v.to_dict()))
    assert Vocab.from_dict(d) == v
    assert Vocab.from_dict(d) != Vocab.build(["abc"], lines_mode=False)


def test_vocab_stream_mode_has_no_specials():
    v = Vocab.build(["hello\nworld"], lines_mode=False)
    assert v.pad_id is None and v.bos_id is None and v.eos_id is None
    assert len(v) == len(v.chars) == len(set("hello\nworld"))
    text = "world\nhello"
    assert v.decode(v.encode(text)) == text
    assert v.encode("\n")[0] == 0  # '\n' sorts first


def test_vocab_unicode_round_trip():
    text = "naïve café — Ωmega 🎉 日本"
    v = Vocab.build([text], lines_mode=False)
    assert v.decode(v.encode(text)) == text
    assert Vocab.from_dict(v.to_dict()) == v


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40), st.booleans())
def test_vocab_round_trip_property(text, lines_mode):
    v = Vocab.build([text], lines_mode=lines_mode)
    ids = v.encode(text)
    assert len(ids) == len(text) and ids.min() >= v.offset and ids.max() < len(v)
    assert v.decode(ids) == text
    assert Vocab.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_vocab_unseen_characters():
    v = Vocab.build(["abc"], lines_mode=True)
    with pytest.raises(DataError, match=r"not in the vocabulary: 'd' \(U\+0064\), 'Ω' \(U\+03A9\)"):
        v.encode("abΩcdd")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        v.decode([6])


@pytest.mark.parametrize(
    "d",
    [
        [],
        {"chars": ["a"]},
        {"chars": ["a"], "lines_mode": "yes"},
        {"chars": "ab", "lines_mode": True},
        {"chars": ["ab"], "lines_mode": True},
        {"chars": ["a", "a"], "lines_mode": True},
        {"chars": [], "lines_mode": True},
        {"chars": [1], "lines_mode": False},
        {"chars": ["a"], "lines_mode": True, "extra": 1},
    ],
)
def test_vocab_from_dict_rejects_malformed(d):
    with pytest.raises(DataError):
        Vocab.from_dict(d)


# ----------------------------------------------------------------------------- lines


def test_lines_batch_exact():
    v = Vocab.build(["ab", "c"], lines_mode=True)  # a=3 b=4 c=5
    b = LinesBatcher(["ab", "c"], v, batch_size=2, rng=0)
    x, y, m = b.next_batch()
    order = [v.decode(x[1:, j]) for j in range(2)]
    cols = [order.index("ab"), order.index("c")]
    x, y, m = x[:, cols], y[:, cols], m[:, cols]
    np.testing.assert_array_equal(x, [[1, 1], [3, 5], [4, 0]])
    np.testing.assert_array_equal(y, [[3, 5], [4, 2], [2, 0]])
    np.testing.assert_array_equal(m, [[True, True], [True, True], [True, False]])
    assert x.dtype == y.dtype == np.int64 and m.dtype == bool


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(3, 40), max_size=9), min_size=1, max_size=12))
def test_pack_sequences_reads_back_every_line(lines):
    """Column b holds <bos> + line b as the inputs, line b + <eos> as the targets and
    n + 1 counted steps; everything after is padding (mask 0)."""
    seqs = [np.array(s, dtype=np.int32) for s in lines]
    x, y, m = pack_sequences(seqs, bos=1, eos=2, pad=0)
    T = max(map(len, lines)) + 1
    assert x.shape == y.shape == m.shape == (T, len(lines))
    for b, s in enumerate(lines):
        n = len(s)
        assert x[: n + 1, b].tolist() == [1, *s] and y[: n + 1, b].tolist() == [*s, 2]
        assert m[:, b].tolist() == [True] * (n + 1) + [False] * (T - n - 1)
        assert not x[n + 1 :, b].any() and not y[n + 1 :, b].any()


def test_eval_batches_in_order_exact():
    v = Vocab.build(NAMES, lines_mode=True)
    got = []
    for x, y, m in iter_eval_batches(NAMES, v, 4):
        assert x.shape == y.shape == m.shape
        for j in range(x.shape[1]):
            n = int(m[:, j].sum())
            assert x[0, j] == v.bos_id and y[n - 1, j] == v.eos_id
            np.testing.assert_array_equal(x[1:n, j], y[: n - 1, j])  # shifted by one
            assert not m[n:, j].any() and (x[n:, j] == v.pad_id).all()
            got.append(v.decode(x[:n, j]))
    assert got == NAMES
    assert list(iter_eval_batches([], v, 4)) == []
    with pytest.raises(DataError, match="'Z'"):
        list(iter_eval_batches(["ann", "Zed"], v, 4))


@pytest.mark.parametrize("bucket", [True, False])
def test_every_line_once_per_epoch(bucket):
    lines = random_lines(203, seed=1)
    v = Vocab.build(lines, lines_mode=True)
    b = LinesBatcher(lines, v, batch_size=8, rng=np.random.default_rng(5), bucket=bucket)
    assert b.batches_per_epoch == 26
    epochs = []
    for _ in range(2):
        seen = []
        for _ in range(b.batches_per_epoch):
            x, y, m = b.next_batch()
            for j in range(x.shape[1]):
                seen.append(v.decode(y[m[:, j], j]))
        epochs.append(seen)
        assert sorted(seen) == sorted(lines)
    assert epochs[0] != epochs[1]  # reshuffled
    assert b.epoch == 1


def padding_fraction(batcher, n):
    pad = total = 0
    for _ in range(n):
        _, _, m = batcher.next_batch()
        pad += int((~m).sum())
        total += m.size
    return pad / total


def test_bucketing_reduces_padding():
    lines = random_lines(2000, seed=2, max_len=60)
    v = Vocab.build(lines, lines_mode=True)
    kw = dict(batch_size=16, rng=0)
    n = LinesBatcher(lines, v, bucket=False, **kw).batches_per_epoch
    plain = padding_fraction(LinesBatcher(lines, v, bucket=False, **kw), n)
    bucketed = padding_fraction(LinesBatcher(lines, v, bucket=True, **kw), n)
    assert plain > 0.3 and bucketed < 0.05, (plain, bucketed)


def test_lines_deterministic_given_rng():
    lines = random_lines(100, seed=3)
    v = Vocab.build(lines, lines_mode=True)
    a = LinesBatcher(lines, v, batch_size=7, rng=11)
    b = LinesBatcher(lines, v, batch_size=7, rng=np.random.default_rng(11))
    for _ in range(40):
        for p, q in zip(a.next_batch(), b.next_batch(), strict=True):
            np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("stop", [0, 1, 9, 15, 16, 17, 40])
def test_lines_resume_equality(stop):
    lines = random_lines(120, seed=4)
    v = Vocab.build(lines, lines_mode=True)
    ref = LinesBatcher(lines, v, batch_size=8, rng=3)  # 15 batches per epoch
    expected = [ref.next_batch() for _ in range(stop + 35)]
    first = LinesBatcher(lines, v, batch_size=8, rng=3)
    for _ in range(stop):
        first.next_batch()
    state = json.loads(json.dumps(first.state_dict()))
    resumed = LinesBatcher(lines, v, batch_size=8, rng=99)  # a different seed: state wins
    resumed.load_state_dict(state)
    for want in expected[stop:]:
        for p, q in zip(resumed.next_batch(), want, strict=True):
            np.testing.assert_array_equal(p, q)


def test_lines_state_rejects_other_data():
    lines = random_lines(50, seed=5)
    v = Vocab.build(lines, lines_mode=True)
    state = LinesBatcher(lines, v, batch_size=4, rng=0).state_dict()
    with pytest.raises(DataError, match="fingerprint"):
        LinesBatcher(lines[:-1] + ["abc"], v, batch_size=4, rng=0).load_state_dict(state)
    with pytest.raises(DataError, match="batch_size"):
        LinesBatcher(lines, v, batch_size=5, rng=0).load_state_dict(state)
    with pytest.raises(DataError, match="position"):
        LinesBatcher(lines, v, batch_size=4, rng=0).load_state_dict({**state, "position": 99})
    with pytest.raises(ValueError, match="lines-mode"):
        LinesBatcher(lines, Vocab.build(lines, lines_mode=False), batch_size=4)


# ----------------------------------------------------------------------------- stream


def test_stream_layout_and_reset():
    ids = np.arange(23)
    b = StreamBatcher(ids, batch_size=3, seq_len=3)  # L = 7: streams 0-6, 7-13, 14-20
    assert b.batches_per_epoch == 2
    x, y, r = b.next_batch()
    assert r is True
    np.testing.assert_array_equal(x, [[0, 7, 14], [1, 8, 15], [2, 9, 16]])
    np.testing.assert_array_equal(y, x + 1)
    x, y, r = b.next_batch()
    assert r is False
    np.testing.assert_array_equal(x, [[3, 10, 17], [4, 11, 18], [5, 12, 19]])
    np.testing.assert_array_equal(y, x + 1)
    x, y, r = b.next_batch()  # wraps around: a new pass starts
    assert r is True and b.epoch == 1
    np.testing.assert_array_equal(x[0], [0, 7, 14])


def test_stream_chunks_continue_streams():
    ids = np.random.default_rng(0).integers(0, 50, size=1003)
    b = StreamBatcher(ids, batch_size=4, seq_len=7)
    L = 1003 // 4
    xs, ys = [], []
    for i in range(b.batches_per_epoch):
        x, y, r = b.next_batch()
        assert r == (i == 0)
        assert x.shape[0] == (7 if i < b.batches_per_epoch - 1 else (L - 1) % 7 or 7)
        xs.append(x)
        ys.append(y)
    X, Y = np.concatenate(xs), np.concatenate(ys)  # (L - 1, B)
    for j in range(4):
        np.testing.assert_array_equal(X[:, j], ids[j * L : (j + 1) * L - 1])
        np.testing.assert_array_equal(Y[:, j], ids[j * L + 1 : (j + 1) * L])


@pytest.mark.parametrize("stop", [0, 1, 5, 6, 13])
def test_stream_resume_equality(stop):
    ids = np.arange(100) % 17
    ref = StreamBatcher(ids, batch_size=3, seq_len=5)
    expected = [ref.next_batch() for _ in range(stop + 15)]
    first = StreamBatcher(ids, batch_size=3, seq_len=5)
    for _ in range(stop):
        first.next_batch()
    resumed = StreamBatcher(ids, batch_size=3, seq_len=5)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for want in expected[stop:]:
        x, y, r = resumed.next_batch()
        np.testing.assert_array_equal(x, want[0])
        np.testing.assert_array_equal(y, want[1])
        assert r == want[2]
    with pytest.raises(DataError, match="seq_len"):
        StreamBatcher(ids, batch_size=3, seq_len=6).load_state_dict(first.state_dict())


def test_stream_too_short():
    with pytest.raises(DataError, match="too short.*--batch-size"):
        StreamBatcher(np.arange(7), batch_size=4, seq_len=3)


@pytest.mark.parametrize("n,B,T", [(2, 1, 1), (11, 4, 2), (100, 7, 5), (50, 64, 8), (33, 1, 40)])
def test_eval_stream_covers_every_prediction_once(n, B, T):
    ids = np.random.default_rng(n).integers(0, 1000, size=n)
    pairs = []
    rows = None
    state_rows = []  # per stream, the predictions in the order a carried state sees them
    for x, y, m in iter_eval_stream(ids, B, T):
        assert x.shape == y.shape == m.shape and x.shape[0] <= T and x.shape[1] <= B
        rows = x.shape[1] if rows is None else rows
        assert x.shape[1] == rows  # same streams in every chunk: state can be carried
        state_rows.append(np.where(m, x, -1))
        pairs += [(int(a), int(b)) for a, b in zip(x[m], y[m], strict=True)]
    expected = [(int(a), int(b)) for a, b in zip(ids[:-1], ids[1:], strict=True)]
    assert sorted(pairs) == sorted(expected)
    seq = np.concatenate(state_rows).T.ravel()
    np.testing.assert_array_equal(seq[seq >= 0], ids[:-1])  # streams are contiguous, in order


# ----------------------------------------------------------------------------- splits


def test_split_train_val():
    items = [f"line{i}" for i in range(20)]
    tr, va = split_train_val(items, val_fraction=0.25, seed=1)
    assert len(va) == 5 and len(tr) == 15 and sorted(tr + va) == sorted(items)
    assert tr == [x for x in items if x in tr]  # original order kept
    assert split_train_val(items, val_fraction=0.25, seed=1) == (tr, va)
    assert split_train_val(items, val_fraction=0.25, seed=2) != (tr, va)
    assert [len(p) for p in split_train_val(["a", "b"], val_fraction=0.01, seed=0)] == [1, 1]
    assert [len(p) for p in split_train_val(["a", "b"], val_fraction=0.99, seed=0)] == [1, 1]
    with pytest.raises(DataError, match="at least|from 1"):
        split_train_val(["a"], val_fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(items, val_fraction=1.0, seed=0)


def test_split_text():
    text = "abcdefghij" * 10
    tr, va = split_text(text, val_fraction=0.1)
    assert tr + va == text and len(va) == 10
    assert split_text("abcd", val_fraction=0.01) == ("ab", "cd")
    with pytest.raises(DataError):
        split_text("abc", val_fraction=0.5)


# ----------------------------------------------------------------------------- argument types


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda v: Vocab(None, lines_mode=True), r"^chars must be a list .*got NoneType$"),
        (lambda v: Vocab(3, lines_mode=False), r"^chars must be a list .*got int$"),
        (lambda v: Vocab.build(None, lines_mode=True), r"^texts must be a list .*got NoneType$"),
        (lambda v: iter_eval_batches(None, v, 2), r"^lines must be a list .*got NoneType$"),
        (lambda v: iter_eval_batches("ab", v, 2), r"^lines must be .*got a str \(wrap it"),
        (lambda v: iter_eval_batches(["a"], None, 2), r"^vocab must be a Vocab .*got NoneType$"),
        (lambda v: iter_eval_batches(["a"], "abc", 2), r"^vocab must be a Vocab .*got str$"),
        (lambda v: LinesBatcher(["a"], None, batch_size=1), r"^vocab must be a Vocab"),
        (lambda v: LinesBatcher(None, v, batch_size=1), r"^lines must be a list .*NoneType$"),
        (lambda v: LinesBatcher("abc", v, batch_size=1), r"^lines must be .*got a str"),
        (lambda v: split_train_val(None, val_fraction=0.5), r"^items must be a list .*NoneType$"),
        (lambda v: split_train_val("abcd", val_fraction=0.5), r"^items must .*\(use split_text\)"),
        (lambda v: split_text(None, val_fraction=0.5), r"^text must be a str, got NoneType$"),
        (lambda v: split_text(["ab", "cd"], val_fraction=0.5), r"^text must be a str, got list$"),
    ],
)
def test_arguments_of_the_wrong_type_are_named(call, match):
    v = Vocab.build(["abc"], lines_mode=True)
    with pytest.raises(TypeError, match=match):
        call(v)


def test_eval_batches_checks_when_called():
    v = Vocab.build(["abc"], lines_mode=True)
    with pytest.raises(DataError, match="'Z'"):
        iter_eval_batches(["a", "Z"], v, 2)  # no next() needed
    with pytest.raises(ValueError, match="lines-mode vocabulary"):
        iter_eval_batches(["a"], Vocab.build(["abc"], lines_mode=False), 2)
    assert [x.shape for x, _, _ in iter_eval_batches(("a", "bc"), v, 1)] == [(2, 1), (3, 1)]
    tr, va = split_train_val(np.array(["a", "b", "c", "d"]), val_fraction=0.5)
    assert len(tr) == len(va) == 2
