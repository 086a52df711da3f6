"""Optimizers that reproduce ``torch.optim`` step for step, gradient clipping, LR schedules.

API notes: ``make_optimizer(name, params, lr=None)`` uses the optimizer's default lr
(SGD has none: ValueError); ``Optimizer.step_count`` is the number of steps taken.

Parameters are a dict ``name -> np.ndarray`` that the optimizer updates IN PLACE (the
layers own the arrays); ``step(grads)`` takes a dict with the same keys, shapes and
dtypes, all finite (NaN/inf is a ``ValueError``), and never modifies it; a refused step
changes nothing. The arithmetic is done in each parameter's dtype, following the
formulas (and the operation order) of torch's single-tensor code paths, so results
agree with ``torch.optim`` to float rounding in float32 and float64.

Notation in the docstrings: ``g`` the gradient, ``p`` the parameter, ``t`` the step
count after increment (1 on the first step), ``λ`` weight_decay, ``η`` lr.

State: ``state_arrays()`` (per-parameter buffers, keys ``"<buffer>.<param name>"``, e.g.
``exp_avg.weight_ih_l0``; save them with safetensors) and ``state_scalars()`` (JSON-able:
optimizer name, step count, hyperparameters for reference); ``load_state(arrays,
scalars)`` checks names, shapes and dtypes and restores the buffers and step count. The
hyperparameters are the constructor's (``lr`` is set by the schedule each step anyway).
``state_dict()`` / ``load_state_dict(d)`` are the same, merged in one flat dict.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import numpy as np

from .validation import FLOAT_DTYPES, check_finite, one_of, positive_int, real_in_range

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "Adagrad",
    "RMSprop",
    "OPTIMIZERS",
    "make_optimizer",
    "clip_grad_norm",
    "LRSchedule",
]


def _lerp_(a: np.ndarray, end: np.ndarray, w: float) -> None:
    """``a <- a + w (end - a)`` in place, evaluated like torch's ``lerp_``."""
    if abs(w) < 0.5:
        a += w * (end - a)
    else:
        a[...] = end - (end - a) * (1.0 - w)


