"""Module, Sequential, ModuleList, Dropout; pending forwards (LIFO reuse) of the dense layers."""

import re

import numpy as np
import pytest

import nprnn
from nprnn import Dropout, Embedding, Linear, Module, ModuleList, Sequential


class Net(Module):
    def __init__(self, dtype=np.float64):
        super().__init__()
        self.emb = Embedding(7, 4, dtype=dtype, rng=0)
        self.head = Linear(4, 3, dtype=dtype, rng=1)

    def forward(self, ids):
        return self.head(self.emb(ids))

    def backward(self, dy):
        return self.emb.backward(self.head.backward(dy))


# ----------------------------------------------------------------------------- names


def test_dotted_names_and_live_arrays():
    net = Net()
    assert list(net.params) == ["emb.weight", "head.weight", "head.bias"]
    assert list(net.grads) == list(net.params)
    assert net.params["head.bias"] is net.head.params["bias"]  # live, not copies
    sd = net.state_dict()
    assert sd["head.bias"] is not net.head.params["bias"]
    assert net.num_parameters() == 7 * 4 + 4 * 3 + 3


def test_add_module_names():
    m = Module()
    m.add_module("0", Linear(2, 2))
    assert list(m.params) == ["0.weight", "0.bias"]
    for bad in ("", "a.b", 3):
        with pytest.raises(ValueError, match="module names must be non-empty strings"):
            m.add_module(bad, Linear(2, 2))
    with pytest.raises(TypeError, match=r"^add_module\('x', \.\.\.\) needs an nprnn\.Module"):
        m.add_module("x", np.zeros(2))
    m.add_module("0", None)
    assert m.params == {}


def test_call_rolls_back_pending_forwards_on_error():
    net = Net()
    with pytest.raises(ValueError, match="x has shape"):
        net.head(net.emb(np.array([1, 2]))[:, :3])  # head refuses; emb's call had completed
    assert net.emb.pending_forwards == 1 and net.head.pending_forwards == 0
    net.zero_grad()

    class Bad(Module):
        def __init__(self):
            super().__init__()
            self.a = Linear(2, 2)
            self.b = Linear(3, 3)

        def forward(self, x):
            return self.b(self.a(x))  # a pushes, then b refuses

    bad = Bad()
    with pytest.raises(ValueError):
        bad(np.zeros((1, 2), np.float32))
    assert bad.a.pending_forwards == 0 and bad.b.pending_forwards == 0


# ----------------------------------------------------------------------------- to(dtype)


def test_to_dtype_converts_and_keeps_sharing():
    net = Net(np.float32)
    net.head._grads["bias"] += 1
    net.emb(np.array([1]))
    shared = Module()
    shared.a = net
    shared.b = net  # the same module twice
    out = shared.double()
    assert out is shared
    assert all(p.dtype == np.float64 for p in net.params.values())
    assert all(g.dtype == np.float64 for g in net.grads.values())
    np.testing.assert_array_equal(net.grads["head.bias"], 1)
    assert net.head.dtype == np.float64 and net.emb.pending_forwards == 0
    assert list(shared.params) == ["a.emb.weight", "a.head.weight", "a.head.bias"]
    y = net(np.array([[1, 2]]))
    assert y.dtype == np.float64
    net.float()
    assert net.head(np.zeros((1, 4), np.float32)).dtype == np.float32
    with pytest.raises(TypeError, match="dtype must be np.float32 or np.float64"):
        net.to(np.int32)


# ----------------------------------------------------------------------------- reuse (dense)


def _lin_grads(x_list, dy_list, order):
    lin = Linear(3, 2, dtype=np.float64, rng=0)
    for x in x_list:
        lin(x)
    dxs = {}
    for i in order:
        dxs[i] = lin.backward(dy_list[i])
    return lin, dxs


def test_linear_reuse_lifo_is_gradient_of_sum():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(4, 3)) for _ in range(3)]
    dys = [rng.normal(size=(4, 2)) for _ in range(3)]
    lin, dxs = _lin_grads(xs, dys, [2, 1, 0])
    W = lin.params["weight"]
    want = sum(dy.T @ x for x, dy in zip(xs, dys, strict=True))
    np.testing.assert_allclose(lin.grads["weight"], want, rtol=1e-13)
    np.testing.assert_allclose(lin.grads["bias"], sum(d.sum(0) for d in dys), rtol=1e-13)
    for i in range(3):
        np.testing.assert_allclose(dxs[i], dys[i] @ W, rtol=1e-13)
    with pytest.raises(RuntimeError, match="no pending forward"):
        lin.backward(dys[0])


