"""Containers: ``Sequential`` (a chain with forward and backward) and ``ModuleList``.

    model = nprnn.Sequential(nprnn.Linear(8, 16), nprnn.Dropout(0.1), nprnn.Linear(16, 4))
    y = model(x)                  # x (..., 8) → y (..., 4): each module's output feeds the next
    dx = model.backward(dy)       # the chain in reverse, each module's backward in turn
    model.state_dict()            # {"0.weight", "0.bias", "2.weight", "2.bias"}: torch's names

    blocks = nprnn.ModuleList([nprnn.GRU(8, 8) for _ in range(3)])   # "0.weight_ih_l0", ...

Children are named ``"0"``, ``"1"``, ... as in PyTorch, so the ``state_dict`` of the
equivalent ``torch.nn.Sequential`` / ``torch.nn.ModuleList`` loads unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .module import Module

__all__ = ["Sequential", "ModuleList"]


def _check_module(where: str, m) -> Module:
    if not isinstance(m, Module):
        raise TypeError(f"{where} must be an nprnn.Module, got {type(m).__name__}")
    return m


class _Indexed(Module):
    """Children kept under the names "0", "1", ... in order."""

    def _list(self) -> list[Module]:
        return list(self._children.values())

    def _renumber(self, modules: list[Module]) -> None:
        for name in list(self._children):
            delattr(self, name)
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def _index(self, i) -> int:
        n = len(self._children)
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise TypeError(f"{type(self).__name__} indices must be integers or slices, got {i!r}")
        i = i.__index__()
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a {type(self).__name__} of {n}")
        return i % n

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._list())

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._slice(i)
        return self._list()[self._index(i)]

    def _slice(self, i: slice):
        raise NotImplementedError

    def __setitem__(self, i, module) -> None:
        name = list(self._children)[self._index(i)]
        self.add_module(name, _check_module("the value", module))

    def __delitem__(self, i) -> None:
        modules = self._list()
        if isinstance(i, slice):
            del modules[i]
        else:
            del modules[self._index(i)]
        self._renumber(modules)

    def append(self, module: Module):
        """Add ``module`` at the end (named ``str(len(self))``); returns ``self``."""
        self.add_module(str(len(self)), _check_module("append's argument", module))
        return self


class Sequential(_Indexed):
    """A chain of modules: y = f_{n−1}(… f_1(f_0(x))); backward runs the chain in reverse.

    ``forward(x)``: each module is called on the previous one's output. A module whose
    forward returns a tuple — the recurrent layers' ``(out, state)`` — passes its first
    element ``out`` on (its final state is not returned; it is treated as unused).
    ``backward(dy)``: each module's ``backward`` from the last to the first, fed the
    gradient of its output (recurrent layers: ``backward(dout)`` with ``dstate=None``,
    keeping the ``dx`` of their ``(dx, dstate)``); returns the gradient of x, or None
    when the first module has none (an ``Embedding`` first: integer ids). Each forward
    is one pending forward of the Sequential; reuse is exact as for every layer.

    Indexing and ``len`` as a list; a slice is a Sequential of the same modules under
    their names here (PyTorch's rule); ``append``. For masks, lengths or final states,
    write a :class:`~nprnn.Module` subclass.

    Example:

    >>> import nprnn
    >>> seq = nprnn.Sequential(nprnn.Linear(3, 4), nprnn.Linear(4, 2))
    >>> [name for name, _ in seq.named_parameters()]
    ['0.weight', '0.bias', '1.weight', '1.bias']
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            self.add_module(str(i), _check_module(f"Sequential's argument {i}", m))

    def _slice(self, i: slice):
        """A Sequential of the same modules under their names here (PyTorch's rule)."""
        out = Sequential()
        for name in list(self._children)[i]:
            out.add_module(name, self._children[name])
        return out

    def forward(self, x):
        """``x`` through each module in order; a module returning a tuple (a recurrent
        layer's ``(out, state)``) passes its first element on."""
        chain = []
        for m in self._children.values():
            y = m(x)
            unpack = isinstance(y, tuple)
            x = y[0] if unpack else y
            chain.append((m, unpack))
        self._save_for_backward(chain)
        return x

    def backward(self, dout):
        """``dout`` back through each module's ``backward`` in reverse order (a recurrent
        layer gets no state gradient); returns the gradient of the input."""
        chain = self._saved_for_backward()
        g = dout
        for i in range(len(chain) - 1, -1, -1):
            m, unpack = chain[i]
            r = m.backward(g)
            g = r[0] if unpack else r
            if g is None and i > 0:
                raise RuntimeError(
                    f"Sequential: module {i} ({type(m).__name__}) returned no input "
                    "gradient, so the modules before it cannot be differentiated (an "
                    "Embedding can only come first)"
                )
        return g


class ModuleList(_Indexed):
    """A list of modules, registered as children "0", "1", ... (PyTorch's ``ModuleList``).

    ``len``, iteration, indexing (negative indices; slices → a new ModuleList of the
    same modules, renumbered), ``ml[i] = m``, ``del ml[i]`` (renumbers), ``append``, ``extend``,
    ``insert``. It has no forward of its own: call its modules.
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def extend(self, modules: Iterable[Module]):
        """Append every module of ``modules``; returns ``self``."""
        if isinstance(modules, Module):
            raise TypeError("ModuleList.extend needs an iterable of modules, got a Module")
        modules = list(modules)
        for i, m in enumerate(modules):
            _check_module(f"extend's item {i}", m)
        for m in modules:
            self.append(m)
        return self

    def _slice(self, i: slice):
        """A ModuleList of the same modules, renumbered from 0 (PyTorch's rule)."""
        return ModuleList(self._list()[i])

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before ``index`` (as ``list.insert``); renumbers."""
        modules = self._list()
        modules.insert(index, _check_module("insert's module", module))
        self._renumber(modules)

    def forward(self, *args, **kwargs):
        """Not defined (as in torch): iterate over the list and call its modules."""
        raise NotImplementedError("ModuleList has no forward: iterate over it and call its modules")
