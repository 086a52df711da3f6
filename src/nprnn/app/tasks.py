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

**Gradient norms through time** (:func:`gradient_norms`). For the adding loss L of a
one-layer network, ‖∂L/∂h_t‖ for every step t, where h_t is the state after step t and
the derivative is the total one through all later steps (for the LSTM: with c_t held
fixed; its own gradient ∂L/∂c_t flows in parallel). Exact method: the sequence is run
one step at a time with the :mod:`nprnn.functional` kernels (T calls with T = 1,
chaining the states), then backpropagated one step at a time from ∂L/∂h_{T−1}: the state
gradient that the kernel returns for step t+1 (its ``dh0``) is exactly ∂L/∂h_t. This is
the same backward recursion the whole-sequence kernel runs, only stopped at every step
(the tests check that both give the same ``dh0`` and parameter gradients).

Training runs the shared loop of :mod:`.train` (constant learning rate by default,
clipping, an evaluation on the held-out set every ``eval_every`` steps); from the command
line it writes a run directory, so ``--resume``, Ctrl-C (exit 130) and divergence (exit
3) behave as for ``nprnn train``. The reported metrics are those of the final weights.

Command line::

    nprnn task adding --model lstm --T 100          # ends with one JSON line: mse, baseline_mse
    nprnn task copy --model lstm --T 20             # ... accuracy, baseline_accuracy
    nprnn task grad-norms --T 100 --out grad_norms.png [--steps 0]
