"""Gradient mode: whether forward passes keep what ``backward`` needs.

    with nprnn.no_grad():          # evaluation, generation: no caches are kept
        logits = model(x)
    nprnn.is_grad_enabled()        # True outside no_grad

Inside ``no_grad`` every layer runs its inference path (no per-step activations stored,
nothing pushed on the module's stack of pending forwards), so ``backward`` afterwards
raises ``RuntimeError``. The flag is per thread, like PyTorch's.
"""

from __future__ import annotations

import contextlib
import threading

__all__ = ["no_grad", "enable_grad", "is_grad_enabled"]

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside :func:`no_grad` (in this thread)."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    before = is_grad_enabled()
    _state.enabled = enabled
    try:
        yield
    finally:
        _state.enabled = before


def no_grad():
    """Context manager: forwards inside it keep no cache (the inference path).

    Example:

    >>> import nprnn
    >>> with nprnn.no_grad():
    ...     nprnn.is_grad_enabled()
    False
    >>> nprnn.is_grad_enabled()
    True
    """
    return _grad_mode(False)


def enable_grad():
    """Context manager: re-enable caching inside a :func:`no_grad` block."""
    return _grad_mode(True)
