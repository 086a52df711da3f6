"""nprnn.Linear, nprnn.Embedding and nprnn.softmax_cross_entropy."""

import re
import warnings

import numpy as np
import pytest

import nprnn
from nprnn import Embedding, Linear, gradcheck, softmax_cross_entropy

try:
    import torch
except ImportError:  # pragma: no cover - the torch tests skip
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")


def rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


# ----------------------------------------------------------------------------- Linear


@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(bias):
    lin = Linear(4, 3, bias=bias, dtype=np.float64, rng=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4))
    g = rng.standard_normal((2, 5, 3))
    lin(x)
    dx = lin.backward(g)
    base = lin.state_dict()

    def f(p):
        lin.load_state_dict({k: p[k] for k in base})
        return np.sum(lin(p["x"]) * g)

    errs = gradcheck(f, {**base, "x": x}, {**lin.grads, "x": dx})
    assert set(errs) == {"weight", "x"} | ({"bias"} if bias else set())
    assert max(errs.values()) < 1e-6, errs


@needs_torch
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_linear_matches_torch(dtype, tol):
    torch.manual_seed(0)
    tl = torch.nn.Linear(4, 3).to(torch.float64 if dtype == np.float64 else torch.float32)
    lin = Linear(4, 3, dtype=dtype)
    lin.load_state_dict({k: v.numpy() for k, v in tl.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((6, 2, 4)).astype(dtype)
    g = np.random.default_rng(2).standard_normal((6, 2, 3)).astype(dtype)
    y = lin(x)
    dx = lin.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = tl(xt)
    (yt * torch.tensor(g)).sum().backward()
    assert y.dtype == dx.dtype == lin.grads["weight"].dtype == dtype
    assert rel(y, yt.detach().numpy()) < tol
    assert rel(dx, xt.grad.numpy()) < tol
    assert rel(lin.grads["weight"], tl.weight.grad.numpy()) < tol
    assert rel(lin.grads["bias"], tl.bias.grad.numpy()) < tol


def test_linear_init_and_protocol():
    lin = Linear(100, 50, rng=0)
    assert list(lin.params) == ["weight", "bias"]
    assert lin.params["weight"].shape == (50, 100) and lin.params["bias"].shape == (50,)
    bound = 1 / np.sqrt(100)
    for p in lin.params.values():
        assert p.dtype == np.float32 and np.abs(p).max() <= bound
    assert abs(lin.params["weight"].std() - bound / np.sqrt(3)) < 0.05 * bound
    x = np.ones((3, 100), np.float32)
    lin(x)
    lin(x)
    lin.backward(np.ones((3, 50), np.float32))
    lin.backward(np.ones((3, 50), np.float32))
    np.testing.assert_array_equal(lin.grads["bias"], 6)  # two forwards, accumulated twice
    with pytest.raises(RuntimeError, match="no pending forward"):
        lin.backward(np.ones((3, 50), np.float32))  # each forward is consumed once
    lin.zero_grad()
    assert not lin.grads["weight"].any()
    assert repr(lin) == "Linear(in_features=100, out_features=50, bias=True)"


def test_linear_errors():
    lin = Linear(4, 3)
    with pytest.raises(RuntimeError, match=r"^Linear\.backward\(\) called with no pending forward"):
        lin.backward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=re.escape("x has shape (2, 5): expected (..., 4)")):
        lin(np.zeros((2, 5), np.float32))
    lin(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=re.escape("dout has shape (2, 4): expected (2, 3)")):
        lin.backward(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="x has dtype float64 but this computation is float32"):
        lin(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="in_features must be an integer >= 1"):
        Linear(0, 3)


# ----------------------------------------------------------------------------- Embedding


def test_embedding_gradcheck_with_repeated_ids():
    emb = Embedding(6, 3, dtype=np.float64, rng=0)
    ids = np.array([[0, 2, 2], [5, 0, 2]])
    g = np.random.default_rng(0).standard_normal((2, 3, 3))
    y = emb(ids)
    assert y.shape == (2, 3, 3)
    assert emb.backward(g) is None
    base = emb.state_dict()

    def f(p):
        emb.load_state_dict(p)
        return np.sum(emb(ids) * g)

    errs = gradcheck(f, base, emb.grads)
    assert errs["weight"] < 1e-6
    np.testing.assert_allclose(emb.grads["weight"][2], g[0, 1] + g[0, 2] + g[1, 2])
    assert not emb.grads["weight"][[1, 3, 4]].any()  # unused rows get nothing


@needs_torch
@pytest.mark.parametrize("padding_idx", [None, 1, -1])
def test_embedding_matches_torch(padding_idx):
    torch.manual_seed(0)
    te = torch.nn.Embedding(7, 4, padding_idx=padding_idx).double()
    emb = Embedding(7, 4, padding_idx=padding_idx, dtype=np.float64)
    emb.load_state_dict({k: v.numpy() for k, v in te.state_dict().items()})
    ids = np.random.default_rng(0).integers(0, 7, size=(5, 3))
    ids[0, 0], ids[1, 1] = 1, 6
    g = np.random.default_rng(1).standard_normal((5, 3, 4))
    y = emb(ids)
    emb.backward(g)
    yt = te(torch.from_numpy(ids))
    (yt * torch.from_numpy(g)).sum().backward()
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(emb.grads["weight"], te.weight.grad.numpy(), rtol=1e-13)


def test_embedding_init_and_padding_row():
    emb = Embedding(200, 50, padding_idx=-2, rng=0)
    w = emb.params["weight"]
    assert emb.padding_idx == 198 and not w[198].any()
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02  # N(0, 1) like torch
    assert repr(emb) == "Embedding(200, 50, padding_idx=198)"


def test_embedding_errors():
    emb = Embedding(10, 3)
    with pytest.raises(
        ValueError, match=re.escape("ids must hold ids in [0, 10), got 12 at index (1, 2)")
    ):
        emb(np.array([[0, 1, 2], [3, 4, 12]]))
    with pytest.raises(ValueError, match=re.escape("got -1 at index (0,)")):
        emb(np.array([-1, 4]))
    with pytest.raises(TypeError, match="ids must hold integer ids"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(RuntimeError, match=r"^Embedding\.backward\(\) called with no pending"):
        Embedding(10, 3).backward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=re.escape("padding_idx must lie in [-10, 10), got 10")):
        Embedding(10, 3, padding_idx=10)
    emb(np.array([1, 2]))
    with pytest.raises(ValueError, match=re.escape("dout has shape (2, 4): expected (2, 3)")):
        emb.backward(np.zeros((2, 4), np.float32))


def test_load_state_dict_errors_dense():
    lin = Linear(4, 3)
    msg = "load_state_dict: missing keys ['bias']; weight has shape (4, 3), expected (3, 4)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        lin.load_state_dict({"weight": np.zeros((4, 3))})
    with pytest.raises(TypeError, match="mapping"):
        lin.load_state_dict([np.zeros((3, 4)), np.zeros(3)])


# ----------------------------------------------------------------------------- the loss


def torch_ce(logits, targets, mask, reduction):
    z = torch.tensor(logits, requires_grad=True)
    y = torch.from_numpy(np.where(mask, targets, -100) if mask is not None else targets)
    V = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(z.reshape(-1, V), y.reshape(-1), reduction=reduction,
                                             ignore_index=-100)  # fmt: skip
    loss.backward()
    return loss.item(), z.grad.numpy()


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 1e-6)])
def test_cross_entropy_matches_torch(reduction, masked, dtype, tol):
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((6, 4, 7))).astype(dtype)
    targets = rng.integers(0, 7, size=(6, 4))
    mask = rng.random((6, 4)) < 0.6 if masked else None
    if masked:
        targets[~mask] = -1  # ignored entirely at masked positions
    loss, dz = softmax_cross_entropy(logits, targets, mask=mask, reduction=reduction)
    t_loss, t_dz = torch_ce(logits, targets, mask, reduction)
    assert isinstance(loss, float) and dz.dtype == dtype and dz.shape == logits.shape
    assert abs(loss - t_loss) <= tol * abs(t_loss)
    assert rel(dz, t_dz.reshape(dz.shape)) < tol
    if masked:
        assert not dz[~mask].any()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradcheck(reduction):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 3, 4))
    targets = rng.integers(0, 4, size=(5, 3))
    mask = np.ones((5, 3), int)
    mask[3:, 1] = 0
    _, dz = softmax_cross_entropy(logits, targets, mask, reduction)
    errs = gradcheck(lambda p: softmax_cross_entropy(p["z"], targets, mask, reduction)[0],
                     {"z": logits}, {"z": dz})  # fmt: skip
    assert errs["z"] < 1e-6


