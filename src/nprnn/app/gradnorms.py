"""**Gradient norms through time** (:func:`gradient_norms`). For the adding loss L of a
one-layer network, ‖∂L/∂h_t‖ for every step t, where h_t is the state after step t and
the derivative is the total one through all later steps (for the LSTM: with c_t held
fixed; its own gradient ∂L/∂c_t flows in parallel). Exact method: the sequence is run
one step at a time with the :mod:`nprnn.functional` kernels (T calls with T = 1,
chaining the states), then backpropagated one step at a time from ∂L/∂h_{T−1}: the state
gradient that the kernel returns for step t+1 (its ``dh0``) is exactly ∂L/∂h_t. This is
the same backward recursion the whole-sequence kernel runs, only stopped at every step
(the tests check that both give the same ``dh0`` and parameter gradients).

Command line: ``nprnn task grad-norms --T 100 --out grad_norms.png [--steps 0]``.
"""

from __future__ import annotations

import json

import numpy as np

from nprnn import functional as F
from nprnn.validation import positive_int

from .tasks import TaskNet, adding_batch, train_in_memory
from .viz import new_figure

__all__ = ["state_grad_norms", "gradient_norms", "plot_grad_norms", "cmd_grad_norms"]


def state_grad_norms(net: TaskNet, x, y) -> dict:
    """Exact ‖∂L/∂s_t‖ for each state s of the cell (h; for the LSTM also c), t = 0..T−1,
    L the adding MSE.

    Runs the layer's weights step by step through :func:`nprnn.functional.sequence_forward`
    (see the module docstring), for any registered cell. Returns ``{"h": (T,), ["c":
    (T,)], "dh0": (B, H), "grads": {...}}`` where ``dh0`` = ∂L/∂h_{−1} (the initial
    state) and ``grads`` the summed parameter gradients of the step-wise backward (they
    equal the whole-sequence ones).
    """
    rnn = net.rnn
    cell = rnn.cell
    w = [rnn.params[n] for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
    T, B, _ = x.shape
    state = [np.zeros((B, rnn.hidden_size), dtype=x.dtype) for _ in cell.states]
    caches = []
    for t in range(T):  # forward, one step per kernel call
        _, state, cache = F.sequence_forward(cell, x[t : t + 1], state, w)
        caches.append(cache)
    pred = net.head(state[0])[:, 0]  # (B,)
    dh = net.head.backward(((2.0 / B) * (pred - y))[:, None])  # ∂L/∂h_{T−1}, (B, H)
    net.head.zero_grad()
    dstate = [dh] + [np.zeros_like(dh) for _ in cell.states[1:]]
    norms = {n: np.empty(T) for n in cell.states}
    grads = {}
    for t in range(T - 1, -1, -1):  # backward, one step per kernel call
        for n, d in zip(cell.states, dstate, strict=True):
            norms[n][t] = np.linalg.norm(d)
        _, dstate, g = F.sequence_backward(None, dstate, caches[t])
        for k, v in g.items():
            grads[k] = grads[k] + v if k in grads else v
    return {**norms, "dh0": dstate[0], "grads": grads}


def gradient_norms(
    model="lstm", T=100, *, hidden=64, batch_size=64, seed=0, steps=0, lr=3e-3, clip=1.0, quiet=True
) -> np.ndarray:
    """‖∂L/∂h_t‖ (T,) on one adding batch, after ``steps`` training steps (0: at init).

    Training (float32, Adam, the seeds of :func:`train_adding`, so the same ``hidden``,
    ``batch_size``, ``lr`` and ``steps`` give the same network as ``train_adding``)
    is followed by a float64 measurement on a fresh batch of ``batch_size`` sequences.
    """
    positive_int("T", T, minimum=2)
    obj, _ = train_in_memory(
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
