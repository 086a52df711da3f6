"""CharLM: exact gradients, names, states, sampling, scoring, PyTorch interop."""

from __future__ import annotations

import numpy as np
import pytest

import nprnn
from nprnn.app.charlm import CharLM
from nprnn.app.text import Vocab
from nprnn.gradcheck import gradcheck

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
    grads = {k: v.copy() for k, v in lm.grads.items()}
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
    assert sorted(lm.params) == sorted(expected) and list(lm.params) == list(lm.grads)
    assert lm.params["rnn.weight_ih_l0"].shape == (20, 5)
    x, y, m = _batch(np.random.default_rng(0), 7)
    lm.zero_grad()
    lm.loss_and_grad(x, y, m)
    once = {k: v.copy() for k, v in lm.grads.items()}
    lm.loss_and_grad(x, y, m)
    for k, g in lm.grads.items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-5, atol=1e-7)


def test_state_dict_round_trip_and_errors():
    a, b = CharLM(7, hidden=5, rng=0), CharLM(7, hidden=5, rng=1)
    b.load_state_dict(a.state_dict())
    x, _, _ = _batch(np.random.default_rng(0), 7, masked=False)
    np.testing.assert_array_equal(a.logits(x)[0], b.logits(x)[0])
    sd = a.state_dict()
    del sd["head.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['head.bias'\]"):
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
    with pytest.raises(ValueError, match="temperature"):
        lm.sample(v, temperature=-1)


def test_temperature_zero_is_greedy():
    """Finding 7: --temperature 0 means greedy (it was refused; only --top-k 1 was)."""
    v = _vocab()
    lm = CharLM(len(v), hidden=8, rng=0)
    greedy = lm.sample(v, n=3, temperature=0, rng=2, max_len=20)
    assert len(set(greedy)) == 1
    assert greedy == lm.sample(v, n=3, top_k=1, rng=7, max_len=20)
    assert lm.sample(v, n=2, temperature=0, rng=9, max_len=20) == greedy[:2]


def test_generate_yields_pieces_as_they_come():
    """Finding 7: generation is incremental (lines one by one, stream in chunks), so the
    command can print as it goes; the pieces join to what sample() returns."""
    v = _vocab()
    lm = CharLM(len(v), hidden=8, rng=0)
    it = lm.generate(v, n=5, rng=3, max_len=10, chunk=2)
    first = next(it)  # available before the other lines are generated
    assert isinstance(first, str)
    assert [first, *it] == list(lm.generate(v, n=5, rng=3, max_len=10, chunk=2))
    assert list(lm.generate(v, n=5, rng=3, max_len=10)) == lm.sample(v, n=5, rng=3, max_len=10)
    vs = _vocab(lines_mode=False)
    lm_s = CharLM(len(vs), hidden=8, rng=0)
    pieces = list(lm_s.generate(vs, n=300, rng=0, mode="stream", chunk=16))
    assert len(pieces) > 10 and all(len(p) <= 16 for p in pieces)
    assert "".join(pieces) == lm_s.sample(vs, n=300, rng=0, mode="stream")


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
    from nprnn.app.files import save_arrays

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


# ---------------------------------------------------------------------------- reliability


def test_load_state_dict_names_the_full_key_and_is_all_or_nothing():
    lm = CharLM(5, hidden=3, rng=0)
    before = lm.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    sd["embedding.weight"] = np.zeros((5, 4))
    sd["head.bias"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"embedding\.weight has shape \(5, 4\), expected \(5, 3\)"
                       r".*head\.bias has shape \(7,\), expected \(5,\)"):  # fmt: skip
        lm.load_state_dict(sd)
    sd = {k: v + 1 for k, v in before.items()}
    sd["head.bias"] = np.array([0, 0, 0, 0, np.nan])  # the last key checked
    with pytest.raises(ValueError, match=r"head\.bias contains a non-finite value"):
        lm.load_state_dict(sd)
    with pytest.raises(TypeError, match=r"rnn\.weight_ih_l0 must hold real numbers"):
        lm.load_state_dict({**sd, "rnn.weight_ih_l0": np.full((12, 3), "x")})
    with pytest.raises(TypeError, match="mapping"):
        lm.load_state_dict([1, 2])
    for k, v in lm.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    params = lm.params
    lm.load_state_dict({k: v + 1 for k, v in before.items()})  # in place: same arrays
    assert all(lm.params[k] is params[k] for k in params)
    np.testing.assert_array_equal(lm.params["head.bias"], before["head.bias"] + 1)