class Optimizer:
    """Base class: holds ``params`` (updated in place), ``lr`` and per-parameter buffers."""

    name = "optimizer"

    def __init__(self, params: dict, *, lr: float):
        if not isinstance(params, dict) or not params:
            raise TypeError("params must be a non-empty dict name -> np.ndarray")
        for k, p in params.items():
            if not isinstance(k, str):
                raise TypeError(f"parameter names must be strings, got {k!r}")
            if not isinstance(p, np.ndarray) or p.dtype not in FLOAT_DTYPES:
                raise TypeError(f"parameter {k!r} must be a float32/float64 np.ndarray")
            if not p.flags.writeable:
                raise ValueError(f"parameter {k!r} is read-only: the optimizer updates it in place")
        self.params = dict(params)
        real_in_range("lr", lr, low=0, low_open=True)
        self.lr = lr
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {b: {} for b in self._buffers()}

    # --- hyperparameters -----------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = real_in_range("lr", value, low=0)

    def hyperparameters(self) -> dict:
        return {"lr": self.lr}

    def _buffers(self) -> tuple[str, ...]:
        """Names of the per-parameter buffers this configuration keeps."""
        return ()

    # --- stepping --------------------------------------------------------------------
    def _check_grads(self, grads) -> None:
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict name -> np.ndarray, got {type(grads).__name__}")
        missing = [k for k in self.params if k not in grads]
        extra = [k for k in grads if k not in self.params]
        if missing or extra:
            what = f"missing {missing}" if missing else ""
            what += (", " if missing and extra else "") + (f"unexpected {extra}" if extra else "")
            raise ValueError(f"grads do not match the parameters: {what}")
        for k, p in self.params.items():
            g = grads[k]
            if not isinstance(g, np.ndarray) or g.shape != p.shape:
                shape = getattr(g, "shape", type(g).__name__)
                raise ValueError(f"grad {k!r} has shape {shape}: expected {p.shape}")
            if g.dtype != p.dtype:
                raise TypeError(f"grad {k!r} has dtype {g.dtype} but the parameter is {p.dtype}")
        for k in self.params:  # every check passes before anything is touched
            check_finite(f"grad {k!r}", grads[k])

    def step(self, grads: dict) -> None:
        """Update every parameter in place from ``grads`` (same keys, shapes, dtypes).

        Gradients holding NaN or inf are refused (``ValueError`` naming the key and the
        first bad index); a refused step changes nothing, not even ``step_count``.
        """
        self._check_grads(grads)
        self.step_count += 1
        for k, p in self.params.items():
            self._update(k, p, grads[k])

    def _update(self, k: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def _buf(self, buf: str, k: str, p: np.ndarray, fill: float = 0.0) -> np.ndarray:
        s = self.state[buf]
        if k not in s:
            s[k] = np.full_like(p, fill)
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
        """One flat dict: the arrays plus ``"step"`` and ``"optimizer"``."""
        return {**self.state_arrays(), "step": self.step_count, "optimizer": self.name}

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` returned (checks as in :meth:`load_state`)."""
        if not isinstance(d, dict):
            raise TypeError(
                f"optimizer state must be the dict state_dict() returned, got {type(d).__name__}"
            )
        arrays = {k: v for k, v in d.items() if k not in ("step", "optimizer")}
        self.load_state(arrays, {"optimizer": d.get("optimizer"), "step": d.get("step")})


def _nonneg(name: str, v) -> float:
    return real_in_range(name, v, low=0)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch.optim.SGD).

    ``g <- g + λ p``; with momentum μ: ``b <- g`` on the first step, else
    ``b <- μ b + (1 - dampening) g``; then ``g <- g + μ b`` (nesterov) or ``g <- b``;
    finally ``p <- p - η g``.
    """

    name = "sgd"

    def __init__(
        self, params, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0
    ):
        self.momentum = _nonneg("momentum", momentum)
        self.dampening = real_in_range("dampening", dampening, low=0, high=1)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, lr=lr)

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

    def _update(self, k, p, g):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum != 0:
            bufs = self.state["momentum_buffer"]
            if k not in bufs:
                bufs[k] = g.copy()
            else:
                b = bufs[k]
                b *= self.momentum
                b += (1.0 - self.dampening) * g
            g = g + self.momentum * bufs[k] if self.nesterov else bufs[k]
        p += -self.lr * g


class Adam(Optimizer):
    """Adam (torch.optim.Adam, amsgrad=False).

    ``g <- g + λ p`` (AdamW instead: ``p <- p (1 - η λ)``);
    ``m <- m + (1 - β1)(g - m)``; ``v <- β2 v + (1 - β2) g²``;
    ``p <- p - η/(1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)``.
    """

    name = "adam"
    _decoupled = False

    def __init__(self, params, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1 = real_in_range("betas[0]", betas[0], low=0, high=1, high_open=True)
        b2 = real_in_range("betas[1]", betas[1], low=0, high=1, high_open=True)
        self.betas = (b1, b2)
        self.eps = real_in_range("eps", eps, low=0, low_open=True)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        super().__init__(params, lr=lr)

    def hyperparameters(self):
        return {
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def _buffers(self):
        return ("exp_avg", "exp_avg_sq")

    def _update(self, k, p, g):
        b1, b2 = self.betas
        lr, t = self.lr, self.step_count
        if self.weight_decay != 0:
            if self._decoupled:
                p *= 1.0 - lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m, v = self._buf("exp_avg", k, p), self._buf("exp_avg_sq", k, p)
        _lerp_(m, g, 1.0 - b1)
        v *= b2
        v += (1.0 - b2) * g * g
        step_size = lr / (1.0 - b1**t)
        denom = np.sqrt(v) / (1.0 - b2**t) ** 0.5
        denom += self.eps
        p += -step_size * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW): ``p <- p (1 - η λ)`` first."""

    name = "adamw"
    _decoupled = True

    def __init__(self, params, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


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
    ):
        self.lr_decay = _nonneg("lr_decay", lr_decay)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.initial_accumulator_value = _nonneg(
            "initial_accumulator_value", initial_accumulator_value
        )
        self.eps = real_in_range("eps", eps, low=0, low_open=True)
        super().__init__(params, lr=lr)

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

    def _update(self, k, p, g):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        clr = self.lr / (1 + (self.step_count - 1) * self.lr_decay)
        s = self._buf("sum", k, p, self.initial_accumulator_value)
        s += g * g
        std = np.sqrt(s)
        std += self.eps
        p += -clr * g / std


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
    ):
        self.alpha = real_in_range("alpha", alpha, low=0, high=1, high_open=True)
        self.eps = real_in_range("eps", eps, low=0, low_open=True)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.momentum = _nonneg("momentum", momentum)
        self.centered = bool(centered)
        super().__init__(params, lr=lr)

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

    def _update(self, k, p, g):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        v = self._buf("square_avg", k, p)
        v *= self.alpha
        v += (1.0 - self.alpha) * g * g
        if self.centered:
            a = self._buf("grad_avg", k, p)
            _lerp_(a, g, 1.0 - self.alpha)
            avg = np.sqrt(v + -1.0 * a * a)
        else:
            avg = np.sqrt(v)
        avg += self.eps
        if self.momentum > 0:
            b = self._buf("momentum_buffer", k, p)
            b *= self.momentum
            b += g / avg
            p += -self.lr * b
        else:
            p += -self.lr * g / avg


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad, "rmsprop": RMSprop}


def make_optimizer(name: str, params: dict, *, lr=None, **kw) -> Optimizer:
    """``OPTIMIZERS[name](params, lr=lr, **kw)``; ``lr=None`` takes the optimizer's default.

    Unknown names and options raise ``ValueError`` listing the valid ones.
    """
    cls = OPTIMIZERS[one_of("optimizer", name, tuple(OPTIMIZERS))]
    sig = inspect.signature(cls.__init__).parameters
    allowed = [p for p in sig if p not in ("self", "params", "lr")]
    for k in kw:
        if k not in allowed:
            raise ValueError(f"optimizer {name!r} has no option {k!r}; it takes {allowed}")
    if lr is None:
        if sig["lr"].default is inspect.Parameter.empty:
            raise ValueError(f"optimizer {name!r} needs a learning rate (--lr)")
        lr = sig["lr"].default
    return cls(params, lr=lr, **kw)


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all ``grads`` in place so their global L2 norm is at most ``max_norm``.

    ``norm = sqrt(sum_k ||g_k||²)`` is computed in float64; as in
    ``torch.nn.utils.clip_grad_norm_``, every gradient is multiplied by
    ``c = max_norm / (norm + 1e-6)`` when ``c < 1``. Returns the norm before clipping;
    a non-finite norm is returned as is and nothing is scaled (the caller decides).

    ``grads`` must be a mapping name -> writable real float ``np.ndarray`` (they are
    scaled in place); anything else is a ``TypeError``/``ValueError`` naming the key,
    raised before any gradient is touched.
    """
    if not isinstance(grads, Mapping):
        raise TypeError(
            f"grads must be a dict name -> np.ndarray (scaled in place), got {type(grads).__name__}"
        )
    for k, g in grads.items():
        if not isinstance(g, np.ndarray):
            raise TypeError(
                f"grads[{k!r}] must be a np.ndarray (scaled in place), got {type(g).__name__}"
            )
        if g.dtype.kind != "f":
            fix = ": convert it with .astype(np.float64)" if g.dtype.kind in "biu" else ""
            raise TypeError(
                f"grads[{k!r}] must hold real floats (it is scaled in place), "
                f"got dtype {g.dtype}{fix}"
            )
        if not g.flags.writeable:
            raise ValueError(
                f"grads[{k!r}] is read-only: clip_grad_norm scales it in place — pass a "
                "writable copy (np.array(g))"
            )
    max_norm = real_in_range("max_norm", max_norm, low=0, low_open=True)
    total = 0.0
    for g in grads.values():
        g64 = np.asarray(g, dtype=np.float64).ravel()
        total += float(np.dot(g64, g64))
    norm = math.sqrt(total)
    if not math.isfinite(norm):
        return norm
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return norm


class LRSchedule:
    """Learning rate per step: linear warmup, then constant, linear or cosine decay.

    For ``step < warmup_steps``: ``lr = base_lr (step + 1) / warmup_steps``. After it,
    with ``q = clip((step - warmup_steps) / max(1, total_steps - warmup_steps), 0, 1)``
    and ``r = min_lr_ratio``: ``"none"``: ``base_lr``; ``"linear"``:
    ``base_lr (r + (1 - r)(1 - q))``; ``"cosine"``: ``base_lr (r + (1 - r)(1 + cos πq)/2)``.
    Steps count from 0 (the step about to be taken); past ``total_steps`` lr stays at
    ``base_lr r``.
    """

    def __init__(
        self,
        *,
        base_lr: float,
        warmup_steps: int = 0,
        decay: str = "none",
        total_steps: int,
        min_lr_ratio: float = 0.1,
    ):
        self.base_lr = real_in_range("base_lr", base_lr, low=0, low_open=True)
        self.warmup_steps = positive_int("warmup_steps", warmup_steps, minimum=0)
        self.decay = one_of("decay", decay, ("none", "cosine", "linear"))
        self.total_steps = positive_int("total_steps", total_steps)
        self.min_lr_ratio = real_in_range("min_lr_ratio", min_lr_ratio, low=0, high=1)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must not exceed total_steps "
                f"({self.total_steps})"
            )

    def lr_at(self, step: int) -> float:
        step = positive_int("step", step, minimum=0)
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        if self.decay == "none":
            return self.base_lr
        span = max(1, self.total_steps - self.warmup_steps)
        q = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
        r = self.min_lr_ratio
        frac = 1.0 - q if self.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * q))
        return self.base_lr * (r + (1.0 - r) * frac)
