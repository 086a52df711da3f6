"""Learning-rate schedulers driving an optimizer's ``lr``, in ``torch.optim.lr_scheduler``'s style.

    opt = nprnn.optim.Adam(model, lr=1e-3)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=1000)   # sets opt.lr = lr_at(0) now
    for step in range(1000):
        ...; opt.step(); sched.step()                          # opt.lr = lr_at(step + 1)
    sched.get_last_lr()                                        # [lr], a list as in torch

Each scheduler is the closed form ``lr_at(epoch)`` of torch's scheduler of the same name
(torch steps by a recursive update that is mathematically the same; the two agree to
float rounding, checked against torch). ``base_lr`` is the optimizer's ``initial_lr``:
its ``lr`` when the first scheduler was attached (torch's rule, so a ``SequentialLR``'s
parts share it). ``epoch`` counts ``step()`` calls: 0 at construction.

- ``LambdaLR(opt, lr_lambda)``: ``base_lr · lr_lambda(epoch)``
- ``StepLR(opt, step_size, gamma=0.1)``: ``base_lr · γ^⌊epoch / step_size⌋``
- ``MultiStepLR(opt, milestones, gamma=0.1)``: ``base_lr · γ^(number of milestones ≤ epoch)``
- ``ExponentialLR(opt, gamma)``: ``base_lr · γ^epoch``
- ``ConstantLR(opt, factor=1/3, total_iters=5)``: ``base_lr · factor`` before
  ``total_iters``, then ``base_lr``
- ``LinearLR(opt, start_factor=1/3, end_factor=1, total_iters=5)``:
  ``base_lr (s + (e − s) min(epoch, total_iters) / total_iters)`` — torch's warmup
- ``CosineAnnealingLR(opt, T_max, eta_min=0)``:
  ``eta_min + (base_lr − eta_min)(1 + cos(π epoch / T_max)) / 2``
- ``SequentialLR(opt, schedulers, milestones)``: scheduler i from milestone i−1 on, its
  epoch counted from there (warmup then decay: ``[LinearLR(...), CosineAnnealingLR(...)]``)
- ``WarmupDecayLR(opt, warmup_steps, total_steps, decay="cosine", min_lr_ratio=0.0)``:
  nprnn's :class:`LRSchedule` as a scheduler (linear warmup ``(epoch + 1) / warmup``, then
  cosine/linear/no decay to ``min_lr_ratio · base_lr``, constant after ``total_steps``).

``state_dict()`` holds the counters (``last_epoch``, ``base_lrs``, ``last_lr``) and the
hyperparameters; ``load_state_dict(d)`` restores the counters — and, unlike torch, also
sets the optimizer's ``lr`` to ``last_lr`` — after checking that ``d`` is for a scheduler
of the same kind with the same hyperparameters (a mismatch is a ``ValueError`` naming
it). Two schedulers stepping one optimizer at once do not compose (torch's chaining):
the last one to step sets ``lr``; combine them with ``SequentialLR``.
"""

from __future__ import annotations

import math
from bisect import bisect_right

from ..validation import one_of, positive_int, real_in_range
from .optimizers import Optimizer

__all__ = [
    "LRScheduler",
    "LambdaLR",
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "ConstantLR",
    "LinearLR",
    "CosineAnnealingLR",
    "SequentialLR",
    "WarmupDecayLR",
    "LRSchedule",
]


