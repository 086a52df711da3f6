"""Long-range memory tasks: the adding problem, copy memory, and gradient norms through time.

**Adding problem** (Hochreiter & Schmidhuber 1997). Each of the T steps carries two
features, a value v_t ~ U[0, 1] and a marker m_t ∈ {0, 1}; exactly two markers are 1,
one at a uniform position in the first half [0, ⌊T/2⌋) and one in the second half
[⌊T/2⌋, T). The target is y = Σ_t m_t v_t, the sum of the two marked values. Since
y is the sum of two independent U[0, 1], E[y] = 1 and Var[y] = 2/12, so always
predicting 1 gives MSE = 1/6 ≈ 0.167 (``baseline_mse``, measured on the same held-out
set). Model: recurrent layer over x (T, B, 2) → final state h_T (B, H) → Linear → ŷ (B,);
loss L = mean_b (ŷ_b − y_b)², dL/dŷ_b = 2 (ŷ_b − y_b) / B.

**Copy memory** (the variant of Arjovsky et al. 2016 with a loss on the answers only).
The alphabet has A symbols (ids 0..A−1) plus a blank (id A) and a delimiter (id A+1).
Input (length S + T + 1 + S): S random symbols, T blanks, the delimiter, S blanks; the
model must emit the S symbols, in order, at the last S steps. Inputs are one-hot
(F = A + 2); the logits of the last S steps (S, B, A) go through softmax cross-entropy.
``accuracy`` is the share of correct symbols at those S positions. The symbols are
uniform and independent, so without memory no strategy beats 1/A in expectation
(random guessing and every constant guess both score 1/A): ``baseline_accuracy`` = 1/A.

**Gradient norms through time**: :mod:`.gradnorms`.

Training runs the shared loop of :mod:`.train` (constant learning rate by default,
clipping, an evaluation on the held-out set every ``eval_every`` steps); from the command
line it writes a run directory, so ``--resume``, Ctrl-C (exit 130) and divergence (exit
3) behave as for ``nprnn train``. The reported metrics are those of the final weights.

Command line::

    nprnn task adding --model lstm --T 100          # ends with one JSON line: mse, baseline_mse
    nprnn task copy --model lstm --T 20             # ... accuracy, baseline_accuracy
    nprnn task grad-norms --T 100 --out grad_norms.png [--steps 0]   # (gradnorms.py)
"""

from __future__ import annotations

import json
import time

import numpy as np

import nprnn
from nprnn.module import Module
from nprnn.validation import as_float_dtype, as_rng, one_of, positive_int

from . import commands
from . import options as O
from .declare import stored
from .errors import UsageError
from .files import jsonable_rng_state, load_rng
from .load import VERSIONS
from .memory import check_fits, params_bytes, step_bytes
from .models import MODELS
from .train import LoopOptions, Objective, Trainer

__all__ = [
    "adding_batch",
    "copy_batch",
    "TaskNet",
    "AddingObjective",
    "CopyObjective",
    "train_adding",
    "train_copy",
    "train_in_memory",
    "RandomBatcher",
    "cmd_train",
    "FORMAT",
]

FORMAT = "nprnn-task"
VERSION = VERSIONS[FORMAT]
EVAL_SEQUENCES = 1000  # size of the fresh held-out set the metrics use
EVAL_BATCH = 100


# ----------------------------------------------------------------------------- generators


def adding_batch(rng: np.random.Generator, B: int, T: int, *, dtype=np.float32):
    """A batch of the adding problem: ``(x (T, B, 2), y (B,))``.

    x[..., 0] = values ~ U[0, 1), x[..., 1] = markers (one 1 in [0, ⌊T/2⌋), one in
    [⌊T/2⌋, T)); y = Σ_t x[t, :, 0] x[t, :, 1]. Pure: the result depends only on the
    generator's state (which it advances). Needs T >= 2.
    """
    B, T = positive_int("B", B), positive_int("T", T, minimum=2)
    values = rng.random((T, B))  # (T, B)
    half = T // 2
    cols = np.arange(B)
    first = rng.integers(0, half, size=B)
    second = rng.integers(half, T, size=B)
    markers = np.zeros((T, B))
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    x = np.stack([values, markers], axis=-1).astype(dtype)  # (T, B, 2)
    y = (values[first, cols] + values[second, cols]).astype(dtype)  # (B,)
    return x, y


