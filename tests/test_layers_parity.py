"""Parity of nprnn.RNN / LSTM / GRU with torch.nn.RNN / LSTM / GRU + autograd.

Every case loads the torch module's state_dict into the nprnn layer, runs both on the
same input, initial states and right padding (torch: pack_padded_sequence with
enforce_sorted=False), backpropagates the same random upstream gradients on ``out`` and
on the final states, and compares out, final states, dx, dstate and every gradient:
relative error ‖a − b‖ / ‖b‖ below 1e-10 in float64 and 1e-5 in float32.
"""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

import nprnn  # noqa: E402

TOL = {np.float64: 1e-10, np.float32: 1e-5}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
KINDS = {  # name: (class name, extra constructor kwargs)
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
}
T, B, F, H = 7, 4, 3, 5


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / nb if nb > 0 else np.linalg.norm(a)


def make_pair(kind, dtype, seed, **kw):
    cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    tl = getattr(torch.nn, cls)(F, H, **extra, **kw).to(TORCH_DTYPE[dtype])
    nl = getattr(nprnn, cls)(F, H, **extra, **kw, dtype=dtype, rng=seed)
    nl.load_state_dict({k: v.numpy() for k, v in tl.state_dict().items()})
    return tl, nl


def run_case(kind, num_layers, bidirectional, batch_first, bias, padding, dtype, seed=0):
    """Run both libraries on one configuration; return {what: relative error}."""
    rng = np.random.default_rng(seed)
    tl, nl = make_pair(kind, dtype, seed, num_layers=num_layers, bias=bias,
                       batch_first=batch_first, bidirectional=bidirectional)  # fmt: skip
    is_lstm = kind == "lstm"
    S = (2 if bidirectional else 1) * num_layers
    x = rng.standard_normal((B, T, F) if batch_first else (T, B, F)).astype(dtype)
    states = [rng.standard_normal((S, B, H)).astype(dtype) for _ in range(2 if is_lstm else 1)]
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T  # one full row; the others random in [1, T]
    kw = {}
    if padding == "lengths":
        kw["lengths"] = lengths
    elif padding == "mask":
        m = np.arange(T)[:, None] < lengths[None, :]  # (T, B)
        kw["mask"] = (m.T if batch_first else m).astype(np.int64)
    out, sn = nl(x, tuple(states) if is_lstm else states[0], **kw)
    sn = list(sn) if is_lstm else [sn]
    g_out = rng.standard_normal(out.shape).astype(dtype)
    g_states = [rng.standard_normal(s.shape).astype(dtype) for s in sn]
    dx, ds0 = nl.backward(g_out, tuple(g_states) if is_lstm else g_states[0])
    ds0 = list(ds0) if is_lstm else [ds0]

    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    inp = xt
    if padding != "none":
        inp = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                   enforce_sorted=False)  # fmt: skip
    t_out, t_sn = tl(inp, tuple(st) if is_lstm else st[0])
    if padding != "none":
        t_out, _ = pad_packed_sequence(t_out, batch_first=batch_first, total_length=T)
    t_sn = list(t_sn) if is_lstm else [t_sn]
    loss = (t_out * torch.tensor(g_out)).sum()
    loss = loss + sum((s * torch.tensor(g)).sum() for s, g in zip(t_sn, g_states, strict=True))
    loss.backward()

    errs = {"out": rel(out, t_out.detach().numpy()), "dx": rel(dx, xt.grad.numpy())}
    for j in range(len(sn)):
        errs[f"state{j}"] = rel(sn[j], t_sn[j].detach().numpy())
        errs[f"dstate{j}"] = rel(ds0[j], st[j].grad.numpy())
    assert list(nl.grads) == [k for k, _ in tl.named_parameters()]
    for name, p in tl.named_parameters():
        errs[name] = rel(nl.grads[name], p.grad.numpy())
    for a in [out, dx, *sn, *ds0, *nl.grads.values()]:
        assert a.dtype == dtype  # float32 stays float32 all the way
    return errs


# The full option grid in float64; in float32 the half with batch_first != bias (every
# kind x layers x direction x padding, each layout and each bias setting half the time).
GRID = [
    (*case, dtype)
    for case in itertools.product(
        KINDS, [1, 2, 3], [False, True], [False, True], [True, False], ["none", "lengths", "mask"]
    )
    for dtype in (np.float64, np.float32)
    if dtype == np.float64 or case[3] != case[4]
]


def _case_id(case):
    k, n, bi, bf, bias, pad, dt = case
    return (f"{k}-L{n}-{'bi' if bi else 'uni'}-{'bf' if bf else 'tm'}-"
            f"{'bias' if bias else 'nobias'}-{pad}-{np.dtype(dt).name}")  # fmt: skip


