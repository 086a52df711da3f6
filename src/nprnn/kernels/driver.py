"""The one BPTT driver: every cell, both directions, masks, on any backend.

``forward(cell, x, states, weights, pad=None, reverse=False, keep=True, ids=None)`` runs a cell
(:mod:`nprnn.kernels.cells`) over a whole sequence, ``backward(cache, dout, dstates)``
differentiates it. Inputs are trusted: the public entry points (:mod:`nprnn.functional`,
the layers) validate them once and call these. Shapes, time-major:

  x (T, B, F); states: one (B, H) array or None (zeros) per cell state;
  weights [weight_ih, weight_hh, bias_ih, bias_hh] in PyTorch's layout (no biases:
  [weight_ih, weight_hh]); pad (T, 1, B) bool, True at padding, or None.
  forward → out (T, B, H), final states [(B, H)], cache (None when keep is False)
  backward → dx (T, B, F), [dstate0 (B, H)], {weight_ih, weight_hh[, bias_ih, bias_hh]}

**Embedded input** (``ids`` given): x is a table (V, F) and the input at (t, b) is
x[ids[t, b]] — an embedding — without materialising it. The projection is then one
small GEMM for the table, P = W_ih xᵀ + b (G·H, V), and a gather of its columns per
step (one for all steps on a device: ``gather_per_step``); backward returns dx as
the table's gradient (V, F): the gate gradients are summed per id first,
dP = Σ_{(t,b): ids=v} dgates_(t,b) (one GEMM with the one-hot (T·B, V) matrix), then
dW_ih = dP x and dx = dPᵀ W_ih. When V < T·B that replaces the three (G·H)×F×(T·B)
GEMMs of the input by ones of (G·H)×F×V.

**Masks.** At a padding step every state passes through unchanged, the output there is
0, and in backward the gradient of every state passes back unchanged along that carry
(the kernels' factors are 0 there, so no gate gradient arises). ``reverse`` runs from
t = T−1 down to 0 under the same rules.

**How it is fast** (what PyTorch's CPU path and cuDNN do, plus care for NumPy's costs):
the input projection is one GEMM per chunk of steps into a reused buffer; one fused
gate GEMM per step into preallocated (T, G·H, B) buffers; feature-major per-step
arrays and per-chunk backward factors (:mod:`nprnn.kernels.fast`); the vanishing
gradient flushed before it turns subnormal (the backend's ``flush_subnormals``); and
after the backward loop dx, dW_ih and dW_hh as single GEMMs over all T·B columns.
A cell without a fast kernel runs its reference steps (:class:`ReferenceKernel`).

Nothing here names an array library: arrays, ufuncs (``be.xp``) and GEMMs come from the
backend (:mod:`nprnn.backends`), so the same loop runs on NumPy, a compiled CPU
backend or CuPy.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import backends
from .fast import Prepared

__all__ = ["forward", "backward", "Cache", "ReferenceKernel"]

# Elements per backward chunk of precomputed factors: ~256 KB of float32, cache-sized ...
_CHUNK_ELEMS = 1 << 16
# ... and at most this many steps, so a gradient vanishing through time spends at most
# that many steps as subnormal numbers before it is flushed.
_CHUNK_STEPS = 16
# Columns (steps × batch rows) per chunk of the input projection: from about 256 on, a
# (G·H, F) @ (F, K·B) GEMM runs as fast as one over all T·B columns (measured, OpenBLAS
# float32, H = F = 256..1024; 512, 1024 and 4096 timed within noise of each other).
_PROJ_COLS = 1024


@dataclass
class Cache:
    """What backward needs; per-step arrays are feature-major (·, B)."""

    cell: object
    kernel: object
    be: object
    x: object  # (T, B, F)
    slots: list  # per state (T+1, H, B): see _slots
    hs_bh: object  # (T+1, B, H) the h slots, batch-major
    store: dict  # the kernel's per-step arrays
    P: Prepared
    has_bias: bool
    pad: object  # (T, 1, B) bool or None
    reverse: bool
    ids: object = None  # (T, B) int when x is an embedding table (V, F)

    @property
    def TB(self) -> tuple[int, int]:
        """(T, B) of the sequence."""
        return self.ids.shape if self.ids is not None else self.x.shape[:2]

    def before(self, j):
        """(T, H, B) view of state j before each step, in time order."""
        return self.slots[j][1:] if self.reverse else self.slots[j][:-1]

    def after(self, j):
        """(T, H, B) view of state j after each step, in time order."""
        return self.slots[j][:-1] if self.reverse else self.slots[j][1:]


def _slots(T: int, reverse: bool, t0: int = 0, t1: int | None = None):
    """Step order: step t reads slot ``prev`` and writes slot ``nxt``, for the steps in
    [t0, t1) in processing order. Forward: slot 0 = initial state, slot t+1 = after
    step t. Reverse: slot T = initial state, slot t = after step t."""
    t1 = T if t1 is None else t1
    if reverse:
        return [(t, t + 1, t) for t in range(t1 - 1, t0 - 1, -1)]
    return [(t, t, t + 1) for t in range(t0, t1)]


def _projected_steps(be, x, w_ih, bias, reverse, ids=None):
    """``(t, prev, nxt, xp_t)`` in processing order, xp_t (G·H, B) = W_ih x_t + b, one
    GEMM per chunk of about _PROJ_COLS columns into one reused buffer (with ``ids``: a
    gather from the projected table, x (V, F))."""
    if ids is not None:
        yield from _gathered_steps(be, x, w_ih, bias, reverse, ids)
        return
    xp = be.xp
    G = w_ih.shape[0]
    T, B, F = x.shape
    k = max(1, min(T, -(-_PROJ_COLS // B)))
    buf = be.empty((G * k * B,), x.dtype)
    for t0 in range(T - k, -k, -k) if reverse else range(0, T, k):
        t0, t1 = max(t0, 0), min(t0 + k, T)
        K = t1 - t0
        if B == 1:  # step-major (K, G·H): each xp_t is contiguous, not a strided column
            proj = buf[: G * K].reshape(K, G)
            be.matmul(x[t0:t1, 0], w_ih.T, out=proj)
            if bias is not None:
                proj += bias
            steps = [proj[t - t0, :, None] for t in range(t0, t1)]
        else:
            proj = buf[: G * K * B].reshape(G, K * B)  # column = (step, row)
            be.matmul(w_ih, x[t0:t1].reshape(K * B, F).T, out=proj)
            if bias is not None:
                proj += xp.reshape(bias, (G, 1))
            steps = [proj[:, (t - t0) * B : (t - t0 + 1) * B] for t in range(t0, t1)]
        for t, prev, nxt in _slots(T, reverse, t0, t1):
            yield t, prev, nxt, steps[t - t0]


def _gathered_steps(be, table, w_ih, bias, reverse, ids):
    """:func:`_projected_steps` for an embedded input: xp_t = P[:, ids[t]], with
    P = W_ih tableᵀ + b computed once. On the host (``be.gather_per_step``) P is gathered
    step by step, each xp_t contiguous (G·H, B) and still in cache when the step adds it:
    one gather of all T·B columns made the step read B-wide column blocks T·B apart,
    4-12% slower forwards at (T, B) = (64, 16)..(100, 64), 1-2% at T = 8. A device
    gathers once (one kernel launch, not T). (``take`` without ``out``: with it, NumPy
    buffers the result and copies it over, 2.6x the time at (512, 576).)"""
    xp = be.xp
    T, B = ids.shape
    G, V = w_ih.shape[0], table.shape[0]
    if B == 1:  # step-major rows (V, G·H), as in _projected_steps
        P = be.empty((V, G), table.dtype)
        be.matmul(table, w_ih.T, out=P)
        if bias is not None:
            P += bias
        proj = xp.take(P, ids[:, 0], axis=0)  # (T, G)
        steps = [proj[t, :, None] for t in range(T)]
    else:
        P = be.empty((G, V), table.dtype)
        be.matmul(w_ih, table.T, out=P)
        if bias is not None:
            P += xp.reshape(bias, (G, 1))
        steps = None  # gathered in the loop
        if not be.gather_per_step:
            proj = xp.take(P, ids.reshape(T * B), axis=1)  # (G, T·B) column = (step, row)
            steps = [proj[:, t * B : (t + 1) * B] for t in range(T)]
    for t, prev, nxt in _slots(T, reverse):
        xp_t = xp.take(P, ids[t], axis=1) if steps is None else steps[t]  # (G·H, B)
        yield t, prev, nxt, xp_t


def forward(cell, x, states, weights, pad=None, reverse=False, keep=True, ids=None):
    """Run ``cell`` over x (or over the rows ``ids`` of the table x); see the module
    docstring for shapes and rules."""
    be = backends.current()
    kernel = be.kernel(cell) or ReferenceKernel(cell)
    T, B = x.shape[:2] if ids is None else ids.shape
    H = weights[0].shape[0] // cell.gates
    dt = x.dtype
    w_ih, w_hh, *bias = weights
    P = kernel.prepare(be, w_ih, w_hh, *(bias or (None, None)))
    s0 = T if reverse else 0
    slots = []
    for s in states:
        buf = be.empty((T + 1, H, B), dt)
        if s is None:
            buf[s0] = 0
        else:
            buf[s0] = s.T
        slots.append(buf)
    if B == 1:  # the slots already are batch-major: the twin is a view
        hs_bh, twin = slots[0].reshape(T + 1, 1, H), False
    else:  # written per step (cheaper than a transpose after); out and dW_hh read it
        hs_bh, twin = be.empty((T + 1, B, H), dt), True
        hs_bh[s0] = slots[0][s0].T
    st = kernel.store(be, T if keep else 1, H, B, dt)
    copyto, rec_mm = be.xp.copyto, cell.recurrence.matmul
    for t, prev, nxt, xp_t in _projected_steps(be, x, P.w_ih, P.bias, reverse, ids):
        ts = t if keep else 0
        old, new = [s[prev] for s in slots], [s[nxt] for s in slots]
        rec = kernel.rec_target(st, ts, new)
        rec_mm(be, P.w_hh, old[0], rec)  # (G·H, B)
        kernel.forward_step(be, P, xp_t, rec, old, new, st, ts)
        if pad is not None:  # carry every state through padding
            for a, b in zip(new, old, strict=True):
                copyto(a, b, where=pad[t])
        if twin:
            hs_bh[nxt] = new[0].T
    after = hs_bh[:-1] if reverse else hs_bh[1:]  # (T, B, H)
    out = be.empty(after.shape, dt)
    out[...] = after
    if pad is not None:
        copyto(out, 0, where=pad.transpose(0, 2, 1))
    final = 0 if reverse else T
    finals = [(hs_bh[final] if j == 0 else s[final].T).copy() for j, s in enumerate(slots)]
    if not keep:
        return out, finals, None
    cache = Cache(cell, kernel, be, x, slots, hs_bh, st, P, bool(bias), pad, reverse, ids)
    return out, finals, cache


def _chunks(T: int, per_step: int, reverse: bool):
    """Backward visits steps in chunks [t0, t1) of about _CHUNK_ELEMS factor elements."""
    k = max(1, min(T, _CHUNK_STEPS, _CHUNK_ELEMS // max(per_step, 1)))
    bounds = [(t0, min(t0 + k, T)) for t0 in range(0, T, k)]
    return bounds if reverse else bounds[::-1]


def _flush_spans(chunks):
    """For each backward chunk, the steps [lo, hi) that the subnormal check after it
    covers, or None: it runs once _CHUNK_STEPS steps have gone by since the last one (a
    check costs ~8 passes over the carried gradients) and after the last chunk."""
    spans, lo, hi = [], None, None
    for i, (t0, t1) in enumerate(chunks):
        lo, hi = (t0, t1) if lo is None else (min(lo, t0), max(hi, t1))
        if hi - lo >= _CHUNK_STEPS or i == len(chunks) - 1:
            spans.append((lo, hi))
            lo = hi = None
        else:
            spans.append(None)
    return spans


def backward(c: Cache, dout, dstates):
    """Differentiate the forward that made ``c``; see the module docstring."""
    be, kernel = c.be, c.kernel
    copyto = be.xp.copyto
    T, B = c.TB
    H = c.slots[0].shape[1]
    dt = c.x.dtype
    dout_t = be.empty((T, H, B), dt)  # (T, H, B), 0 at padding: out is constant there
    if dout is None:
        dout_t[...] = 0
    else:
        copyto(dout_t, dout.transpose(0, 2, 1))
        if c.pad is not None:
            copyto(dout_t, 0, where=c.pad)
    carried = []  # ∂L/∂state after the current step, (H, B) each
    for d in dstates:
        a = be.empty((H, B), dt)
        a[...] = 0 if d is None else d.T
        carried.append(a)
    dh, extra = carried[0], carried[1:]
    dh_prev, extra_prev = be.empty((H, B), dt), [be.empty((H, B), dt) for _ in extra]
    G = c.cell.gates
    d_hh = be.empty((T, G * H, B), dt)  # gate gradients seen by the recurrence
    d_ih = be.empty((T, G * H, B), dt) if kernel.two_streams else d_hh  # by the input
    rec_mm_t = c.cell.recurrence.matmul_t
    careful = False  # flush after every step: the gradient is vanishing
    chunks = _chunks(T, kernel.factor_width * H * B, c.reverse)
    for (t0, t1), span in zip(chunks, _flush_spans(chunks), strict=True):
        fac = kernel.factors(be, c, t0, t1)
        for t in range(t0, t1) if c.reverse else range(t1 - 1, t0 - 1, -1):
            dh += dout_t[t]
            direct = kernel.backward_step(be, c, t - t0, fac, t, dh, extra, extra_prev,
                                          d_ih[t], d_hh[t])  # fmt: skip
            if careful:
                be.flush_subnormals([d_hh[t], *extra_prev])
            rec_mm_t(be, c.P.w_hh_b, d_hh[t], dh_prev)
            if direct is not None:
                dh_prev += direct
            if c.pad is not None:  # the carry: every state's gradient passes back
                copyto(dh_prev, dh, where=c.pad[t])
                for a, b in zip(extra_prev, extra, strict=True):
                    copyto(a, b, where=c.pad[t])
            dh, dh_prev = dh_prev, dh
            extra, extra_prev = extra_prev, extra
            if careful:
                be.flush_subnormals([dh])
        if span is not None:
            lo, hi = span
            chunk = [d_hh[lo:hi]] + ([d_ih[lo:hi]] if kernel.two_streams else [])
            careful = be.flush_subnormals([dh, *extra], chunk)
    kernel.finish_backward(d_ih, d_hh)
    dx, grads = _weight_grads(c, d_ih, d_hh)
    return dx, [dh.T.copy(), *(e.T.copy() for e in extra)], grads


def _columns(be, d):
    """(T, G·H, B) -> (G·H, T·B): one reordering copy (a view when B = 1), cheaper than
    storing each step's gradients in that layout inside the loop."""
    T, GH, B = d.shape
    if B == 1:
        return d.reshape(T, GH).T
    out = be.empty((GH, T, B), d.dtype)
    out[...] = d.transpose(1, 0, 2)
    return out.reshape(GH, T * B)


