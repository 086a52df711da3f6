"""Worst gradcheck / parity errors per function, over the configurations the tests use.

    python benchmarks/accuracy.py        # needs torch for the parity part

Prints the largest relative error found per function: float64 central differences
(`nprnn.gradcheck`) and PyTorch autograd parity in float64 and float32.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy as np

import test_classic as TC
import test_functional as TF
from helpers import (
    CELLS,
    loss_grads,
    make_problem,
    random_lengths,
    random_upstream,
    rel_err,
    run_backward,
    run_forward,
    state_names,
    torch_reference,
    upstream_loss,
)
from nprnn.gradcheck import gradcheck


def worst(errs):
    k = max(errs, key=errs.get)
    return errs[k], k


print(
    "== functional: float64 gradcheck (max over fwd/rev x none/right/left/holes masks"
    " x (T, B) in (4,4), (5,1), (1,4), (1,1))"
)
for cell in CELLS:
    best = (0, "")
    for reverse in (False, True):
        for mk in ("none", "right", "left", "holes"):
            for T, B in ((4, 4), (5, 1), (1, 4), (1, 1)):
                p, mask, R, S = TF._problem(cell, T, B, 3, 3, TF.SEED, mk, reverse=reverse)
                g = loss_grads(cell, p, R, S, mask=mask, reverse=reverse)
                e = gradcheck(
                    lambda q, c=cell, R=R, S=S, m=mask, r=reverse: upstream_loss(
                        c, q, R, S, mask=m, reverse=r
                    ),
                    p,
                    g,
                )
                w = worst(e)
                if w[0] > best[0]:
                    best = (w[0], f"{w[1]} rev={reverse} mask={mk} T,B={T},{B}")
    print(f"  {cell:9s} {best[0]:.2e}  ({best[1]})")

print("== functional vs torch (max over fwd/rev x none/mask/lengths; out, states, all grads)")
for dtype in (np.float64, np.float32):
    for cell in CELLS:
        best = (0, "")
        for reverse in (False, True):
            for packing in ("none", "mask", "lengths"):
                rng = np.random.default_rng(TF.SEED + 3)
                T, B, F_, H = 6, 5, 4, 5
                p = make_problem(cell, T, B, F_, H, rng, dtype=dtype)
                R, S = random_upstream(cell, T, B, H, rng, dtype=dtype)
                lengths = None if packing == "none" else random_lengths(T, B, rng, min_len=1)
                kw = {"reverse": reverse}
                if packing == "mask":
                    kw["mask"] = np.arange(T)[:, None] < lengths[None, :]
                elif packing == "lengths":
                    kw["lengths"] = lengths
                out, states, cache = run_forward(cell, p, **kw)
                dx, d0, g = run_backward(cell, cache, R, S)
                grads = {"x": dx, **dict(zip(state_names(cell), d0, strict=False)), **g}
                to, ts, tg = torch_reference(cell, p, R, S, lengths=lengths, reverse=reverse)
                e = {
                    "out": rel_err(out, to),
                    **{
                        f"state{i}": rel_err(a, b)
                        for i, (a, b) in enumerate(zip(states, ts, strict=False))
                    },
                    **{"d" + k: rel_err(grads[k], tg[k]) for k in p},
                }
                w = worst(e)
                if w[0] > best[0]:
                    best = (w[0], f"{w[1]} rev={reverse} {packing}")
        print(f"  {np.dtype(dtype).name} {cell:9s} {best[0]:.2e}  ({best[1]})")

print("== classic: float64 gradcheck vs compute_loss (max over the 8 CASES of test_classic)")
for name, fn, seed, dims in (
    ("rnn_backward", "rnn", 3, (3, 4, 5)),
    ("lstm_backward", "lstm", 4, (2, 3, 4)),
):
    best = (0, "")
    for m, Tx, mk in TC.CASES:
        rng = np.random.default_rng(seed)
        n_x, n_a, n_y = dims
        mask = None
        if fn == "rnn":
            P = TC.rnn_params(n_x, n_a, n_y, rng)
            mask = TC.make_mask(mk, Tx, m, rng)
            _, e = TC.rnn_gradcheck(
                rng.normal(size=(n_x, m, Tx)),
                rng.normal(size=(n_a, m)),
                P,
                TC.one_hot(n_y, m, Tx, rng),
                mask,
            )
        else:
            P = TC.lstm_params(n_x, n_a, n_y, rng)
            mask = TC.make_mask(mk, Tx, m, rng)
            _, e = TC.lstm_gradcheck(
                rng.normal(size=(n_x, m, Tx)),
                rng.normal(size=(n_a, m)),
                rng.normal(size=(n_a, m)),
                P,
                TC.one_hot(n_y, m, Tx, rng),
                mask,
            )
        w = worst(e)
        if w[0] > best[0]:
            best = (w[0], f"d{w[1]} m={m} Tx={Tx} {mk}")
    print(f"  {name:14s} {best[0]:.2e}  ({best[1]})")

print("== classic cells (gradcheck of the cell tests, max over mask_t variants)")
for name, test in (
    ("rnnCell_backward", TC.test_rnnCell_backward_gradcheck),
    ("lstmCell_backward", TC.test_lstmCell_backward_gradcheck),
):
    best = 0.0
    orig = TC.gradcheck
    for mask_t in (None, [[1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]]):
        rec = []

        def spy(*a, orig=orig, rec=rec, **k):
            r = orig(*a, **k)
            rec.append(max(r.values()))
            return r

        TC.gradcheck = spy
        try:
            test(mask_t)
        finally:
            TC.gradcheck = orig
        best = max(best, max(rec))
    print(f"  {name:18s} {best:.2e}")