@pytest.mark.parametrize("model", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 3])
def test_param_shapes_match_the_built_model(model, layers):
    lm = CharLM(7, model=model, hidden=5, layers=layers, embedding_dim=4, rng=0)
    shapes = {k: v.shape for k, v in lm.params.items()}
    assert CharLM.param_shapes(lm.config()) == shapes
    assert list(CharLM.param_shapes(lm.config())) == list(shapes)  # same order
    CharLM.check_weights(lm.config(), lm.state_dict())
    again = CharLM.from_config(lm.config(), weights=lm.state_dict())
    for k, v in again.state_dict().items():
        np.testing.assert_array_equal(v, lm.params[k])


def test_a_config_asking_for_a_huge_model_is_refused_without_building_it():
    import time

    lm = CharLM(7, hidden=4, rng=0)
    w = lm.state_dict()
    t0 = time.perf_counter()
    for key, value, needle in [
        ("hidden", 10**9, r"rnn\.weight_hh_l0 has shape \(16, 4\), expected \(4000000000, "),
        ("layers", 10**12, r"asks for 1000000000000 recurrent layers"),
        ("layers", 2, r"missing rnn\.weight_ih_l1"),
        ("vocab_size", 10**9, r"embedding\.weight has shape \(7, 4\)"),
        ("embedding_dim", 10**9, r"embedding\.weight"),
    ]:
        cfg = {**lm.config(), key: value}
        for call in (CharLM.check_weights, lambda c, w: CharLM.from_config(c, weights=w)):
            with pytest.raises(ValueError, match=needle):
                call(cfg, w)
    assert time.perf_counter() - t0 < 2
    with pytest.raises(ValueError, match=r"unexpected rnn\.extra"):
        CharLM.check_weights(lm.config(), {**w, "rnn.extra": np.zeros(1)})
    for key, value in (("hidden", True), ("layers", 1.0), ("model", "cnn"), ("dtype", "int8")):
        with pytest.raises((TypeError, ValueError), match=key):
            CharLM.check_weights({**lm.config(), key: value}, w)
    with pytest.raises(ValueError, match="lacks dropout"):
        CharLM.check_weights({k: v for k, v in lm.config().items() if k != "dropout"}, w)