def test_cross_entropy_no_warnings_at_huge_logits():
    rng = np.random.default_rng(2)
    logits = (1e4 * rng.choice([-1.0, 1.0], size=(8, 5, 11))).astype(np.float32)
    logits[0, 0] = 1e4  # a tie at the max
    targets = rng.integers(0, 11, size=(8, 5))
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss, dz = softmax_cross_entropy(logits, targets)
    ref, ref_dz = softmax_cross_entropy(logits.astype(np.float64), targets)
    assert np.isfinite(loss) and np.all(np.isfinite(dz)) and dz.dtype == np.float32
    assert abs(loss - ref) <= 1e-6 * ref
    np.testing.assert_allclose(dz, ref_dz, atol=1e-7)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_cross_entropy_at_the_extremes_of_the_dtype(dt):
    """Logits ±max (float64: ±max/2): no overflow warning, a finite loss (accumulated in
    float64) and gradient."""
    big = np.finfo(dt).max if dt == np.float32 else np.finfo(dt).max / 2
    z = np.array([[big, -big, 0.0], [0.0, 1.0, 2.0]], dt)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        loss, dz = softmax_cross_entropy(z, np.array([1, 2]), reduction="sum")
        loss0, _ = softmax_cross_entropy(z, np.array([0, 2]), reduction="sum")
    tail = float(np.log1p(np.exp(-1.0) + np.exp(-2.0)))  # the second row, target 2
    assert loss == pytest.approx(2 * float(big) + tail, rel=1e-12)
    assert loss0 == pytest.approx(tail, rel=1e-6)
    assert dz.dtype == dt and np.isfinite(dz).all()
    np.testing.assert_array_equal(dz[0], [1, -1, 0])
    if dt == np.float64:  # a loss beyond float64's range is inf, without a warning
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            z[0, :2] = [np.finfo(dt).max, -np.finfo(dt).max]
            loss, dz = softmax_cross_entropy(z, np.array([1, 2]))
        assert loss == np.inf and np.isfinite(dz).all()


