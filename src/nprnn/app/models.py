"""The recurrent cells the toolkit offers, under the names its options use.

Each name is a layer of :mod:`nprnn` and the cell it runs (its registered description
in :mod:`nprnn.kernels.cells`: gates, states, parameter shapes). The char-LM, the
classifier, the tasks, the activation view and the memory estimate read that
description; offering a new registered cell on the command line is one line here.
"""

from __future__ import annotations

import nprnn
from nprnn.kernels.cells import Cell, get_cell

__all__ = ["MODELS", "cell_of", "param_shapes"]

MODELS = {"lstm": nprnn.LSTM, "gru": nprnn.GRU, "rnn": nprnn.RNN, "indrnn": nprnn.IndRNN}


def cell_of(model: str) -> Cell:
    """The cell that ``--model model`` runs (the RNN's default nonlinearity, tanh)."""
    return get_cell(MODELS[model].cell_name)


def param_shapes(model: str, input_size: int, hidden: int, layers: int, *, directions=1,
                 prefix: str = "rnn.") -> dict:  # fmt: skip
    """``{name: shape}`` of a recurrent stack, PyTorch's names, without building it."""
    cell, shapes = cell_of(model), {}
    for k in range(layers):
        f_in = input_size if k == 0 else directions * hidden
        for d in range(directions):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            for name, shape in cell.param_shapes(f_in, hidden).items():
                shapes[prefix + name + sfx] = shape
    return shapes
