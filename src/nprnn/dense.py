"""Dense pieces: ``Linear``, ``Embedding`` and ``Dropout``, with PyTorch's names and init.

All follow the :class:`~nprnn.module.Module` protocol (``params``, ``grads``,
``zero_grad``, ``state_dict``, ``load_state_dict``, ``train``/``eval``). Each forward
outside :func:`nprnn.no_grad` pushes what its backward needs; ``backward`` consumes the
most recent pending forward (LIFO) and adds into ``grads``, so a layer used twice in one
step gets the gradient of the sum::

    ya = lin(a); yb = lin(b)
    dxb = lin.backward(dyb); dxa = lin.backward(dya)

``backward`` with nothing pending (never called, or every forward already consumed)
raises ``RuntimeError``. A ``backward`` refused for a wrong ``dout`` leaves its forward
pending.

**Devices.** ``Linear`` and ``Embedding`` compute where their parameters are (NumPy, or
CuPy after ``model.to("cuda")``): host inputs go to the parameters' device once, at the
call, and nothing comes back to the host. ``Dropout`` draws its masks on the kernels'
backend (:func:`nprnn.backends.current`), so its input goes where that backend computes.
Arithmetic is written with operators and array methods, which run in the arrays' own
module; allocations name that module.
"""

from __future__ import annotations

import numpy as np

from . import backends
from .module import Module
from .validation import (
    _shape,
    array_module,
    as_float_dtype,
    as_rng,
    check_shape,
    float_array,
    index_array,
    on_backend,
    on_device_of,
    positive_int,
    real_in_range,
)

__all__ = ["Linear", "Embedding", "Dropout"]


class Linear(Module):
    """y = x Wᵀ + b, applied to the last axis.

    Shapes: x (..., in_features) → y (..., out_features); ``weight`` (out, in),
    ``bias`` (out,). Init as PyTorch: W and b ~ U(−1/√in, 1/√in).
    ``backward(dout (..., out)) -> dx (..., in)``, accumulating
    dW += doutᵀ x and db += Σ dout over all leading axes.

    Example:

    >>> import numpy as np, nprnn
    >>> lin = nprnn.Linear(3, 2, rng=0)
    >>> y = lin(np.ones((4, 3), np.float32))
    >>> lin.backward(np.ones_like(y)).shape, lin.grads["bias"]
    ((4, 3), array([4., 4.], dtype=float32))
    """

    def __init__(self, in_features, out_features, *, bias=True, dtype=np.float32, rng=None):
        super().__init__(as_float_dtype(dtype))
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        self.bias = bool(bias)
        self.rng = as_rng(rng)
        k = 1.0 / np.sqrt(self.in_features)
        self._add_param("weight", self.rng.uniform(-k, k, (self.out_features, self.in_features)))
        if self.bias:
            self._add_param("bias", self.rng.uniform(-k, k, self.out_features))

    def __repr__(self):
        s = f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
        s += f"bias={self.bias}"
        return s + (f", dtype={self.dtype.name})" if self.dtype != np.float32 else ")")

    def forward(self, x):
        """(..., in_features) → (..., out_features), on the parameters' device."""
        w = self._params["weight"]
        x = float_array("x", x, dtype=self.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has shape {_shape(x)}: expected (..., {self.in_features}) "
                f"(the last axis holds in_features={self.in_features})"
            )
        return self._forward(on_device_of("x", x, w))

    def _forward(self, x):
        """:meth:`forward` of an input already checked: for callers inside nprnn (the
        char-LM's head reads the recurrent stack's output; its logits are checked)."""
        w = self._params["weight"]
        self._save_for_backward(x)
        y = (x.reshape(-1, self.in_features) @ w.T).reshape(x.shape[:-1] + (-1,))  # (..., out)
        if self.bias:
            y += self._params["bias"]
        return y

    def backward(self, dout):
        """dout (..., out_features) → dx (..., in_features); adds into ``grads``.

        Consumes the most recent pending forward (its input x)."""
        x = self._saved_for_backward(peek=True)
        w = self._params["weight"]
        dout = float_array("dout", dout, dtype=self.dtype)
        check_shape("dout", dout, x.shape[:-1] + (self.out_features,), hint="it must match y")
        return self._backward(on_device_of("dout", dout, w))

    def _backward(self, dout):
        """:meth:`backward` of a checked ``dout`` (e.g. the loss's gradient)."""
        x = self._saved_for_backward()
        w = self._params["weight"]
        d2 = dout.reshape(-1, self.out_features)  # (N, out)
        self._grads["weight"] += d2.T @ x.reshape(-1, self.in_features)  # (out, in)
        if self.bias:
            self._grads["bias"] += d2.sum(axis=0)
        return dout @ w  # (..., in)


