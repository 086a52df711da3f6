"""Memory before work: the peak memory of a training step, estimated from the data and
the options before anything is allocated, and refused with one line when it does not fit.

A step holds the parameters, their gradients and the optimizer's buffers all the time;
on top of that either the step's activations — per (time step, sequence): the cached
gate activations and states of every layer, the kernels' workspace for the backward,
the logits, their softmax and gradient — or, while a checkpoint is written, copies of
the weights and buffers and their serialized bytes. The activation coefficients were
measured with ``tracemalloc`` on the kernels of this version (peak bytes per step ×
sequence, per hidden unit, plus the step's temporaries per parameter; see
``tests/test_memory.py``, which checks that the estimate stays above the measured peak)
and get a 25% margin. When the kernels change, re-measure them there.

Available memory is ``MemAvailable`` of ``/proc/meminfo``, capped by a cgroup limit;
where neither is known nothing is refused.
"""

from __future__ import annotations

import os

from .errors import UsageError
from .models import cell_of

__all__ = ["step_bytes", "params_bytes", "available_bytes", "check_fits", "fmt_bytes", "MARGIN"]

MARGIN = 1.25
# bytes per (step x sequence x hidden unit x itemsize): the first layer (with its
# workspace) and every further one; per output class: logits, softmax, gradient
_FIRST = {"lstm": 16.0, "gru": 20.0, "rnn": 9.5}
_MORE = {"lstm": 7.0, "gru": 6.0, "rnn": 4.0}  # (G + 3) H: generous, deep stacks vary
_PER_CLASS = 2.2
_PARAM_TEMPS = 12  # temporaries of a step per parameter
_BUFFERS = {"sgd": 1, "adam": 2, "adamw": 2, "adagrad": 1, "rmsprop": 3}


def step_bytes(*, cell: str, hidden: int, layers: int, T: int, B: int, input_size: int = 0,
               directions: int = 1, classes_per_step: int = 0, n_params: int = 0,
               itemsize: int = 4, procs: int = 1) -> int:  # fmt: skip
    """Estimated peak bytes of the activations of one forward + backward over a batch
    of B sequences of T steps (``classes_per_step``: output classes at every step, 0
    when the output is per sequence), plus the step's temporaries that scale with the
    ``n_params`` parameters (weight copies, gradient pieces) and a fixed 1 MB. With
    ``procs`` processes (``--procs``) the B rows are shared out, the rest is each one's."""
    G = cell_of(cell).gates  # a cell not measured here: a generous bound from its gates
    first, more = _FIRST.get(cell, 4.0 * (G + 3)), _MORE.get(cell, 2.0 * (G + 3))
    per = directions * hidden * (first + more * (layers - 1))
    per += input_size + _PER_CLASS * classes_per_step
    each = int(MARGIN * itemsize * _PARAM_TEMPS * n_params) + 2**20
    return int(MARGIN * itemsize * T * B * per) + procs * each


def params_bytes(n_params: int, *, itemsize: int = 4, optimizer: str = "adam",
                 procs: int = 1) -> int:  # fmt: skip
    """Resident bytes of the parameters, gradients and optimizer buffers, plus the copies
    a checkpoint write makes of them (weights, buffers and their serialized bytes); in
    each of ``procs`` processes (a fork shares the data, but every process writes, and
    so owns, its weights, gradients and buffers)."""
    nb = _BUFFERS.get(optimizer, 3)
    return procs * int(itemsize * n_params * ((2 + nb) + 2 * (1 + nb)))


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> int | None:
    """Memory this process may still use, in bytes, or None when it cannot be told."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    limit = _read_int("/sys/fs/cgroup/memory.max")
    if limit is not None:
        used = _read_int("/sys/fs/cgroup/memory.current") or 0
        avail = limit - used if avail is None else min(avail, limit - used)
    if avail is None and hasattr(os, "sysconf"):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            avail = None
    return avail


def fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def check_fits(need: int, *, what: str, fix: str, available: int | None = None) -> None:
    """Raise :class:`UsageError` (``what`` needs about ``need`` bytes, and ``fix``) when
    ``need`` exceeds the available memory (``available``, default :func:`available_bytes`)."""
    have = available_bytes() if available is None else available
    if have is not None and need > have:
        raise UsageError(
            f"{what} needs about {fmt_bytes(need)} of memory, but "
            f"{fmt_bytes(max(have, 0))} is available",
            fix,
        )
