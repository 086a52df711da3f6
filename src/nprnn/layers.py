"""Recurrent layers ``RNN``, ``LSTM``, ``GRU`` (and ``IndRNN``): PyTorch's interface.

    layer = LSTM(input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, rng=None)
    out, (h_n, c_n) = layer(x, (h0, c0), mask=None, lengths=None)
    dx, (dh0, dc0) = layer.backward(dout, (dh_n, dc_n))
    # RNN and GRU: out, h_n = layer(x, h0, ...);  dx, dh0 = layer.backward(dout, dh_n)

**Cells** (PyTorch's equations and gate order; see :mod:`nprnn.functional`)::

    RNN   h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh | relu
    LSTM  i, f, o = σ(·), g = tanh(·)  of  W_i* x + b_i* + W_h* h + b_h*
          c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c')
    GRU   r, z = σ(·),  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
          h' = (1 − z) ⊙ n + z ⊙ h

**Stacking.** Layer k (k = 0 .. num_layers−1) reads x (k = 0) or the output of layer
k−1; with ``bidirectional=True`` each layer runs a forward direction (t = 0 .. T−1) and a
reverse one (t = T−1 .. 0) on the same input, and its output is the two concatenated on
the feature axis, forward half first. In training mode, dropout with inverted scaling
(kept units × 1/(1−p)) is applied to the output of every layer except the last.

**Shapes** (PyTorch's). D = 2 if bidirectional else 1, L = num_layers, H = hidden_size.
  x      (T, B, input_size), or (B, T, input_size) with ``batch_first``
  out    (T, B, D·H), or (B, T, D·H) with ``batch_first``
  states (D·L, B, H), always; index k·D + d = layer k, direction d (0 forward, 1 reverse)
  params weight_ih_l{k} (G·H, F_k), weight_hh_l{k} (G·H, H), bias_ih_l{k}, bias_hh_l{k}
         (G·H,), suffix ``_reverse`` for d = 1; G = 1 RNN, 4 LSTM, 3 GRU; F_0 = input_size,
         F_k = D·H for k > 0.

**Padding.** ``mask`` has x's two leading dims ((T, B), or (B, T) with ``batch_first``),
1 at a real step and 0 at padding, in any pattern (left or right padding, holes, a row
with no real step). ``lengths`` (B,) is shorthand for right padding: step t of row b is
real iff t < lengths[b]. At a padding step, in every layer and both directions:
  * the state passes through unchanged (h, and c for the LSTM);
  * the output there is 0 (so the next layer sees 0 there, and treats it as padding too);
  * in backward, the upstream gradient of the output there is ignored, and the state's
    gradient passes back unchanged along the carry.
So h_n is each row's state after its last real step (for the reverse direction: after
its first real step), and a row with no real step returns its initial state as h_n and
gets dh_n back as dh0. For right padding this is exactly PyTorch with
``pack_padded_sequence`` / ``pad_packed_sequence``.

**Generation.** ``layer.step(x_t, state)`` advances a unidirectional stack by one step
(x_t (B, F) → out_t (B, H), the new state): the reference cells of
:mod:`nprnn.kernels.reference` on the live weights, nothing kept, dropout off. With
``projected=`` the first layer's input projection W_ih x_t + b_ih is given instead of
x_t (e.g. a row of ``layer.project(embedding.weight)``, a table for every token).

Each (layer, direction) is one call of the driver (:mod:`nprnn.kernels.driver`) on the
cell the layer is built from (:mod:`nprnn.kernels.cells`); inputs are validated here,
once. Inside ``nprnn.no_grad()`` the driver keeps no per-step activations. Every
forward outside ``nprnn.no_grad()`` is kept until a ``backward`` consumes it, the most
recent first (see :mod:`nprnn.module`), so a layer used twice in one step gets the
gradient of both uses; ``backward`` adds (+=) into ``grads``.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import backends
from .grad_mode import is_grad_enabled
from .kernels import driver
from .kernels.cells import get_cell
from .module import Module
from .validation import (
    _shape,
    as_float_dtype,
    as_rng,
    check_shape,
    float_array,
    index_array,
    mask_array,
    on_backend,
    one_of,
    positive_int,
    real_in_range,
)

__all__ = ["RNN", "LSTM", "GRU", "IndRNN", "Stepper"]


class _Recurrent(Module):
    """A stack of one registered cell (``self.cell``); see the module docstring."""

    cell_name = "rnn_tanh"  # the registered cell (:mod:`nprnn.kernels.cells`) a class runs

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        *,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        dtype=np.float32,
        rng=None,
    ):
        super().__init__(as_float_dtype(dtype))
        self.cell = get_cell(self.cell_name)
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.num_layers = positive_int("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = real_in_range("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.bidirectional = bool(bidirectional)
        self.rng = as_rng(rng)  # draws the init and, in training, the dropout masks
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                f"dropout={self.dropout} does nothing with num_layers=1: dropout acts "
                "between stacked layers only",
                UserWarning,
                stacklevel=3 if type(self) is RNN else 2,  # RNN.__init__ is one frame more
            )
        D, H = self.num_directions, self.hidden_size
        bound = self.cell.init_bound(H)  # PyTorch: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))
        for k in range(self.num_layers):
            f_in = self.input_size if k == 0 else D * H
            shapes = self.cell.param_shapes(f_in, H, self.bias)
            for d in range(D):
                for name, shape in shapes.items():
                    self._add_param(
                        name + self._suffix(k, d), self.rng.uniform(-bound, bound, shape)
                    )

    # ------------------------------------------------------------------ description

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @staticmethod
    def _suffix(k: int, d: int) -> str:
        return f"_l{k}" + ("_reverse" if d else "")

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self):
        s = f"{type(self).__name__}({self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        s += self._extra_repr()
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dtype != np.float32:
            s += f", dtype={self.dtype.name}"
        return s + ")"

    @property
    def _state_names(self) -> tuple:
        return tuple(n + "0" for n in self.cell.states)  # h0 (, c0): as the user passes them

    # ------------------------------------------------------------------ states

    def _split_state(self, state, name_of_arg: str, names) -> list:
        """The state argument as a list with one entry per state array (None = zeros)."""
        if len(names) == 1:
            return [state]
        if state is None:
            return [None] * len(names)
        if not isinstance(state, tuple | list) or len(state) != len(names):
            got = type(state).__name__
            if isinstance(state, tuple | list):
                got += f" of length {len(state)}"
            raise TypeError(f"{name_of_arg} must be a pair ({', '.join(names)}) or None, got {got}")
        return list(state)

    def _pack_state(self, arrays: list):
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    def _array(self, name, a, be, **kw):
        """``a`` checked (a float array of the layer's dtype) and on the backend's device."""
        return on_backend(name, float_array(name, a, dtype=self.dtype, **kw), be)

    def _check_states(self, arrays: list, names, B: int, hint: str, be, L=None) -> list:
        D, H = self.num_directions, self.hidden_size
        L = self.num_layers if L is None else L
        out = []
        for name, s in zip(names, arrays, strict=True):
            if s is not None:
                s = self._array(name, s, be)
                check_shape(name, s, (D * L, B, H), hint=hint)
            out.append(s)
        return out

    def _weights(self, k: int, d: int) -> list:
        p, sfx = self._params, self._suffix(k, d)
        w = [p["weight_ih" + sfx], p["weight_hh" + sfx]]
        if self.bias:
            w += [p["bias_ih" + sfx], p["bias_hh" + sfx]]
        return w

    # ------------------------------------------------------------------ forward

    def forward(self, x, state=None, mask=None, lengths=None):
        """Run the stack over a padded batch; see the module docstring for the rules.

        Returns ``(out, h_n)`` (RNN, GRU) or ``(out, (h_n, c_n))`` (LSTM): out in x's
        layout, final states (D·L, B, H). Keeps what ``backward`` needs.
        """
        layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        be = backends.current()
        xp = be.xp
        x = self._array("x", x, be)
        if x.ndim != 3:
            raise ValueError(f"x must be 3-D {layout}, got shape {_shape(x)} ({x.ndim}-D)")
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"x has {x.shape[2]} features (last axis, shape {_shape(x)}) but "
                f"input_size={self.input_size}: expected {layout}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(
                f"x has shape {_shape(x)}: {layout} needs at least one step and one sequence"
            )
        xt = xp.ascontiguousarray(x.swapaxes(0, 1)) if self.batch_first else x  # (T, B, F)
        T, B = xt.shape[:2]
        m = mask_array(mask, lengths, T, B, batch_first=self.batch_first)  # (T, B) bool | None
        return self._run(xt, None, T, B, m, state, be)

    def forward_embedded(self, weight, ids, state=None, mask=None):
        """``forward(weight[ids], state, mask)`` without forming weight[ids].

        ``weight`` (V, input_size): an embedding table; ``ids`` (T, B) ints in [0, V)
        (time-major whatever ``batch_first`` says). The first layer's projection
        W_ih weight[ids] + b becomes a gather from the table's projection
        W_ih weightᵀ + b (G·H, V), computed once; :meth:`backward` then returns the
        gradient of ``weight`` (V, input_size) in place of dx. Worth it when V < T·B
        (a character vocabulary): the input's three large GEMMs shrink from T·B columns
        to V. Outputs and gradients equal the plain forward's to float rounding.
        """
        be = backends.current()
        w = self._array("weight", weight, be, ndim=2)
        check_shape("weight", w, (w.shape[0], self.input_size), hint="(V, input_size)")
        ids = index_array("ids", ids, high=w.shape[0], ndim=2)
        T, B = ids.shape
        if T == 0 or B == 0:
            raise ValueError(f"ids has shape {_shape(ids)}: (T, B) needs T, B ≥ 1")
        m = mask_array(mask, None, T, B, batch_first=False)
        return self._run(w, ids if be.device == "cpu" else be.asarray(ids), T, B, m, state, be)

    def _run(self, xt, ids, T, B, m, state, be):
        """The stack over checked inputs: xt (T, B, F), or the table (V, F) with ids."""
        D, L, H = self.num_directions, self.num_layers, self.hidden_size
        xp = be.xp
        names = self._state_names
        hint = f"directions·num_layers={D * L}, B={B} as in x, hidden_size={H}"
        states = self._split_state(state, "state", names)
        states = self._check_states(states, names, B, hint, be)
        train_drop = self.training and self.dropout > 0
        keep = is_grad_enabled()
        pad = None if m is None or m.all() else ~m[:, None, :]  # (T, 1, B), True at padding
        if pad is not None:
            pad = be.asarray(pad)
        inp, caches, drops = xt, [], []
        finals = [xp.empty((D * L, B, H), dtype=self.dtype) for _ in names]
        for k in range(L):
            outs, layer_caches = [], []
            for d in range(D):
                i = k * D + d
                s0 = [None if s is None else s[i] for s in states]
                o, s_n, cache = driver.forward(
                    self.cell,
                    inp,
                    s0,
                    self._weights(k, d),
                    pad,
                    d == 1,
                    keep,
                    ids if k == 0 else None,
                )
                for buf, s in zip(finals, s_n, strict=True):
                    buf[i] = s
                outs.append(o)  # (T, B, H)
                layer_caches.append(cache)
            out = outs[0] if D == 1 else xp.concatenate(outs, axis=2)  # (T, B, D·H), fresh
            scale = None
            if train_drop and k < L - 1:
                kept = be.uniform(self.rng, out.shape, self.dtype) >= self.dropout
                scale = kept * self.dtype.type(1.0 / (1.0 - self.dropout))  # 0 or 1/(1−p)
                out *= scale
            caches.append(layer_caches)
            drops.append(scale)
            inp = out
        if keep:
            self._save_for_backward(
                {"caches": caches, "drops": drops, "T": T, "B": B, "embedded": ids is not None}
            )
        self._last_drops = drops
        if self.batch_first:
            inp = xp.ascontiguousarray(inp.swapaxes(0, 1))  # (B, T, D·H)
        return inp, self._pack_state(finals)

    @property
    def dropout_masks(self) -> list:
        """The dropout scales of the last forward, one per layer but the last.

        Each is None (no dropout: eval mode or p = 0) or an array shaped like ``out``
        (x's layout) holding 0 or 1/(1−p): layer k+1 read ``out_k * dropout_masks[k]``.
        """
        drops = getattr(self, "_last_drops", [None])[:-1]
        return [d if d is None or not self.batch_first else d.swapaxes(0, 1) for d in drops]

    # ------------------------------------------------------------------ backward

    def backward(self, dout=None, dstate=None):
        """Gradients of the last forward; adds the parameter gradients into ``grads``.

        ``dout``: the gradient of ``out`` (same shape) or None (zeros); ``dstate``: that
        of the final state, shaped like it (LSTM: a pair, either part may be None), or
        None. Returns ``(dx, dh0)`` (RNN, GRU) or ``(dx, (dh0, dc0))`` (LSTM), dx in x's
        layout and the state gradients (D·L, B, H) even when the forward had no state.
        """
        D, L, H = self.num_directions, self.num_layers, self.hidden_size
        c = self._saved[-1] if self._saved else self._saved_for_backward()  # raises if none
        T, B = c["T"], c["B"]
        be = backends.current()
        xp = be.xp
        if dout is not None:
            want = (B, T, D * H) if self.batch_first else (T, B, D * H)
            dout = self._array("dout", dout, be)
            check_shape("dout", dout, want, hint="it must match out")
            if self.batch_first:
                dout = dout.swapaxes(0, 1)  # (T, B, D·H), a view
        dnames = tuple("d" + n[:-1] + "_n" for n in self._state_names)  # dh_n, dc_n
        dstates = self._split_state(dstate, "dstate", dnames)
        dstates = self._check_states(dstates, dnames, B, "it must match the final state", be)
        self._saved.pop()  # consumed only once the upstream gradients are valid
        d0 = [xp.empty((D * L, B, H), dtype=self.dtype) for _ in dnames]
        g = dout  # gradient of the current layer's output, (T, B, D·H) or None
        for k in range(L - 1, -1, -1):
            dx = None
            for d in range(D):
                i, sfx = k * D + d, self._suffix(k, d)
                g_d = None if g is None else (g if D == 1 else g[:, :, d * H : (d + 1) * H])
                ds_n = [None if s is None else s[i] for s in dstates]
                dx_d, ds0, grads = driver.backward(c["caches"][k][d], g_d, ds_n)
                for buf, s in zip(d0, ds0, strict=True):
                    buf[i] = s
                for name, v in grads.items():
                    self._grads[name + sfx] += v
                if dx is None:
                    dx = dx_d
                else:
                    dx += dx_d
            if k > 0 and c["drops"][k - 1] is not None:
                dx *= c["drops"][k - 1]  # through the dropout of layer k−1's output
            g = dx
        if self.batch_first and not c["embedded"]:
            g = xp.ascontiguousarray(g.swapaxes(0, 1))  # (B, T, F)
        return g, self._pack_state(d0)  # embedded: g is the table's gradient (V, F)

    # ------------------------------------------------------------------ generation

    def project(self, x):
        """The first layer's input projection W_ih x + b_ih, x (..., input_size) →
        (..., G·H): a table to pass rows of as ``step(projected=...)``, e.g. for every
        row of an embedding matrix."""
        self._check_steppable()
        x = self._array("x", x, backends.current())
        if x.ndim == 0 or x.shape[-1] != self.input_size:
            raise ValueError(f"x has shape {_shape(x)}: expected (..., {self.input_size})")
        w = self._weights(0, 0)
        gi = x @ w[0].T
        return gi + w[2] if self.bias else gi

    def _check_steppable(self):
        if self.bidirectional:
            raise ValueError(
                "step() runs one time step forward and needs bidirectional=False: a "
                "reverse direction reads the whole sequence (call the layer on it instead)"
            )

    def _step_input(self, x_t, projected, be, name_x="x_t"):
        """The checked input of a step: ``(x_t, None)`` or ``(None, projected)``, and B."""
        if (x_t is None) == (projected is None):
            raise TypeError("step() takes x_t or projected=, exactly one of them")
        if projected is not None:
            gi = self._array("projected", projected, be, ndim=2)
            check_shape("projected", gi, (gi.shape[0], self.cell.gates * self.hidden_size))
            return None, gi, gi.shape[0]
        x_t = self._array(name_x, x_t, be, ndim=2)
        check_shape(name_x, x_t, (x_t.shape[0], self.input_size), hint="(B, input_size)")
        return x_t, None, x_t.shape[0]

    def _step_weights(self, prepare: bool) -> list:
        """Per layer ``(W_ihᵀ, b_ih, W_hh as the recurrence applies it, b_hh)``: views of
        the live weights, or (``prepare``) contiguous copies of them."""
        applied, out = self.cell.recurrence.applied, []
        for k in range(self.num_layers):
            w = self._weights(k, 0) + [None, None]
            parts = (w[0].T, w[2], applied(w[1]), w[3])
            if prepare:
                parts = tuple(None if a is None else a.copy() for a in parts)
            out.append(parts)
        return out

    def step(self, x_t=None, state=None, *, projected=None):
        """One time step of the stack, nothing kept, no dropout: for generation.

        x_t (B, input_size), or ``projected`` (B, G·H) = W_ih x_t + b_ih of the first
        layer (see :meth:`project`); state as :meth:`forward` takes it, (L, B, H) or
        None (zeros). Returns ``(out_t (B, H), new_state)``, the state shaped likewise.
        Each layer runs the reference cell (:mod:`nprnn.kernels.reference`):
        gi = W_ih x + b_ih, gh = W_hh h + b_hh, new_state = cell.step(gi, gh, state).
        For many steps, :meth:`stepper` does the same on prepared weights and keeps the
        state itself (no checks per step beyond the input's).
        """
        self._check_steppable()
        L, H = self.num_layers, self.hidden_size
        be = backends.current()
        x_t, gi, B = self._step_input(x_t, projected, be)
        names = self._state_names
        hint = f"num_layers={L}, B={B}, hidden_size={H}"
        states = self._check_states(self._split_state(state, "state", names), names, B, hint, be)
        zero = be.xp.zeros((B, H), self.dtype)
        per_layer = [tuple(zero if s is None else s[k] for s in states) for k in range(L)]
        out, new = _advance(self.cell, self._step_weights(False), x_t, gi, per_layer)
        return out, self._pack_state([be.xp.stack(s) for s in zip(*new, strict=True)])

    def stepper(self, state=None, *, batch: int = 1) -> Stepper:
        """A :class:`Stepper`: this stack advanced one step at a time on a snapshot of its
        weights (later weight updates do not reach it), holding its own state (``state``
        as :meth:`forward` takes it, or None: zeros for ``batch`` sequences)."""
        return Stepper(self, state, batch)


def _advance(cell, weights, x, gi, states):
    """One step of a stack: ``weights[k]`` = (W_ihᵀ, b_ih, W_hh prepared, b_hh), ``gi`` the
    first layer's projection (or None: from ``x``), ``states[k]`` layer k's state tuple.
    Returns the last layer's h (B, H) and the new per-layer states."""
    apply, step, new, inp = cell.recurrence.apply, cell.step, [], x
    for k, (w_ih, b_ih, w_hh, b_hh) in enumerate(weights):
        if k > 0 or gi is None:
            gi = inp @ w_ih  # (B, G·H)
            if b_ih is not None:
                gi += b_ih
        gh = apply(w_hh, states[k][0])
        if b_hh is not None:
            gh += b_hh
        s, _ = step(gi, gh, states[k])
        new.append(s)
        inp = s[0]
    return inp, new


def _advance_rows(kernel, be, weights, x, a, states):
    """:func:`_advance` on a kernel's generation step (see :mod:`nprnn.kernels.fast`):
    ``weights[k]`` = (W_ihᵀ, W_hhᵀ, b) in its basis, ``a`` the first layer's input term
    from :meth:`Stepper.table` (or None: from ``x``)."""
    new, inp = [], x
    for k, (w_ih, w_hh, b) in enumerate(weights):
        z = states[k][0] @ w_hh  # (B, G·H)
        if k > 0 or a is None:
            z += inp @ w_ih
            if b is not None:
                z += b
        else:
            z += a  # W_ih x + b_ih + b_hh, in the kernel's basis
        s = kernel.step_rows(be, z, states[k])
        new.append(s)
        inp = s[0]
    return inp, new


class Stepper:
    """Generation with a unidirectional stack: ``out = gen.step(x_t)`` or
    ``gen.step(projected=row)`` advances every layer by one step (no dropout, nothing
    kept) and keeps the new state; ``gen.state`` is that state as the layer returns it
    ((L, B, H), or a pair for the LSTM). Made by :meth:`LSTM.stepper` (and RNN's,
    GRU's, ...), on prepared copies of the weights: per step one GEMM per affine map
    and the cell's element-wise work — the fast kernel's generation step where it has
    one (the LSTM's: gates in its basis, one tanh for all of them), else the reference
    cell's."""

    def __init__(self, layer, state, batch):
        layer._check_steppable()
        self.layer, self.cell = layer, layer.cell
        L, H = layer.num_layers, layer.hidden_size
        be = backends.current()
        B = positive_int("batch", batch)
        names = layer._state_names
        if state is not None:  # B from the state's (L, B, H); _check_states reports misfits
            first = state[0] if isinstance(state, tuple | list) else state
            if getattr(first, "ndim", 0) == 3:
                B = first.shape[1]
        hint = f"num_layers={L}, B={B}, hidden_size={H}"
        states = layer._check_states(layer._split_state(state, "state", names), names, B, hint, be)
        self._states = [
            tuple(be.xp.zeros((B, H), layer.dtype) if s is None else s[k].copy() for s in states)
            for k in range(L)
        ]
        kernel = be.kernel(self.cell)
        self._rows = kernel if hasattr(kernel, "step_rows") else None
        if self._rows is None:
            self._weights = layer._step_weights(True)
        else:
            self._weights = [
                kernel.prepare_rows(be, *(layer._weights(k, 0) + [None, None])[:4])
                for k in range(L)
            ]
            self._b_hh0 = layer._weights(0, 0)[3] if layer.bias else None
        self._be, self.batch = be, B

    def step(self, x_t=None, *, projected=None):
        """Advance one step; returns the last layer's output (B, H)."""
        x_t, gi, B = self.layer._step_input(x_t, projected, self._be)
        if B != self.batch:
            raise ValueError(f"the input has {B} rows but this stepper holds {self.batch}")
        if gi is not None:
            gi = self.table(gi)
        return self._advance(x_t, gi)

    def table(self, projected):
        """``projected`` rows (W_ih x + b_ih, as :meth:`LSTM.project` gives them) in the
        form :meth:`step_trusted` takes: a copy in the fast kernel's basis, with b_hh
        added, or ``projected`` itself (the reference cells read it as it is)."""
        if self._rows is None:
            return projected
        return self._rows.rows(self._be, projected, self._b_hh0)

    def step_trusted(self, row):
        """:meth:`step` on rows of :meth:`table`, without checking them: for a caller
        that checked the whole table once (finite, (·, G·H)), so that generation does
        not re-check every character. Returns the last layer's output (B, H)."""
        return self._advance(None, row)

    def _advance(self, x_t, a):
        if self._rows is None:
            out, self._states = _advance(self.cell, self._weights, x_t, a, self._states)
        else:
            out, self._states = _advance_rows(
                self._rows, self._be, self._weights, x_t, a, self._states
            )
        return out

    @property
    def state(self):
        """The current state, shaped as the layer's forward returns it (copies)."""
        xp = self._be.xp
        return self.layer._pack_state([xp.stack(s) for s in zip(*self._states, strict=True)])


class RNN(_Recurrent):
    """Elman RNN stack: h_t = act(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh), act = tanh | relu.

    ``RNN(input_size, hidden_size, num_layers=1, *, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32, rng=None)``;
    ``out, h_n = rnn(x, h0=None, mask=None, lengths=None)``;
    ``dx, dh0 = rnn.backward(dout, dh_n)``. See :mod:`nprnn.layers` for shapes and padding.
    """

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        *,
        nonlinearity="tanh",
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        dtype=np.float32,
        rng=None,
    ):
        self.nonlinearity = one_of("nonlinearity", nonlinearity, ("tanh", "relu"))
        self.cell_name = "rnn_" + self.nonlinearity
        super().__init__(
            input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
            dropout=dropout, bidirectional=bidirectional, dtype=dtype, rng=rng,
        )  # fmt: skip

    def _extra_repr(self):
        return ", nonlinearity='relu'" if self.nonlinearity == "relu" else ""


class LSTM(_Recurrent):
    """LSTM stack (gate order i, f, g, o): c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').

    ``LSTM(input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, dtype=np.float32, rng=None)``;
    ``out, (h_n, c_n) = lstm(x, (h0, c0) or None, mask=None, lengths=None)``;
    ``dx, (dh0, dc0) = lstm.backward(dout, (dh_n, dc_n) or None)``; either part of a
    pair may be None (zeros). See :mod:`nprnn.layers` for shapes and padding.

    Example:

    >>> import numpy as np, nprnn
    >>> lstm = nprnn.LSTM(3, 5, rng=0)
    >>> out, (h_n, c_n) = lstm(np.zeros((4, 2, 3), np.float32), lengths=[4, 2])
    >>> out.shape, h_n.shape                       # (T, B, H), (layers, B, H)
    ((4, 2, 5), (1, 2, 5))
    >>> sorted(lstm.params)                        # torch.nn.LSTM's names
    ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0']
    >>> dx, (dh0, dc0) = lstm.backward(np.ones_like(out))
    >>> dx.shape, lstm.grads["weight_hh_l0"].shape
    ((4, 2, 3), (20, 5))
    """

    cell_name = "lstm"


class GRU(_Recurrent):
    """GRU stack (gate order r, z, n): n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
    h' = (1 − z) ⊙ n + z ⊙ h.

    ``GRU(input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, dtype=np.float32, rng=None)``;
    ``out, h_n = gru(x, h0=None, mask=None, lengths=None)``;
    ``dx, dh0 = gru.backward(dout, dh_n)``. See :mod:`nprnn.layers` for shapes and padding.

    Example:

    >>> import numpy as np, nprnn
    >>> gru = nprnn.GRU(3, 4, num_layers=2, bidirectional=True, rng=0)
    >>> out, h_n = gru(np.zeros((6, 2, 3), np.float32))
    >>> out.shape, h_n.shape                       # D·H = 8; D·layers = 4
    ((6, 2, 8), (4, 2, 4))
    """

    cell_name = "gru"


class IndRNN(_Recurrent):
    """Independently recurrent stack (Li et al. 2018): h' = relu(W_ih x + b_ih + w_hh ⊙ h + b_hh),
    ``weight_hh_l{k}`` a vector (H,): each unit sees only its own past. Not in torch.

    The same arguments and protocol as :class:`RNN` (no ``nonlinearity``). It is the
    registered cell ``"indrnn"`` of :mod:`nprnn.kernels.cells`, run by the driver from
    its reference steps; checked by central differences (torch has no such layer).
    """

    cell_name = "indrnn"
