"""A siamese model: one recurrent encoder used twice per step (reuse), trained on pairs.

Each sequence is drawn from one of K sources (each prefers its own block of ids); a
pair is labelled 1 when both come from the same source. The *same* encoder (Embedding
→ GRU, final state) reads both sequences of a pair; the head compares the two codes.
Every forward of a layer is kept until a backward consumes it, the most recent first,
so the encoder's backward is called for the second sequence, then the first: its
gradients are those of both uses, exactly.

    python examples/siamese.py         # trains for a few seconds, prints the accuracy
"""

import numpy as np

import nprnn

V, K = 24, 4  # vocabulary (id 0 is padding), sources


class Encoder(nprnn.Module):
    """ids (T, B), lengths (B,) → code (B, H): the GRU's state after each last real step."""

    def __init__(self, vocab=V, emb=12, hidden=24, *, dtype=np.float32, rng=None):
        super().__init__()
        self.emb = nprnn.Embedding(vocab, emb, dtype=dtype, rng=rng)
        self.rnn = nprnn.GRU(emb, hidden, dtype=dtype, rng=rng)

    def forward(self, ids, lengths):
        _, h_n = self.rnn(self.emb(ids), lengths=lengths)  # h_n (1, B, H)
        return h_n[0]

    def backward(self, dcode):
        dx, _ = self.rnn.backward(None, dcode[None])  # only the final state has a gradient
        self.emb.backward(dx)


class Siamese(nprnn.Module):
    """(a, la, b, lb) → logits (B, 2) from [|h_a − h_b|, h_a ⊙ h_b]."""

    def __init__(self, hidden=24, *, dtype=np.float32, rng=0):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.encoder = Encoder(hidden=hidden, dtype=dtype, rng=rng)
        self.head = nprnn.Linear(2 * hidden, 2, dtype=dtype, rng=rng)

    def forward(self, a, la, b, lb):
        ha = self.encoder(a, la)  # the encoder's first use ...
        hb = self.encoder(b, lb)  # ... and its second, on the same weights
        self.save_for_backward((ha, hb))  # what this module's own arithmetic needs
        return self.head(np.concatenate([np.abs(ha - hb), ha * hb], axis=-1))

    def backward(self, dlogits):
        ha, hb = self.saved_for_backward()
        H = ha.shape[-1]
        df = self.head.backward(dlogits)  # (B, 2H)
        dabs, dprod = df[:, :H], df[:, H:]
        sign = np.sign(ha - hb)
        self.encoder.backward(-sign * dabs + ha * dprod)  # b: the latest use first
        self.encoder.backward(sign * dabs + hb * dprod)  # then a


def sample(n, rng):
    """n sequences of 4..10 ids and their source: ids in the source's block w.p. 0.8."""
    src = rng.integers(0, K, size=n)
    block = (V - 1) // K
    seqs = []
    for k in src:
        T = int(rng.integers(4, 11))
        own = 1 + k * block + rng.integers(0, block, size=T)
        seqs.append(np.where(rng.random(T) < 0.8, own, rng.integers(1, V, size=T)))
    return seqs, src


def pairs(n, rng):
    """n pairs, half of them from the same source."""
    a, sa = sample(n, rng)
    b, sb = sample(n, rng)
    same = rng.random(n) < 0.5
    for i in np.flatnonzero(same):  # redraw b from a's source until it matches
        while sb[i] != sa[i]:
            (b[i],), (sb[i],) = sample(1, rng)
    return a, b, (sa == sb).astype(np.int64)


def main(steps=150, seed=0, verbose=True):
    rng = np.random.default_rng(seed)
    model = Siamese(rng=seed)
    opt = nprnn.optim.Adam(model, lr=1e-2)
    losses = []
    for step in range(steps):
        a, b, y = pairs(32, rng)
        (xa, la), (xb, lb) = nprnn.pad_sequence(a), nprnn.pad_sequence(b)
        loss, dlogits = nprnn.softmax_cross_entropy(model(xa, la, xb, lb), y)
        model.backward(dlogits)
        opt.step()
        opt.zero_grad()
        losses.append(loss)
        if verbose and step % 50 == 0:
            print(f"step {step:4d}  loss {loss:.3f}")
    a, b, y = pairs(256, rng)
    model.eval()
    with nprnn.no_grad():
        pred = model(*nprnn.pad_sequence(a), *nprnn.pad_sequence(b)).argmax(-1)
    acc = float((pred == y).mean())
    if verbose:
        print(f"held-out same-source accuracy {acc:.3f} (chance 0.50)")
    return {"first_loss": losses[0], "last_loss": float(np.mean(losses[-10:])), "accuracy": acc}


if __name__ == "__main__":
    main()
