"""Data helpers: pad variable-length sequences, masks from lengths, batches of indices.

    x, lengths = nprnn.pad_sequence([ids_a, ids_b, ids_c])     # (T, B) int ids, (B,)
    mask = nprnn.lengths_to_mask(lengths)                       # (T, B) bool, True at real steps
    for idx in nprnn.batch_indices(lengths_all, 32, shuffle=True, bucket=True, rng=epoch):
        x, lengths = nprnn.pad_sequence([seqs[i] for i in idx])

The layout is the layers': time-major (T, B, ...) by default, (B, T, ...) with
``batch_first=True``; padding is on the right, so ``lengths`` can be passed straight to a
recurrent layer (``lstm(x, lengths=lengths)``) and the mask to the loss.
"""

from __future__ import annotations

import numbers

import numpy as np

from .validation import _shape, as_array, as_rng, positive_int

__all__ = ["pad_sequence", "lengths_to_mask", "batch_indices"]


def pad_sequence(seqs, *, batch_first=False, padding_value=0):
    """Stack sequences of different lengths into one right-padded array.

    ``seqs``: a non-empty sequence of arrays, each (T_i,) (e.g. token ids) or
    (T_i, *F) (features; the same trailing shape F for all), any T_i >= 0.
    Returns ``(padded, lengths)``: ``padded`` is (T, B, *F), or (B, T, *F) with
    ``batch_first``, T = max T_i, with ``padded[t, b] = seqs[b][t]`` for t < T_i and
    ``padding_value`` after; ``lengths`` (B,) int64 holds the T_i. The dtype is the
    sequences' own (their common NumPy type if they differ): ints stay ints, float32
    stays float32. ``padding_value`` must be representable in it.

    Example:

    >>> import numpy as np, nprnn
    >>> padded, lengths = nprnn.pad_sequence([np.array([1, 2, 3]), np.array([4])])
    >>> padded                                     # (T, B), time-major
    array([[1, 4],
           [2, 0],
           [3, 0]])
    >>> lengths
    array([3, 1])
    """
    if isinstance(seqs, str | bytes) or not hasattr(seqs, "__len__"):
        raise TypeError(
            f"seqs must be a list of arrays (one per sequence), got {type(seqs).__name__}"
        )
    if isinstance(seqs, np.ndarray) and seqs.dtype != object:
        seqs = list(seqs)  # the rows of an array: sequences of one length
    if len(seqs) == 0:
        raise ValueError("seqs must hold at least one sequence, got none")
    arrays = [as_array(f"seqs[{i}]", s) for i, s in enumerate(seqs)]
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(f"seqs[{i}] must be a sequence (T,) or (T, F...), got a scalar")
        if a.dtype.kind not in "biuf":
            raise TypeError(f"seqs[{i}] must hold numbers, got dtype {a.dtype}")
        if a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"seqs[{i}] has shape {_shape(a)} but seqs[0] has {_shape(arrays[0])}: every "
                f"sequence needs the same trailing shape {arrays[0].shape[1:]} after its length"
            )
    dtype = np.result_type(*arrays)
    if isinstance(padding_value, bool) or not isinstance(padding_value, numbers.Real):
        raise TypeError(f"padding_value must be a real number, got {padding_value!r}")
    with np.errstate(all="ignore"):
        fill = np.array(padding_value).astype(dtype)
    if dtype.kind != "f" and fill != padding_value:
        raise ValueError(
            f"padding_value={padding_value!r} cannot be stored in the sequences' dtype {dtype}"
        )
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)  # (B,)
    B, T = len(arrays), int(lengths.max())
    out = np.full((B, T) + arrays[0].shape[1:], fill, dtype=dtype)  # (B, T, *F)
    for b, a in enumerate(arrays):
        out[b, : a.shape[0]] = a
    if not batch_first:
        out = np.ascontiguousarray(out.swapaxes(0, 1))  # (T, B, *F)
    return out, lengths


def _lengths(lengths, name="lengths") -> np.ndarray:
    ln = as_array(name, lengths)
    if ln.ndim != 1:
        raise ValueError(f"{name} must be 1-D (B,), got shape {_shape(ln)}")
    if ln.dtype.kind not in "iu" and ln.size:  # an empty list is an empty float array
        raise TypeError(f"{name} must hold integers, got dtype {ln.dtype}")
    if ln.size and int(ln.min()) < 0:
        i = int(np.argmax(ln < 0))
        raise ValueError(f"{name} must hold lengths >= 0, got {int(ln[i])} at index {i}")
    return ln.astype(np.int64)


def lengths_to_mask(lengths, T=None, *, batch_first=False):
    """The right-padding mask of ``lengths``: True at real steps.

    ``lengths`` (B,) ints >= 0; ``T`` the number of steps (default: the longest
    length; it may not be shorter). Returns a bool array (T, B), or (B, T) with
    ``batch_first``: ``mask[t, b] = t < lengths[b]``.

    Example:

    >>> import nprnn
    >>> nprnn.lengths_to_mask([3, 1])              # (T, B): True at the real steps
    array([[ True,  True],
           [ True, False],
           [ True, False]])
    """
    ln = _lengths(lengths)
    longest = int(ln.max()) if ln.size else 0
    if T is None:
        T = longest
    else:
        T = positive_int("T", T, minimum=0)
        if T < longest:
            i = int(np.argmax(ln))
            raise ValueError(
                f"T={T} is shorter than the longest sequence (lengths has {longest} at index {i})"
            )
    if batch_first:
        return np.arange(T)[None, :] < ln[:, None]  # (B, T)
    return np.arange(T)[:, None] < ln[None, :]  # (T, B)


def batch_indices(lengths, batch_size, *, shuffle=False, bucket=False, drop_last=False, rng=None):
    """Split a data set into batches of indices: a list of int64 arrays.

    ``lengths``: the number of items N, or their lengths (N,) (needed for ``bucket``).
    ``batch_size`` items per batch (the last one shorter unless ``drop_last``).
    ``shuffle``: a random order drawn from ``rng`` (a ``np.random.Generator``, an int
    seed or None) — pass a new seed, or the same Generator, each epoch.
    ``bucket``: group items of similar length, so little padding is needed: the items
    (shuffled first when ``shuffle``, so ties are broken at random) are sorted by length
    with a stable sort, cut into batches, and the order of the batches is shuffled
    when ``shuffle``. Without ``shuffle`` and ``bucket``: 0..N−1 in order.

    Example:

    >>> import nprnn
    >>> nprnn.batch_indices(5, 2)
    [array([0, 1]), array([2, 3]), array([4])]
    >>> nprnn.batch_indices([5, 1, 4, 2, 3], 2, bucket=True)   # by length: 1, 2 | 3, 4 | 5
    [array([1, 3]), array([4, 2]), array([0])]
    """
    if isinstance(lengths, numbers.Integral) and not isinstance(lengths, bool):
        n, ln = positive_int("lengths", lengths, minimum=0), None
    else:
        ln = _lengths(lengths)
        n = ln.size
    batch_size = positive_int("batch_size", batch_size)
    if bucket and ln is None:
        raise ValueError("bucket=True needs the lengths of the items, not their number")
    gen = as_rng(rng) if shuffle else None
    order = gen.permutation(n) if shuffle else np.arange(n)
    if bucket:
        order = order[np.argsort(ln[order], kind="stable")]
    stop = n - n % batch_size if drop_last else n
    batches = [order[i : i + batch_size].astype(np.int64) for i in range(0, stop, batch_size)]
    if bucket and shuffle:
        batches = [batches[i] for i in gen.permutation(len(batches))]
    return batches
