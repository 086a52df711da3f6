"""The driver's fast element-wise steps for PyTorch's cells (RNN, LSTM, GRU).

They compute what :mod:`nprnn.kernels.reference` computes, in the layout and basis the
driver's speed needs:

- every per-step array is feature-major, (G·H, B): each gate is a contiguous (H, B)
  block, so the element-wise passes run on contiguous memory (2–4× faster in NumPy
  than on the strided column blocks of a (B, G·H) array);
- σ(a) = 0.5·tanh(a/2) + 0.5 with the ½ folded into the sigmoid gates' weights (a
  power-of-two scaling is exact): one tanh over all gates, no overflow;
- the backward multiplies the upstream gradient by per-step factors (σ′, tanh′, the
  other gates) computed for a chunk of steps at once, so a step costs a handful of
  array calls even at B = 1.

A kernel is an object with these methods, called by :mod:`nprnn.kernels.driver` (``be``
is the backend; arrays come from it, ufuncs from ``be.xp``):

``prepare(be, w_ih, w_hh, b_ih, b_hh)`` → :class:`Prepared` copies in the kernel's basis
    (the cache owns them: weights updated after the forward do not reach its backward);
``store(be, T, H, B, dtype)`` → the per-step arrays the backward reads (T = 1: scratch
    for a forward that keeps nothing);
``rec_target(st, t, new)`` → where the driver writes the recurrent product W_hh h;
``forward_step(be, P, xp_t, rec, prev, new, st, t)`` → the new states, in place;
``factors(be, c, t0, t1)`` → the backward factors for steps [t0, t1), 0 at padding;
``backward_step(be, c, k, fac, t, dh, carried, carried_prev, d_ih, d_hh)`` → the gate
    gradients into ``d_ih``/``d_hh`` (one array when ``two_streams`` is False), the
    other states' gradients into ``carried_prev``; returns the direct term of
    ∂L/∂h_prev (not through W_hh) or None;
``finish_backward(d_ih, d_hh)``, ``grad_rows(H)``, ``finish_grads(grads, H)``: from the
    kernel's basis back to PyTorch's gate order and scale.

A kernel may also have a generation step (the LSTM's has; :class:`nprnn.layers.Stepper`
runs the reference cells for the others), batch-major since a step reads one row of
the projected table, in the same basis:

``prepare_rows(be, w_ih, w_hh, b_ih, b_hh)`` → (W_ihᵀ, W_hhᵀ, b) in the kernel's basis,
    contiguous, so that the pre-activations are a = x W_ihᵀ + h W_hhᵀ + b (B, G·H);
``rows(be, projected, b_hh)`` → the first layer's projected input (W_ih x + b_ih, in
    PyTorch's order) as a step adds it: with b_hh, in the kernel's basis;
``step_rows(be, a, state)`` → the new state tuple from the pre-activations a
    (overwritten); h is a new array, the other states may be updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Prepared", "RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


@dataclass
class Prepared:
    """Weights in a kernel's basis: ``w_ih``/``w_hh``/``bias`` for the forward (bias goes
    into the input projection), ``w_ih_b``/``w_hh_b`` for the backward's dx and the
    recurrent gradient, ``extra`` for whatever else the step reads."""

    w_ih: object
    w_hh: object
    bias: object
    w_ih_b: object
    w_hh_b: object
    extra: dict = field(default_factory=dict)


def _copy(be, a):
    out = be.empty(a.shape, a.dtype)
    out[...] = a
    return out


class _Base:
    two_streams = False
    factor_width = 1  # factor elements per (H, B) element of a step, for the chunk size

    def finish_backward(self, d_ih, d_hh):
        pass

    def grad_rows(self, H):
        return None

    def finish_grads(self, grads, H):
        pass


# ----------------------------------------------------------------------------- Elman RNN


class _RNN(_Base):
    """h' = act(W_ih x + b_ih + W_hh h + b_hh); backward da = dh ⊙ act′, read off h'."""

    def __init__(self, relu: bool):
        self.relu = relu

    def prepare(self, be, w_ih, w_hh, b_ih, b_hh):
        w_ih, w_hh = _copy(be, w_ih), _copy(be, w_hh)
        bias = None if b_ih is None else b_ih + b_hh
        return Prepared(w_ih, w_hh, bias, w_ih, w_hh)

    def store(self, be, T, H, B, dtype):
        return {}  # the backward reads h' itself

    def rec_target(self, st, t, new):
        return new[0]

    def forward_step(self, be, P, xp_t, rec, prev, new, st, t):
        h = new[0]  # (H, B), holding W_hh h_prev
        h += xp_t
        if self.relu:
            be.xp.maximum(h, 0, out=h)
        else:
            be.xp.tanh(h, out=h)

    def factors(self, be, c, t0, t1):
        xp = be.xp
        h_new = c.after(0)[t0:t1]  # (K, H, B)
        if self.relu:
            act_d = (h_new > 0).astype(h_new.dtype)
        else:
            act_d = xp.multiply(h_new, h_new)
            xp.subtract(1, act_d, out=act_d)  # 1 − h'²
        if c.pad is not None:
            xp.copyto(act_d, 0, where=c.pad[t0:t1])
        return act_d

    def backward_step(self, be, c, k, fac, t, dh, carried, carried_prev, d_ih, d_hh):
        be.xp.multiply(dh, fac[k], out=d_hh)
        return None


RNN_TANH = _RNN(relu=False)
"""The Elman RNN with tanh (cell ``rnn_tanh``)."""
RNN_RELU = _RNN(relu=True)
"""The Elman RNN with ReLU (cell ``rnn_relu``)."""


# ----------------------------------------------------------------------------- LSTM


class _LSTM(_Base):
    """Gates in the internal order o, i, f, g with the sigmoid rows halved.

    From PyTorch's i, f, g, o: the three sigmoids are one block for the forward, and the
    three gates whose gradient is a multiple of dc (i, f, g) one block for the backward.
    The backward uses the same matrices, W = Pᵀ S⁻¹ w (P the permutation, S the
    halving), by carrying d′ = S⁻¹ P d: its o, i, f rows are twice the true gate
    gradients, so Wᵀ d′ = wᵀ d, and the weight gradients are Pᵀ S (d′ xᵀ).
    """

    factor_width = 6

    @staticmethod
    def _internal(be, w, H):
        out = be.empty(w.shape, w.dtype)  # block copies: 3x faster than a row gather
        be.xp.multiply(w[3 * H :], 0.5, out=out[:H])
        be.xp.multiply(w[: 2 * H], 0.5, out=out[H : 3 * H])
        out[3 * H :] = w[2 * H : 3 * H]
        return out

    def prepare(self, be, w_ih, w_hh, b_ih, b_hh):
        H = w_hh.shape[1]
        w_ih, w_hh = self._internal(be, w_ih, H), self._internal(be, w_hh, H)
        bias = None if b_ih is None else self._internal(be, b_ih + b_hh, H)
        return Prepared(w_ih, w_hh, bias, w_ih, w_hh)

    def store(self, be, T, H, B, dtype):
        return {
            "gates": be.empty((T, 4 * H, B), dtype),  # activations o, i, f, g
            "tanh_c": be.empty((T, H, B), dtype),
            "ig": be.empty((H, B), dtype),
        }

    def rec_target(self, st, t, new):
        return st["gates"][t]

    def forward_step(self, be, P, xp_t, rec, prev, new, st, t):
        xp = be.xp
        a = rec  # (4H, B): W_hh h, then the pre-activations, then the activations
        H = a.shape[0] // 4
        a += xp_t
        xp.tanh(a, out=a)
        sig = a[: 3 * H]  # σ(z) = 0.5·tanh(z/2) + 0.5
        sig *= 0.5
        sig += 0.5
        o, i, f, g = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
        c_prev, (h, c) = prev[1], new
        ig, tc = st["ig"], st["tanh_c"][t]
        xp.multiply(f, c_prev, out=c)  # c' = f ⊙ c + i ⊙ g
        xp.multiply(i, g, out=ig)
        c += ig
        xp.tanh(c, out=tc)
        xp.multiply(o, tc, out=h)  # h' = o ⊙ tanh(c')

    def factors(self, be, c, t0, t1):
        """e (K, 4, H, B), internal order, so that d′_o = dh ⊙ e_o, (d′_i, d′_f, d′_g) =
        dc ⊙ e_{i,f,g}: e_o = 2 tanh(c_t) σ′(o), e_i = 2 g σ′(i), e_f = 2 c_{t−1} σ′(f),
        e_g = i (1 − g²) (σ′ = s (1 − s); the 2 = S⁻¹ of the halved rows); dcdh (K, H, B)
        = o (1 − tanh² c_t), so dc = dc_next + dh ⊙ dcdh; and f, so dc_prev = dc ⊙ f."""
        xp = be.xp
        a = c.store["gates"][t0:t1]  # (K, 4H, B)
        K, G, B = a.shape
        H = G // 4
        o, i, f, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        tc = c.store["tanh_c"][t0:t1]
        e = xp.empty((K, 4, H, B), dtype=a.dtype)
        sd = xp.subtract(1, a[:, : 3 * H])  # 2 σ′ for o, i, f
        sd *= a[:, : 3 * H]
        sd *= 2
        xp.multiply(tc, sd[:, :H], out=e[:, 0])
        xp.multiply(g, sd[:, H : 2 * H], out=e[:, 1])
        xp.multiply(c.before(1)[t0:t1], sd[:, 2 * H :], out=e[:, 2])
        xp.multiply(g, g, out=e[:, 3])
        xp.subtract(1, e[:, 3], out=e[:, 3])
        e[:, 3] *= i
        dcdh = xp.multiply(tc, tc)
        xp.subtract(1, dcdh, out=dcdh)
        dcdh *= o
        if c.pad is not None:
            p = c.pad[t0:t1]  # (K, 1, B)
            xp.copyto(e, 0, where=p[:, None])
            xp.copyto(dcdh, 0, where=p)
        return e, dcdh, f, xp.empty_like(dcdh[0])

    def backward_step(self, be, c, k, fac, t, dh, carried, carried_prev, d_ih, d_hh):
        xp = be.xp
        e, dcdh, f, dc = fac
        d4 = d_hh.reshape(4, -1, d_hh.shape[1])  # (4, H, B), the same memory
        xp.multiply(dh, dcdh[k], out=dc)  # the cell gradient
        dc += carried[0]
        xp.multiply(e[k, 0], dh, out=d4[0])  # d′_o
        xp.multiply(e[k, 1:], dc, out=d4[1:])  # d′_i, d′_f, d′_g
        xp.multiply(dc, f[k], out=carried_prev[0])  # dc_prev
        return None

    def prepare_rows(self, be, w_ih, w_hh, b_ih, b_hh):
        H = w_hh.shape[1]
        w_ih, w_hh = self._internal(be, w_ih, H).T.copy(), self._internal(be, w_hh, H).T.copy()
        return w_ih, w_hh, None if b_ih is None else self._internal(be, b_ih + b_hh, H)

    def rows(self, be, projected, b_hh):
        a = projected if b_hh is None else projected + b_hh
        return self._internal(be, a.T, a.shape[1] // 4).T.copy()  # (B, 4H), o, i, f, g

    def step_rows(self, be, a, state):
        """forward_step for one (B, 4H) row block: one tanh over the gates, σ from it."""
        xp = be.xp
        H = a.shape[1] // 4
        xp.tanh(a, out=a)
        sig = a[:, : 3 * H]
        sig *= 0.5
        sig += 0.5
        o, i, f, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        c = state[1]
        c *= f  # c' = f ⊙ c + i ⊙ g
        i *= g
        c += i
        h = xp.tanh(c)
        h *= o  # h' = o ⊙ tanh(c')
        return h, c

    def grad_rows(self, H):
        # internal o | i, f, g rows -> PyTorch's i, f, g | o
        return [(slice(0, H), slice(3 * H, 4 * H)), (slice(H, 4 * H), slice(0, 3 * H))]

    def finish_grads(self, grads, H):
        for g in grads.values():  # d′ xᵀ -> S (d′ xᵀ): halve the rows of i, f and o
            g[: 2 * H] *= 0.5
            g[3 * H :] *= 0.5


LSTM = _LSTM()
"""The LSTM, PyTorch's gate order i, f, g, o (cell ``lstm``)."""


