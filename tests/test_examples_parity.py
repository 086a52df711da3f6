"""Torch parity of the examples' whole models (the classes in examples/*.py).

For each model, in float64 (< 1e-10) and float32 (< 1e-5): the loss and every gradient
by its dotted name at each of several training steps, and every parameter after those
steps (Adam / AdamW on both sides); the state_dict round
trips both ways. The worst relative errors are printed (``pytest -s``).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import nprnn

torch = pytest.importorskip("torch")
Fn = torch.nn.functional
pack = torch.nn.utils.rnn.pack_padded_sequence
unpack = torch.nn.utils.rnn.pad_packed_sequence

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOL = {np.float64: 1e-10, np.float32: 1e-5}
STEPS = 4


def example(name):
    spec = importlib.util.spec_from_file_location(f"nprnn_example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = np.linalg.norm(a - b)
    return 0.0 if d == 0 else float(d / max(np.linalg.norm(a), np.linalg.norm(b)))


def T(a):
    return torch.from_numpy(np.array(a))


def to_torch(model, tmodel, dtype):
    """nprnn -> torch by state_dict (strict), and torch -> nprnn back: both directions."""
    if dtype == np.float64:
        tmodel.double()
    tmodel.load_state_dict({k: T(v) for k, v in model.state_dict().items()})
    back = {k: v.detach().clone() for k, v in tmodel.state_dict().items()}
    assert set(back) == set(model.state_dict())
    model.load_state_dict(back)  # torch tensors load unchanged
    for k, v in back.items():
        np.testing.assert_array_equal(model.state_dict()[k], v.numpy())


def run_parity(model, tmodel, batches, step_np, step_t, opt_np, opt_t, dtype, label, clip=None):
    """``step_np(model, batch) -> (loss, extra)`` (forward, backward, clipping),
    ``step_t(tmodel, batch, extra) -> loss`` (a torch scalar; backward and ``clip`` here);
    both sides step their optimizer after each batch."""
    worst = {"loss": 0.0, "grad": 0.0, "param": 0.0}
    for batch in batches:
        loss, extra = step_np(model, batch)
        tloss = step_t(tmodel, batch, extra)
        tloss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip)
        worst["loss"] = max(worst["loss"], rel(loss, tloss.item()))
        tgrads = {k: p.grad.numpy() for k, p in tmodel.named_parameters()}
        assert set(tgrads) == set(model.grads), "parameter names differ from torch's"
        for k, g in model.grads.items():
            worst["grad"] = max(worst["grad"], rel(g, tgrads[k]))
            assert rel(g, tgrads[k]) < TOL[dtype], f"{label}: grad {k}"
        opt_np.step()
        opt_np.zero_grad()
        opt_t.step()
        opt_t.zero_grad()
    for k, p in tmodel.named_parameters():
        worst["param"] = max(worst["param"], rel(model.params[k], p.detach().numpy()))
    print(f"\n{label}: worst relative errors {worst}")
    assert worst["loss"] < TOL[dtype] and worst["param"] < TOL[dtype], (label, worst)
    return worst


# ----------------------------------------------------------------------------- tagger


class TorchTagger(torch.nn.Module):
    def __init__(self, V, C, E, H):
        super().__init__()
        self.emb = torch.nn.Embedding(V, E)
        self.rnn = torch.nn.LSTM(E, H, bidirectional=True)
        self.head = torch.nn.Linear(2 * H, C)

    def forward(self, ids, lengths, drop):
        out, _ = self.rnn(pack(self.emb(ids), lengths, enforce_sorted=False))
        out, _ = unpack(out, total_length=ids.shape[0])
        return self.head(out * drop)  # the same dropout mask as the nprnn side


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tagger_matches_torch(dtype):
    ex = example("tagger")
    model = ex.Tagger(dropout=0.3, dtype=dtype, rng=0)
    tmodel = TorchTagger(ex.V, ex.C, 16, 32)
    to_torch(model, tmodel, dtype)
    rng = np.random.default_rng(0)
    seqs, tags = ex.make_data(40, rng)
    batches = [ex.batch(seqs, tags, idx) for idx in nprnn.batch_indices(40, 10)]

    def step_np(m, b):
        ids, lengths, y, mask = b
        logits = m(ids, lengths)
        drop = m.drop.saved_for_backward(peek=True)[2]  # this forward's mask (T, B, 2H)
        loss, dlogits = nprnn.softmax_cross_entropy(logits, y, mask)
        m.backward(dlogits)
        return loss, drop

    def step_t(tm, b, drop):
        ids, lengths, y, mask = b
        logits = tm(T(ids), T(lengths), T(drop))
        yt = T(np.where(mask, y, -100))
        return Fn.cross_entropy(logits.reshape(-1, ex.C), yt.reshape(-1))

    opt = nprnn.optim.Adam(model, lr=1e-2)
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-2, foreach=False)
    run_parity(
        model, tmodel, batches, step_np, step_t, opt, topt, dtype, f"tagger {dtype.__name__}"
    )


# ----------------------------------------------------------------------------- siamese


class TorchSiamese(torch.nn.Module):
    def __init__(self, V, E, H):
        super().__init__()
        self.encoder = torch.nn.Module()
        self.encoder.emb = torch.nn.Embedding(V, E)
        self.encoder.rnn = torch.nn.GRU(E, H)
        self.head = torch.nn.Linear(2 * H, 2)

    def encode(self, ids, lengths):
        _, h_n = self.encoder.rnn(pack(self.encoder.emb(ids), lengths, enforce_sorted=False))
        return h_n[0]

    def forward(self, a, la, b, lb):
        ha, hb = self.encode(a, la), self.encode(b, lb)
        return self.head(torch.cat([(ha - hb).abs(), ha * hb], -1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_siamese_matches_torch(dtype):
    ex = example("siamese")
    model = ex.Siamese(dtype=dtype, rng=0)
    tmodel = TorchSiamese(ex.V, 12, 24)
    to_torch(model, tmodel, dtype)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(STEPS):
        a, b, y = ex.pairs(8, rng)
        batches.append((*nprnn.pad_sequence(a), *nprnn.pad_sequence(b), y))

    def step_np(m, bt):
        loss, dlogits = nprnn.softmax_cross_entropy(m(*bt[:4]), bt[4])
        assert m.encoder.rnn.pending_forwards == 2  # used twice
        m.backward(dlogits)
        assert m.encoder.rnn.pending_forwards == 0
        return loss, None

    def step_t(tm, bt, _):
        return Fn.cross_entropy(tm(*(T(v) for v in bt[:4])), T(bt[4]))

    opt = nprnn.optim.Adam(model, lr=1e-2)
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-2, foreach=False)
    run_parity(model, tmodel, batches, step_np, step_t, opt, topt, dtype,
               f"siamese {dtype.__name__}")  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shared_encoder_three_uses_matches_torch(dtype):
    # a triplet objective: the same encoder reads an anchor, a positive and a negative
    ex = example("siamese")
    enc = ex.Encoder(dtype=dtype, rng=np.random.default_rng(3))
    tenc = TorchSiamese(ex.V, 12, 24)
    tenc.head = None
    to_torch(enc, tenc.encoder, dtype)
    rng = np.random.default_rng(5)
    seqs = [nprnn.pad_sequence(ex.sample(6, rng)[0]) for _ in range(3)]
    codes = [enc(x, ln) for x, ln in seqs]
    assert enc.rnn.pending_forwards == 3 and enc.emb.pending_forwards == 3
    # L = Σ (a·p) − Σ (a·n): its gradients by hand, then the uses backwards, latest first
    a, p, n = codes
    for d in (-a, a, p - n):  # n, p, a
        enc.backward(d)
    tcodes = [tenc.encode(T(x), T(ln)) for x, ln in seqs]
    ((tcodes[0] * tcodes[1]).sum() - (tcodes[0] * tcodes[2]).sum()).backward()
    for k, prm in tenc.encoder.named_parameters():
        assert rel(enc.grads[k], prm.grad.numpy()) < TOL[dtype], k


# ----------------------------------------------------------------------------- classifier


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_classifier_matches_torch(dtype):
    ex = example("classifier")
    model = ex.Classifier(dtype=dtype, rng=0)
    tmodel = ex.torch_twin(torch)
    to_torch(model, tmodel, dtype)
    rng = np.random.default_rng(0)
    seqs, labels = ex.make_data(48, rng)
    batches = []
    for idx in nprnn.batch_indices(48, 12, shuffle=True, rng=1):
        batches.append((*nprnn.pad_sequence([seqs[i] for i in idx]), labels[idx]))

    def step_np(m, b):
        loss, dlogits = nprnn.softmax_cross_entropy(m(b[0], b[1]), b[2])
        m.backward(dlogits)
        nprnn.optim.clip_grad_norm(m, 0.5)
        return loss, None

    def step_t(tm, b, _):
        return Fn.cross_entropy(tm(T(b[0]), T(b[1])), T(b[2]))

    opt = nprnn.optim.AdamW(model, lr=1e-2, weight_decay=1e-2)
    topt = torch.optim.AdamW(tmodel.parameters(), lr=1e-2, weight_decay=1e-2, foreach=False)
    sched = nprnn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=4)

    class StepBoth:  # the optimizers, then their schedulers
        def __init__(self, o, s):
            self.o, self.s = o, s

        def step(self):
            self.o.step()
            self.s.step()

        def zero_grad(self):
            self.o.zero_grad()

    run_parity(model, tmodel, batches, step_np, step_t, StepBoth(opt, sched),
               StepBoth(topt, tsched), dtype, f"classifier {dtype.__name__}", clip=0.5)  # fmt: skip
    assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
