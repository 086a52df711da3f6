"""The workload rows of ``nprnn bench``: where users spend their time, against torch.

**Generation** — :meth:`CharLM.generate` in stream mode, one character at a time at
B = 1, from a 2-layer, 256-unit LSTM over a 65-character vocabulary (tiny-shakespeare's
size; random weights: speed does not depend on them). torch does the same work from the
same weights in the same process: per character an ``nn.Embedding`` lookup, a 2-layer
``nn.LSTM`` step carrying its state, ``nn.Linear``, a softmax and a draw, under
``torch.no_grad()``. Reported in characters per second.

**Char-LM training step** — the CLI's default main job: lines mode on the bundled first
names, ``CharLM`` with hidden 128, one LSTM layer, batches of 64 padded lines (length
buckets, as ``nprnn train`` draws them), Adam (lr 3e-3), global-norm clipping at 1.
torch runs ``Embedding`` → ``LSTM`` on ``pack_padded_sequence`` → ``Linear`` →
masked-mean cross-entropy → backward → ``clip_grad_norm_`` → ``Adam.step`` on exactly
the same batches, from the same initial weights. Reported in milliseconds per step: once
in one process (at the bench's BLAS threads), and once the way ``nprnn train`` runs it
by default, ``--procs N`` processes of one BLAS thread each (N from
:func:`.local.auto_procs`, a row only where N > 1, and only at the bench's default
threads, where torch uses its own default too), each taking its rows of every batch
and meeting once a step to average the gradients (:mod:`.parallel`), forks and joins
included. ``benchmarks/charlm_vs_torch.py`` compares the whole command.
"""

from __future__ import annotations

import time

import numpy as np

import nprnn

from .batches import LinesBatcher
from .charlm import CharLM
from .lm import BUNDLED, bundled_path
from .text import Vocab

__all__ = ["generation", "train_step", "train_step_procs", "torch_twin", "WORKLOADS"]

GEN = {"vocab": 65, "hidden": 256, "layers": 2}
TRAIN = {"hidden": 128, "layers": 1, "batch_size": 64, "lr": 3e-3, "clip": 1.0}