# ----------------------------------------------------------------------------- GRU


class _GRU(_Base):
    """r and z from their halved rows; n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)).

    Two gradient streams: the input side gets (dr, dz, dn), the recurrent side
    (dr, dz, dn ⊙ r); the backward uses the caller's weights (copied)."""

    two_streams = True
    factor_width = 3

    def prepare(self, be, w_ih, w_hh, b_ih, b_hh):
        xp = be.xp
        H = w_hh.shape[1]
        half = xp.ones((3 * H, 1), dtype=w_ih.dtype)
        half[: 2 * H] = 0.5  # r and z get z/2 (exact)
        extra = {"b_hn": None}
        bias = None
        if b_ih is not None:
            bias = b_ih.copy()
            bias[: 2 * H] += b_hh[: 2 * H]  # b_hr, b_hz join the input projection
            bias *= half[:, 0]
            extra["b_hn"] = b_hh[2 * H :, None].copy()  # (H, 1): stays inside r ⊙ (·)
        w_ih_half = xp.multiply(w_ih, half, out=be.empty(w_ih.shape, w_ih.dtype))
        w_hh_half = xp.multiply(w_hh, half, out=be.empty(w_hh.shape, w_hh.dtype))
        return Prepared(w_ih_half, w_hh_half, bias, _copy(be, w_ih), _copy(be, w_hh), extra)

    def store(self, be, T, H, B, dtype):
        return {
            "gates": be.empty((T, 3 * H, B), dtype),  # r, z, n
            "hn": be.empty((T, H, B), dtype),  # W_hn h + b_hn
            "rec": be.empty((3 * H, B), dtype),
        }

    def rec_target(self, st, t, new):
        return st["rec"]

    def forward_step(self, be, P, xp_t, rec, prev, new, st, t):
        xp = be.xp
        a = st["gates"][t]  # (3H, B)
        H = a.shape[0] // 3
        rz = a[: 2 * H]
        xp.add(rec[: 2 * H], xp_t[: 2 * H], out=rz)
        xp.tanh(rz, out=rz)
        rz *= 0.5  # σ(z) = 0.5·tanh(z/2) + 0.5
        rz += 0.5
        r, z, n = a[:H], a[H : 2 * H], a[2 * H :]
        hn = st["hn"][t]
        b_hn = P.extra["b_hn"]
        if b_hn is None:
            hn[...] = rec[2 * H :]
        else:
            xp.add(rec[2 * H :], b_hn, out=hn)
        xp.multiply(r, hn, out=n)
        n += xp_t[2 * H :]
        xp.tanh(n, out=n)
        h = new[0]  # h' = n + z ⊙ (h − n)
        xp.subtract(prev[0], n, out=h)
        h *= z
        h += n

    def factors(self, be, c, t0, t1):
        """e (K, 3, H, B): dn = dh ⊙ e_n, dz = dh ⊙ e_z, dr = dn ⊙ e_r, with
        e_n = (1 − z)(1 − n²), e_z = (h_{t−1} − n) z (1 − z), e_r = (W_hn h + b_hn) r (1 − r)."""
        xp = be.xp
        a = c.store["gates"][t0:t1]
        K, G, B = a.shape
        H = G // 3
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        e = xp.empty((K, 3, H, B), dtype=a.dtype)
        e_r, e_z, e_n = e[:, 0], e[:, 1], e[:, 2]
        one_minus_z = xp.subtract(1, z)
        xp.multiply(n, n, out=e_n)
        xp.subtract(1, e_n, out=e_n)
        e_n *= one_minus_z
        xp.subtract(c.before(0)[t0:t1], n, out=e_z)
        e_z *= z
        e_z *= one_minus_z
        xp.subtract(1, r, out=e_r)
        e_r *= r
        e_r *= c.store["hn"][t0:t1]
        if c.pad is not None:
            xp.copyto(e, 0, where=c.pad[t0:t1, None])
        return e, xp.empty_like(e[0, 0])

    def backward_step(self, be, c, k, fac, t, dh, carried, carried_prev, d_ih, d_hh):
        xp = be.xp
        e, dhz = fac
        H = dh.shape[0]
        dn = d_ih[2 * H :]
        xp.multiply(dh, e[k, 2], out=dn)
        xp.multiply(dh, e[k, 1], out=d_hh[H : 2 * H])  # dz
        xp.multiply(dn, e[k, 0], out=d_hh[:H])  # dr
        gates = c.store["gates"][t]
        xp.multiply(dn, gates[:H], out=d_hh[2 * H :])  # dn ⊙ r
        xp.multiply(dh, gates[H : 2 * H], out=dhz)  # the direct path dh ⊙ z
        return dhz  # (at padding the driver carries dh back instead)

    def finish_backward(self, d_ih, d_hh):
        H = d_ih.shape[1] // 3
        d_ih[:, : 2 * H] = d_hh[:, : 2 * H]


GRU = _GRU()
"""The GRU, PyTorch's gate order r, z, n (cell ``gru``)."""
