"""Cells as data: each cell is described once and registered by name.

A :class:`Cell` says everything the rest of nprnn needs to know about a recurrent cell:

- ``gates`` G (the affine maps are (G·H, ·)), ``states`` (``("h",)`` or ``("h", "c")``;
  h first: it is the output),
- ``recurrence``: how h enters the next step — :data:`MATRIX` (W_hh h, PyTorch's cells)
  or :data:`DIAGONAL` (w_hh ⊙ h, the IndRNN),
- ``step`` / ``step_backward``: the reference step (see :mod:`nprnn.kernels.reference`
  for the signatures), the readable truth;
- ``kernel``: the driver's fast element-wise step (:mod:`nprnn.kernels.fast`), or None:
  the driver then runs ``step``/``step_backward`` themselves (slower, same results);
- ``gate_names``: names of the G gate blocks, in the weights' row order (for the
  activation view), and ``unit_gates``: those valued in [0, 1] (the sigmoids);
  ``torch``: the ``torch.nn`` class with the same equations, if any.

The layers, the char-LM, the classifier, the tasks, the activation view and the bench
read these fields instead of testing for a cell's name. Adding a cell is one
``register(Cell(...))`` and its two step functions: :data:`INDRNN` below is the example
(Li et al. 2018, "Independently recurrent neural network"; torch has no such layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fast
from . import reference as ref

__all__ = ["Cell", "Recurrence", "MATRIX", "DIAGONAL", "CELLS", "register", "get_cell"]


@dataclass(frozen=True)
class Recurrence:
    """How the previous h enters a step: its product with W_hh, in both layouts.

    ``shape(G, H)``: weight_hh's shape; ``step(w, h)``: batch-major (B, H) → (B, G·H);
    ``step_backward(w, d)``: (B, G·H) → (B, H), the gradient reaching h; ``grad(d, h)``:
    ∂L/∂w summed over the rows. ``matmul(be, w, h, out)`` / ``matmul_t(be, w, d, out)``
    are the driver's feature-major forms ((H, B) → (G·H, B) and back).
    """

    name: str
    diagonal: bool

    def shape(self, G: int, H: int) -> tuple:
        """weight_hh's shape for G gates of H units: (G·H, H), or (G·H,) for a diagonal."""
        return (G * H,) if self.diagonal else (G * H, H)

    def step(self, w, h):
        """h's contribution to the gates, batch-major: (B, H) → (B, G·H)."""
        return h * w if self.diagonal else h @ w.T

    def applied(self, w):
        """``w`` as :meth:`apply` reads it (a view): Wᵀ, or the diagonal itself."""
        return w if self.diagonal else w.T

    def apply(self, wp, h):
        """:meth:`step` on ``applied(w)`` (or a contiguous copy of it): (B, H) → (B, G·H)."""
        return h * wp if self.diagonal else h @ wp

    def step_backward(self, w, d):
        """The gradient reaching h from the gates' gradient d: (B, G·H) → (B, H)."""
        return d * w if self.diagonal else d @ w

    def grad(self, d, h):
        """∂L/∂w from the gates' gradient d (B, G·H) and h (B, H), summed over the rows."""
        return (d * h).sum(axis=0) if self.diagonal else d.T @ h

    def matmul(self, be, w, h, out):
        """The driver's feature-major :meth:`step`: (H, B) → (G·H, B) into ``out``, on
        backend ``be``."""
        if self.diagonal:
            return be.xp.multiply(w[:, None], h, out=out)
        return be.matmul(w, h, out=out)

    def matmul_t(self, be, w, d, out):
        """The driver's feature-major :meth:`step_backward`: (G·H, B) → (H, B) into
        ``out``."""
        if self.diagonal:
            return be.xp.multiply(w[:, None], d, out=out)
        return be.matmul(w.T, d, out=out)


MATRIX = Recurrence("matrix", diagonal=False)
"""The full recurrence h W_hhᵀ (RNN, LSTM, GRU)."""
DIAGONAL = Recurrence("diagonal", diagonal=True)
"""The element-wise recurrence h ⊙ w_hh (IndRNN)."""


@dataclass(frozen=True)
class Cell:
    """A recurrent cell (see the module docstring for the fields)."""

    name: str
    gates: int
    states: tuple
    step: object
    step_backward: object
    gate_names: tuple
    recurrence: Recurrence = MATRIX
    kernel: object = None
    torch: str | None = None
    unit_gates: tuple = ()

    def param_shapes(self, input_size: int, hidden_size: int, bias: bool = True) -> dict:
        """``{weight_ih: (G·H, F), weight_hh: ..., bias_ih: (G·H,), bias_hh: (G·H,)}``."""
        G, H = self.gates, hidden_size
        shapes = {"weight_ih": (G * H, input_size), "weight_hh": self.recurrence.shape(G, H)}
        if bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        return shapes

    def init_bound(self, hidden_size: int) -> float:
        """PyTorch's initialisation: every parameter ~ U(−1/√H, 1/√H)."""
        return 1.0 / np.sqrt(hidden_size)


CELLS: dict[str, Cell] = {}
"""The registered cells by name (``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``,
``indrnn``): what the layers and :func:`get_cell` look up."""


def register(cell: Cell) -> Cell:
    """Add ``cell`` to :data:`CELLS` under ``cell.name``; returns it."""
    if cell.name in CELLS:
        raise ValueError(f"a cell named {cell.name!r} is already registered")
    if not cell.states or cell.states[0] != "h":
        raise ValueError(f"cell {cell.name!r}: states must start with 'h', got {cell.states}")
    if len(cell.gate_names) != cell.gates:
        raise ValueError(f"cell {cell.name!r}: {cell.gates} gates but names {cell.gate_names}")
    CELLS[cell.name] = cell
    return cell


def get_cell(name) -> Cell:
    """The registered cell ``name``, or a ValueError that lists the registered ones."""
    cell = CELLS.get(name) if isinstance(name, str) else None
    if cell is None:
        raise ValueError(f"unknown cell {name!r}: expected one of {sorted(CELLS)}")
    return cell


RNN_TANH = register(
    Cell("rnn_tanh", 1, ("h",), ref.rnn_tanh_step, ref.rnn_tanh_step_backward, ("h",),
         kernel=fast.RNN_TANH, torch="RNN")
)  # fmt: skip
RNN_RELU = register(
    Cell("rnn_relu", 1, ("h",), ref.rnn_relu_step, ref.rnn_relu_step_backward, ("h",),
         kernel=fast.RNN_RELU, torch="RNN")
)  # fmt: skip
LSTM = register(
    Cell("lstm", 4, ("h", "c"), ref.lstm_step, ref.lstm_step_backward, ("i", "f", "g", "o"),
         kernel=fast.LSTM, torch="LSTM", unit_gates=("i", "f", "o"))
)  # fmt: skip
GRU = register(
    Cell("gru", 3, ("h",), ref.gru_step, ref.gru_step_backward, ("r", "z", "n"),
         kernel=fast.GRU, torch="GRU", unit_gates=("r", "z"))
)  # fmt: skip

# The example of a new cell: h' = relu(W_ih x + b_ih + w_hh ⊙ h + b_hh), one recurrent
# weight per unit. Its step functions are the Elman RNN's with ReLU; what is new is the
# diagonal recurrence. The driver runs it from these reference steps (kernel=None).
INDRNN = register(
    Cell("indrnn", 1, ("h",), ref.rnn_relu_step, ref.rnn_relu_step_backward, ("h",),
         recurrence=DIAGONAL)
)  # fmt: skip
