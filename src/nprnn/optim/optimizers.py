"""Optimizers that reproduce ``torch.optim`` step for step: SGD, Adam, AdamW, Adagrad, RMSprop.

    opt = nprnn.optim.Adam(model, lr=3e-3)     # binds model.params and model.grads
    loss, dlogits = ...; model.backward(dlogits)
    opt.step()                                 # p updated in place from the bound grads
    opt.zero_grad()                            # model.zero_grad(): also drops pending forwards

**Binding.** ``params`` is an :class:`nprnn.Module` (its ``params`` and ``grads``, under
their dotted names; a parameter shared by two children is one parameter, stepped once)
or a dict ``name -> np.ndarray``, optionally with ``grads=`` (a dict of the same keys,
shapes and dtypes). ``step()`` reads the bound gradients; ``step(grads)`` takes them
explicitly (any optimizer). Build the optimizer once the model is complete and in its
final dtype: a bound Module whose parameters were replaced since (``to(dtype)``, a new
child) makes ``step`` raise rather than update arrays the model no longer uses.

**Steps.** Parameters are updated IN PLACE (the layers own the arrays); gradients must
be finite (NaN/inf is a ``ValueError``) and are never modified; a refused step changes
nothing. The arithmetic is done in each parameter's dtype with the formulas and the
operation order of torch's single-tensor code paths, so results agree with
``torch.optim`` to float rounding in float32 and float64. Every update is fused and in
place: per-parameter state is allocated once (on the first step) and the intermediates
go to scratch buffers allocated once per dtype, so a step allocates no array.

API notes: ``make_optimizer(name, params, lr=None)`` uses the optimizer's default lr
(SGD has none: ValueError); ``Optimizer.step_count`` is the number of steps taken;
``lr`` may be set between steps (schedulers in :mod:`nprnn.optim.lr_scheduler` do).

Notation in the docstrings: ``g`` the gradient, ``p`` the parameter, ``t`` the step
count after increment (1 on the first step), ``λ`` weight_decay, ``η`` lr.

State: ``state_arrays()`` (per-parameter buffers, keys ``"<buffer>.<param name>"``, e.g.
``exp_avg.rnn.weight_ih_l0``; save them with safetensors) and ``state_scalars()``
(JSON-able: optimizer name, step count, hyperparameters for reference); ``load_state(arrays,
scalars)`` checks names, shapes and dtypes and restores the buffers and step count.
``state_dict()`` / ``load_state_dict(d)`` are the same merged in one flat dict, plus the
current ``lr`` (restored by ``load_state_dict``, as torch restores its param groups).
"""

from __future__ import annotations

import inspect

import numpy as np

from ..module import Module
from ..validation import FLOAT_DTYPES, array_module, check_finite, one_of, real_in_range

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "Adagrad",
    "RMSprop",
    "OPTIMIZERS",
    "make_optimizer",
]


def _lerp_(a: np.ndarray, end: np.ndarray, w: float, tmp: np.ndarray) -> None:
    """``a <- a + w (end - a)`` in place, evaluated like torch's ``lerp_`` (``tmp``: scratch
    of a's shape)."""
    np.subtract(end, a, out=tmp)
    if abs(w) < 0.5:
        tmp *= w
        a += tmp
    else:
        tmp *= 1.0 - w
        np.subtract(end, tmp, out=a)


def _is_array(a) -> bool:
    """A NumPy or a CuPy array (CuPy is never imported for the check)."""
    return isinstance(a, np.ndarray) or array_module(a) is not np


def _check_param(k, p) -> None:
    if not isinstance(k, str):
        raise TypeError(f"parameter names must be strings, got {k!r}")
    if not _is_array(p) or p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"parameter {k!r} must be a float32/float64 np.ndarray")
    if not p.flags.writeable:
        raise ValueError(f"parameter {k!r} is read-only: the optimizer updates it in place")


def _identity(params: dict, grads: dict | None) -> list:
    return [(k, id(p), None if grads is None else id(grads.get(k))) for k, p in params.items()]


