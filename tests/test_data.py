"""pad_sequence, lengths_to_mask, batch_indices: shapes, dtypes, torch parity, errors."""

import numpy as np
import pytest

import nprnn
from nprnn import batch_indices, lengths_to_mask, pad_sequence


def test_pad_ids_time_major_and_batch_first():
    seqs = [np.array([3, 1, 4]), np.array([1]), np.array([], dtype=np.int64), [5, 9]]
    x, lengths = pad_sequence(seqs)
    assert x.dtype == np.int64 and x.shape == (3, 4)
    np.testing.assert_array_equal(lengths, [3, 1, 0, 2])
    np.testing.assert_array_equal(x[:, 0], [3, 1, 4])
    np.testing.assert_array_equal(x[:, 3], [5, 9, 0])
    xb, _ = pad_sequence(seqs, batch_first=True, padding_value=-1)
    np.testing.assert_array_equal(xb[1], [1, -1, -1])
    assert xb.flags.c_contiguous and x.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
def test_pad_keeps_the_dtype(dtype):
    seqs = [np.ones((2, 3), dtype), np.full((4, 3), 2, dtype)]
    x, lengths = pad_sequence(seqs, padding_value=0)
    assert x.dtype == dtype and x.shape == (4, 2, 3)
    np.testing.assert_array_equal(x[2:, 0], 0)
    f, _ = pad_sequence([np.array([0.25, 0.5], np.float32)], padding_value=0)
    assert f.dtype == np.float32 and f[1, 0] == 0.5  # the seed's int truncation is gone


def test_pad_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 2)) for n in (4, 1, 3)]
    for bf in (False, True):
        x, _ = pad_sequence(seqs, batch_first=bf, padding_value=0.5)
        t = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(s) for s in seqs],
                                            batch_first=bf, padding_value=0.5)  # fmt: skip
        np.testing.assert_array_equal(x, t.numpy())


def test_padded_batch_runs_a_layer_and_the_loss():
    seqs = [np.array([1, 2, 3]), np.array([4])]
    ids, lengths = pad_sequence(seqs)
    emb, rnn = nprnn.Embedding(5, 3, rng=0), nprnn.GRU(3, 4, rng=1)
    out, h_n = rnn(emb(ids), lengths=lengths)
    assert out.shape == (3, 2, 4) and not out[1:, 1].any()  # zero at padding
    mask = lengths_to_mask(lengths)
    loss, _ = nprnn.softmax_cross_entropy(out, ids % 4, mask=mask)
    assert np.isfinite(loss)


def test_lengths_to_mask():
    m = lengths_to_mask([2, 0, 3])
    assert m.dtype == np.bool_ and m.shape == (3, 3)
    np.testing.assert_array_equal(m[:, 0], [True, True, False])
    assert not m[:, 1].any()
    mb = lengths_to_mask(np.array([2, 0, 3]), T=5, batch_first=True)
    assert mb.shape == (3, 5) and mb[2].sum() == 3
    assert lengths_to_mask([]).shape == (0, 0)


@pytest.mark.parametrize(
    "fn,exc,match",
    [
        (lambda: pad_sequence([]), ValueError, r"^seqs must hold at least one sequence, got none$"),
        (lambda: pad_sequence("abc"), TypeError, r"^seqs must be a list of arrays"),
        (lambda: pad_sequence([np.ones(2), 3.0]), ValueError, r"^seqs\[1\] must be a sequence"),
        (lambda: pad_sequence([np.ones((2, 3)), np.ones((2, 4))]), ValueError,
         r"^seqs\[1\] has shape \(2, 4\) but seqs\[0\] has \(2, 3\)"),
        (lambda: pad_sequence([np.array(["a"])]), TypeError, r"^seqs\[0\] must hold numbers"),
        (lambda: pad_sequence([[1, 2]], padding_value=0.5), ValueError,
         r"^padding_value=0\.5 cannot be stored in the sequences' dtype int64$"),
        (lambda: pad_sequence([np.ones(2, np.uint8)], padding_value=-1), ValueError,
         r"^padding_value=-1 cannot be stored"),
        (lambda: pad_sequence([[1]], padding_value="0"), TypeError, r"^padding_value must be a"),
        (lambda: lengths_to_mask([[1, 2]]), ValueError, r"^lengths must be 1-D \(B,\)"),
        (lambda: lengths_to_mask([1.5]), TypeError, r"^lengths must hold integers"),
        (lambda: lengths_to_mask([1, -2]), ValueError, r"^lengths must hold lengths >= 0, got -2"),
        (lambda: lengths_to_mask([1, 4], T=3), ValueError,
         r"^T=3 is shorter than the longest sequence \(lengths has 4 at index 1\)$"),
        (lambda: batch_indices(10, 0), ValueError, r"^batch_size must be an integer >= 1"),
        (lambda: batch_indices(10, 3, bucket=True), ValueError, r"^bucket=True needs the lengths"),
        (lambda: batch_indices(10, 3, shuffle=True, rng="x"), TypeError, r"^rng must be"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_name_the_argument(fn, exc, match):
    with pytest.raises(exc, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def test_batch_indices_order_shuffle_bucket():
    b = batch_indices(7, 3)
    assert [x.tolist() for x in b] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [x.tolist() for x in batch_indices(7, 3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    s1 = batch_indices(100, 8, shuffle=True, rng=3)
    s2 = batch_indices(100, 8, shuffle=True, rng=3)
    assert all(np.array_equal(a, b) for a, b in zip(s1, s2, strict=True))  # seeded
    flat = np.concatenate(s1)
    assert sorted(flat.tolist()) == list(range(100)) and flat.tolist() != list(range(100))
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=200)
    buckets = batch_indices(lengths, 16, shuffle=True, bucket=True, rng=1)
    assert sorted(np.concatenate(buckets).tolist()) == list(range(200))
    spread = max(int(np.ptp(lengths[x])) for x in buckets)
    shuffled = max(int(np.ptp(lengths[x])) for x in batch_indices(lengths, 16, shuffle=True, rng=1))
    assert spread <= 5 < shuffled  # bucketing keeps similar lengths together
    firsts = [int(lengths[x].min()) for x in buckets]
    assert firsts != sorted(firsts)  # the batch order is shuffled too
    assert all(x.dtype == np.int64 for x in buckets)
