"""Backends: where the kernels' arrays live and which library computes on them.

The driver (:mod:`nprnn.kernels.driver`) never calls an array library directly: it asks
the current backend for arrays (``empty``), for the ufuncs (``xp``, a NumPy-compatible
module), for the GEMM (``matmul``) and for host-only care (``flush_subnormals``). A
backend is any object with these members:

=====================  ===================================================================
``name``, ``device``   e.g. ``"numpy"``, ``"cpu"``
``xp``                 the array module the element-wise steps call (``numpy``, ``cupy``)
``empty(shape, dt)``   a C-ordered uninitialised array (the NumPy backend reuses large
                       buffers: see :mod:`nprnn.backends._pool`)
``matmul(a, b, out)``  ``out = a @ b`` for 2-D operands (views allowed); returns ``out``
``kernel(cell)``       the element-wise step object for a registered cell
                       (:mod:`nprnn.kernels.fast`'s, a fused one, or None: the driver
                       then runs the cell's reference steps)
``gather_per_step``    whether the driver gathers an embedded input's projected
                       columns step by step (the host: each step's block in cache) or
                       all at once (a device: one kernel launch instead of T)
``flush_subnormals(carried, chunk)``
                       zero gradients about to turn subnormal; returns whether they are
                       near that range (see :meth:`NumpyBackend.flush_subnormals`)
``uniform(rng, shape, dtype)``
                       U[0, 1) samples on the device (dropout), from a host Generator
``asarray(a, dtype)``  an array of this backend from host data or its own arrays
``to_numpy(a)``        a host NumPy array
``info()``             a dict for ``nprnn bench`` / ``nprnn --version`` (BLAS, versions)
=====================  ===================================================================

Choose one with ``NPRNN_BACKEND=name`` (read at the first kernel call) or
:func:`set_backend`; :func:`backend` names the one that runs. ``numpy`` (the default)
needs nothing but NumPy; the others are optional extras, imported only when chosen.
"""

from __future__ import annotations

import importlib
import os

__all__ = ["set_backend", "backend", "current", "available", "BACKENDS"]

# name -> "module:class" of the optional backends, imported on demand
BACKENDS = {
    "numpy": "nprnn.backends.numpy_backend:NumpyBackend",
    "cupy": "nprnn.backends.cupy_backend:CupyBackend",
}
"""Backend name → ``"module:class"`` of its implementation, imported when first chosen."""

_current = None


def _load(name: str):
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}: expected one of {sorted(BACKENDS)} "
            "(set NPRNN_BACKEND or call nprnn.set_backend with one of them)"
        )
    module, cls = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as e:
        raise ImportError(
            f"the {name!r} backend needs a package that is not installed ({e.name}): "
            f"pip install 'nprnn[{name}]', or use the 'numpy' backend"
        ) from None


def set_backend(name: str) -> None:
    """Run the kernels on backend ``name`` from now on (see :data:`BACKENDS`)."""
    global _current
    _current = _load(name)


def current():
    """The backend object the kernels use (chosen by ``NPRNN_BACKEND`` on first use)."""
    global _current
    if _current is None:
        _current = _load(os.environ.get("NPRNN_BACKEND", "numpy") or "numpy")
    return _current


def backend() -> str:
    """The name of the backend the kernels run on, e.g. ``"numpy"``."""
    return current().name


def available() -> list[str]:
    """The backends whose packages import here."""
    names = []
    for name in BACKENDS:
        try:
            _load(name)
        except (ImportError, RuntimeError):
            continue
        names.append(name)
    return names