def test_backward_pairs_with_the_latest_forward():
    # the wrong pairing (FIFO) would give a different weight gradient: the test can fail
    rng = np.random.default_rng(1)
    xa, xb = rng.normal(size=(2, 3)), rng.normal(size=(5, 3))
    lin = Linear(3, 2, dtype=np.float64, rng=0)
    lin(xa)
    lin(xb)
    with pytest.raises(ValueError, match=re.escape("dout has shape (2, 2): expected (5, 2)")):
        lin.backward(np.ones((2, 2)))  # dya first is refused; xb stays pending
    assert lin.pending_forwards == 2
    lin.backward(np.ones((5, 2)))
    np.testing.assert_allclose(lin.grads["weight"], np.ones((5, 2)).T @ xb)


def test_embedding_reuse_and_no_grad():
    emb = Embedding(5, 2, dtype=np.float64, rng=0)
    a, b = np.array([0, 1, 1]), np.array([[4], [1]])
    emb(a)
    emb(b)
    emb.backward(np.ones((2, 1, 2)))
    emb.backward(np.full((3, 2), 2.0))
    np.testing.assert_array_equal(emb.grads["weight"][:, 0], [2, 5, 0, 0, 1])
    with nprnn.no_grad():
        y = emb(a)
        assert not nprnn.is_grad_enabled()
        with nprnn.enable_grad():
            assert nprnn.is_grad_enabled()
    assert y.shape == (3, 2) and emb.pending_forwards == 0
    with pytest.raises(RuntimeError, match="no pending forward"):
        emb.backward(np.ones((3, 2)))


def test_zero_grad_drops_pending_forwards():
    net = Net()
    net(np.array([1, 2]))
    assert net.head.pending_forwards == 1
    net.zero_grad()
    assert net.head.pending_forwards == 0 and net.emb.pending_forwards == 0
    with pytest.raises(RuntimeError, match=r"^Linear\.backward\(\) called with no pending"):
        net.backward(np.ones((2, 3)))


def test_model_reused_three_times_by_gradcheck():
    net = Net()
    rng = np.random.default_rng(0)
    ids = [rng.integers(0, 7, size=(2, 3)) for _ in range(3)]
    gs = [rng.normal(size=(2, 3, 3)) for _ in range(3)]

    def loss(p):
        net.load_state_dict(p)
        with nprnn.no_grad():
            return sum(float(np.sum(net(i) * g)) for i, g in zip(ids, gs, strict=True))

    for i in ids:
        net(i)
    for g in reversed(gs):
        net.backward(g)
    errs = nprnn.gradcheck(loss, net.state_dict(), net.grads)
    assert max(errs.values()) < 1e-7


# ----------------------------------------------------------------------------- containers