def test_cross_entropy_empty_mask_is_zero():
    logits = np.ones((3, 2, 4), np.float32)
    loss, dz = softmax_cross_entropy(logits, np.full((3, 2), -5), mask=np.zeros((3, 2)))
    assert loss == 0.0 and dz.dtype == np.float32 and not dz.any()


def test_cross_entropy_values():
    """A uniform prediction costs log V per counted step."""
    loss, dz = softmax_cross_entropy(np.zeros((2, 5)), [1, 3], reduction="sum")
    assert loss == pytest.approx(2 * np.log(5))
    np.testing.assert_allclose(dz, np.full((2, 5), 0.2) - np.eye(5)[[1, 3]])


def test_cross_entropy_errors():
    z = np.zeros((3, 2, 4))
    with pytest.raises(
        ValueError, match=re.escape("targets must hold ids in [0, 4), got 4 at index (2, 1)")
    ):
        softmax_cross_entropy(z, np.array([[0, 1], [2, 3], [0, 4]]))
    with pytest.raises(ValueError, match=re.escape("got -1 at index (0, 0)")):
        softmax_cross_entropy(z, np.array([[-1, 1], [2, 3], [0, 1]]), mask=np.ones((3, 2)))
    with pytest.raises(
        ValueError,
        match=re.escape("targets has shape (2, 3) but logits is (3, 2, 4): expected (3, 2)"),
    ):
        softmax_cross_entropy(z, np.zeros((2, 3), int))
    with pytest.raises(TypeError, match="targets must hold integer class ids"):
        softmax_cross_entropy(z, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=re.escape("mask has shape (3,) but targets is (3, 2)")):
        softmax_cross_entropy(z, np.zeros((3, 2), int), mask=np.ones(3))
    with pytest.raises(ValueError, match="mask must hold only 0 and 1, got 0.5"):
        softmax_cross_entropy(z, np.zeros((3, 2), int), mask=np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', got 'none'"):
        softmax_cross_entropy(z, np.zeros((3, 2), int), reduction="none")
    with pytest.raises(
        ValueError, match=re.escape("logits contains a non-finite value (nan) at index (0, 0, 0)")
    ):
        softmax_cross_entropy(np.full((3, 2, 4), np.nan), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="^mask must be a rectangular array, got a ragged"):
        softmax_cross_entropy(z, np.zeros((3, 2), int), mask=[[1, 1], [1], [1, 1]])
    with pytest.raises(ValueError, match="^targets must be a rectangular array, got a ragged"):
        softmax_cross_entropy(z, [[0, 1], [1], [0, 1]])
    with pytest.raises(ValueError, match="^logits must be a rectangular array, got a ragged"):
        softmax_cross_entropy([[0.0, 1.0], [1.0]], [0, 1])


def test_ids_and_seeds_are_reported_as_they_are():
    """uint64 ids beyond int64 are not wrapped to -1; a negative seed names rng."""
    emb = Embedding(5, 2)
    for ids in (np.array([1, 2**64 - 1], np.uint64), np.array([[0], [2**63]], np.uint64)):
        bad = int(ids.max())
        with pytest.raises(ValueError, match=rf"^ids must hold ids in \[0, 5\), got {bad} at"):
            emb(ids)
    np.testing.assert_array_equal(emb(np.array([4, 0], np.uint64)), emb(np.array([4, 0])))
    with pytest.raises(ValueError, match="^ids must be a rectangular array"):
        emb([[1], [1, 2]])
    for make in (lambda: Linear(2, 3, rng=-1), lambda: Embedding(5, 2, rng=-(2**70))):
        with pytest.raises(
            ValueError, match=r"^rng must be a np\.random\.Generator, an int seed >= 0"
        ):
            make()
    with pytest.raises(TypeError, match=r"^rng must be .* got 'x'$"):
        Linear(2, 3, rng="x")
    big = Linear(2, 3, rng=2**70)  # any non-negative int is a seed
    np.testing.assert_array_equal(big.params["weight"], Linear(2, 3, rng=2**70).params["weight"])


def test_public_names():
    assert {"Linear", "Embedding", "softmax_cross_entropy"} <= set(nprnn.__all__)
