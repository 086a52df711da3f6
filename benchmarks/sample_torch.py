"""The torch side of ``nprnn sample``: the same characters' worth of work, from a run's weights.

Loads the weights of an ``nprnn train`` run (stream mode) into ``torch.nn`` modules —
``Embedding`` → ``LSTM``/``GRU``/``RNN`` → ``Linear``, PyTorch's names, so the state dict
loads unchanged — primes them with a newline, then draws ``--n`` characters one at a
time: per character an embedding lookup, one step of the stacked recurrent layer carrying
its state, the head, a softmax at ``--temperature`` and a multinomial draw, under
``torch.no_grad()``, and prints the text (as ``nprnn sample`` does). Timed as a whole
command against ``nprnn sample`` with farm-bench (README, Speed)::

    farm-bench --vs 'python benchmarks/sample_torch.py RUN --n 20000' -- \\
        nprnn sample RUN --n 20000 --seed 1

Both at their default threads (torch: its own default; ``nprnn sample``: ``--threads``
default 1), or add ``--threads 1`` here for torch at one thread.
"""

from __future__ import annotations

import argparse
import sys

import torch

import nprnn
from nprnn.app.benchwork import torch_twin


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run directory written by nprnn train (stream mode)")
    ap.add_argument("--n", type=int, default=20000, help="characters to generate")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    run = nprnn.load_run(a.run)
    model, vocab = run.model, run.vocab
    emb, rnn, head = torch_twin(torch, model)
    chars = vocab.tokens
    gen = torch.Generator().manual_seed(a.seed)
    out = []
    with torch.no_grad():
        x, state = torch.tensor([[int(vocab.encode("\n")[0])]]), None
        for _ in range(a.n):
            h, state = rnn(emb(x), state)
            p = torch.softmax(head(h[-1]) / a.temperature, dim=-1)
            x = torch.multinomial(p, 1, generator=gen).T
            out.append(chars[int(x)])
    sys.stdout.write("".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