def copy_batch(rng: np.random.Generator, B: int, T: int, n_symbols: int = 8, alphabet: int = 8):
    """A batch of copy memory: ``(ids (S+T+1+S, B) int64, targets (S, B) int64)``.

    ids: S symbols in [0, A), then T blanks (A), the delimiter (A+1), S blanks; targets
    are the S symbols, to be emitted at the last S steps. S = ``n_symbols``,
    A = ``alphabet``; T >= 0.
    """
    B, S, A = (
        positive_int("B", B),
        positive_int("n_symbols", n_symbols),
        positive_int("alphabet", alphabet, minimum=2),
    )
    T = positive_int("T", T, minimum=0)
    symbols = rng.integers(0, A, size=(S, B))  # (S, B)
    ids = np.full((2 * S + T + 1, B), A, dtype=np.int64)  # blanks
    ids[:S] = symbols
    ids[S + T] = A + 1  # the delimiter
    return ids, symbols.astype(np.int64)


# ----------------------------------------------------------------------------- the network


class TaskNet(Module):
    """One recurrent layer (F → H) and a Linear readout (H → out): an
    :class:`nprnn.module.Module` with parameters ``rnn.weight_ih_l0``, ..., ``head.weight``,
    ``head.bias``."""

    def __init__(
        self, model: str, n_in: int, hidden: int, n_out: int, *, dtype=np.float32, rng=None
    ):
        super().__init__(as_float_dtype(dtype))
        self.model = one_of("model", model, tuple(MODELS))
        self.n_in, self.hidden = positive_int("n_in", n_in), positive_int("hidden", hidden)
        self.n_out = positive_int("n_out", n_out)
        self.rng = as_rng(rng)
        self.rnn = MODELS[model](self.n_in, self.hidden, dtype=self.dtype, rng=self.rng)
        self.head = nprnn.Linear(self.hidden, self.n_out, dtype=self.dtype, rng=self.rng)

    def config(self) -> dict:
        return {
            "model": self.model,
            "n_in": self.n_in,
            "hidden": self.hidden,
            "n_out": self.n_out,
            "dtype": self.dtype.name,
        }

    @classmethod
    def from_config(cls, cfg: dict, *, rng=None, weights=None) -> TaskNet:
        if not isinstance(cfg, dict) or set(cfg) != {"model", "n_in", "hidden", "n_out", "dtype"}:
            raise ValueError(f"task model config {cfg!r}")
        net = cls(
            cfg["model"], cfg["n_in"], cfg["hidden"], cfg["n_out"], dtype=cfg["dtype"], rng=rng
        )
        if weights is not None:
            net.load_state_dict(weights)
        return net

    def final_state(self, x):
        """h_T (B, H) of the layer over x (T, B, F)."""
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # (1, B, H)
        return h_n[0]

    def backward_final(self, dh):
        """Backward from dL/dh_T (B, H); the parameter gradients accumulate."""
        d = dh[None]  # (1, B, H)
        self.rnn.backward(None, (d, None) if self.model == "lstm" else d)

    def adding_loss(self, x, y, *, backward: bool = True):
        """MSE of the adding readout ŷ = W h_T + b; with ``backward``, adds its gradients."""
        pred = self.head(self.final_state(x))[:, 0]  # (B,)
        err = pred - y
        loss = float(np.mean(np.square(err, dtype=np.float64)))
        if backward:
            dpred = (2.0 / len(y)) * err  # dL/dŷ, (B,)
            self.backward_final(self.head.backward(dpred[:, None]))
        return loss

    def copy_loss(self, ids, targets, *, backward: bool = True):
        """Cross-entropy and accuracy at the last S steps; with ``backward``, adds gradients."""
        S = targets.shape[0]
        x = np.eye(self.rnn.input_size, dtype=self.dtype)[ids]  # one-hot (L, B, A+2)
        out, _ = self.rnn(x)  # (L, B, H)
        logits = self.head(out[-S:])  # (S, B, A)
        loss, dlogits = nprnn.softmax_cross_entropy(logits, targets)
        acc = float(np.mean(logits.argmax(axis=-1) == targets))
        if backward:
            dout = np.zeros_like(out)
            dout[-S:] = self.head.backward(dlogits)
            self.rnn.backward(dout, None)
        return float(loss), acc


