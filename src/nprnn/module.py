"""The protocol every nprnn layer follows, in one small base class.

    layer.params        {name: array}  the live parameters, PyTorch's names and shapes
    layer.grads         {name: array}  same keys and shapes; ``backward`` adds (+=) into them
    layer.zero_grad()   set every gradient to 0, in place
    layer.state_dict()  {name: copy of the parameter}
    layer.load_state_dict(d)   copy ``d``'s values into the parameters, in place
    layer.train() / layer.eval()   set ``layer.training`` (True / False); return the layer
    layer(*args)        = layer.forward(*args)

Parameters are updated in place by optimizers, so a layer reads ``self.params[name]``
at every call and never keeps a private copy between calls.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .validation import _shape, as_array, check_finite, format_shape

__all__ = ["Module", "Stack"]


class Module:
    """Base class: parameter/gradient bookkeeping, state dicts, train/eval mode."""

    dtype: np.dtype

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True

    def _add_param(self, name: str, value: np.ndarray) -> None:
        """Register a parameter (converted to the module's dtype) and its zero gradient."""
        self.params[name] = np.ascontiguousarray(value, dtype=self.dtype)
        self.grads[name] = np.zeros_like(self.params[name])

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    # ------------------------------------------------------------------ mode

    def train(self, mode: bool = True):
        """Training mode (dropout on); ``train(False)`` is ``eval()``. Returns ``self``."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (dropout off). Returns ``self``."""
        return self.train(False)

    # ------------------------------------------------------------------ gradients

    def zero_grad(self) -> None:
        """Set every accumulated gradient to 0 (in place: references stay valid)."""
        for g in self.grads.values():
            g.fill(0)

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(p.size for p in self.params.values())

    # ------------------------------------------------------------------ state dicts

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, in ``params``' order (PyTorch's names)."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state: Mapping) -> None:
        """Copy ``state``'s arrays into the parameters, in place.

        ``state`` is any mapping of array-likes (NumPy arrays, lists, torch tensors, e.g.
        ``torch_lstm.state_dict()`` or ``{k: v.numpy() for k, v in ....items()}``). Values are
        converted to the layer's dtype. Names and shapes must match exactly; one
        ``ValueError`` lists every missing, unexpected and mis-shaped key. Non-finite
        values are refused. Nothing is changed unless everything checks out.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict needs a mapping of name -> array, got {state!r}")
        missing = [k for k in self.params if k not in state]
        unexpected = [k for k in state if k not in self.params]
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        new = {}
        for name, own in self.params.items():
            if name not in state:
                continue
            value = state[name]
            if hasattr(value, "detach"):  # a torch tensor that may require grad
                value = value.detach().cpu().numpy()
            arr = as_array(f"load_state_dict: {name}", value)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {name} must hold real numbers, got {arr.dtype}")
            if arr.shape != own.shape:
                problems.append(f"{name} has shape {_shape(arr)}, expected {_shape(own)}")
                continue
            with np.errstate(over="ignore"):  # a float64 beyond float32's range -> inf, refused
                new[name] = arr.astype(self.dtype)
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        for name, arr in new.items():
            check_finite(f"load_state_dict: {name}", arr)
        for name, arr in new.items():
            self.params[name][...] = arr  # in place: optimizers keep their references


class Stack:
    """A model built from named :class:`Module` parts (``parts``: attribute names).

    Its parameters and gradients are flat dicts named ``"<part>.<name>"``, as PyTorch
    names the ``state_dict`` of nested modules (``embedding.weight``,
    ``rnn.weight_ih_l0``, ``head.bias``), so they load into ``torch.nn`` unchanged.
    """

    parts: tuple[str, ...] = ()
    dtype: np.dtype

    def _named(self, attr: str) -> dict:
        return {
            f"{part}.{k}": v
            for part in self.parts
            for k, v in getattr(getattr(self, part), attr).items()
        }

    def params(self) -> dict:
        """Flat ``{name: array}`` of the parameters (the live arrays, not copies)."""
        return self._named("params")

    def grads(self) -> dict:
        """Flat ``{name: array}`` of the accumulated gradients, same names as ``params()``."""
        return self._named("grads")

    def zero_grad(self) -> None:
        """Clear every accumulated gradient."""
        for part in self.parts:
            getattr(self, part).zero_grad()

    def state_dict(self) -> dict:
        """Copies of the parameters under their PyTorch-style names."""
        return {k: np.array(v, copy=True) for k, v in self.params().items()}

    def load_state_dict(self, d) -> None:
        """Load ``{name: array-like}`` in place; all or nothing.

        Names and shapes must match ``params()`` exactly and the values must be finite
        real numbers (converted to the model's dtype); one ``ValueError`` names every
        missing, unexpected and mis-shaped parameter by its full name. Everything is
        checked before anything is copied, so a refused load changes nothing.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"load_state_dict needs a mapping of name -> array, got {d!r}")
        own = self.params()
        missing = [k for k in own if k not in d]
        extra = sorted(str(k) for k in d if k not in own)
        problems = (["missing " + ", ".join(missing)] if missing else []) + (
            ["unexpected " + ", ".join(extra)] if extra else []
        )
        new = {}
        for name, p in own.items():
            if name not in d:
                continue
            value = d[name]
            if hasattr(value, "detach"):  # a torch tensor that may require grad
                value = value.detach().cpu().numpy()
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {name} must hold real numbers, got {arr.dtype}")
            if arr.shape != p.shape:
                got, want = format_shape(arr.shape), format_shape(p.shape)
                problems.append(f"{name} has shape {got}, expected {want}")
                continue
            with np.errstate(over="ignore"):  # beyond float32's range -> inf, refused below
                new[name] = arr.astype(self.dtype)
        if problems:
            raise ValueError("the weights do not fit this model: " + "; ".join(problems))
        for name, arr in new.items():
            check_finite(f"load_state_dict: {name}", arr)
        for name, arr in new.items():
            own[name][...] = arr  # in place: optimizers keep their references