def _weight_grads(c: Cache, d_ih, d_hh):
    """dx, dW_ih, dW_hh and the biases as single GEMMs / sums over all T·B columns,
    written straight into PyTorch's gate order (the kernel's ``grad_rows``)."""
    be = c.be
    T, B = c.TB
    F = c.x.shape[-1]
    H = c.slots[0].shape[1]
    dgi = _columns(be, d_ih)  # (G·H, T·B)
    dgh = _columns(be, d_hh) if d_hh is not d_ih else dgi
    h_prev = (c.hs_bh[1:] if c.reverse else c.hs_bh[:-1]).reshape(T * B, H)
    rows = c.kernel.grad_rows(H) or [(slice(None), slice(None))]
    if c.ids is None:
        x_cols = c.x.reshape(T * B, F)  # what dW_ih sums against, (T·B, F)
        dx = be.empty((T, B, F), dgi.dtype)
        be.matmul(dgi.T, c.P.w_ih_b, out=dx.reshape(T * B, F))
        dproj = dgi
    else:  # per id first: dP = dgi · onehot(ids) (G·H, V), then the table's (V, F)
        V = c.x.shape[0]
        onehot = be.empty((T * B, V), dgi.dtype)
        onehot[...] = 0
        onehot[be.xp.arange(T * B), c.ids.reshape(T * B)] = 1
        dproj = be.empty((dgi.shape[0], V), dgi.dtype)
        be.matmul(dgi, onehot, out=dproj)
        x_cols = c.x
        dx = be.empty((V, F), dgi.dtype)
        be.matmul(dproj.T, c.P.w_ih_b, out=dx)

    def gemm(d, a):  # d a summed over all T·B columns, rows reordered
        out = be.empty((d.shape[0], a.shape[1]), d.dtype)
        for src, dst in rows:
            be.matmul(d[src], a, out=out[dst])
        return out

    grads = {"weight_ih": gemm(dproj, x_cols)}
    if c.cell.recurrence.diagonal:
        grads["weight_hh"] = c.cell.recurrence.grad(dgh.T, be.xp.tile(h_prev, (1, c.cell.gates)))
    else:
        grads["weight_hh"] = gemm(dgh, h_prev)
    if c.has_bias:  # row sums as GEMVs against ones: 4x faster than NumPy's sum here
        ones = be.empty((T * B, 1), dgi.dtype)
        ones[...] = 1
        grads["bias_ih"] = gemm(dgi, ones).reshape(-1)  # (G·H,)
        same = dgh is dgi  # one gate stream (the LSTM): the same sums
        grads["bias_hh"] = grads["bias_ih"].copy() if same else gemm(dgh, ones).reshape(-1)
    c.kernel.finish_grads(grads, H)
    return dx, grads


