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

Command line (``main``)::

    nprnn task adding --model lstm --T 100          # ends with one JSON line: mse, baseline_mse
    nprnn task copy --model lstm --T 20             # ... accuracy, baseline_accuracy
    nprnn task grad-norms --T 100 --out grad_norms.png [--steps 0]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from nprnn import functional as F
from nprnn.dense import Linear
from nprnn.layers import GRU, LSTM, RNN
from nprnn.losses import softmax_cross_entropy
from nprnn.optim import clip_grad_norm, make_optimizer
from nprnn.validation import as_rng, positive_int

from .viz import import_pyplot, make_parser

__all__ = [
    "adding_batch",
    "copy_batch",
    "TaskNet",
    "train_adding",
    "train_copy",
    "gradient_norms",
    "state_grad_norms",
    "main",
]

MODELS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
EVAL_SEQUENCES = 1000  # size of the fresh held-out set the final metrics use
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
    B, S, A = positive_int("B", B), positive_int("n_symbols", n_symbols), positive_int(
        "alphabet", alphabet, minimum=2)  # fmt: skip
    T = positive_int("T", T, minimum=0)
    symbols = rng.integers(0, A, size=(S, B))  # (S, B)
    ids = np.full((2 * S + T + 1, B), A, dtype=np.int64)  # blanks
    ids[:S] = symbols
    ids[S + T] = A + 1  # the delimiter
    return ids, symbols.astype(np.int64)


# ----------------------------------------------------------------------------- the network


class TaskNet:
    """One recurrent layer (F → H) and a Linear readout (H → out).

    ``params()`` / ``grads()`` are flat dicts (``rnn.weight_ih_l0``, ..., ``head.weight``,
    ``head.bias``) of the live arrays, for the optimizer.
    """

    def __init__(self, model: str, n_in: int, hidden: int, n_out: int, *, dtype=np.float32,
                 rng=None):  # fmt: skip
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        rng = as_rng(rng)
        self.model = model
        self.rnn = MODELS[model](n_in, hidden, dtype=dtype, rng=rng)
        self.head = Linear(hidden, n_out, dtype=dtype, rng=rng)
        self.dtype = np.dtype(dtype)

    def params(self) -> dict:
        return {**{f"rnn.{k}": v for k, v in self.rnn.params.items()},
                **{f"head.{k}": v for k, v in self.head.params.items()}}  # fmt: skip

    def grads(self) -> dict:
        return {**{f"rnn.{k}": v for k, v in self.rnn.grads.items()},
                **{f"head.{k}": v for k, v in self.head.grads.items()}}  # fmt: skip

    def zero_grad(self) -> None:
        self.rnn.zero_grad()
        self.head.zero_grad()

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
        loss, dlogits = softmax_cross_entropy(logits, targets)
        acc = float(np.mean(logits.argmax(axis=-1) == targets))
        if backward:
            dout = np.zeros_like(out)
            dout[-S:] = self.head.backward(dlogits)
            self.rnn.backward(dout, None)
        return loss, acc


# ----------------------------------------------------------------------------- training


def _train(net: TaskNet, step_loss, *, steps, lr, clip, optimizer, log_every, name, quiet):
    """Adam (by default) steps with global-norm clipping; ``step_loss(i)`` fills the grads."""
    opt = make_optimizer(optimizer, net.params(), lr=lr)
    t0, running = time.perf_counter(), []
    for i in range(1, steps + 1):
        net.zero_grad()
        loss = step_loss(i)
        if not math.isfinite(loss):
            raise ValueError(f"{name}: the loss became {loss} at step {i} — lower --lr")
        grads = net.grads()
        if clip > 0:
            clip_grad_norm(grads, clip)
        opt.step(grads)
        running.append(loss)
        if not quiet and (i % log_every == 0 or i == steps):
            print(f"{name} step {i:>6}/{steps}  train loss {np.mean(running):.4f}  "
                  f"{time.perf_counter() - t0:6.1f}s", file=sys.stderr, flush=True)  # fmt: skip
            running = []
    return time.perf_counter() - t0


def _check_common(hidden, batch_size, steps, lr, clip):
    positive_int("hidden", hidden), positive_int("batch_size", batch_size)
    positive_int("steps", steps, minimum=0)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"--lr must be > 0, got {lr}")
    if not (clip >= 0 and math.isfinite(clip)):
        raise ValueError(f"--clip must be >= 0, got {clip}")