class Embedding(Module):
    """A lookup table: y[..., :] = W[ids[...], :].

    Shapes: ids (...) int in [0, num_embeddings) → y (..., embedding_dim); ``weight``
    (num_embeddings, embedding_dim), init N(0, 1) as PyTorch. ``padding_idx`` (may be
    negative, counted from the end) starts as a zero row and never gets a gradient.
    ``backward(dout (..., dim)) -> None`` scatters: dW[ids[j]] += dout[j] (repeated ids add).

    Example:

    >>> import numpy as np, nprnn
    >>> emb = nprnn.Embedding(10, 4, rng=0)
    >>> emb(np.array([[1, 2, 3]])).shape
    (1, 3, 4)
    """

    def __init__(
        self, num_embeddings, embedding_dim, *, padding_idx=None, dtype=np.float32, rng=None
    ):
        super().__init__(as_float_dtype(dtype))
        self.num_embeddings = positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        if padding_idx is not None:
            n = self.num_embeddings
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, int | np.integer):
                raise TypeError(f"padding_idx must be an int or None, got {padding_idx!r}")
            if not -n <= padding_idx < n:
                raise ValueError(f"padding_idx must lie in [-{n}, {n}), got {padding_idx}")
            padding_idx = int(padding_idx) % n
        self.padding_idx = padding_idx
        self.rng = as_rng(rng)
        w = self.rng.standard_normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            w[padding_idx] = 0
        self._add_param("weight", w)

    def __repr__(self):
        s = f"Embedding({self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s + (f", dtype={self.dtype.name})" if self.dtype != np.float32 else ")")

    def forward(self, ids):
        """int ids (...) → (..., embedding_dim), a fresh array on the table's device.

        Ids are checked where they are: host ids cost nothing to check and go to the
        device with one copy; device ids bring their minimum and maximum to the host."""
        w = self._params["weight"]
        ids = on_device_of("ids", index_array("ids", ids, high=self.num_embeddings), w)
        self._save_for_backward(ids)
        return w.take(ids, axis=0)

    def backward(self, dout):
        """dout (..., embedding_dim): adds it into the rows of ``grads['weight']``.

        Consumes the most recent pending forward (its ids); returns None (ids have no
        gradient). On a device the segmented sum reads the number of distinct ids on the
        host (CuPy's ``flatnonzero``, and the padding filter when ``padding_idx`` is
        set): one synchronisation each."""
        ids = self._saved_for_backward(peek=True)
        grad = self._grads["weight"]
        dout = float_array("dout", dout, dtype=self.dtype)
        check_shape("dout", dout, ids.shape + (self.embedding_dim,), hint="it must match y")
        dout = on_device_of("dout", dout, grad)
        self._saved_for_backward()
        flat, d2 = ids.reshape(-1), dout.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = flat != self.padding_idx
            flat, d2 = flat[keep], d2[keep]
        if flat.size:
            # sum the rows of each id, then add once per id: a sort and a segmented
            # sum are ~4x faster than np.add.at's unbuffered scatter
            xp = array_module(flat)
            order = xp.argsort(flat, kind="stable")
            ids_sorted = flat[order]
            first = xp.empty(ids_sorted.shape, dtype=bool)  # True where a new id begins
            first[0] = True
            xp.not_equal(ids_sorted[1:], ids_sorted[:-1], out=first[1:])
            starts = xp.flatnonzero(first)
            grad[ids_sorted[starts]] += xp.add.reduceat(d2[order], starts, 0)
        return None


class Dropout(Module):
    """Inverted dropout: y = x ⊙ m / (1 − p), m_i ~ Bernoulli(1 − p), in training mode.

    In eval mode (and for p = 0) y = x. p = 1 zeroes everything, as PyTorch.
    ``rng``: a ``np.random.Generator``, an int seed or None; it draws the masks.
    Shapes: any x (float32 or float64, kept) → y of x's shape and dtype.
    ``backward(dout) -> dx = dout ⊙ m / (1 − p)`` with the mask of the forward it
    consumes (each forward draws and keeps its own mask, so reuse is exact).
    No parameters.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = real_in_range("p", p, low=0.0, high=1.0)
        self.rng = as_rng(rng)

    def __repr__(self):
        return f"Dropout(p={self.p})"

    def forward(self, x):
        """x (...) → y (...), same dtype; draws a fresh mask in training mode, on the
        backend's device (x is moved there first, as the recurrent layers move theirs)."""
        x = float_array("x", x)
        if not self.training or self.p == 0.0:
            self._save_for_backward((x.shape, x.dtype, None))
            return x
        be = backends.current()
        x = on_backend("x", x, be)
        if self.p == 1.0:
            scale = be.xp.zeros(x.shape, dtype=x.dtype)
        else:
            u = be.uniform(self.rng, x.shape, x.dtype)  # U[0, 1), as layers'
            keep = u >= self.p
            scale = keep * x.dtype.type(1.0 / (1.0 - self.p))  # 0 or 1/(1−p), x's dtype
        self._save_for_backward((x.shape, x.dtype, scale))
        return x * scale

    def backward(self, dout):
        """dout (...) → dx (...): the consumed forward's mask applied to dout."""
        shape, dtype, scale = self._saved_for_backward(peek=True)
        dout = float_array("dout", dout, dtype=dtype)
        check_shape("dout", dout, shape, hint="it must match y")
        self._saved_for_backward()
        return dout if scale is None else on_device_of("dout", dout, scale) * scale