def test_sequential_chain_names_and_backward():
    seq = Sequential(Linear(3, 5, dtype=np.float64, rng=0), Dropout(0.0),
                     Linear(5, 2, dtype=np.float64, rng=1))  # fmt: skip
    assert list(seq.params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(seq) == 3 and isinstance(seq[1], Dropout) and seq[-1] is seq[2]
    x = np.random.default_rng(0).normal(size=(4, 3))
    y = seq(x)
    W0, b0 = seq[0].params["weight"], seq[0].params["bias"]
    W2, b2 = seq[2].params["weight"], seq[2].params["bias"]
    np.testing.assert_allclose(y, (x @ W0.T + b0) @ W2.T + b2, rtol=1e-13)
    dx = seq.backward(np.ones((4, 2)))
    np.testing.assert_allclose(dx, np.ones((4, 2)) @ W2 @ W0, rtol=1e-13)
    with pytest.raises(RuntimeError, match=r"^Sequential\.backward\(\) called with no pending"):
        seq.backward(np.ones((4, 2)))
    sub = seq[1:]
    assert list(sub.params) == ["2.weight", "2.bias"]  # torch keeps the names in a slice
    assert "(2): Linear(in_features=5" in repr(seq)


def test_sequential_with_embedding_and_recurrent_layer():
    seq = Sequential(Embedding(6, 4, dtype=np.float64, rng=0),
                     nprnn.GRU(4, 3, dtype=np.float64, rng=1),
                     Linear(3, 2, dtype=np.float64, rng=2))  # fmt: skip
    assert "1.weight_ih_l0" in seq.params and "2.bias" in seq.params
    ids = np.random.default_rng(0).integers(0, 6, size=(5, 2))  # (T, B)
    y = seq(ids)
    assert y.shape == (5, 2, 2)
    assert seq.backward(np.ones((5, 2, 2))) is None  # the ids have no gradient
    assert seq[1].grads["weight_hh_l0"].any()

    class PassIds(Module):
        def forward(self, ids):
            self._save_for_backward(None)
            return ids

        def backward(self, d):
            self._saved_for_backward()
            return d

    bad = Sequential(PassIds(), Embedding(6, 2))
    bad(np.array([1, 2]))
    with pytest.raises(RuntimeError, match=r"^Sequential: module 1 \(Embedding\) returned no"):
        bad.backward(np.ones((2, 2), np.float32))


def test_sequential_checks_its_arguments():
    with pytest.raises(TypeError, match="^Sequential's argument 1 must be an nprnn.Module"):
        Sequential(Linear(2, 2), lambda x: x)
    with pytest.raises(TypeError, match="indices must be integers"):
        Sequential(Linear(2, 2))["0"]
    with pytest.raises(IndexError, match="index 3 is out of range"):
        Sequential(Linear(2, 2))[3]


def test_module_list():
    layers = ModuleList([Linear(2, 2, rng=i) for i in range(3)])
    assert len(layers) == 3 and list(layers.state_dict())[:2] == ["0.weight", "0.bias"]
    layers.append(Linear(2, 4))
    assert list(layers.params)[-1] == "3.bias" and layers[-1].out_features == 4
    first = layers[0]
    del layers[0]
    assert len(layers) == 3 and list(layers.params)[0] == "0.weight" and layers[0] is not first
    layers.insert(0, first)
    assert layers[0] is first and list(layers.params)[-1] == "3.bias"
    assert list(layers[1:].params)[0] == "0.weight"  # a ModuleList slice is renumbered
    layers[1] = Linear(2, 2)
    with pytest.raises(TypeError, match="^extend's item 1 must be an nprnn.Module"):
        layers.extend([Linear(2, 2), 3])
    assert len(layers) == 4  # refused before anything was added
    with pytest.raises(NotImplementedError, match="ModuleList has no forward"):
        layers(np.zeros(2))
    shared = ModuleList([first, first])
    assert list(shared.params) == ["0.weight", "0.bias"]  # shared: listed once
    assert list(shared.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


# ----------------------------------------------------------------------------- Dropout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_train_eval_and_masks(dtype):
    drop = Dropout(0.25, rng=0)
    x = np.ones((400, 50), dtype)
    y1 = drop(x)
    y2 = drop(x)
    assert y1.dtype == dtype and set(np.unique(y1)) == {0, dtype(1 / 0.75)}
    assert abs((y1 == 0).mean() - 0.25) < 0.01
    assert (y1 != y2).any()  # a fresh mask per forward
    g = np.random.default_rng(0).normal(size=x.shape).astype(dtype)
    np.testing.assert_array_equal(drop.backward(g), g * y2)  # latest first: y2's mask
    np.testing.assert_array_equal(drop.backward(g), g * y1)
    drop.eval()
    assert drop(x) is x
    assert drop.backward(g) is g
    assert not Dropout(1.0).train()(x).any()
    assert Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match=r"^p must lie in \[0.0, 1.0\], got 1.5"):
        Dropout(1.5)
    drop.train()(x)
    with pytest.raises(ValueError, match="dout has shape"):
        drop.backward(np.ones((2, 2), dtype))
    assert drop.pending_forwards == 1


def test_dropout_is_seeded_and_recurses_with_train_eval():
    a = Sequential(Linear(3, 3, rng=0), Dropout(0.5, rng=7))
    b = Sequential(Linear(3, 3, rng=0), Dropout(0.5, rng=7))
    x = np.ones((10, 3), np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    a.eval()
    assert not a[1].training and not a.training
    np.testing.assert_array_equal(a(x), a[0](x))


def test_public_names_are_exported():
    want = {"Module", "Sequential", "ModuleList", "Dropout", "no_grad", "enable_grad",
            "is_grad_enabled", "save", "load", "pad_sequence", "lengths_to_mask",
            "batch_indices"}  # fmt: skip
    assert want <= set(nprnn.__all__)
    for name in nprnn.__all__:
        assert hasattr(nprnn, name), name
    from nprnn.optim import lr_scheduler

    for mod in (nprnn.optim, lr_scheduler, nprnn.containers, nprnn.data, nprnn.serialization):
        assert all(hasattr(mod, n) for n in mod.__all__), mod.__name__