def train_adding(model="lstm", T=100, *, hidden=128, batch_size=64, steps=3000, lr=3e-3,
                 clip=1.0, optimizer="adam", seed=0, log_every=250, quiet=True,
                 dtype=np.float32) -> dict:  # fmt: skip
    """Train on the adding problem; evaluate on a fresh held-out set of 1,000 sequences.

    Returns ``{"task", "model", "T", ..., "mse", "baseline_mse", "train_seconds"}``:
    ``mse`` of the trained model and ``baseline_mse`` of always predicting 1, on the
    same held-out sequences (drawn from a generator seeded apart from the training one).
    """
    positive_int("T", T, minimum=2)
    _check_common(hidden, batch_size, steps, lr, clip)
    net = TaskNet(model, 2, hidden, 1, dtype=dtype, rng=np.random.default_rng([seed, 0]))
    data_rng = np.random.default_rng([seed, 1])

    def step_loss(_):
        return net.adding_loss(*adding_batch(data_rng, batch_size, T, dtype=dtype))

    secs = _train(net, step_loss, steps=steps, lr=lr, clip=clip, optimizer=optimizer,
                  log_every=log_every, name=f"adding/{model}/T={T}", quiet=quiet)  # fmt: skip
    eval_rng = np.random.default_rng([seed, 2])
    se = base = 0.0
    for _ in range(EVAL_SEQUENCES // EVAL_BATCH):
        x, y = adding_batch(eval_rng, EVAL_BATCH, T, dtype=dtype)
        se += net.adding_loss(x, y, backward=False) * EVAL_BATCH
        base += float(np.sum(np.square(y.astype(np.float64) - 1.0)))
    return {"task": "adding", "model": model, "T": T, "hidden": hidden,
            "batch_size": batch_size, "steps": steps, "lr": lr, "seed": seed,
            "mse": se / EVAL_SEQUENCES, "baseline_mse": base / EVAL_SEQUENCES,
            "train_seconds": round(secs, 2)}  # fmt: skip


def train_copy(model="lstm", T=20, *, n_symbols=8, alphabet=8, hidden=128, batch_size=64,
               steps=3000, lr=3e-3, clip=1.0, optimizer="adam", seed=0, log_every=250,
               quiet=True, dtype=np.float32) -> dict:  # fmt: skip
    """Train on copy memory; evaluate accuracy on a fresh held-out set of 1,000 sequences.

    Returns ``{..., "accuracy", "baseline_accuracy" (= 1/alphabet), "loss", "train_seconds"}``.
    """
    positive_int("T", T, minimum=0)
    _check_common(hidden, batch_size, steps, lr, clip)
    S, A = positive_int("n_symbols", n_symbols), positive_int("alphabet", alphabet, minimum=2)
    net = TaskNet(model, A + 2, hidden, A, dtype=dtype, rng=np.random.default_rng([seed, 0]))
    data_rng = np.random.default_rng([seed, 1])

    def step_loss(_):
        return net.copy_loss(*copy_batch(data_rng, batch_size, T, S, A))[0]

    secs = _train(net, step_loss, steps=steps, lr=lr, clip=clip, optimizer=optimizer,
                  log_every=log_every, name=f"copy/{model}/T={T}", quiet=quiet)  # fmt: skip
    eval_rng = np.random.default_rng([seed, 2])
    n = EVAL_SEQUENCES // EVAL_BATCH
    res = [net.copy_loss(*copy_batch(eval_rng, EVAL_BATCH, T, S, A), backward=False)
           for _ in range(n)]  # fmt: skip
    return {"task": "copy", "model": model, "T": T, "n_symbols": S, "alphabet": A,
            "hidden": hidden, "batch_size": batch_size, "steps": steps, "lr": lr, "seed": seed,
            "accuracy": float(np.mean([a for _, a in res])), "baseline_accuracy": 1.0 / A,
            "loss": float(np.mean([v for v, _ in res])),
            "train_seconds": round(secs, 2)}  # fmt: skip


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


def gradient_norms(model="lstm", T=100, *, hidden=64, batch_size=64, seed=0, steps=0,
                   lr=3e-3, clip=1.0, quiet=True) -> np.ndarray:  # fmt: skip
    """‖∂L/∂h_t‖ (T,) on one adding batch, after ``steps`` training steps (0: at init).

    Training (float32, Adam, the seeds of :func:`train_adding`, so the same ``hidden``,
    ``batch_size``, ``lr`` and ``steps`` give the same network as ``nprnn task adding``)
    is followed by a float64 measurement on a fresh batch of ``batch_size`` sequences.
    """
    positive_int("T", T, minimum=2)
    net = TaskNet(model, 2, hidden, 1, rng=np.random.default_rng([seed, 0]))
    if steps:
        data_rng = np.random.default_rng([seed, 1])
        _train(net, lambda _: net.adding_loss(*adding_batch(data_rng, batch_size, T)),
               steps=steps, lr=lr, clip=clip, optimizer="adam", log_every=max(steps // 4, 1),
               name=f"grad-norms/{model}", quiet=quiet)  # fmt: skip
    # measured in float64: in float32 the vanishing norms underflow to 0 within ~100 steps
    net64 = TaskNet(model, 2, hidden, 1, dtype=np.float64)
    net64.rnn.load_state_dict(net.rnn.state_dict())
    net64.head.load_state_dict(net.head.state_dict())
    x, y = adding_batch(np.random.default_rng([seed, 2]), batch_size, T, dtype=np.float64)
    return state_grad_norms(net64, x, y)["h"]


def plot_grad_norms(norms: dict, path, *, title: str = "") -> None:
    """A log-scale PNG of ‖∂L/∂h_t‖ against t, one curve per model."""
    plt = import_pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, v in norms.items():
        ax.semilogy(np.arange(len(v)), np.maximum(v, 1e-300), label=name)
    ax.set_xlabel("step t (the loss reads h at the last step)")
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = make_parser(
        "nprnn task",
        "Long-range memory benchmarks (adding problem, copy memory) "
        "and gradient norms through time. Ends with one JSON line of metrics.",
    )
    sub = p.add_subparsers(dest="task", required=True, metavar="{adding,copy,grad-norms}")
    kw = {"formatter_class": p.formatter_class}
    for name, hlp in (
        ("adding", "the adding problem: sum of the two marked values"),
        ("copy", "copy memory: repeat S symbols after T blanks"),
        ("grad-norms", "plot ||dL/dh_t|| against t on the adding problem"),
    ):
        s = sub.add_parser(name, help=hlp, description=hlp, **kw)
        a = s.add_argument
        if name == "grad-norms":
            a("--models", default="rnn,lstm", help="comma-separated cells to compare")
            a("--T", type=int, default=100, help="sequence length")
            a("--hidden", type=int, default=64, help="hidden size")
            a(
                "--steps",
                type=int,
                default=0,
                help="adding-problem training steps before measuring (0: at initialisation)",
            )
            a("--out", default="grad_norms.png", help="PNG to write")
            a("--no-plot", action="store_true", help="only print the JSON summary")
        else:
            a("--model", choices=tuple(MODELS), default="lstm", help="recurrent cell")
            a(
                "--T",
                type=int,
                required=True,
                help="sequence length (adding) / blanks between symbols and delimiter (copy)",
            )
            a("--hidden", type=int, default=128, help="hidden size")
            a("--steps", type=int, default=3000, help="training steps")
            a("--lr", type=float, default=3e-3, help="Adam learning rate")
            a("--clip", type=float, default=1.0, help="global gradient-norm clip (0: off)")
            a(
                "--optimizer",
                default="adam",
                choices=("sgd", "adam", "adamw", "adagrad", "rmsprop"),
                help="optimizer",
            )
            if name == "copy":
                a("--symbols", type=int, default=8, help="S, symbols to copy")
                a("--alphabet", type=int, default=8, help="A, alphabet size")
            a("--quiet", action="store_true", help="no progress lines on stderr")
        a("--batch-size", type=int, default=64, help="sequences per step")
        a("--seed", type=int, default=0, help="seed of the weights and the data")
    return p


def main(argv=None) -> int:
    """``nprnn task adding|copy|grad-norms ...``: train / measure, print one JSON line."""
    args = _parser().parse_args(argv)
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.task == "grad-norms":
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        bad = [m for m in models if m not in MODELS]
        if bad or not models:
            raise ValueError(f"--models takes a comma-separated list of {', '.join(MODELS)}, "
                             f"got {args.models!r}")  # fmt: skip
        if not args.no_plot:
            import_pyplot()  # fail before the work, not after
        positive_int("--steps", args.steps, minimum=0), positive_int("--hidden", args.hidden)
        norms = {m: gradient_norms(m, args.T, hidden=args.hidden, batch_size=args.batch_size,
                                   seed=args.seed, steps=args.steps) for m in models}  # fmt: skip
        if not args.no_plot:
            when = f"after {args.steps} training steps" if args.steps else "at initialisation"
            plot_grad_norms(norms, args.out, title=f"adding problem, T={args.T}, {when}")
        summary = {m: {"first": float(v[0]), "last": float(v[-1]),
                       "first_over_last": float(v[0] / v[-1]) if v[-1] else None}
                   for m, v in norms.items()}  # fmt: skip
        print(
            json.dumps(
                {
                    "task": "grad-norms",
                    "T": args.T,
                    "steps": args.steps,
                    "norms": summary,
                    "out": None if args.no_plot else args.out,
                }
            )
        )
        return 0
    common = dict(hidden=args.hidden, batch_size=args.batch_size, steps=args.steps, lr=args.lr,
                  clip=args.clip, optimizer=args.optimizer, seed=args.seed, quiet=args.quiet,
                  log_every=max(1, min(250, args.steps // 10 or 1)))  # fmt: skip
    if args.task == "adding":
        res = train_adding(args.model, args.T, **common)
    else:
        res = train_copy(args.model, args.T, n_symbols=args.symbols, alphabet=args.alphabet,
                         **common)  # fmt: skip
    print(json.dumps(res))
    return 0
