"""A many-to-one classifier: trained, saved, reloaded, exported to PyTorch, compared.

Each sequence's class is the block of ids it draws most from. Embedding → 2-layer
LSTM (lengths) → the top layer's final state → Linear → softmax. After training the
weights go to ``classifier.safetensors``; a fresh model loads them and must give the
same logits; then the same file loads into the equivalent ``torch.nn`` model
(``safetensors.torch.load_file`` → ``load_state_dict``), whose logits are compared.

    python examples/classifier.py [--steps N] [--out DIR]
"""

import argparse
import os
import tempfile

import numpy as np

import nprnn

V, C = 16, 3  # vocabulary (id 0 is padding), classes


class Classifier(nprnn.Module):
    """ids (T, B), lengths (B,) → logits (B, C). Names: emb.weight, rnn.weight_ih_l0, ...,
    rnn.bias_hh_l1, head.weight, head.bias."""

    def __init__(self, vocab=V, classes=C, emb=8, hidden=24, layers=2, *, dtype=np.float32,
                 rng=0):  # fmt: skip
        super().__init__()
        rng = np.random.default_rng(rng)
        self.emb = nprnn.Embedding(vocab, emb, dtype=dtype, rng=rng)
        self.rnn = nprnn.LSTM(emb, hidden, layers, dtype=dtype, rng=rng)
        self.head = nprnn.Linear(hidden, classes, dtype=dtype, rng=rng)

    def forward(self, ids, lengths):
        _, (h_n, _) = self.rnn(self.emb(ids), lengths=lengths)  # h_n (layers, B, H)
        return self.head(h_n[-1])  # the top layer's state after each last real step

    def backward(self, dlogits):
        dh = self.head.backward(dlogits)  # (B, H)
        dh_n = np.zeros((self.rnn.num_layers,) + dh.shape, dh.dtype)
        dh_n[-1] = dh
        dx, _ = self.rnn.backward(None, (dh_n, None))  # out and c_n have no gradient
        self.emb.backward(dx)


def make_data(n, rng):
    block = (V - 1) // C
    seqs, labels = [], rng.integers(0, C, size=n)
    for k in labels:
        T = int(rng.integers(3, 15))
        own = 1 + k * block + rng.integers(0, block, size=T)
        seqs.append(np.where(rng.random(T) < 0.6, own, rng.integers(1, V, size=T)))
    return seqs, labels


def torch_twin(torch):
    """The same architecture in torch.nn, with the same parameter names."""

    class TorchClassifier(torch.nn.Module):
        def __init__(self, vocab=V, classes=C, emb=8, hidden=24, layers=2):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, emb)
            self.rnn = torch.nn.LSTM(emb, hidden, layers)
            self.head = torch.nn.Linear(hidden, classes)

        def forward(self, ids, lengths):
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                self.emb(ids), lengths, enforce_sorted=False
            )
            _, (h_n, _) = self.rnn(packed)
            return self.head(h_n[-1])

    return TorchClassifier()


def main(steps=150, seed=0, out=None, verbose=True):
    rng = np.random.default_rng(seed)
    seqs, labels = make_data(512, rng)
    model = Classifier(rng=seed)
    opt = nprnn.optim.AdamW(model, lr=1e-2, weight_decay=1e-4)
    sched = nprnn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-3)
    losses = []
    for step in range(steps):
        idx = rng.choice(len(seqs), size=32, replace=False)
        ids, lengths = nprnn.pad_sequence([seqs[i] for i in idx])
        loss, dlogits = nprnn.softmax_cross_entropy(model(ids, lengths), labels[idx])
        model.backward(dlogits)
        opt.step()
        opt.zero_grad()
        sched.step()
        losses.append(loss)
        if verbose and step % 50 == 0:
            print(f"step {step:4d}  loss {loss:.3f}")
    held, held_labels = make_data(256, rng)
    test_x, test_len = nprnn.pad_sequence(held)
    model.eval()
    with nprnn.no_grad():
        logits = model(test_x, test_len)  # (256, C)
    acc = float((logits.argmax(-1) == held_labels).mean())

    out = out or tempfile.mkdtemp(prefix="nprnn-classifier-")
    path = os.path.join(out, "classifier.safetensors")
    nprnn.save(model, path)
    again = nprnn.load(Classifier(rng=seed + 1).eval(), path)  # fresh weights, then loaded
    with nprnn.no_grad():
        reload_diff = float(np.max(np.abs(again(test_x, test_len) - logits)))

    try:
        import torch
        from safetensors.torch import load_file
    except ImportError:
        torch_diff = None
    else:
        twin = torch_twin(torch)
        twin.load_state_dict(load_file(path))  # strict: every name and shape must match
        with torch.no_grad():
            t_logits = twin(torch.from_numpy(test_x), torch.from_numpy(test_len)).numpy()
        torch_diff = float(np.max(np.abs(t_logits - logits)))
    if verbose:
        print(f"held-out accuracy {acc:.3f} (chance {1 / C:.2f}); saved {path}")
        print(f"reloaded model: max |logit difference| {reload_diff:.1e}")
        if torch_diff is None:
            print("torch not installed: export not checked")
        else:
            print(f"torch.nn twin from the same file: max |logit difference| {torch_diff:.1e}")
    return {"first_loss": losses[0], "last_loss": float(np.mean(losses[-10:])), "accuracy": acc,
            "path": path, "reload_diff": reload_diff, "torch_diff": torch_diff}  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--out", help="directory for classifier.safetensors (default: a temp dir)")
    a = ap.parse_args()
    main(steps=a.steps, out=a.out)