@pytest.mark.parametrize("case", GRID, ids=[_case_id(c) for c in GRID])
def test_parity_grid(case):
    seed = GRID.index(case)  # deterministic, different for every case
    errs = run_case(*case, seed=seed)
    worst = max(errs, key=errs.get)
    assert errs[worst] < TOL[case[-1]], f"{worst}: relative error {errs[worst]:.3g}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_none_states_and_upstream(kind):
    """state=None is zeros; dstate=None and dout=None are zero upstream gradients."""
    tl, nl = make_pair(kind, np.float64, 3, num_layers=2, bidirectional=True)
    x = np.random.default_rng(3).standard_normal((T, B, F))
    out, sn = nl(x)
    xt = torch.tensor(x, requires_grad=True)
    t_out, t_sn = tl(xt)
    assert rel(out, t_out.detach().numpy()) < 1e-12
    t_h = t_sn[0] if kind == "lstm" else t_sn
    h = sn[0] if kind == "lstm" else sn
    assert rel(h, t_h.detach().numpy()) < 1e-12
    # only the final hidden state matters: dout=None, dstate = (g, None) / g
    g = np.random.default_rng(4).standard_normal(h.shape)
    dx, _ = nl.backward(None, (g, None) if kind == "lstm" else g)
    (t_h * torch.tensor(g)).sum().backward()
    assert rel(dx, xt.grad.numpy()) < 1e-10
    # only out matters: dstate=None
    nl.zero_grad()
    xt.grad = None
    for p in tl.parameters():
        p.grad = None
    t_out, _ = tl(xt)
    nl(x)
    g_out = np.random.default_rng(5).standard_normal(out.shape)
    dx, _ = nl.backward(g_out, None)
    (t_out * torch.tensor(g_out)).sum().backward()
    assert rel(dx, xt.grad.numpy()) < 1e-10
    for name, p in tl.named_parameters():
        assert rel(nl.grads[name], p.grad.numpy()) < 1e-10, name


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_eval_mode_dropout_matches_torch_eval(kind):
    """With dropout > 0 both libraries skip it in eval mode: outputs match exactly."""
    tl, nl = make_pair(kind, np.float64, 9, num_layers=3, dropout=0.5)
    tl.eval()
    nl.eval()
    x = np.random.default_rng(9).standard_normal((T, B, F))
    out, _ = nl(x)
    assert rel(out, tl(torch.tensor(x))[0].detach().numpy()) < 1e-12


def test_load_torch_lstm_state_dict_float32():
    """A converted torch.nn.LSTM state_dict loads (names, shapes, order) and runs alike."""
    torch.manual_seed(1)
    tl = torch.nn.LSTM(F, H, num_layers=2, bidirectional=True, batch_first=True)
    nl = nprnn.LSTM(F, H, num_layers=2, bidirectional=True, batch_first=True)
    sd = {k: v.numpy() for k, v in tl.state_dict().items()}
    nl.load_state_dict(sd)
    nl.load_state_dict(dict(tl.named_parameters()))  # tensors, even requiring grad, load too
    assert list(nl.state_dict()) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(nl.params[k], sd[k])
    x = np.random.default_rng(1).standard_normal((B, T, F)).astype(np.float32)
    out, (h, c) = nl(x)
    t_out, (t_h, t_c) = tl(torch.from_numpy(x))
    assert out.dtype == np.float32
    assert rel(out, t_out.detach().numpy()) < 1e-5
    assert rel(h, t_h.detach().numpy()) < 1e-5
    assert rel(c, t_c.detach().numpy()) < 1e-5


def test_state_dict_round_trip_into_torch():
    """Our weights load into torch unchanged (names and shapes are PyTorch's)."""
    nl = nprnn.GRU(F, H, num_layers=2, bidirectional=True, dtype=np.float64, rng=0)
    tl = torch.nn.GRU(F, H, num_layers=2, bidirectional=True).double()
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in nl.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((T, B, F))
    assert rel(nl(x)[0], tl(torch.from_numpy(x))[0].detach().numpy()) < 1e-12


@pytest.mark.parametrize("kind", list(KINDS))
def test_default_init_matches_torch_distribution(kind):
    """Every parameter ~ U(−1/√H, 1/√H), as torch: same names, shapes and bound."""
    cls, extra = KINDS[kind]
    h = 64
    nl = getattr(nprnn, cls)(F, h, num_layers=2, bidirectional=True, **extra, rng=0)
    tl = getattr(torch.nn, cls)(F, h, num_layers=2, bidirectional=True, **extra)
    bound = 1 / np.sqrt(h)
    for (name, p), (t_name, tp) in zip(nl.params.items(), tl.named_parameters(), strict=True):
        assert name == t_name and p.shape == tuple(tp.shape) and p.dtype == np.float32
        assert np.abs(p).max() <= bound
        if p.size >= 1000:  # uniform on [-b, b]: std b/√3
            assert abs(p.std() - bound / np.sqrt(3)) < 0.1 * bound


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_forward_embedded_matches_torch_embedding_then_layer(kind, dtype, bidirectional):
    """forward_embedded(E, ids) against torch's nn.Embedding → layer + autograd: out, the
    final states, dE and every layer gradient, full (unmasked) batches of more ids than
    rows (V < T·B, the case the char-LM uses it in)."""
    V = 6
    rng = np.random.default_rng(3)
    tl, nl = make_pair(kind, dtype, 3, num_layers=2, bidirectional=bidirectional)
    E = rng.standard_normal((V, F)).astype(dtype)
    ids = rng.integers(0, V, (T, B))
    assert V < ids.size
    out, state = nl.forward_embedded(E, ids)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dE, _ = nl.backward(dout)

    tE = torch.tensor(E, requires_grad=True)
    t_out, t_state = tl(torch.nn.functional.embedding(torch.tensor(ids), tE))
    t_out.backward(torch.tensor(dout))
    tol = TOL[dtype]
    errs = {"out": rel(out, t_out.detach().numpy()), "dE": rel(dE, tE.grad.numpy())}
    pairs = zip(state, t_state, strict=True) if kind == "lstm" else [(state, t_state)]
    for i, (a, b) in enumerate(pairs):
        errs[f"state{i}"] = rel(a, b.detach().numpy())
    for name, p in tl.named_parameters():
        errs[name] = rel(nl.grads[name], p.grad.numpy())
    assert max(errs.values()) < tol, errs
