"""The recurrent cells the toolkit offers, under the names its options use.

Each name is a layer of :mod:`nprnn` and the cell it runs (its registered description
in :mod:`nprnn.kernels.cells`: gates, states, parameter shapes). The char-LM, the
classifier, the tasks, the activation view and the memory estimate read that
description; offering a new registered cell on the command line is one line here.
"""

from __future__ import annotations

import numpy as np

import nprnn
from nprnn.kernels.cells import Cell, get_cell

__all__ = ["MODELS", "cell_of", "param_shapes", "embedded_forward", "embedded_backward"]

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


def embedded_forward(embedding, rnn, ids, state, mask):
    """``rnn(embedding(ids), state, mask=mask)`` for the toolkit's models: ``(out, state,
    embedded)``, ids (T, B).

    With fewer rows in the table than (step, row) pairs (V < T·B: a character
    vocabulary), the stack's first layer projects the table once and gathers from it
    (``LSTM.forward_embedded``): same result to float rounding; the CLI's default run
    took 8.8 s instead of 12.4 s. ``embedded`` says which path ran; pass it to
    :func:`embedded_backward`.
    """
    if embedding.num_embeddings < np.size(ids):
        out, new_state = rnn.forward_embedded(embedding.params["weight"], ids, state, mask=mask)
        return out, new_state, True
    out, new_state = rnn(embedding(ids), state, mask=mask)  # (T, B, E) in
    return out, new_state, False


def embedded_backward(embedding, dx, embedded: bool) -> None:
    """Add the table's gradient from the stack's ``dx``: already dE (V, E) when
    ``embedded``, else dx (T, B, E), scattered by the embedding's own backward."""
    if embedded:
        embedding.grads["weight"] += dx
    else:
        embedding.backward(dx)