class LRScheduler:
    """Base class: ``step()`` advances ``last_epoch`` and sets ``optimizer.lr = lr_at(it)``."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be an nprnn.optim optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        if optimizer.initial_lr is None:
            optimizer.initial_lr = optimizer.lr
        self.base_lrs = [optimizer.initial_lr]
        self.last_epoch = -1
        self._last_lr = [optimizer.lr]
        self.step()

    @property
    def base_lr(self) -> float:
        """The optimizer's learning rate when the scheduler was made (``base_lrs[0]``)."""
        return self.base_lrs[0]

    def lr_at(self, epoch: int) -> float:
        """The learning rate at ``epoch`` (0 = before the first ``step()``)."""
        raise NotImplementedError

    def _set(self, epoch: int) -> None:
        lr = float(self.lr_at(epoch))
        self.last_epoch = epoch
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def step(self) -> None:
        """Advance one epoch (after ``optimizer.step()``): ``lr = lr_at(last_epoch + 1)``."""
        self._set(self.last_epoch + 1)

    def get_last_lr(self) -> list[float]:
        """``[lr]`` set by the last ``step`` (a list, one entry per group, as in torch)."""
        return list(self._last_lr)

    # --- state --------------------------------------------------------------------------
    def hyperparameters(self) -> dict:
        """The constructor's arguments that shape the schedule (saved by :meth:`state_dict`)."""
        return {}

    def state_dict(self) -> dict:
        """JSON-able: ``scheduler`` (the class name), counters and hyperparameters."""
        return {
            "scheduler": type(self).__name__,
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
            "last_lr": list(self._last_lr),
            **self.hyperparameters(),
        }

    def _check_state(self, d) -> tuple[int, list[float], list[float]]:
        if not isinstance(d, dict):
            raise TypeError(
                f"scheduler state must be the dict state_dict() returned, got {type(d).__name__}"
            )
        kind = type(self).__name__
        if d.get("scheduler") != kind:
            raise ValueError(
                f"scheduler state is for {d.get('scheduler')!r}, but this scheduler is {kind!r}"
            )
        for k, v in self.hyperparameters().items():
            if k not in d or d[k] != v:
                raise ValueError(
                    f"scheduler state has {k}={d.get(k)!r}, but this {kind} has {k}={v!r}: "
                    "build the scheduler with the saved hyperparameters"
                )
        epoch = d.get("last_epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"scheduler state has a bad last_epoch: {epoch!r}")
        lrs = []
        for key in ("base_lrs", "last_lr"):
            v = d.get(key)
            if not isinstance(v, list | tuple) or len(v) != 1:
                raise ValueError(f"scheduler state has a bad {key}: {v!r} (a list of one lr)")
            lrs.append([real_in_range(f"scheduler state {key}[0]", v[0], low=0)])
        return epoch, lrs[0], lrs[1]

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` returned; sets the optimizer's lr to ``last_lr``."""
        epoch, base, last = self._check_state(d)
        self.last_epoch, self.base_lrs, self._last_lr = epoch, base, last
        self.optimizer.lr = last[0]


class LambdaLR(LRScheduler):
    """``lr = base_lr · lr_lambda(epoch)`` (torch.optim.lr_scheduler.LambdaLR)."""

    def __init__(self, optimizer, lr_lambda):
        if not callable(lr_lambda):
            raise TypeError(f"lr_lambda must be callable, got {type(lr_lambda).__name__}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.base_lr * self.lr_lambda(epoch)


class StepLR(LRScheduler):
    """``lr = base_lr · γ^⌊epoch / step_size⌋`` (torch.optim.lr_scheduler.StepLR)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = positive_int("step_size", step_size)
        self.gamma = real_in_range("gamma", gamma, low=0)
        super().__init__(optimizer)

    def hyperparameters(self):
        return {"step_size": self.step_size, "gamma": self.gamma}

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(LRScheduler):
    """``lr = base_lr · γ^k``, k = how many milestones are ≤ epoch (torch's MultiStepLR)."""

    def __init__(self, optimizer, milestones, gamma=0.1):
        ms = [positive_int(f"milestones[{i}]", m, minimum=0) for i, m in enumerate(milestones)]
        self.milestones = sorted(ms)
        self.gamma = real_in_range("gamma", gamma, low=0)
        super().__init__(optimizer)

    def hyperparameters(self):
        return {"milestones": list(self.milestones), "gamma": self.gamma}

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** bisect_right(self.milestones, epoch)


class ExponentialLR(LRScheduler):
    """``lr = base_lr · γ^epoch`` (torch.optim.lr_scheduler.ExponentialLR)."""

    def __init__(self, optimizer, gamma):
        self.gamma = real_in_range("gamma", gamma, low=0)
        super().__init__(optimizer)

    def hyperparameters(self):
        return {"gamma": self.gamma}

    def lr_at(self, epoch):
        return self.base_lr * self.gamma**epoch


class ConstantLR(LRScheduler):
    """``lr = base_lr · factor`` for epoch < total_iters, then ``base_lr`` (torch's ConstantLR)."""

    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5):
        self.factor = real_in_range("factor", factor, low=0, high=1)
        self.total_iters = positive_int("total_iters", total_iters, minimum=0)
        super().__init__(optimizer)

    def hyperparameters(self):
        return {"factor": self.factor, "total_iters": self.total_iters}

    def lr_at(self, epoch):
        return self.base_lr * (self.factor if epoch < self.total_iters else 1.0)


class LinearLR(LRScheduler):
    """``lr = base_lr (s + (e − s) · min(epoch, total_iters) / total_iters)``, s =
    start_factor, e = end_factor (torch.optim.lr_scheduler.LinearLR; a linear warmup
    with s < e, a linear decay with s > e).

    Example:

    >>> import nprnn
    >>> opt = nprnn.optim.SGD(nprnn.Linear(2, 1), lr=1.0)
    >>> sched = nprnn.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3)
    >>> lrs = [opt.lr]
    >>> for _ in range(4):
    ...     sched.step()
    ...     lrs.append(opt.lr)
    >>> lrs
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        self.start_factor = real_in_range("start_factor", start_factor, low=0, high=1,
                                          low_open=True)  # fmt: skip
        self.end_factor = real_in_range("end_factor", end_factor, low=0, high=1)
        self.total_iters = positive_int("total_iters", total_iters)
        super().__init__(optimizer)

    def hyperparameters(self):
        return {
            "start_factor": self.start_factor,
            "end_factor": self.end_factor,
            "total_iters": self.total_iters,
        }

    def lr_at(self, epoch):
        s, e, n = self.start_factor, self.end_factor, self.total_iters
        return self.base_lr * (s + (e - s) * min(n, epoch) / n)


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr − eta_min)(1 + cos(π · epoch / T_max)) / 2``
    (torch.optim.lr_scheduler.CosineAnnealingLR; past T_max it rises again, as torch)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = positive_int("T_max", T_max)
        self.eta_min = real_in_range("eta_min", eta_min, low=0)
        super().__init__(optimizer)

    def hyperparameters(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min}

    def lr_at(self, epoch):
        c = 1 + math.cos(math.pi * epoch / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * c / 2


class SequentialLR(LRScheduler):
    """Scheduler i drives the lr from ``milestones[i−1]`` on (epoch counted from there)
    (torch.optim.lr_scheduler.SequentialLR). All must drive ``optimizer``."""

    def __init__(self, optimizer, schedulers, milestones):
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("schedulers must hold at least one scheduler, got none")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler) or isinstance(s, SequentialLR):
                raise TypeError(
                    f"schedulers[{i}] must be a scheduler of nprnn.optim.lr_scheduler (not a "
                    f"SequentialLR), got {type(s).__name__}"
                )
            if s.optimizer is not optimizer:
                raise ValueError(f"schedulers[{i}] drives another optimizer than optimizer")
        ms = [positive_int(f"milestones[{i}]", m) for i, m in enumerate(milestones)]
        if len(ms) != len(schedulers) - 1:
            raise ValueError(
                f"milestones must hold one entry fewer than schedulers ({len(schedulers)}), "
                f"got {len(ms)}"
            )
        if any(b <= a for a, b in zip(ms[:-1], ms[1:], strict=True)):
            raise ValueError(f"milestones must increase strictly, got {ms}")
        self.schedulers, self.milestones = schedulers, ms
        super().__init__(optimizer)

    def hyperparameters(self):
        return {"milestones": list(self.milestones)}

    def _part(self, epoch: int) -> tuple[LRScheduler, int]:
        i = bisect_right(self.milestones, epoch)
        return self.schedulers[i], epoch - (self.milestones[i - 1] if i else 0)

    def lr_at(self, epoch):
        s, local = self._part(epoch)
        return s.lr_at(local)

    def _set(self, epoch):
        s, local = self._part(epoch)
        s._set(local)  # the part's counters follow, as in torch
        self.last_epoch, self._last_lr = epoch, s.get_last_lr()

    def state_dict(self):
        return {**super().state_dict(), "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, d):
        epoch, base, last = self._check_state(d)
        parts = d.get("schedulers")
        if not isinstance(parts, list) or len(parts) != len(self.schedulers):
            raise ValueError(f"scheduler state needs {len(self.schedulers)} schedulers' states")
        checked = [s._check_state(p) for s, p in zip(self.schedulers, parts, strict=True)]
        for s, (e, b, la) in zip(self.schedulers, checked, strict=True):
            s.last_epoch, s.base_lrs, s._last_lr = e, b, la
        self.last_epoch, self.base_lrs, self._last_lr = epoch, base, last
        self.optimizer.lr = last[0]


class WarmupDecayLR(LRScheduler):
    """:class:`LRSchedule` as a scheduler: ``lr = LRSchedule(base_lr=base_lr, ...).lr_at(epoch)``.

    Linear warmup ``base_lr (epoch + 1) / warmup_steps`` for epoch < warmup_steps, then
    ``decay`` ("cosine", "linear" or "none") down to ``min_lr_ratio · base_lr`` at
    ``total_steps``, constant after. The same values as torch's ``SequentialLR([LinearLR(
    1/w, 1, w − 1), CosineAnnealingLR(total − w, r · base_lr)], [w])`` up to ``total_steps``.
    """

    def __init__(self, optimizer, warmup_steps=0, total_steps=1, decay="cosine",
                 min_lr_ratio=0.0):  # fmt: skip
        self.warmup_steps = positive_int("warmup_steps", warmup_steps, minimum=0)
        self.total_steps = positive_int("total_steps", total_steps)
        self.decay = one_of("decay", decay, ("none", "cosine", "linear"))
        self.min_lr_ratio = real_in_range("min_lr_ratio", min_lr_ratio, low=0, high=1)
        self._schedule(1.0)  # refuses warmup_steps > total_steps before anything is set
        super().__init__(optimizer)

    def hyperparameters(self):
        return {
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
            "min_lr_ratio": self.min_lr_ratio,
        }

    def _schedule(self, base_lr: float) -> LRSchedule:
        return LRSchedule(base_lr=base_lr, warmup_steps=self.warmup_steps, decay=self.decay,
                          total_steps=self.total_steps, min_lr_ratio=self.min_lr_ratio)  # fmt: skip

    def lr_at(self, epoch):
        return self._schedule(self.base_lr).lr_at(epoch)


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
        """The learning rate of optimizer step ``step`` (0-based): linear warmup to
        ``base_lr``, then the decay."""
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
