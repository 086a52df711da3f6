"""nprnn: recurrent neural networks in NumPy with explicit, exact backpropagation through time.

Layers with PyTorch's interface, names and numerics::

    import nprnn
    lstm = nprnn.LSTM(10, 20, num_layers=2, bidirectional=True)
    out, (h_n, c_n) = lstm(x, lengths=lengths)       # x (T, B, 10)
    dx, (dh0, dc0) = lstm.backward(dout)             # gradients accumulate in lstm.grads

Public names: the layers :class:`RNN`, :class:`LSTM`, :class:`GRU`, :class:`Linear`,
:class:`Embedding`, :class:`Dropout`; models :class:`Module` (subclass it),
:class:`Sequential`, :class:`ModuleList`, :func:`no_grad` / :func:`enable_grad` /
:func:`is_grad_enabled`, :func:`save` / :func:`load` (safetensors, imported only when
called); data helpers :func:`pad_sequence`, :func:`lengths_to_mask`,
:func:`batch_indices`; the loss :func:`softmax_cross_entropy`; the checker
:func:`gradcheck`; and the modules :mod:`~nprnn.functional` (sequence kernels),
:mod:`~nprnn.classic` (the notebook's API, fixed) and :mod:`~nprnn.optim` (optimizers,
``lr_scheduler``, clipping). NumPy is the only dependency of all of these.
:func:`release_workspace` frees the large buffers the kernels keep for reuse (at most
1 GiB; see :mod:`nprnn.backends`).

``nprnn.load_run(DIR)`` opens a run directory written by ``nprnn train`` (the model, its
vocabulary, ``.sample()`` and ``.score()``); it lives in the toolkit, :mod:`nprnn.app`,
which is imported only when ``load_run`` is first used: ``import nprnn`` loads NumPy
and nothing else.
"""

from . import classic, functional, optim
from .backends import backend, set_backend
from .backends._pool import release as release_workspace
from .containers import ModuleList, Sequential
from .data import batch_indices, lengths_to_mask, pad_sequence
from .dense import Dropout, Embedding, Linear
from .grad_mode import enable_grad, is_grad_enabled, no_grad
from .gradcheck import gradcheck
from .layers import GRU, LSTM, RNN, IndRNN
from .losses import softmax_cross_entropy
from .module import Module
from .serialization import load, save

__version__ = "0.1.0"
"""The package's version (as in ``pyproject.toml``)."""

__all__ = [
    "Module",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "RNN",
    "LSTM",
    "GRU",
    "IndRNN",
    "Linear",
    "Embedding",
    "Dropout",
    "Sequential",
    "ModuleList",
    "save",
    "load",
    "pad_sequence",
    "lengths_to_mask",
    "batch_indices",
    "softmax_cross_entropy",
    "gradcheck",
    "functional",
    "classic",
    "optim",
    "release_workspace",
    "set_backend",
    "backend",
    "__version__",
]


def __getattr__(name):
    # the one link from the library to the toolkit: lazy, so that ``import nprnn`` (and
    # ``from nprnn import *``) never imports nprnn.app and its dependencies
    if name == "load_run":
        from .app import load_run

        return load_run
    raise AttributeError(f"module 'nprnn' has no attribute {name!r}")