def _median(times) -> float:
    return float(np.median(times))


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_twin(torch, model: CharLM):
    """``(Embedding, LSTM/GRU/RNN, Linear)`` of ``torch`` holding ``model``'s weights
    (PyTorch's names: the state dict loads as it is)."""
    sd = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    cls = getattr(torch.nn, model.rnn.cell.torch)
    emb = torch.nn.Embedding(model.vocab_size, model.embedding_dim)
    rnn = cls(model.embedding_dim, model.hidden, model.num_layers)
    head = torch.nn.Linear(model.hidden, model.vocab_size)
    for prefix, m in (("embedding.", emb), ("rnn.", rnn), ("head.", head)):
        m.load_state_dict({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
    return emb, rnn, head


def generation(*, chars: int = 2000, repeat: int = 3, torch_: bool = True) -> dict:
    """Characters per second of nprnn's and torch's generation loops (see the module doc)."""
    chars_list = [chr(c) for c in range(32, 32 + GEN["vocab"] - 1)] + ["\n"]
    vocab = Vocab(chars_list, lines_mode=False)
    model = CharLM(len(vocab), hidden=GEN["hidden"], layers=GEN["layers"], rng=0).eval()

    def ours():
        for _ in model.generate(vocab, n=chars, mode="stream", rng=1, chunk=chars):
            pass

    row = {"workload": f"generate, {GEN['layers']}×{GEN['hidden']} LSTM, B = 1",
           "unit": "chars/s"}  # fmt: skip
    row["nprnn"] = chars / _timed(ours, repeat)
    torch = _torch() if torch_ else None
    row["torch"] = None
    if torch is not None:
        emb, rnn, head = torch_twin(torch, model)
        gen = torch.Generator().manual_seed(1)

        def theirs():
            with torch.no_grad():
                x, state = torch.tensor([[0]]), None
                for _ in range(chars):
                    out, state = rnn(emb(x), state)
                    p = torch.softmax(head(out[-1]), dim=-1)
                    x = torch.multinomial(p, 1, generator=gen).T

        row["torch"] = chars / _timed(theirs, repeat)
    row["ratio"] = None if row["torch"] is None else row["nprnn"] / row["torch"]
    return row


def _names():
    with bundled_path(BUNDLED.removeprefix("bundled:")) as p:
        return [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln]


def _train_setup(steps: int, dtype=np.float32):
    """The model, its bound Adam and ``steps`` batches of the bundled names."""
    lines = _names()
    vocab = Vocab.build(lines, lines_mode=True)
    batcher = LinesBatcher(lines, vocab, batch_size=TRAIN["batch_size"], rng=0)
    batches = [batcher.next_batch() for _ in range(steps)]
    model = CharLM(len(vocab), hidden=TRAIN["hidden"], layers=TRAIN["layers"], dtype=dtype, rng=0)
    return model, nprnn.optim.Adam(model, lr=TRAIN["lr"]), batches


def _ours(model, opt, batches):
    def run():
        for inputs, targets, mask in batches:
            model.loss_and_grad(inputs, targets, mask)
            nprnn.optim.clip_grad_norm(model, TRAIN["clip"])
            opt.step()
            opt.zero_grad()

    return run


class _Rows:
    """What :meth:`.parallel.DataParallel.shard` asks of an objective: the batch axis of
    each array of a batch (inputs, targets, mask: all (T, B))."""

    @staticmethod
    def batch_axes(batch) -> tuple:
        return (1, 1, 1)


def _ours_procs(model, opt, batches, procs: int):
    """:func:`_ours` in ``procs`` processes, as ``nprnn train --procs`` steps: each process
    takes its rows of every batch, the gradients are averaged over all of them, and then
    every process clips and steps alike (rank 0's model ends with the result)."""
    from .local import LocalParallel  # noqa: PLC0415

    par = LocalParallel(procs)
    par.check_batch_size(TRAIN["batch_size"])
    par.setup_done(model)

    def loop():
        for batch in batches:
            inputs, targets, mask = par.shard(batch, _Rows)
            loss, _ = model.loss_and_grad(inputs, targets, mask)
            par.average_gradients(model.grads, loss, int(np.count_nonzero(mask)))
            nprnn.optim.clip_grad_norm(model, TRAIN["clip"])
            opt.step()
            opt.zero_grad()

    return lambda: par.run(loop)


def _theirs(torch, model, batches):
    """torch's loop over the same batches from ``model``'s current weights, and its
    modules (embedding, rnn, head)."""
    emb, rnn, head = torch_twin(torch, model)
    params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
    topt = torch.optim.Adam(params, lr=TRAIN["lr"])
    tb = [
        (torch.tensor(i), torch.tensor(t), torch.tensor(m > 0), torch.tensor(m.sum(0)))
        for i, t, m in batches
    ]
    pack = torch.nn.utils.rnn.pack_padded_sequence
    unpack = torch.nn.utils.rnn.pad_packed_sequence

    def run():
        for inputs, targets, mask, lengths in tb:
            topt.zero_grad()
            packed = pack(emb(inputs), lengths, enforce_sorted=False)
            out, _ = unpack(rnn(packed)[0], total_length=inputs.shape[0])
            loss = torch.nn.functional.cross_entropy(head(out)[mask], targets[mask])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, TRAIN["clip"])
            topt.step()

    return run, (emb, rnn, head)


def train_step(*, steps: int = 60, repeat: int = 3, torch_: bool = True, procs: int = 1) -> dict:
    """Milliseconds per training step of nprnn's and torch's char-LM (see the module doc);
    ``procs`` > 1: nprnn's step in that many processes of one BLAS thread each."""
    model, opt, batches = _train_setup(steps)
    init = model.state_dict()
    name = "char-LM train step, names, H = 128, B = 64"
    if procs > 1:
        name += f", --procs {procs} × 1 thread"
        from threadpoolctl import threadpool_limits  # noqa: PLC0415

        with threadpool_limits(1):
            ms = _timed(_ours_procs(model, opt, batches, procs), repeat) / steps * 1e3
    else:
        ms = _timed(_ours(model, opt, batches), repeat) / steps * 1e3
    row = {"workload": name, "unit": "ms/step", "nprnn": ms}
    torch = _torch() if torch_ else None
    row["torch"] = None
    if torch is not None:
        model.load_state_dict(init)
        row["torch"] = _timed(_theirs(torch, model, batches)[0], repeat) / steps * 1e3
    row["ratio"] = None if row["torch"] is None else row["torch"] / row["nprnn"]
    return row


def _timed(fn, repeat) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return _median(times)


def train_step_procs(*, steps: int = 60, repeat: int = 3, torch_: bool = True):
    """:func:`train_step` in the processes ``nprnn train`` uses by default, or None where
    that is one process (one usable core, or no ``fork``)."""
    from .local import auto_procs  # noqa: PLC0415

    procs = auto_procs(TRAIN["batch_size"], 1)
    if procs == 1:
        return None
    return train_step(steps=steps, repeat=repeat, torch_=torch_, procs=procs)


WORKLOADS = {"generate": generation, "train": train_step, "train_procs": train_step_procs}
"""Each returns a row of the workload table, or None (no such row on this machine)."""