class Optimizer:
    """Base class: binds ``params`` (updated in place) and optionally their grads; ``lr``;
    per-parameter buffers; fused in-place updates on scratch allocated once."""

    name = "optimizer"

    def __init__(self, params, *, lr: float, grads=None):
        self.module: Module | None = None
        self.params, self.grads = self._bind(params, grads)
        real_in_range("lr", lr, low=0, low_open=True)
        self.lr = lr
        self.initial_lr: float | None = None  # set by the first scheduler (torch's initial_lr)
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {b: {} for b in self._buffers()}
        self._scratch: dict[str, tuple[np.ndarray, ...]] = {}  # name -> views, of p's shape
        self._pool: dict[np.dtype, np.ndarray] = {}  # dtype -> flat scratch, 3 x largest

    # --- binding ---------------------------------------------------------------------
    def _bind(self, params, grads):
        if isinstance(params, Module):
            if grads is not None:
                raise TypeError(
                    "grads must not be given with a Module: the optimizer binds the "
                    "module's own gradients (model.grads)"
                )
            self.module = params
            p, g = params.params, params.grads
            if not p:
                raise ValueError(f"params: the {type(params).__name__} has no parameters")
            for k, a in p.items():
                _check_param(k, a)
            self._check_grads(g, p, finite=False)
            self._identity = _identity(p, g)
            return p, g
        if isinstance(params, list | tuple):
            raise TypeError(
                f"params must be an nprnn.Module or a non-empty dict name -> np.ndarray, got "
                f"a {type(params).__name__}: to train several modules together make them "
                "children of one Module (or an nprnn.ModuleList) and pass it"
            )
        if not isinstance(params, dict) or not params:
            raise TypeError("params must be a non-empty dict name -> np.ndarray")
        for k, a in params.items():
            _check_param(k, a)
        if grads is not None and not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict name -> np.ndarray, got {type(grads).__name__}")
        first: dict[int, str] = {}
        kept, dropped = {}, set()
        for k, a in params.items():
            if id(a) in first:  # the same array under two names
                j = first[id(a)]
                if grads is not None and k in grads and grads.get(k) is grads.get(j):
                    dropped.add(k)  # a shared parameter with one gradient: stepped once
                    continue
                raise ValueError(
                    f"params {j!r} and {k!r} are the same array: pass it once (with its "
                    "gradient), or bind a Module, which lists a shared parameter once"
                )
            first[id(a)] = k
            kept[k] = a
        if grads is not None:
            grads = {k: g for k, g in grads.items() if k not in dropped}
            self._check_grads(grads, kept, finite=False)
            for k, g in grads.items():
                if not g.flags.writeable:
                    raise ValueError(f"grad {k!r} is read-only: zero_grad() clears it in place")
        return kept, grads

    def _check_module_unchanged(self) -> None:
        m = self.module
        if _identity(m.params, m.grads) != self._identity:
            raise RuntimeError(
                f"the {type(m).__name__}'s parameters changed since this optimizer was built "
                "(to(dtype), or a child added or replaced): build the optimizer again"
            )

    # --- hyperparameters -----------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate of the next :meth:`step` (a scheduler sets it); must be ≥ 0."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = real_in_range("lr", value, low=0)

    def hyperparameters(self) -> dict:
        """The update's settings (``lr`` and the optimizer's own), as saved by
        :meth:`state_dict`."""
        return {"lr": self.lr}

    def _buffers(self) -> tuple[str, ...]:
        """Names of the per-parameter buffers this configuration keeps."""
        return ()

    # --- stepping --------------------------------------------------------------------
    def _check_grads(self, grads, params=None, *, finite=True) -> None:
        params = self.params if params is None else params
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict name -> np.ndarray, got {type(grads).__name__}")
        missing = [k for k in params if k not in grads]
        extra = [k for k in grads if k not in params]
        if missing or extra:
            what = f"missing {missing}" if missing else ""
            what += (", " if missing and extra else "") + (f"unexpected {extra}" if extra else "")
            raise ValueError(f"grads do not match the parameters: {what}")
        for k, p in params.items():
            g = grads[k]
            if not _is_array(g) or g.shape != p.shape:
                shape = getattr(g, "shape", type(g).__name__)
                raise ValueError(f"grad {k!r} has shape {shape}: expected {p.shape}")
            if g.dtype != p.dtype:
                raise TypeError(f"grad {k!r} has dtype {g.dtype} but the parameter is {p.dtype}")
        if finite:
            for k in params:  # every check passes before anything is touched
                check_finite(f"grad {k!r}", grads[k])

    def step(self, grads: dict | None = None, *, known_finite: bool = False) -> None:
        """Update every parameter in place from ``grads`` (same keys, shapes, dtypes), or
        from the bound gradients when ``grads`` is None.

        Gradients holding NaN or inf are refused (``ValueError`` naming the key and the
        first bad index); a refused step changes nothing, not even ``step_count``.
        ``known_finite=True`` skips that scan when the caller has already established it
        — e.g. a finite global norm from :func:`clip_grad_norm` (a NaN or inf anywhere
        makes the norm NaN or inf); keys, shapes and dtypes are still checked.
        """
        if grads is None:
            if self.grads is None:
                raise TypeError(
                    "step() needs grads: this optimizer was built from a dict of parameters "
                    "without grads=; call step(grads), or build it from a Module or with grads="
                )
            if self.module is not None:
                self._check_module_unchanged()
            grads = self.grads
        self._check_grads(grads, finite=not known_finite)
        self.step_count += 1
        for k, p in self.params.items():
            self._update(k, p, grads[k], self._work(k, p))

    def zero_grad(self) -> None:
        """Clear the bound gradients: ``module.zero_grad()`` (which also drops its pending
        forwards), or fill a bound grads dict with 0."""
        if self.module is not None:
            self.module.zero_grad()
        elif self.grads is not None:
            for g in self.grads.values():
                g.fill(0)
        else:
            raise TypeError(
                "zero_grad() has no gradients to clear: this optimizer was built from a dict "
                "of parameters without grads="
            )

    def _update(self, k: str, p: np.ndarray, g: np.ndarray, w: tuple) -> None:
        raise NotImplementedError

    def _work(self, k: str, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Three scratch arrays of p's shape and dtype (views of one buffer per dtype)."""
        w = self._scratch.get(k)
        if w is None:
            pool = self._pool.get(p.dtype)
            if pool is None:
                n = max(a.size for a in self.params.values() if a.dtype == p.dtype)
                pool = self._pool[p.dtype] = array_module(p).empty(3 * n, dtype=p.dtype)
            n = pool.size // 3
            w = tuple(pool[i * n : i * n + p.size].reshape(p.shape) for i in range(3))
            self._scratch[k] = w
        return w

    def _buf(self, buf: str, k: str, p: np.ndarray, fill: float = 0.0) -> np.ndarray:
        s = self.state[buf]
        if k not in s:
            s[k] = array_module(p).full_like(p, fill, order="C")
        return s[k]

    # --- state -------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the buffers, keyed ``"<buffer>.<param name>"``."""
        return {f"{b}.{k}": a.copy() for b, s in self.state.items() for k, a in s.items()}

    def state_scalars(self) -> dict:
        """JSON-able: ``{"optimizer": name, "step": int, "hyperparameters": {...}}``."""
        return {
            "optimizer": self.name,
            "step": self.step_count,
            "hyperparameters": self.hyperparameters(),
        }

    def load_state(self, arrays: dict, scalars: dict) -> None:
        """Restore what :meth:`state_arrays` / :meth:`state_scalars` returned.

        Raises ``ValueError`` naming the first key that is missing, unexpected, or of
        the wrong shape or dtype; nothing is changed then.
        """
        if not isinstance(scalars, dict):
            raise TypeError(
                "optimizer state scalars must be the dict state_scalars() returned, "
                f"got {type(scalars).__name__}"
            )
        if scalars.get("optimizer") != self.name:
            got = scalars.get("optimizer")
            raise ValueError(f"optimizer state is for {got!r}, but this optimizer is {self.name!r}")
        step = scalars.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"optimizer state has a bad step count: {step!r}")
        if not isinstance(arrays, dict):
            raise TypeError("optimizer state arrays must be a dict")
        new: dict[str, dict[str, np.ndarray]] = {b: {} for b in self.state}
        for key, a in arrays.items():
            buf, _, k = key.partition(".")
            if buf not in new or k not in self.params:
                raise ValueError(f"unexpected optimizer state entry {key!r}")
            p = self.params[k]
            a = np.asarray(a)
            if a.shape != p.shape or a.dtype != p.dtype:
                raise ValueError(
                    f"optimizer state {key!r} is {a.dtype} {a.shape}: expected {p.dtype} {p.shape}"
                )
            new[buf][k] = np.array(a, copy=True)
        for buf, s in new.items():
            if step > 0 and self._required(buf) and len(s) != len(self.params):
                miss = next(k for k in self.params if k not in s)
                raise ValueError(f"optimizer state lacks {buf}.{miss}")
        self.state, self.step_count = new, step

    def _required(self, buf: str) -> bool:
        """Whether every parameter has buffer ``buf`` once a step was taken."""
        return True

    def state_dict(self) -> dict:
        """One flat dict: the arrays plus ``"step"``, ``"optimizer"`` and ``"lr"``."""
        return {
            **self.state_arrays(),
            "step": self.step_count,
            "optimizer": self.name,
            "lr": self.lr,
        }

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` returned (checks as in :meth:`load_state`)."""
        if not isinstance(d, dict):
            raise TypeError(
                f"optimizer state must be the dict state_dict() returned, got {type(d).__name__}"
            )
        arrays = {k: v for k, v in d.items() if k not in ("step", "optimizer", "lr")}
        lr = self.lr if "lr" not in d else real_in_range("optimizer state lr", d["lr"], low=0)
        self.load_state(arrays, {"optimizer": d.get("optimizer"), "step": d.get("step")})
        self.lr = lr


def _nonneg(name: str, v) -> float:
    return real_in_range(name, v, low=0)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch.optim.SGD).

    ``g <- g + λ p``; with momentum μ: ``b <- g`` on the first step, else
    ``b <- μ b + (1 - dampening) g``; then ``g <- g + μ b`` (nesterov) or ``g <- b``;
    finally ``p <- p - η g``.

    Example:

    >>> import numpy as np, nprnn
    >>> model = nprnn.Linear(2, 1, bias=False)
    >>> model.params["weight"][...] = [[1.0, 2.0]]
    >>> opt = nprnn.optim.SGD(model, lr=0.1)
    >>> model.grads["weight"][...] = [[1.0, -1.0]]
    >>> opt.step()                                 # w ← w − lr·g
    >>> model.params["weight"]
    array([[0.9, 2.1]], dtype=float32)
    """

    name = "sgd"

    def __init__(
        self,
        params,
        *,
        lr,
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        weight_decay=0.0,
        grads=None,
    ):
        self.momentum = _nonneg("momentum", momentum)
        self.dampening = real_in_range("dampening", dampening, low=0, high=1)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, lr=lr, grads=grads)

    def hyperparameters(self):
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def _buffers(self):
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def _update(self, k, p, g, w):
        w0, w1, w2 = w  # scratch of p's shape
        if self.weight_decay != 0:
            np.multiply(p, self.weight_decay, out=w0)
            w0 += g
            g = w0  # g + λ p
        if self.momentum != 0:
            bufs = self.state["momentum_buffer"]
            if k not in bufs:
                bufs[k] = array_module(g).array(g, order="C", copy=True)  # once, on the first step
            else:
                b = bufs[k]
                b *= self.momentum
                np.multiply(g, 1.0 - self.dampening, out=w1)
                b += w1
            if self.nesterov:
                np.multiply(bufs[k], self.momentum, out=w1)
                w1 += g
                g = w1  # g + μ b
            else:
                g = bufs[k]
        np.multiply(g, -self.lr, out=w2)
        p += w2


class Adam(Optimizer):
    """Adam (torch.optim.Adam, amsgrad=False).

    ``g <- g + λ p`` (AdamW instead: ``p <- p (1 - η λ)``);
    ``m <- m + (1 - β1)(g - m)``; ``v <- β2 v + (1 - β2) g²``;
    ``p <- p - η/(1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)``.
    """

    name = "adam"
    _decoupled = False

    def __init__(
        self, params, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, grads=None
    ):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1 = real_in_range("betas[0]", betas[0], low=0, high=1, high_open=True)
        b2 = real_in_range("betas[1]", betas[1], low=0, high=1, high_open=True)
        self.betas = (b1, b2)
        self.eps = real_in_range("eps", eps, low=0, low_open=True)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        super().__init__(params, lr=lr, grads=grads)

    def hyperparameters(self):
        return {
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def _buffers(self):
        return ("exp_avg", "exp_avg_sq")

    def _update(self, k, p, g, w):
        w0, w1, w2 = w  # scratch of p's shape
        b1, b2 = self.betas
        lr, t = self.lr, self.step_count
        if self.weight_decay != 0:
            if self._decoupled:
                p *= 1.0 - lr * self.weight_decay
            else:
                np.multiply(p, self.weight_decay, out=w0)
                w0 += g
                g = w0  # g + λ p
        m, v = self._buf("exp_avg", k, p), self._buf("exp_avg_sq", k, p)
        _lerp_(m, g, 1.0 - b1, w1)
        v *= b2
        np.multiply(g, 1.0 - b2, out=w1)
        w1 *= g
        v += w1  # v + (1 − β2) g²
        step_size = lr / (1.0 - b1**t)
        denom = np.sqrt(v, out=w1)
        denom /= (1.0 - b2**t) ** 0.5
        denom += self.eps
        np.multiply(m, -step_size, out=w2)
        w2 /= denom
        p += w2


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW): ``p <- p (1 - η λ)`` first."""

    name = "adamw"
    _decoupled = True

    def __init__(
        self, params, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, grads=None
    ):
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, grads=grads
        )


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad).

    ``g <- g + λ p``; ``clr = η / (1 + (t - 1) lr_decay)``; ``s <- s + g²``
    (s starts at initial_accumulator_value); ``p <- p - clr · g / (sqrt(s) + eps)``.
    """

    name = "adagrad"

    def __init__(
        self,
        params,
        *,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        grads=None,
    ):
        self.lr_decay = _nonneg("lr_decay", lr_decay)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.initial_accumulator_value = _nonneg(
            "initial_accumulator_value", initial_accumulator_value
        )
        self.eps = real_in_range("eps", eps, low=0, low_open=True)
        super().__init__(params, lr=lr, grads=grads)

    def hyperparameters(self):
        return {
            "lr": self.lr,
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
            "initial_accumulator_value": self.initial_accumulator_value,
            "eps": self.eps,
        }

    def _buffers(self):
        return ("sum",)

    def _update(self, k, p, g, w):
        w0, w1, w2 = w  # scratch of p's shape
        if self.weight_decay != 0:
            np.multiply(p, self.weight_decay, out=w0)
            w0 += g
            g = w0  # g + λ p
        clr = self.lr / (1 + (self.step_count - 1) * self.lr_decay)
        s = self._buf("sum", k, p, self.initial_accumulator_value)
        np.multiply(g, g, out=w1)
        s += w1
        std = np.sqrt(s, out=w1)
        std += self.eps
        np.multiply(g, -clr, out=w2)
        w2 /= std
        p += w2


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop).

    ``g <- g + λ p``; ``v <- α v + (1 - α) g²``; centered: ``a <- a + (1 - α)(g - a)``,
    ``d = sqrt(v - a²) + eps``, else ``d = sqrt(v) + eps``; with momentum μ:
    ``b <- μ b + g / d``, ``p <- p - η b``; else ``p <- p - η g / d``.
    """

    name = "rmsprop"

    def __init__(
        self,
        params,
        *,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        grads=None,
    ):
        self.alpha = real_in_range("alpha", alpha, low=0, high=1, high_open=True)
        self.eps = real_in_range("eps", eps, low=0, low_open=True)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.momentum = _nonneg("momentum", momentum)
        self.centered = bool(centered)
        super().__init__(params, lr=lr, grads=grads)

    def hyperparameters(self):
        return {
            "lr": self.lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "centered": self.centered,
        }

    def _buffers(self):
        return (
            ("square_avg",)
            + (("grad_avg",) if self.centered else ())
            + (("momentum_buffer",) if self.momentum > 0 else ())
        )

    def _update(self, k, p, g, w):
        w0, w1, w2 = w  # scratch of p's shape
        if self.weight_decay != 0:
            np.multiply(p, self.weight_decay, out=w0)
            w0 += g
            g = w0  # g + λ p
        v = self._buf("square_avg", k, p)
        v *= self.alpha
        np.multiply(g, 1.0 - self.alpha, out=w1)
        w1 *= g
        v += w1  # α v + (1 − α) g²
        if self.centered:
            a = self._buf("grad_avg", k, p)
            _lerp_(a, g, 1.0 - self.alpha, w1)
            np.multiply(a, -1.0, out=w1)
            w1 *= a
            w1 += v  # v − a²
            avg = np.sqrt(w1, out=w1)
        else:
            avg = np.sqrt(v, out=w1)
        avg += self.eps
        if self.momentum > 0:
            b = self._buf("momentum_buffer", k, p)
            b *= self.momentum
            np.divide(g, avg, out=w2)
            b += w2
            np.multiply(b, -self.lr, out=w2)
            p += w2
        else:
            np.multiply(g, -self.lr, out=w2)
            w2 /= avg
            p += w2


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad, "rmsprop": RMSprop}
"""Name → optimizer class, the names :func:`make_optimizer` (and ``--optimizer``) accept."""


def make_optimizer(name: str, params, *, lr=None, **kw) -> Optimizer:
    """``OPTIMIZERS[name](params, lr=lr, **kw)``; ``lr=None`` takes the optimizer's default.

    ``params``: a Module or a dict, as for the classes (``grads=`` may be passed too).
    Unknown names and options raise ``ValueError`` listing the valid ones.
    """
    cls = OPTIMIZERS[one_of("optimizer", name, tuple(OPTIMIZERS))]
    sig = inspect.signature(cls.__init__).parameters
    allowed = [p for p in sig if p not in ("self", "params", "lr", "grads")]
    for k in kw:
        if k not in allowed and k != "grads":
            raise ValueError(f"optimizer {name!r} has no option {k!r}; it takes {allowed}")
    if lr is None:
        if sig["lr"].default is inspect.Parameter.empty:
            raise ValueError(f"optimizer {name!r} needs a learning rate (--lr)")
        lr = sig["lr"].default
    return cls(params, lr=lr, **kw)
