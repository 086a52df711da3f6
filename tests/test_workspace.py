"""nprnn.backends._pool: large buffers are reused only once nothing refers to them."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from nprnn import functional as F
from nprnn.backends import _pool as ws

pytestmark = pytest.mark.skipif(not ws._enabled, reason="the pool is off without a GIL")

MB = 1 << 20


@pytest.fixture(autouse=True)
def empty_pool():
    ws.release()
    yield
    ws.release()


def _addr(a):
    return a.__array_interface__["data"][0]


def test_a_buffer_is_reused_once_free_and_never_while_a_view_lives():
    a = ws.empty((2 * MB // 4,), np.float32)
    first = _addr(a)
    view = a[10:20].reshape(2, 5)  # keeps the buffer in use after `a` dies
    del a
    b = ws.empty((2 * MB // 4,), np.float32)
    second = _addr(b)
    assert second != first  # the view still holds the first buffer
    b[...] = 0
    view[...] = 7
    assert (view == 7).all() and not b.any()
    del b
    c = ws.empty((MB // 4, 2), np.float32)  # same bytes, other shape: the free one
    assert _addr(c) == second
    del view, c
    gc.collect()
    assert ws.release() >= 4 * MB  # both free now


def test_arrays_are_aligned_writable_and_c_ordered():
    for dt in (np.float32, np.float64):
        a = ws.empty((3, MB // 8 + 1, 2), dt)
        assert a.dtype == dt and a.shape == (3, MB // 8 + 1, 2)
        assert a.flags.c_contiguous and a.flags.writeable
        assert _addr(a) % 64 == 0
        a[...] = 1.5
        assert a.sum() == 1.5 * a.size


def test_small_arrays_and_release():
    small = ws.empty((10,), np.float64)
    assert small.base is None  # plain NumPy
    a = ws.empty((MB,), np.uint8)
    assert ws.release() == 0  # in use: nothing to free
    del a
    assert ws.release() >= MB


def test_the_pool_holds_at_most_its_limit(monkeypatch):
    monkeypatch.setattr(ws, "LIMIT", 5 * MB)
    kept = [ws.empty((n * MB,), np.uint8) for n in (1, 2)]  # in use: 3 MB pooled
    for n in (1, 2, 3):  # each freed at once: unused buffers are dropped to make room
        ws.empty((n * MB,), np.uint8)
        assert sum(b.nbytes for b in ws._buffers) <= 5 * MB
    big = ws.empty((3 * MB,), np.uint8)  # no room beside the 3 MB in use: not pooled
    assert big.base is None and all(a.base is not None for a in kept)


def test_kernel_outputs_kept_by_the_caller_stay_intact():
    """Outputs and caches from the pool are not overwritten by later calls."""
    rng = np.random.default_rng(0)
    T, B, H = 40, 32, 64  # big enough for pooled arrays
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    w = [rng.standard_normal((4 * H, H)).astype(np.float32) * 0.1 for _ in range(2)]
    out1, _, cache1 = F.lstm_forward(x, None, None, *w)
    keep = out1.copy()
    dx1, _, g1 = F.lstm_backward(np.ones_like(out1), None, cache1)
    keep_dx, keep_g = dx1.copy(), g1["weight_hh"].copy()
    for _ in range(3):  # more calls with other inputs, reusing free buffers
        out2, _, cache2 = F.lstm_forward(-x, None, None, *w)
        F.lstm_backward(out2, None, cache2)
    np.testing.assert_array_equal(out1, keep)
    np.testing.assert_array_equal(dx1, keep_dx)
    np.testing.assert_array_equal(g1["weight_hh"], keep_g)
    dx1b, _, _ = F.lstm_backward(np.ones_like(out1), None, cache1)  # cache1 intact too
    np.testing.assert_array_equal(dx1b, keep_dx)


def test_release_is_public():
    import nprnn

    assert nprnn.release_workspace is ws.release
    a = ws.empty((MB,), np.uint8)
    del a
    assert nprnn.release_workspace() >= MB
