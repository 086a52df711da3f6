"""softmax_cross_entropy's ignore_index, label_smoothing, weight against F.cross_entropy."""

import itertools

import numpy as np
import pytest

from nprnn import softmax_cross_entropy

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float64: 1e-10, np.float32: 1e-5}
OPTIONS = list(
    itertools.product(
        ["mean", "sum"],  # reduction
        [None, 2],  # ignore_index (2 is also a valid class)
        [0.0, 0.1, 1.0],  # label_smoothing
        [False, True],  # weight
        [False, True],  # mask
    )
)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = np.linalg.norm(a - b)
    return 0.0 if d == 0 else float(d / max(np.linalg.norm(a), np.linalg.norm(b)))


def _case(dtype, seed=0, shape=(5, 3), V=6):
    rng = np.random.default_rng(seed)
    z = (3 * rng.normal(size=shape + (V,))).astype(dtype)
    y = rng.integers(0, V, size=shape)
    w = rng.uniform(0.2, 2.0, size=V).astype(dtype)
    mask = rng.random(shape) < 0.7
    mask[0, 0] = True
    return z, y, w, mask


def _torch(z, y, reduction, ignore_index, eps, w, mask):
    ignore = -100 if ignore_index is None else ignore_index
    yt = np.where(mask, y, ignore) if mask is not None else y
    zt = torch.from_numpy(z.reshape(-1, z.shape[-1]).copy()).requires_grad_(True)
    loss = F.cross_entropy(
        zt,
        torch.from_numpy(yt.reshape(-1)),
        weight=None if w is None else torch.from_numpy(w),
        ignore_index=ignore,
        reduction=reduction,
        label_smoothing=eps,
    )
    loss.backward()
    return loss.item(), zt.grad.numpy().reshape(z.shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction,ignore_index,eps,weighted,masked", OPTIONS)
def test_matches_torch_cross_entropy(dtype, reduction, ignore_index, eps, weighted, masked):
    z, y, w, mask = _case(dtype)
    w = w if weighted else None
    mask = mask if masked else None
    loss, dz = softmax_cross_entropy(z, y, mask, reduction, ignore_index=ignore_index,
                                     label_smoothing=eps, weight=w)  # fmt: skip
    tloss, tdz = _torch(z, y, reduction, ignore_index, eps, w, mask)
    assert dz.dtype == dtype and dz.shape == z.shape
    assert rel(loss, tloss) < TOL[dtype], (loss, tloss)
    assert rel(dz, tdz) < TOL[dtype]


def test_ignore_index_equals_mask_and_skips_range_check():
    z, y, _, mask = _case(np.float64, seed=1)
    y2 = np.where(mask, y, -7)  # out of range where ignored: never read
    a = softmax_cross_entropy(z, y, mask=mask)
    b = softmax_cross_entropy(z, y2, ignore_index=-7)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_default_options_unchanged_and_edge_cases():
    z, y, _, mask = _case(np.float32, seed=2)
    loss, dz = softmax_cross_entropy(z, y, mask)
    l0, d0 = softmax_cross_entropy(z, y, mask, label_smoothing=0.0, weight=None)
    assert loss == l0 and np.array_equal(dz, d0)
    ones = softmax_cross_entropy(z, y, mask, weight=np.ones(6))
    assert ones[0] == pytest.approx(loss, rel=1e-6)  # unit weights: the plain mean
    all_ignored = softmax_cross_entropy(z, np.full(y.shape, 3), ignore_index=3)
    assert all_ignored[0] == 0.0 and not all_ignored[1].any()  # torch: nan
    zero_w = softmax_cross_entropy(z, y, weight=np.zeros(6))
    assert zero_w[0] == 0.0 and not zero_w[1].any()


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        (dict(ignore_index=1.0), TypeError, r"^ignore_index must be an int or None, got 1\.0$"),
        (dict(ignore_index=True), TypeError, r"^ignore_index must be an int or None"),
        (dict(label_smoothing=1.5), ValueError, r"^label_smoothing must lie in \[0\.0, 1\.0\]"),
        (dict(weight=np.ones(5)), ValueError,
         r"^weight has shape \(5,\): expected \(6,\), one weight per class \(logits has V=6\)$"),
        (dict(weight=np.array([1, 1, 1, 1, 1, np.nan])), ValueError,
         r"^weight contains a non-finite value"),
        (dict(weight=["a"] * 6), TypeError, r"^weight must hold real numbers"),
    ],
)  # fmt: skip
def test_option_errors(kw, exc, match):
    z, y, _, _ = _case(np.float64)
    with pytest.raises(exc, match=match) as e:
        softmax_cross_entropy(z, y, **kw)
    assert "\n" not in str(e.value)
