"""``nprnn.Module``: the base class of every layer and model, PyTorch's ``nn.Module`` by hand.

    class Tagger(nprnn.Module):
        def __init__(self, V, H, C):
            super().__init__()
            self.emb = nprnn.Embedding(V, H)        # a Module attribute is a registered child
            self.rnn = nprnn.LSTM(H, H, bidirectional=True)
            self.head = nprnn.Linear(2 * H, C)

    model.named_parameters()   # ("emb.weight", a), ("rnn.weight_ih_l0", a), ... torch's names
    model.params, model.grads  # flat {dotted name: live array}, same keys
    model.state_dict()         # {dotted name: copy}; model.load_state_dict(d) in place
    model.train() / model.eval() / model.zero_grad()   # recurse into the children

**Names.** A module's own parameters (``_add_param``) have plain names without a dot;
a child's are prefixed with the attribute name it was assigned to and a dot, at every
level, exactly as PyTorch names the same model. A parameter name and a child name may
not coincide, so two dotted names can never collide. A module assigned to two
attributes (shared weights) is listed once by ``named_parameters`` / ``params`` (the
first name), and under every name by ``state_dict`` — PyTorch's rules.

**Pending forwards.** A forward pass outside :func:`nprnn.no_grad` pushes what its
backward needs on the module's stack (``save_for_backward``); ``backward`` pops the
most recent one (``saved_for_backward``). So a module used several times in one step
is differentiated call by call, latest first::

    ya = f(a); yb = f(b)
    f.backward(dyb); f.backward(dya)       # grads = gradient of the sum of both uses

``backward`` with nothing pending raises ``RuntimeError``; ``zero_grad()`` drops every
pending forward; a call that raises leaves nothing pending. A model whose children do
all the work needs no record of its own (each child keeps its own stack); one that
computes something itself between them (a product, a concatenation) saves what its
backward needs the same way::

    def forward(self, a, b):
        ha, hb = self.enc(a), self.enc(b)
        self.save_for_backward((ha, hb))             # nothing kept inside no_grad
        return self.head(ha * hb)

    def backward(self, dy):
        ha, hb = self.saved_for_backward()           # the latest forward's record
        g = self.head.backward(dy)
        self.enc.backward(g * ha)                    # b's use first (LIFO), then a's
        self.enc.backward(g * hb)
 Parameters are updated in place by the optimizers: layers read their
live arrays at every call and never keep a private copy between calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from .grad_mode import is_grad_enabled
from .validation import _shape, as_array, as_float_dtype, check_finite

__all__ = ["Module"]


def _torch_to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor that may require grad, on any device
        return value.detach().cpu().numpy()
    return value


class Module:
    """Base class: children, parameters, gradients, state dicts, modes, pending forwards.

    Subclasses call ``super().__init__()`` first, register their own parameters with
    ``self._add_param(name, array)``, assign child modules as attributes, and define
    ``forward`` (and ``backward``, which accumulates into ``grads``).
    """

    dtype: np.dtype | None

    def __init__(self, dtype=None):
        d = self.__dict__
        d["_params"] = {}  # own parameters, name -> live array
        d["_grads"] = {}  # their accumulated gradients, same keys
        d["_children"] = {}  # attribute name -> child Module, in assignment order
        d["_saved"] = []  # pending forwards, most recent last
        d["training"] = True
        d["dtype"] = None if dtype is None else np.dtype(dtype)

    # ------------------------------------------------------------------ registration

    def __setattr__(self, name: str, value) -> None:
        children = self.__dict__.get("_children")
        if children is None:
            if isinstance(value, Module):
                raise RuntimeError(
                    f"cannot assign the module {name!r} before Module.__init__: call "
                    f"super().__init__() first in {type(self).__name__}.__init__"
                )
            object.__setattr__(self, name, value)
            return
        if isinstance(value, Module):
            if name in self._params:
                raise ValueError(f"{name!r} is already a parameter of {type(self).__name__}")
            children[name] = value
        elif name in children:
            if value is not None:
                raise TypeError(
                    f"cannot assign a {type(value).__name__} to {name!r}: it is a child "
                    "module (assign a Module, or None to remove it)"
                )
            del children[name]
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._children.pop(name, None)
        object.__delattr__(self, name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as the child ``name`` (any string without a dot, e.g. ``"0"``,
        as containers name theirs); ``None`` removes the child of that name."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"module names must be non-empty strings without dots, got {name!r}")
        if module is not None and not isinstance(module, Module):
            raise TypeError(
                f"add_module({name!r}, ...) needs an nprnn.Module or None, got "
                f"{type(module).__name__}"
            )
        setattr(self, name, module)

    def _add_param(self, name: str, value) -> np.ndarray:
        """Register own parameter ``name`` (a contiguous copy in the module's dtype, if it
        has one) with a zero gradient; returns the live array."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"parameter names must be identifiers without dots, got {name!r}")
        if name in self._children:
            raise ValueError(f"{name!r} is already a child module of {type(self).__name__}")
        dtype = self.dtype if self.dtype is not None else None
        p = np.array(value, dtype=dtype, order="C", copy=True)
        self._params[name] = p
        self._grads[name] = np.zeros_like(p)
        return p

    # ------------------------------------------------------------------ traversal

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(attribute name, child)`` for the direct children, in assignment order."""
        yield from self._children.items()

    def children(self) -> Iterator[Module]:
        """The direct children, in assignment order (:meth:`named_children` without names)."""
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module (name ``prefix``) and every descendant, each once, depth first."""
        seen: set[int] = set()

        def walk(m: Module, p: str):
            if id(m) in seen:
                return
            seen.add(id(m))
            yield p, m
            for name, child in m._children.items():
                yield from walk(child, f"{p}.{name}" if p else name)

        yield from walk(self, prefix)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, each once, depth first (:meth:`named_modules`
        without names)."""
        for _, m in self.named_modules():
            yield m

    def _named(self, attr: str, *, unique: bool) -> Iterator[tuple[str, np.ndarray]]:
        seen: set[int] = set()

        def walk(m: Module, p: str):
            for name, arr in getattr(m, attr).items():
                if unique and id(arr) in seen:
                    continue
                seen.add(id(arr))
                yield p + name, arr
            for name, child in m._children.items():
                yield from walk(child, f"{p}{name}.")

        yield from walk(self, "")

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted name, live array)`` for every parameter, each array once (PyTorch's
        names and order: own parameters first, then each child's, recursively)."""
        yield from self._named("_params", unique=True)

    def parameters(self) -> Iterator[np.ndarray]:
        """Every parameter's live array, each once, in :meth:`named_parameters`' order."""
        for _, p in self.named_parameters():
            yield p

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Flat ``{dotted name: live array}`` (a new dict of the live arrays)."""
        return dict(self.named_parameters())

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Flat ``{dotted name: gradient array}``, the same keys as :attr:`params`."""
        return dict(self._named("_grads", unique=True))

    def num_parameters(self) -> int:
        """Total number of scalar parameters (shared ones counted once)."""
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------------ calling

    def __call__(self, *args, **kwargs):
        """``forward(*args, **kwargs)``; a forward that raises leaves nothing pending.

        In grad mode the stacks of pending forwards of this module and its descendants
        are restored to their heights before the call if ``forward`` raises, so a failed
        call can never be mistaken for a pending forward by a later ``backward``.
        """
        if not is_grad_enabled():
            return self.forward(*args, **kwargs)
        stacks = [m._saved for m in self.modules()]
        heights = [len(s) for s in stacks]
        try:
            return self.forward(*args, **kwargs)
        except BaseException:
            for s, n in zip(stacks, heights, strict=True):
                del s[n:]
            raise

    def forward(self, *args, **kwargs):
        """The computation (called by ``module(...)``); subclasses define it.

        In grad mode a forward that :meth:`backward` will need keeps what it reads with
        :meth:`save_for_backward` (the layers keep their own caches).
        """
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def backward(self, *args, **kwargs):
        """The gradient of the most recent pending forward: takes the gradient of its
        output, returns that of its input and adds (+=) the parameters' gradients into
        :attr:`grads`; subclasses define it (the chain rule through their own arithmetic,
        calling each child's ``backward`` in the reverse order of the forwards)."""
        raise NotImplementedError(f"{type(self).__name__} must define backward()")

    def save_for_backward(self, saved) -> None:
        """Push what the backward of this forward needs (nothing inside ``no_grad``)."""
        if is_grad_enabled():
            self._saved.append(saved)

    def saved_for_backward(self, *, peek: bool = False):
        """Pop the most recent pending forward's record; RuntimeError if there is none.

        ``peek=True`` returns it without popping (check ``dout`` against it first, then
        pop, so that a refused ``backward`` leaves the forward pending)."""
        if not self._saved:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called with no pending forward: each "
                "forward (outside nprnn.no_grad()) is consumed by one backward, the most "
                "recent first; call the module on an input first"
            )
        return self._saved[-1] if peek else self._saved.pop()

    _save_for_backward = save_for_backward  # the layers' spelling
    _saved_for_backward = saved_for_backward

    @property
    def pending_forwards(self) -> int:
        """How many forwards of this module (not its children) await their backward."""
        return len(self._saved)

    # ------------------------------------------------------------------ modes, gradients

    def train(self, mode: bool = True):
        """Training mode (dropout on) for this module and its children; returns ``self``."""
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (dropout off), recursively. Returns ``self``."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every gradient to 0 in place and drop every pending forward, recursively."""
        for m in self.modules():
            for g in m._grads.values():
                g.fill(0)
            m._saved.clear()

    # ------------------------------------------------------------------ dtype

    def to(self, device_or_dtype=None, *, dtype=None):
        """Move and/or convert every parameter and gradient, recursively; returns ``self``.

        ``to(np.float32)`` / ``to(np.float64)`` converts the dtype (the host path, as
        before). ``to("cuda")`` moves every array to the GPU as a CuPy array and, if the
        kernels run on the host backend, switches them to the ``"cupy"`` backend
        (:func:`nprnn.set_backend`: a process-wide choice); ``to("cpu")`` moves them back to
        NumPy and switches a GPU backend back to ``"numpy"``. ``to("cuda",
        dtype=np.float32)`` does both. Without CuPy or a CUDA device ``to("cuda")``
        raises ``RuntimeError`` saying what is missing and what to install
        (``pip install 'nprnn[cupy]'``), before anything is changed.

        Arrays already of ``dtype`` (and on the device) are kept; the others are
        replaced by converted copies (an array shared between modules stays shared), so
        build optimizers *after* ``to``: an optimizer bound before holds the old arrays
        (its ``step`` then says so). Accumulated gradients are converted too; pending
        forwards are dropped (their caches are in the old dtype). Layers then take and
        return ``dtype`` arrays.
        """
        device = None
        if isinstance(device_or_dtype, str) and device_or_dtype in ("cpu", "cuda"):
            device = device_or_dtype
        elif isinstance(device_or_dtype, str) and device_or_dtype.startswith(("cu", "gpu")):
            raise ValueError(
                f"to(device): expected 'cpu' or 'cuda' (or a dtype), got {device_or_dtype!r}"
            )
        elif device_or_dtype is not None:
            if dtype is not None:
                raise TypeError("to() got a dtype twice: pass to(device, dtype=...)")
            dtype = device_or_dtype
        dt = as_float_dtype(dtype) if dtype is not None else None
        move = _device_mover(device)
        converted: dict[int, object] = {}

        def conv(a):
            on = move(a)
            if on is a and (dt is None or a.dtype == dt):
                return a
            if id(a) not in converted:
                b = on if dt is None or on.dtype == dt else on.astype(dt, order="C")
                converted[id(a)] = b
            return converted[id(a)]

        for m in self.modules():
            for store in (m._params, m._grads):
                for name, a in store.items():
                    store[name] = conv(a)
            if m.dtype is not None and dt is not None:
                m.__dict__["dtype"] = dt
            m._saved.clear()
        return self

    def double(self):
        """``to(np.float64)``."""
        return self.to(np.float64)

    def float(self):
        """``to(np.float32)``."""
        return self.to(np.float32)

    # ------------------------------------------------------------------ state dicts

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{dotted name: copy}`` of every parameter; a shared one under each of its names."""
        return {k: v.copy() for k, v in self._named("_params", unique=False)}

    def load_state_dict(self, state: Mapping) -> None:
        """Copy ``state``'s arrays into the parameters, in place; all or nothing.

        ``state``: any mapping of array-likes (NumPy arrays, lists, torch tensors — e.g.
        the ``state_dict()`` of the equivalent ``torch.nn.Module``). Names and shapes
        must match :meth:`state_dict`'s exactly; one ``ValueError`` lists every missing,
        unexpected and mis-shaped key. Values are converted to each parameter's dtype;
        non-real or non-finite values are refused. Nothing changes unless all is well.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict needs a mapping of name -> array, got {state!r}")
        own = dict(self._named("_params", unique=False))
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        new = {}
        for name, p in own.items():
            if name not in state:
                continue
            arr = as_array(f"load_state_dict: {name}", _torch_to_numpy(state[name]))
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {name} must hold real numbers, got {arr.dtype}")
            if arr.shape != p.shape:
                problems.append(f"{name} has shape {_shape(arr)}, expected {_shape(p)}")
                continue
            with np.errstate(over="ignore"):  # beyond float32's range -> inf, refused below
                new[name] = arr.astype(p.dtype)
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        for name, arr in new.items():
            check_finite(f"load_state_dict: {name}", arr)
        for name, arr in new.items():
            own[name][...] = arr  # in place: optimizers keep their references

    # ------------------------------------------------------------------ printing

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [
            f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._children.items()
        ]
        head = f"{type(self).__name__}({self._extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _device_mover(device):
    """``a -> a on device`` for :meth:`Module.to` (identity for None); switches the
    kernels' backend to match, raising before anything moves when CUDA is unavailable."""
    from . import backends  # noqa: PLC0415 - the backends import the kernels
    from .validation import array_module  # noqa: PLC0415

    if device is None:
        return lambda a: a
    be = backends.current()
    if device == "cpu":
        if be.device != "cpu":
            backends.set_backend("numpy")

        def to_host(a):
            return a if array_module(a) is np else a.get()

        return to_host
    if be.device == "cpu":
        try:
            backends.set_backend("cupy")
        except (ImportError, RuntimeError) as e:
            raise RuntimeError(
                f"to('cuda'): {e}. Install CuPy for your CUDA (pip install 'nprnn[cupy]') "
                "on a machine with an NVIDIA GPU, or keep the model on 'cpu'"
            ) from None
        be = backends.current()

    def to_device(a):
        return a if array_module(a) is not np else be.asarray(a)

    return to_device