"""

from __future__ import annotations

import json
import time

import numpy as np

import nprnn
from nprnn import functional as F
from nprnn.module import Module
from nprnn.validation import as_float_dtype, as_rng, one_of, positive_int

from . import commands
from . import options as O
from .charlm import MODELS
from .errors import UsageError
from .files import jsonable_rng_state, load_rng
from .memory import check_fits, params_bytes, step_bytes
from .train import LoopOptions, Objective, Trainer
from .viz import new_figure

__all__ = [
    "adding_batch",
    "copy_batch",
    "TaskNet",
    "AddingObjective",
    "CopyObjective",
    "train_adding",
    "train_copy",
    "gradient_norms",
    "state_grad_norms",
    "plot_grad_norms",
    "cmd_train",
    "cmd_grad_norms",
    "FORMAT",
]

FORMAT, VERSION = "nprnn-task", 1
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


def _train_in_memory(
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
    obj, secs = _train_in_memory(
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
    obj, secs = _train_in_memory(
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


# ----------------------------------------------------------------------------- gradient norms


def state_grad_norms(net: TaskNet, x, y) -> dict:
    """Exact ‖∂L/∂h_t‖ (and, for the LSTM, ‖∂L/∂c_t‖) for t = 0..T−1, L the adding MSE.

    Runs the layer's weights step by step through the functional kernels (see the
    module docstring). Returns ``{"h": (T,), ["c": (T,)], "dh0": (B, H), "grads": {...}}``
    where ``dh0`` = ∂L/∂h_{−1} (the initial state) and ``grads`` the summed parameter
    gradients of the step-wise backward (they equal the whole-sequence ones).
    """
    rnn = net.rnn
    w = [rnn.params[n] for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    T, B, _ = x.shape
    lstm = net.model == "lstm"
    h = np.zeros((B, rnn.hidden_size), dtype=x.dtype)
    c, caches = (h.copy() if lstm else None), []
    for t in range(T):  # forward, one step per kernel call
        if lstm:
            _, (h, c), cache = F.lstm_forward(x[t : t + 1], h, c, *w)
        elif net.model == "gru":
            _, h, cache = F.gru_forward(x[t : t + 1], h, *w)
        else:
            _, h, cache = F.rnn_forward(x[t : t + 1], h, *w, nonlinearity=rnn.nonlinearity)
        caches.append(cache)
    pred = net.head(h)[:, 0]  # (B,)
    dh = net.head.backward(((2.0 / B) * (pred - y))[:, None])  # ∂L/∂h_{T−1}, (B, H)
    net.head.zero_grad()
    dc = np.zeros_like(dh) if lstm else None
    norms_h, norms_c = np.empty(T), np.empty(T)
    grads = {}
    for t in range(T - 1, -1, -1):  # backward, one step per kernel call
        norms_h[t] = np.linalg.norm(dh)
        if lstm:
            norms_c[t] = np.linalg.norm(dc)
            _, (dh, dc), g = F.lstm_backward(None, (dh, dc), caches[t])
        elif net.model == "gru":
            _, dh, g = F.gru_backward(None, dh, caches[t])
        else:
            _, dh, g = F.rnn_backward(None, dh, caches[t])
        for k, v in g.items():
            grads[k] = grads[k] + v if k in grads else v
    out = {"h": norms_h, "dh0": dh, "grads": grads}
    if lstm:
        out["c"] = norms_c
    return out


def gradient_norms(
    model="lstm", T=100, *, hidden=64, batch_size=64, seed=0, steps=0, lr=3e-3, clip=1.0, quiet=True
) -> np.ndarray:
    """‖∂L/∂h_t‖ (T,) on one adding batch, after ``steps`` training steps (0: at init).

    Training (float32, Adam, the seeds of :func:`train_adding`, so the same ``hidden``,
    ``batch_size``, ``lr`` and ``steps`` give the same network as ``train_adding``)
    is followed by a float64 measurement on a fresh batch of ``batch_size`` sequences.
    """
    positive_int("T", T, minimum=2)
    obj, _ = _train_in_memory(
        "adding",
        T,
        model=model,
        hidden=hidden,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        clip=clip,
        optimizer="adam",
        seed=seed,
        quiet=quiet,
        dtype=np.float32,
    )
    # measured in float64: in float32 the vanishing norms underflow to 0 within ~100 steps
    net64 = TaskNet(model, 2, hidden, 1, dtype=np.float64)
    net64.load_state_dict(obj.model.state_dict())
    x, y = adding_batch(np.random.default_rng([seed, 2]), batch_size, T, dtype=np.float64)
    return state_grad_norms(net64, x, y)["h"]


def plot_grad_norms(norms: dict, path, *, title: str = "") -> None:
    """A log-scale PNG of ‖∂L/∂h_t‖ against t, one curve per model."""
    fig = new_figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for name, v in norms.items():
        ax.semilogy(np.arange(len(v)), np.maximum(v, 1e-300), label=name)
    ax.set_xlabel("step t (the loss reads h at the last step)")
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ----------------------------------------------------------------------------- commands


def _build(opts, prev, task: str):
    kw = {"n_symbols": opts.symbols, "alphabet": opts.alphabet} if task == "copy" else {}
    n_in = 2 if task == "adding" else opts.alphabet + 2
    G = {"lstm": 4, "gru": 3, "rnn": 1}[opts.model]
    n_params = G * opts.hidden * (n_in + opts.hidden + 2) + (opts.hidden + 1) * (
        1 if task == "adding" else opts.alphabet
    )
    L = opts.T if task == "adding" else 2 * opts.symbols + opts.T + 1
    need = params_bytes(n_params, optimizer=opts.optimizer) + step_bytes(
        cell=opts.model,
        hidden=opts.hidden,
        layers=1,
        T=L,
        B=max(opts.batch_size, EVAL_BATCH),
        input_size=n_in,
        classes_per_step=0 if task == "adding" else opts.alphabet,
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
    st = O.stored(opts)
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


def cmd_grad_norms(opts, given: set) -> int:
    """``nprnn task grad-norms``: measure (and plot) ‖∂L/∂h_t‖, print one JSON line."""
    if not opts.no_plot:
        new_figure()  # fail before the work, not after
    norms = {
        m: gradient_norms(
            m,
            opts.T,
            hidden=opts.hidden,
            batch_size=opts.batch_size,
            seed=opts.seed,
            steps=opts.steps,
        )
        for m in opts.models
    }
    if not opts.no_plot:
        when = f"after {opts.steps} training steps" if opts.steps else "at initialisation"
        plot_grad_norms(norms, opts.out, title=f"adding problem, T={opts.T}, {when}")
    summary = {
        m: {
            "first": float(v[0]),
            "last": float(v[-1]),
            "first_over_last": float(v[0] / v[-1]) if v[-1] else None,
        }
        for m, v in norms.items()
    }
    print(
        json.dumps(
            {
                "task": "grad-norms",
                "T": opts.T,
                "steps": opts.steps,
                "norms": summary,
                "out": None if opts.no_plot else opts.out,
            }
        )
    )
    return 0
