"""``nprnn.optim``: optimizers that reproduce ``torch.optim``, clipping, LR schedulers.

    opt = nprnn.optim.Adam(model, lr=3e-3)          # binds model.params and model.grads
    sched = nprnn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)
    model.backward(dlogits)
    nprnn.optim.clip_grad_norm(model, 1.0)          # a Module or a grads dict
    opt.step(); sched.step(); opt.zero_grad()

- :mod:`~nprnn.optim.optimizers`: ``SGD``, ``Adam``, ``AdamW``, ``Adagrad``, ``RMSprop``
  (bound to a Module, or to dicts of params and grads), ``make_optimizer``.
- :mod:`~nprnn.optim.lr_scheduler`: ``LambdaLR``, ``StepLR``, ``MultiStepLR``,
  ``ExponentialLR``, ``ConstantLR``, ``LinearLR``, ``CosineAnnealingLR``,
  ``SequentialLR``, ``WarmupDecayLR``; and ``LRSchedule`` (a pure function of the step).
- :mod:`~nprnn.optim.clip`: ``clip_grad_norm`` (alias ``clip_grad_norm_``).
"""

from . import lr_scheduler
from .clip import clip_grad_norm, clip_grad_norm_
from .lr_scheduler import LRSchedule
from .optimizers import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    make_optimizer,
)

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
    "clip_grad_norm_",
    "LRSchedule",
    "lr_scheduler",
]