def test_a_tiny_temperature_samples_greedily_without_warnings():
    import warnings

    from nprnn.app.charlm import _draw

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6)).astype(np.float32) * 3
    logits[0, 2] = 50.0  # banned, and the row's largest logit
    want = np.argmax(np.where(np.arange(6) == 2, -np.inf, logits), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            for t in (1e-300, 1e-320, 5e-324):
                for top_k in (None, 1, 3):
                    got = _draw(logits, t, top_k, [2], np.random.default_rng(1))
                    np.testing.assert_array_equal(got, want)
            # ties at the maximum: both tied ids come up, nothing else
            tied = np.zeros((200, 3), np.float32)
            tied[:, 2] = -1.0
            got = _draw(tied, 1e-320, None, [], np.random.default_rng(2))
            assert set(got.tolist()) == {0, 1}
            # a huge temperature: uniform, no underflow trouble
            got = _draw(tied, 1e308, None, [], np.random.default_rng(3))
            assert set(got.tolist()) == {0, 1, 2}
    lm = CharLM(len(_vocab()), hidden=3, rng=0)
    greedy = lm.sample(_vocab(), n=3, temperature=1e-300, rng=0, max_len=6)
    assert lm.sample(_vocab(), n=3, temperature=1e-320, rng=5, max_len=6) == greedy


def test_one_row_draws_are_the_general_draws():
    """_draw's one-row path (float32 logits, B = 1, every character of generation) draws
    exactly what the general path draws from the same logits and seed (float64 logits
    take the general path), banned ids included, and warns of nothing."""
    import warnings

    from nprnn.app.charlm import _draw

    rng = np.random.default_rng(4)
    for trial in range(60):
        z32 = (rng.normal(size=(1, 9)) * rng.choice([0.1, 3.0, 40.0])).astype(np.float32)
        t = float(rng.choice([1e-30, 1e-3, 0.5, 0.8, 1.0, 7.0, 1e30]))
        banned = [] if trial % 3 else [trial % 9, 4]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            draws = [_draw(z32, t, None, banned, np.random.default_rng(s)) for s in range(8)]
        want = [_draw(z32.astype(np.float64), t, None, banned, np.random.default_rng(s))
                for s in range(8)]  # fmt: skip
        np.testing.assert_array_equal(draws, want)
        assert all(d.shape == (1,) and d[0] not in banned for d in draws)
    z = np.zeros((1, 4), np.float32)
    z[0, 3] = -200.0  # exp underflows: raises under errstate(under="raise"), as in general
    with np.errstate(under="raise"):
        assert _draw(z, 0.01, None, [], np.random.default_rng(0))[0] in (0, 1, 2)


def test_generation_reads_the_underflow_setting_between_pieces():
    """generate reads NumPy's underflow setting after each piece it yields (the caller's
    code runs only then): under errstate(under="raise") entered between pieces, the
    draws that underflow (a tiny temperature) take the general path, and the text is
    the text of a run that never raised."""
    vocab = _vocab(lines_mode=False)
    lm = CharLM(len(vocab), hidden=8, rng=0)
    lm.head.params["weight"][...] *= 50  # logits far apart: exp((z - max z) / T) underflows
    want = lm.sample(vocab, n=40, temperature=1e-3, rng=7, mode="stream")
    pieces = lm.generate(vocab, n=40, temperature=1e-3, rng=7, mode="stream", chunk=5)
    got = [next(pieces)]
    with np.errstate(under="raise"):
        got += list(pieces)
    assert "".join(got) == want
    with np.errstate(under="raise"):  # the one-row path itself would raise here
        z = lm.logits(np.array([[1]]))[0][-1, 0].astype(np.float64) / 1e-3
        with pytest.raises(FloatingPointError):
            np.exp(z - z.max())


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_embedded_path_equals_the_plain_composition(model):
    """With fewer characters than (step, row) pairs CharLM runs the first layer on the
    projected embedding table; loss and every gradient equal embedding → rnn → head."""
    V, T, B = 7, 9, 5
    lm = CharLM(V, model=model, hidden=6, layers=2, dropout=0.0, dtype=np.float64, rng=0)
    rng = np.random.default_rng(1)
    ids, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    mask = rng.random((T, B)) < 0.8
    assert V < ids.size  # the embedded path
    lm.zero_grad()
    loss, _ = lm.loss_and_grad(ids, targets, mask)
    got = {k: g.copy() for k, g in lm.grads.items()}
    lm.zero_grad()
    h, _ = lm.rnn(lm.embedding(ids), mask=mask)
    want_loss, dlogits = nprnn.softmax_cross_entropy(lm.head(h), targets, mask=mask)
    lm.embedding.backward(lm.rnn.backward(lm.head.backward(dlogits))[0])
    assert abs(loss - float(want_loss)) < 1e-13
    for k, g in lm.grads.items():
        assert np.abs(got[k] - g).max() < 1e-12, k
