"""Run under mpiexec: the weighted allreduce of shard gradients equals the full batch's.

Writes one JSON file per rank into the directory argv[1]: its rank, the worst relative
gradient error against the gradient of the whole batch (computed locally), and the
parameter spread after a broadcast."""

import json
import sys

import numpy as np

import nprnn
import nprnn.distributed as dist


def model(seed):
    rnn = nprnn.LSTM(3, 5, dtype=np.float64, rng=seed)
    head = nprnn.Linear(5, 4, dtype=np.float64, rng=seed + 1)
    return rnn, head


def grads_of(rnn, head, x, y, lengths):
    rnn.zero_grad()
    head.zero_grad()
    out, _ = rnn(x, lengths=lengths)
    T = x.shape[0]
    mask = np.arange(T)[:, None] < lengths[None, :]
    loss, dz = nprnn.softmax_cross_entropy(head(out), y, mask=mask)
    rnn.backward(head.backward(dz))
    g = {f"rnn.{k}": v for k, v in rnn.grads.items()}
    g.update({f"head.{k}": v for k, v in head.grads.items()})
    return g, int(mask.sum())


dist.init()
r, n = dist.rank(), dist.size()
rng = np.random.default_rng(0)  # the same global batch on every rank
B = 4 * n
x = rng.standard_normal((6, B, 3))
y = rng.integers(0, 4, (6, B))
lengths = rng.integers(0, 7, B)
rnn, head = model(seed=10 + r)  # different weights per rank ...
params = {f"rnn.{k}": v for k, v in rnn.params.items()}
params.update({f"head.{k}": v for k, v in head.params.items()})
dist.broadcast_params(params)  # ... until rank 0's are broadcast
full, _ = grads_of(rnn, head, x, y, lengths)
full = {k: v.copy() for k, v in full.items()}
xs, ys = dist.shard(x, axis=1), dist.shard(y, axis=1)
g, count = grads_of(rnn, head, xs, ys, dist.shard(lengths))
total = dist.allreduce_grads(g, weight=count)
err = max(float(np.linalg.norm(g[k] - full[k]) / np.linalg.norm(full[k])) for k in g)
spread = float(
    dist.allreduce(np.abs(params["rnn.weight_hh_l0"]).sum(), op="max")
    - dist.allreduce(np.abs(params["rnn.weight_hh_l0"]).sum(), op="min")
)
try:
    dist.shard(np.zeros((4 * n + 1, 2)), name="--batch-size")
    shard_error = ""
except ValueError as e:
    shard_error = str(e)
with open(f"{sys.argv[1]}/rank{r}.json", "w") as f:  # one file per rank: no interleaving
    row = {"rank": r, "size": n, "err": err, "spread": spread, "total": total}
    json.dump({**row, "shard_error": shard_error}, f)
