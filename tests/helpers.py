"""Shared test helpers: relative error, random problems, functional and torch runners.

Import from a test module with ``from helpers import ...`` (pytest puts ``tests/`` on
``sys.path``). The "cells" are ``rnn_tanh``, ``rnn_relu``, ``lstm`` and ``gru``; a
*problem* is a dict of float arrays keyed ``x`` (T, B, F), ``h0`` (B, H), ``c0`` (LSTM
only), ``weight_ih``, ``weight_hh`` and (optionally) ``bias_ih``, ``bias_hh``, i.e. the
inputs that :mod:`nprnn.functional` differentiates. The test loss is

    L = Σ out ⊙ R + Σ h_n ⊙ S  (+ Σ c_n ⊙ U for the LSTM)

with random upstream gradients R (T, B, H), S and U (B, H).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from nprnn import functional as F
from nprnn.kernels import reference
from nprnn.kernels.cells import get_cell

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def rel_err(a, b) -> float:
    """‖a − b‖ / max(‖a‖, ‖b‖) in float64 (0 when both are exactly equal)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    diff = np.linalg.norm(a - b)
    if diff == 0:
        return 0.0
    return float(diff / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def n_states(cell: str) -> int:
    return 2 if cell == "lstm" else 1


def state_names(cell: str) -> tuple[str, ...]:
    return ("h0", "c0") if cell == "lstm" else ("h0",)


def random_weights(cell, F_, H, rng, *, dtype=np.float64, bias=True, scale=None):
    """PyTorch-layout weights drawn from U(−k, k), k = 1/√H unless ``scale`` is given."""
    G = GATES[cell]
    k = 1 / np.sqrt(H) if scale is None else scale
    w = {
        "weight_ih": rng.uniform(-k, k, (G * H, F_)),
        "weight_hh": rng.uniform(-k, k, (G * H, H)),
    }
    if bias:
        w["bias_ih"] = rng.uniform(-k, k, G * H)
        w["bias_hh"] = rng.uniform(-k, k, G * H)
    return {n: v.astype(dtype) for n, v in w.items()}


def make_problem(cell, T, B, F_, H, rng, *, dtype=np.float64, bias=True, scale=None):
    """Random inputs, non-zero initial states and weights for one cell."""
    p = {"x": rng.normal(size=(T, B, F_))}
    for name in state_names(cell):
        p[name] = rng.normal(scale=0.5, size=(B, H))
    p = {n: v.astype(dtype) for n, v in p.items()}
    p.update(random_weights(cell, F_, H, rng, dtype=dtype, bias=bias, scale=scale))
    return p


def random_upstream(cell, T, B, H, rng, *, dtype=np.float64):
    """R (T, B, H) for out and one (B, H) array per final state."""
    R = rng.normal(size=(T, B, H)).astype(dtype)
    S = tuple(rng.normal(size=(B, H)).astype(dtype) for _ in range(n_states(cell)))
    return R, S


def lengths_mask(lengths, T):
    """Right-padding mask (T, B) of bools from lengths (B,)."""
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def random_lengths(T, B, rng, *, min_len=0):
    """Lengths in [min_len, T]; with B >= 2 both extremes occur."""
    ln = rng.integers(min_len, T + 1, size=B)
    if B >= 2:
        ln[0], ln[1] = T, min_len
        rng.shuffle(ln)
    return ln


def random_mask(kind, T, B, rng):
    """A (T, B) bool mask: ``none`` (None), ``right``/``left`` padding with lengths in
    [0, T] (0 and T both present when B >= 2), or ``holes`` (any pattern)."""
    if kind == "none":
        return None
    if kind == "holes":
        return rng.random((T, B)) < 0.6
    m = lengths_mask(random_lengths(T, B, rng), T)
    return m if kind == "right" else m[::-1].copy()


def run_forward(cell, p, *, mask=None, lengths=None, reverse=False):
    """Run functional's forward for ``cell`` on problem ``p``: (out, states, cache)."""
    w = [p.get(n) for n in WEIGHTS]
    kw = {"mask": mask, "lengths": lengths, "reverse": reverse}
    if cell == "lstm":
        out, (h, c), cache = F.lstm_forward(p["x"], p.get("h0"), p.get("c0"), *w, **kw)
        return out, (h, c), cache
    if cell == "gru":
        out, h, cache = F.gru_forward(p["x"], p.get("h0"), *w, **kw)
    else:
        out, h, cache = F.rnn_forward(p["x"], p.get("h0"), *w, nonlinearity=cell[4:], **kw)
    return out, (h,), cache


def run_backward(cell, cache, dout, dstates):
    """functional's backward for ``cell``: (dx, dstates0 tuple, grads).

    Passes copies of the upstream gradients, so a kernel that wrote into them could not
    corrupt the test's data (``test_backward_leaves_its_arguments_untouched`` checks that).
    """
    dout = None if dout is None else np.array(dout)
    dstates = None if dstates is None else tuple(np.array(d) for d in dstates)
    if cell == "lstm":
        dx, (dh0, dc0), g = F.lstm_backward(dout, dstates, cache)
        return dx, (dh0, dc0), g
    bwd = F.gru_backward if cell == "gru" else F.rnn_backward
    dx, dh0, g = bwd(dout, None if dstates is None else dstates[0], cache)
    return dx, (dh0,), g


def upstream_loss(cell, p, R, S, **kw) -> float:
    """L = Σ out ⊙ R + Σ_k state_k ⊙ S_k for the functional forward."""
    out, states, _ = run_forward(cell, p, **kw)
    return float(np.sum(out * R) + sum(np.sum(s * u) for s, u in zip(states, S, strict=True)))


def loss_grads(cell, p, R, S, **kw) -> dict:
    """Analytic gradients of :func:`upstream_loss`, keyed like ``p``."""
    _, _, cache = run_forward(cell, p, **kw)
    dx, d0, g = run_backward(cell, cache, R, S)
    grads = {"x": dx, **dict(zip(state_names(cell), d0, strict=True)), **g}
    return {k: grads[k] for k in p}


def pre_activations(p, *, mask=None, reverse=False):
    """Reference RNN-relu pre-activations (T, B, H) at every step (for kink checks)."""
    x, h = p["x"], p["h0"].copy()
    T = x.shape[0]
    b = 0 if p.get("bias_ih") is None else p["bias_ih"] + p["bias_hh"]
    pre = np.empty((T, *h.shape))
    for t in range(T - 1, -1, -1) if reverse else range(T):
        pre[t] = x[t] @ p["weight_ih"].T + h @ p["weight_hh"].T + b
        new = np.maximum(pre[t], 0)
        h = new if mask is None else np.where(mask[t][:, None], new, h)
    return pre


def reference_forward(cell, p, *, mask=None, reverse=False):
    """The plain per-step float64 loop of :mod:`nprnn.kernels.reference`: (out, states)."""
    c = get_cell(cell)
    weights = [np.asarray(p[k], np.float64) for k in WEIGHTS if k in p]
    state = tuple(np.array(p[n], dtype=np.float64) for n in state_names(cell))
    x = np.asarray(p["x"], dtype=np.float64)
    out, state, _ = reference.forward(c, x, state, weights, mask=mask, reverse=reverse)
    return out, state


# ----------------------------------------------------------------------------- torch


def torch_reference(cell, p, R, S, *, lengths=None, reverse=False):
    """The same forward and loss in PyTorch (+ autograd), as NumPy arrays.

    ``lengths`` (all >= 1) packs the batch with ``pack_padded_sequence(enforce_sorted=
    False)``; ``reverse`` uses the ``_reverse`` half of a bidirectional module. Returns
    ``(out, states, grads)`` with ``grads`` keyed like ``p``.
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    tdt = torch.float64 if p["x"].dtype == np.float64 else torch.float32
    T, B, F_ = p["x"].shape
    H = p["weight_hh"].shape[1]
    bias = "bias_ih" in p
    if cell == "lstm":
        mod = torch.nn.LSTM(F_, H, bias=bias, bidirectional=reverse, dtype=tdt)
    elif cell == "gru":
        mod = torch.nn.GRU(F_, H, bias=bias, bidirectional=reverse, dtype=tdt)
    else:
        mod = torch.nn.RNN(F_, H, nonlinearity=cell[4:], bias=bias, bidirectional=reverse,
                           dtype=tdt)  # fmt: skip
    sfx = "_l0_reverse" if reverse else "_l0"
    names = [n for n in WEIGHTS if n in p]
    with torch.no_grad():
        for prm in mod.parameters():
            prm.zero_()  # the unused forward half of a bidirectional module
        for n in names:
            getattr(mod, n + sfx).copy_(torch.from_numpy(p[n]))
    leaves = {n: torch.tensor(p[n], requires_grad=True) for n in ("x", *state_names(cell))}
    D = 2 if reverse else 1

    def full(s):  # (B, H) -> (D, B, H), ours in the last slot
        return torch.stack([torch.zeros_like(s), s]) if reverse else s[None]

    hx = tuple(full(leaves[n]) for n in state_names(cell))
    inp = leaves["x"]
    if lengths is not None:
        inp = pack_padded_sequence(inp, torch.as_tensor(lengths, dtype=torch.int64),
                                   enforce_sorted=False)  # fmt: skip
    out, hn = mod(inp, hx if cell == "lstm" else hx[0])
    if lengths is not None:
        out, _ = pad_packed_sequence(out, total_length=T)
    out = out[..., H:] if reverse else out
    states = hn if cell == "lstm" else (hn,)
    states = tuple(s[D - 1] for s in states)
    loss = (out * torch.from_numpy(R)).sum()
    for s, u in zip(states, S, strict=True):
        loss = loss + (s * torch.from_numpy(u)).sum()
    loss.backward()
    grads = {n: leaves[n].grad.numpy() for n in leaves}
    for n in names:
        grads[n] = getattr(mod, n + sfx).grad.numpy()
    return (
        out.detach().numpy(),
        tuple(s.detach().numpy() for s in states),
        {k: grads[k] for k in p},
    )


# ----------------------------------------------------------------------------- commands


def command_env() -> dict:
    """This environment for a command a test starts: one BLAS thread, and none of the
    MPI launcher's variables (so a plain command is not taken for an MPI rank)."""
    import nprnn.distributed as dist

    env = {k: v for k, v in os.environ.items() if k not in dist._LAUNCHER_VARS}
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def start_group(cmd) -> subprocess.Popen:
    """``cmd`` started in its own session, so that its whole process group (MPI ranks,
    ``--procs`` workers) can be killed."""
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=command_env(), start_new_session=True)  # fmt: skip


def run_group(cmd, *, timeout=120) -> subprocess.CompletedProcess:
    """``cmd`` run to its end; its whole process group is killed on a timeout."""
    proc = start_group(cmd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextlib.contextmanager
def logging_group(cmd, out, evaluations: int):
    """``cmd`` (a training command writing the run ``out``) started with
    :func:`start_group`, yielded once ``out``'s log holds ``evaluations`` lines (failing
    after 60 s, or if it ends first). Whatever of its process group still runs when the
    block ends is killed."""
    proc = start_group(cmd)
    log = Path(out) / "log.jsonl"

    def logged() -> int:
        return sum(1 for x in log.read_text().splitlines() if x) if log.exists() else 0

    try:
        deadline = time.monotonic() + 60
        while logged() < evaluations:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
