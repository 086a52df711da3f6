"""A sequence tagger on padded batches: Embedding → bidirectional LSTM (lengths) → Linear.

One tag per token, predicted from both sides of it: the tag of token t says whether it
is odd and whether the *next* token is larger — so the reverse direction is needed.
Sequences have different lengths; each batch is padded, the LSTM is told the lengths,
and the loss is masked so padding counts for nothing.

    python examples/tagger.py          # trains for a few seconds, prints the accuracy
"""

import numpy as np

import nprnn

V, C = 20, 4  # vocabulary (id 0 is padding), tags


class Tagger(nprnn.Module):
    """ids (T, B) int, lengths (B,) → logits (T, B, C); torch's names: emb.weight,
    rnn.weight_ih_l0[_reverse], ..., head.weight, head.bias."""

    def __init__(self, vocab=V, tags=C, emb=16, hidden=32, *, dropout=0.1, dtype=np.float32,
                 rng=0):  # fmt: skip
        super().__init__()
        rng = np.random.default_rng(rng)
        self.emb = nprnn.Embedding(vocab, emb, dtype=dtype, rng=rng)
        self.rnn = nprnn.LSTM(emb, hidden, bidirectional=True, dtype=dtype, rng=rng)
        self.drop = nprnn.Dropout(dropout, rng=rng)
        self.head = nprnn.Linear(2 * hidden, tags, dtype=dtype, rng=rng)

    def forward(self, ids, lengths):
        out, _ = self.rnn(self.emb(ids), lengths=lengths)  # (T, B, 2H), 0 at padding
        return self.head(self.drop(out))  # (T, B, C)

    def backward(self, dlogits):
        dout = self.drop.backward(self.head.backward(dlogits))
        dx, _ = self.rnn.backward(dout)  # no gradient on the final states
        self.emb.backward(dx)


def make_data(n, rng):
    """n sequences of 3..12 ids in [1, V) and their tags."""
    seqs, tags = [], []
    for _ in range(n):
        x = rng.integers(1, V, size=int(rng.integers(3, 13)))
        nxt = np.append(x[1:], 0)
        seqs.append(x)
        tags.append(2 * (x % 2) + (nxt > x))
    return seqs, tags


def batch(seqs, tags, idx):
    ids, lengths = nprnn.pad_sequence([seqs[i] for i in idx])  # (T, B), (B,)
    y, _ = nprnn.pad_sequence([tags[i] for i in idx])  # (T, B)
    return ids, lengths, y, nprnn.lengths_to_mask(lengths)  # mask (T, B)


def accuracy(model, seqs, tags):
    model.eval()
    ids, lengths, y, mask = batch(seqs, tags, range(len(seqs)))
    with nprnn.no_grad():  # nothing kept for backward
        pred = model(ids, lengths).argmax(-1)
    model.train()
    return float((pred == y)[mask].mean())


def main(steps=120, seed=0, verbose=True):
    rng = np.random.default_rng(seed)
    train, test = make_data(512, rng), make_data(128, rng)
    model = Tagger(rng=seed)
    opt = nprnn.optim.Adam(model, lr=1e-2)
    sched = nprnn.optim.lr_scheduler.WarmupDecayLR(opt, warmup_steps=10, total_steps=steps)
    losses, step = [], 0
    while step < steps:
        for idx in nprnn.batch_indices([len(s) for s in train[0]], 32, shuffle=True,
                                       bucket=True, rng=rng):  # fmt: skip
            ids, lengths, y, mask = batch(*train, idx)
            loss, dlogits = nprnn.softmax_cross_entropy(model(ids, lengths), y, mask)
            model.backward(dlogits)
            nprnn.optim.clip_grad_norm(model, 1.0)
            opt.step()
            opt.zero_grad()
            sched.step()
            losses.append(loss)
            if verbose and step % 50 == 0:
                print(f"step {step:4d}  loss {loss:.3f}  lr {sched.get_last_lr()[0]:.4f}")
            step += 1
            if step == steps:
                break
    acc = accuracy(model, *test)
    if verbose:
        print(f"held-out tag accuracy {acc:.3f} (chance {1 / C:.2f})")
    return {"first_loss": losses[0], "last_loss": float(np.mean(losses[-10:])), "accuracy": acc}


if __name__ == "__main__":
    main()
