"""nprnn: recurrent neural networks in NumPy with explicit, exact backpropagation through time.

Public names: the layers ``RNN``, ``LSTM``, ``GRU``, ``Linear``, ``Embedding``; the loss
``softmax_cross_entropy``; the checker ``gradcheck``; and the modules ``functional``
(sequence kernels), ``classic`` (the notebook's API, fixed) and ``optim``.
"""

from . import functional
from .gradcheck import gradcheck

__version__ = "0.1.0"

__all__ = ["functional", "gradcheck", "__version__"]

try:  # filled in as the modules land
    from .layers import GRU, LSTM, RNN  # noqa: F401

    __all__ += ["RNN", "LSTM", "GRU"]
except ImportError:  # pragma: no cover
    pass
try:
    from .dense import Embedding, Linear  # noqa: F401

    __all__ += ["Linear", "Embedding"]
except ImportError:  # pragma: no cover
    pass
try:
    from .losses import softmax_cross_entropy  # noqa: F401

    __all__ += ["softmax_cross_entropy"]
except ImportError:  # pragma: no cover
    pass
try:
    from . import classic, optim  # noqa: F401

    __all__ += ["classic", "optim"]
except ImportError:  # pragma: no cover
    pass
