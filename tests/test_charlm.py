"""CharLM: exact gradients, names, states, sampling, scoring, PyTorch interop."""

from __future__ import annotations

import numpy as np
import pytest

from nprnn.charlm import CharLM
from nprnn.gradcheck import gradcheck
from nprnn.text import Vocab

LINES = ["anna", "bob", "cleo", "dave", "eve", "abba"]


def _vocab(lines_mode=True):
    return Vocab.build(LINES if lines_mode else ["\n".join(LINES)], lines_mode=lines_mode)


def _batch(rng, V, T=5, B=3, masked=True):
    x = rng.integers(0, V, size=(T, B))
    y = rng.integers(0, V, size=(T, B))
    mask = None
    if masked:
        lengths = np.array([T, T - 2, 1])[:B]
        mask = np.arange(T)[:, None] < lengths[None, :]
    return x, y, mask


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("case", ["mask+dropout", "state"])
def test_loss_and_grad_matches_central_differences(model, case):
    rng = np.random.default_rng(0)
    V = 6
    lm = CharLM(
        V,
        model=model,
        hidden=4,
        layers=2,
        embedding_dim=3,
        dropout=0.3 if case == "mask+dropout" else 0.0,
        dtype=np.float64,
        rng=1,
    )
    x, y, mask = _batch(rng, V, masked=case == "mask+dropout")
    state = None
    if case == "state":  # a carried state: used, but gets no gradient
        h = rng.standard_normal((2, 3, 4))
        state = (h, rng.standard_normal((2, 3, 4))) if model == "lstm" else h
    rng_state = lm.rng.bit_generator.state

    def loss(params):
        lm.load_state_dict(params)
        lm.rng.bit_generator.state = rng_state  # the same dropout masks every time
        lm.zero_grad()
        return lm.loss_and_grad(x, y, mask, state)[0]

    params = lm.state_dict()
    loss(params)
    grads = {k: v.copy() for k, v in lm.grads().items()}
    assert all(np.abs(g).sum() > 0 for g in grads.values())
    errors = gradcheck(loss, params, grads)
    assert max(errors.values()) < 1e-6, errors


def test_names_follow_pytorch_and_grads_accumulate():
    lm = CharLM(7, hidden=5, layers=2, rng=0)
    expected = (
        ["embedding.weight"]
        + [f"rnn.{w}_{k}_l{i}" for i in range(2) for w in ("weight", "bias") for k in ("ih", "hh")]
        + ["head.weight", "head.bias"]
    )
    assert sorted(lm.params()) == sorted(expected) and list(lm.params()) == list(lm.grads())
    assert lm.params()["rnn.weight_ih_l0"].shape == (20, 5)
    x, y, m = _batch(np.random.default_rng(0), 7)
    lm.zero_grad()
    lm.loss_and_grad(x, y, m)
    once = {k: v.copy() for k, v in lm.grads().items()}
    lm.loss_and_grad(x, y, m)
    for k, g in lm.grads().items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-5, atol=1e-7)


def test_state_dict_round_trip_and_errors():
    a, b = CharLM(7, hidden=5, rng=0), CharLM(7, hidden=5, rng=1)
    b.load_state_dict(a.state_dict())
    x, _, _ = _batch(np.random.default_rng(0), 7, masked=False)
    np.testing.assert_array_equal(a.logits(x)[0], b.logits(x)[0])
    sd = a.state_dict()
    del sd["head.bias"]
    with pytest.raises(ValueError, match="missing head.bias"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["rnn.weight_hh_l0"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="weight_hh_l0"):
        b.load_state_dict(sd)
    assert CharLM.from_config(a.config()).config() == a.config()


def test_carried_state_continues_the_sequence():
    lm = CharLM(7, model="lstm", hidden=6, layers=2, rng=0).eval()
    x = np.random.default_rng(1).integers(0, 7, size=(9, 2))
    whole, _ = lm.logits(x)
    first, state = lm.logits(x[:4])
    second, _ = lm.logits(x[4:], state)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training_and_reproducible():
    x, y, m = _batch(np.random.default_rng(0), 7)
    lm = CharLM(7, hidden=8, layers=2, dropout=0.5, rng=3)
    l1 = lm.loss_and_grad(x, y, m)[0]
    l2 = lm.loss_and_grad(x, y, m)[0]
    assert l1 != l2  # fresh masks each step
    again = CharLM(7, hidden=8, layers=2, dropout=0.5, rng=3)
    assert again.loss_and_grad(x, y, m)[0] == l1
    s1, s2 = lm.score(x, y, m)[0], lm.score(x, y, m)[0]
    assert s1 == s2


def test_score_counts_only_masked_predictions():
    lm = CharLM(7, hidden=4, rng=0)
    x, y, m = _batch(np.random.default_rng(0), 7)
    loss, n, _ = lm.score(x, y, m)
    assert n == int(m.sum())
    logits, _ = lm.logits(x, mask=m)
    z = logits.astype(np.float64)
    logp = (
        z
        - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - z.max(-1, keepdims=True)
    )
    nll = -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    assert loss == pytest.approx(nll[m].mean(), rel=1e-6)


def test_sample_lines_and_stream():
    v = _vocab()
    lm = CharLM(len(v), hidden=8, rng=0)
    out = lm.sample(v, n=4, rng=5, max_len=12)
    assert len(out) == 4 and all(set(s) <= set(v.chars) and len(s) <= 12 for s in out)
    assert out == lm.sample(v, n=4, rng=5, max_len=12)
    primed = lm.sample(v, n=3, prime="ab", rng=1, top_k=2, temperature=0.5)
    assert all(s.startswith("ab") for s in primed)
    # top_k=1 is greedy: every sample is the same
    greedy = lm.sample(v, n=3, top_k=1, rng=2, max_len=20)
    assert len(set(greedy)) == 1
    vs = _vocab(lines_mode=False)
    lm_s = CharLM(len(vs), hidden=8, rng=0)
    text = lm_s.sample(vs, n=25, prime="an", rng=0, mode="stream")
    assert text.startswith("an") and len(text) == 27 and set(text) <= set(vs.chars)
    with pytest.raises(ValueError):
        lm.sample(v, temperature=0)


def test_constructor_checks():
    with pytest.raises(ValueError):
        CharLM(7, hidden=0)
    with pytest.raises(ValueError):
        CharLM(7, model="lstmx")
    with pytest.raises(ValueError):
        CharLM(7, dropout=1.0)


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn"])
def test_weights_load_into_torch(tmp_path, model):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    from nprnn.checkpoint import save_arrays

    V, H, L = 9, 6, 2
    lm = CharLM(V, model=model, hidden=H, layers=L, rng=0).eval()
    save_arrays(tmp_path / "model.safetensors", lm.state_dict())
    sd = st_torch.load_file(str(tmp_path / "model.safetensors"))
    emb, head = torch.nn.Embedding(V, H), torch.nn.Linear(H, V)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[model](H, H, L)
    for prefix, mod in (("embedding.", emb), ("rnn.", rnn), ("head.", head)):
        mod.load_state_dict({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
    x = np.random.default_rng(0).integers(0, V, size=(7, 3))
    with torch.no_grad():
        out, _ = rnn(emb(torch.from_numpy(x)))
        ref = head(out).numpy()
    np.testing.assert_allclose(lm.logits(x)[0], ref, rtol=1e-4, atol=1e-5)