# ----------------------------------------------------------------------------- objectives


class RandomBatcher:
    """Fresh random batches ``make(rng)`` from a generator of its own (state saved)."""

    def __init__(self, make, rng):
        self.make, self.rng = make, rng

    def next_batch(self):
        return self.make(self.rng)

    def state_dict(self) -> dict:
        return {"kind": "random", "rng_state": jsonable_rng_state(self.rng.bit_generator.state)}

    def load_state_dict(self, d) -> None:
        if not isinstance(d, dict) or d.get("kind") != "random":
            raise ValueError(f"random batcher state {d!r:.80}")
        self.rng.bit_generator.state = load_rng(d.get("rng_state")).bit_generator.state


class AddingObjective(Objective):
    """The adding problem: MSE of the readout of h_T; batches from the rng [seed, 1],
    the held-out set (1,000 sequences) from [seed, 2]."""

    unit = "seqs"

    def __init__(self, net: TaskNet, T: int, *, batch_size: int, seed: int):
        self.model, self.T = net, positive_int("T", T, minimum=2)
        dt = net.dtype
        self.batcher = RandomBatcher(
            lambda rng: adding_batch(rng, batch_size, T, dtype=dt), np.random.default_rng([seed, 1])
        )
        rng = np.random.default_rng([seed, 2])
        self.held_out = [
            adding_batch(rng, EVAL_BATCH, T, dtype=dt) for _ in range(EVAL_SEQUENCES // EVAL_BATCH)
        ]

    def loss_and_grad(self, batch, carry):
        x, y = batch
        return self.model.adding_loss(x, y), len(y), None

    def evaluate(self, part: int = 0, parts: int = 1) -> dict:
        se = base = 0.0
        n = 0
        for i, (x, y) in enumerate(self.held_out):
            if i % parts == part:
                se += self.model.adding_loss(x, y, backward=False) * len(y)
                base += float(np.sum(np.square(y.astype(np.float64) - 1.0)))
                n += len(y)
        return {"loss": (se, n), "baseline_mse": (base, n)}

    def batch_axes(self, batch) -> tuple:
        return (1, 0)


class CopyObjective(Objective):
    """Copy memory: cross-entropy at the last S steps; held-out accuracy."""

    unit = "seqs"

    def __init__(
        self, net: TaskNet, T: int, *, n_symbols: int, alphabet: int, batch_size: int, seed: int
    ):
        self.model = net
        S, A = positive_int("n_symbols", n_symbols), positive_int("alphabet", alphabet, minimum=2)
        T = positive_int("T", T, minimum=0)
        self.batcher = RandomBatcher(
            lambda rng: copy_batch(rng, batch_size, T, S, A), np.random.default_rng([seed, 1])
        )
        rng = np.random.default_rng([seed, 2])
        self.held_out = [
            copy_batch(rng, EVAL_BATCH, T, S, A) for _ in range(EVAL_SEQUENCES // EVAL_BATCH)
        ]

    def loss_and_grad(self, batch, carry):
        ids, targets = batch
        return self.model.copy_loss(ids, targets)[0], ids.shape[1], None

    def evaluate(self, part: int = 0, parts: int = 1) -> dict:
        loss = acc = 0.0
        n = 0
        for i, (ids, targets) in enumerate(self.held_out):
            if i % parts == part:
                v, a = self.model.copy_loss(ids, targets, backward=False)
                loss, acc, n = loss + v, acc + a, n + 1
        return {"loss": (loss, n), "accuracy": (acc, n)}

    def batch_axes(self, batch) -> tuple:
        return (1, 1)


def _objective(
    task: str,
    T: int,
    *,
    model,
    hidden,
    batch_size,
    seed,
    dtype=np.float32,
    n_symbols=8,
    alphabet=8,
    net=None,
):
    if task == "adding":
        positive_int("T", T, minimum=2)
        net = net or TaskNet(model, 2, hidden, 1, dtype=dtype, rng=np.random.default_rng([seed, 0]))
        return AddingObjective(net, T, batch_size=batch_size, seed=seed)
    A = positive_int("alphabet", alphabet, minimum=2)
    net = net or TaskNet(model, A + 2, hidden, A, dtype=dtype, rng=np.random.default_rng([seed, 0]))
    return CopyObjective(net, T, n_symbols=n_symbols, alphabet=A, batch_size=batch_size, seed=seed)


def _metrics(task: str, objective, secs: float, head: dict) -> dict:
    tot = objective.evaluate()
    mean = {k: s / c for k, (s, c) in tot.items()}
    if task == "adding":
        res = {"mse": mean["loss"], "baseline_mse": mean["baseline_mse"]}
    else:
        res = {
            "accuracy": mean["accuracy"],
            "baseline_accuracy": 1.0 / objective.model.n_out,
            "loss": mean["loss"],
        }
    return {**head, **res, "train_seconds": round(secs, 2)}


def train_in_memory(
    task, T, *, model, hidden, batch_size, steps, lr, clip, optimizer, seed, quiet, dtype, **kw
):
    """The shared loop without a run directory (Python use, grad-norms)."""
    for name, v in (("hidden", hidden), ("batch_size", batch_size), ("steps", steps)):
        positive_int(name, v, minimum=0 if name == "steps" else 1)
    obj = _objective(
        task, T, model=model, hidden=hidden, batch_size=batch_size, seed=seed, dtype=dtype, **kw
    )
    t0 = time.perf_counter()
    if steps:
        opts = LoopOptions(
            steps=steps,
            lr=lr,
            optimizer=optimizer,
            clip=clip,
            warmup=0,
            decay="none",
            eval_every=max(steps // 4, 1) if not quiet else steps,
            patience=0,
            quiet=quiet,
        )
        res = Trainer(obj, opts).run()
        if res.status != "done":
            raise UsageError(f"{task}/{model}/T={T}: {res.message}", "lower --lr")
    return obj, time.perf_counter() - t0


def train_adding(
    model="lstm",
    T=100,
    *,
    hidden=128,
    batch_size=64,
    steps=3000,
    lr=3e-3,
    clip=1.0,
    optimizer="adam",
    seed=0,
    quiet=True,
    dtype=np.float32,
) -> dict:
    """Train on the adding problem (in memory, no run directory); evaluate on a fresh
    held-out set of 1,000 sequences.

    Returns ``{"task", "model", "T", ..., "mse", "baseline_mse", "train_seconds"}``:
    ``mse`` of the trained model and ``baseline_mse`` of always predicting 1, on the
    same held-out sequences (drawn from a generator seeded apart from the training one).
    """
    obj, secs = train_in_memory(
        "adding",
        T,
        model=model,
        hidden=hidden,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        clip=clip,
        optimizer=optimizer,
        seed=seed,
        quiet=quiet,
        dtype=dtype,
    )
    head = {
        "task": "adding",
        "model": model,
        "T": T,
        "hidden": hidden,
        "batch_size": batch_size,
        "steps": steps,
        "lr": lr,
        "seed": seed,
    }
    return _metrics("adding", obj, secs, head)


def train_copy(
    model="lstm",
    T=20,
    *,
    n_symbols=8,
    alphabet=8,
    hidden=128,
    batch_size=64,
    steps=3000,
    lr=3e-3,
    clip=1.0,
    optimizer="adam",
    seed=0,
    quiet=True,
    dtype=np.float32,
) -> dict:
    """Train on copy memory (in memory); evaluate accuracy on 1,000 held-out sequences.

    Returns ``{..., "accuracy", "baseline_accuracy" (= 1/alphabet), "loss", "train_seconds"}``.
    """
    obj, secs = train_in_memory(
        "copy",
        T,
        model=model,
        hidden=hidden,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        clip=clip,
        optimizer=optimizer,
        seed=seed,
        quiet=quiet,
        dtype=dtype,
        n_symbols=n_symbols,
        alphabet=alphabet,
    )
    head = {
        "task": "copy",
        "model": model,
        "T": T,
        "n_symbols": n_symbols,
        "alphabet": alphabet,
        "hidden": hidden,
        "batch_size": batch_size,
        "steps": steps,
        "lr": lr,
        "seed": seed,
    }
    return _metrics("copy", obj, secs, head)


# ----------------------------------------------------------------------------- commands


def _build(opts, prev, task: str):
    kw = {"n_symbols": opts.symbols, "alphabet": opts.alphabet} if task == "copy" else {}
    n_in = 2 if task == "adding" else opts.alphabet + 2
    G = {"lstm": 4, "gru": 3, "rnn": 1}[opts.model]
    n_params = G * opts.hidden * (n_in + opts.hidden + 2) + (opts.hidden + 1) * (
        1 if task == "adding" else opts.alphabet
    )
    L = opts.T if task == "adding" else 2 * opts.symbols + opts.T + 1
    need = params_bytes(n_params, optimizer=opts.optimizer, procs=opts.procs) + step_bytes(
        cell=opts.model,
        hidden=opts.hidden,
        layers=1,
        T=L,
        B=max(opts.batch_size, EVAL_BATCH),
        input_size=n_in,
        classes_per_step=0 if task == "adding" else opts.alphabet,
        n_params=n_params,
        procs=opts.procs,  # resolved before any build (commands.train)
    )
    check_fits(
        need,
        what=f"a training step of {L:,} steps x {opts.batch_size} sequences",
        fix="pass a smaller --T, --batch-size or --hidden",
    )
    obj = _objective(
        task,
        opts.T,
        model=opts.model,
        hidden=opts.hidden,
        batch_size=opts.batch_size,
        seed=opts.seed,
        net=prev.model if prev is not None else None,
        **kw,
    )
    st = stored(opts)
    config = {
        "format": FORMAT,
        "version": VERSION,
        "task": task,
        "model": obj.model.config(),
        "train": st["train"],
        "task_options": st["task_options"],
    }
    start = f"{{verb}}: {task}, {opts.model}, T={opts.T}, hidden {opts.hidden} -> {opts.out}"
    return commands.Built(obj, config, start)


def cmd_train(opts, given: set) -> int:
    """``nprnn task adding|copy``: train (a run directory, resumable), print one JSON line."""
    task = "copy" if isinstance(opts, O.TaskCopy) else "adding"
    if opts.out is None:
        opts.out = f"runs/{task}-{opts.model}-T{opts.T}"
    t0 = time.perf_counter()
    result, trainer, run, _ = commands.train(
        opts,
        given,
        kind=FORMAT,
        out=opts.out,
        build=lambda o, p: _build(o, p, task),
        resume_hint=f"nprnn task {task} --T {opts.T} --out {opts.out} --resume",
    )
    status = commands.exit_status(result, True)
    if status is not None:
        return status
    head = {
        "task": task,
        "model": opts.model,
        "T": opts.T,
        "hidden": opts.hidden,
        "batch_size": opts.batch_size,
        "steps": opts.steps,
        "lr": opts.lr,
        "seed": opts.seed,
    }
    if task == "copy":
        head.update(n_symbols=opts.symbols, alphabet=opts.alphabet)
    res = _metrics(task, trainer.objective, time.perf_counter() - t0, head)
    print(json.dumps({**res, "out": str(run.path)}))
    return 0