class ReferenceKernel:
    """The driver's step for a cell without a fast kernel: its reference step functions
    (:mod:`nprnn.kernels.reference`) on batch-major views of the driver's arrays. The
    biases stay apart (gi = W_ih x + b_ih, gh = W_hh h + b_hh), as the steps expect."""

    two_streams = True
    factor_width = 1

    def __init__(self, cell):
        self.cell = cell

    def prepare(self, be, w_ih, w_hh, b_ih, b_hh):
        """Copies of the weights as the steps read them (PyTorch's basis, biases apart)."""
        w_ih, w_hh = w_ih.copy(), w_hh.copy()
        b_hh = None if b_hh is None else be.xp.reshape(b_hh, (-1, 1)).copy()
        return Prepared(w_ih, w_hh, b_ih, w_ih, w_hh, {"b_hh": b_hh})

    def store(self, be, T, H, B, dtype):
        """The per-step arrays the backward reads: each step's ``saved`` tuple."""
        return {"saved": [None] * T, "rec": be.empty((self.cell.gates * H, B), dtype)}

    def rec_target(self, st, t, new):
        """Where the driver writes the recurrent product W_hh h (one scratch array)."""
        return st["rec"]

    def forward_step(self, be, P, xp_t, rec, prev, new, st, t):
        """One reference step (:mod:`nprnn.kernels.reference`) into ``new``, in place."""
        gh = rec if P.extra["b_hh"] is None else rec + P.extra["b_hh"]
        states, saved = self.cell.step(xp_t.T, gh.T, tuple(s.T for s in prev))
        for a, s in zip(new, states, strict=True):
            a[...] = s.T
        st["saved"][t] = saved

    def factors(self, be, c, t0, t1):
        """None: the reference steps compute their backward factors themselves."""
        return None

    def backward_step(self, be, c, k, fac, t, dh, carried, carried_prev, d_ih, d_hh):
        """One reference backward step: the gate gradients into ``d_ih``/``d_hh``."""
        dnew = (dh.T, *(a.T for a in carried))
        dgi, dgh, dprev = self.cell.step_backward(dnew, c.store["saved"][t])
        d_ih[...] = dgi.T
        d_hh[...] = dgh.T
        if c.pad is not None:  # no gate gradient at a padding step
            be.xp.copyto(d_ih, 0, where=c.pad[t])
            be.xp.copyto(d_hh, 0, where=c.pad[t])
        for a, d in zip(carried_prev, dprev[1:], strict=True):
            a[...] = 0 if d is None else d.T
        return None if dprev[0] is None else dprev[0].T

    def finish_backward(self, d_ih, d_hh):
        """Nothing to undo: the reference steps work in PyTorch's basis."""
        pass

    def grad_rows(self, H):
        """None: the weight gradients need no row permutation."""
        return None

    def finish_grads(self, grads, H):
        """Nothing to rescale: the gradients are already in PyTorch's gate order."""
        pass
