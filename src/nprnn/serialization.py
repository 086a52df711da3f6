"""Save and load any module's weights as safetensors: ``nprnn.save`` / ``nprnn.load``.

    nprnn.save(model, "m.safetensors")          # model.state_dict(), under torch's dotted names
    nprnn.load(model, "m.safetensors")          # in place; names, shapes, dtypes checked

    # the same file in PyTorch
    torch_model.load_state_dict(safetensors.torch.load_file("m.safetensors"))

**Format.** A safetensors file (a JSON header of names, dtypes and shapes, then the raw
little-endian arrays; no pickle, no code). Each entry is one ``state_dict`` key, so a
parameter shared by two children is stored under each of its names, as torch's
``state_dict`` lists it.

**Writes are atomic**: a temporary file in the same directory, flushed and fsynced,
then ``os.replace`` onto the path and an fsync of the directory; the path always holds
the old file or the new one, never a mix.

**Loads are all or nothing**: every name, shape and dtype is checked against the model
before anything is read into it (one ``ValueError`` naming the file and every missing,
unexpected, mis-shaped or mis-typed entry); values must be finite. A refused load
changes nothing.

The ``safetensors`` package (``pip install safetensors``, in the ``cli`` and ``test``
extras) is imported only when these functions run: ``import nprnn`` loads NumPy alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from .module import Module, _torch_to_numpy
from .validation import _shape

__all__ = ["save", "load"]

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
           "BOOL": np.bool_}  # fmt: skip


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            "nprnn.save and nprnn.load need the safetensors package: pip install safetensors"
        ) from None
    return safetensors


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # platforms without directory fds
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, data: bytes) -> None:
    directory, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _path(path) -> str:
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None


def save(module, path, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``module.state_dict()`` to ``path`` as safetensors, atomically.

    ``module``: an :class:`nprnn.Module`, or a mapping name -> array (NumPy arrays or
    torch tensors of real numbers). ``metadata``: optional ``{str: str}`` stored in the
    header. The directory must exist; an existing file is replaced.

    Example:

    >>> import os, tempfile, numpy as np, nprnn
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> model = nprnn.Linear(3, 2, rng=0)
    >>> nprnn.save(model, path)
    >>> again = nprnn.load(nprnn.Linear(3, 2, rng=1), path)
    >>> bool(np.array_equal(again.params["weight"], model.params["weight"]))
    True
    """
    path = _path(path)
    if isinstance(module, Module):
        state = module.state_dict()
    elif isinstance(module, Mapping):
        state = {}
        for k, v in module.items():
            if not isinstance(k, str):
                raise TypeError(f"save: the names must be strings, got {k!r}")
            a = np.asarray(_torch_to_numpy(v))
            if a.dtype.kind not in "biuf":
                raise TypeError(f"save: {k} must hold real numbers, got dtype {a.dtype}")
            state[k] = a
    else:
        raise TypeError(
            f"save needs an nprnn.Module or a mapping name -> array, got {type(module).__name__}"
        )
    if metadata is not None and (
        not isinstance(metadata, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise TypeError("metadata must be a mapping of str -> str")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"save: the directory {directory!r} does not exist")
    st = _safetensors()
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    data = st.numpy.save(arrays, metadata=None if metadata is None else dict(metadata))
    _atomic_write(path, data)


def load(module: Module, path) -> Module:
    """Load the safetensors file ``path`` into ``module`` in place; returns ``module``.

    The file must hold exactly the names of ``module.state_dict()``, each with the
    parameter's shape and dtype (a float64 file does not load into a float32 model:
    convert one of them, ``model.to(np.float64)``); every problem is listed in one
    ``ValueError``, and nothing is changed unless all is well. A file written by
    ``safetensors.torch.save_file(torch_model.state_dict(), path)`` of the equivalent
    torch module loads as well.
    """
    if not isinstance(module, Module):
        raise TypeError(f"load needs an nprnn.Module to load into, got {type(module).__name__}")
    path = _path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no such file {path!r}")
    st = _safetensors()
    own = dict(module._named("_params", unique=False))
    try:
        with st.safe_open(path, framework="np") as f:
            header = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape()))
                      for k in f.keys()}  # fmt: skip
            problems = []
            missing = [k for k in own if k not in header]
            unexpected = [k for k in header if k not in own]
            if missing:
                problems.append(f"missing {missing}")
            if unexpected:
                problems.append(f"unexpected {unexpected}")
            for k, p in own.items():
                if k not in header:
                    continue
                dt, shape = header[k]
                if shape != p.shape:
                    problems.append(f"{k} has shape {shape}, expected {_shape(p)}")
                elif _DTYPES.get(dt) != p.dtype:
                    problems.append(f"{k} is {dt} in the file, the model's is {p.dtype}")
            if problems:
                raise ValueError(f"{path}: does not fit this model: " + "; ".join(problems))
            arrays = {k: f.get_tensor(k) for k in own}
    except st.SafetensorError as e:
        detail = " ".join(str(e).split())
        raise ValueError(f"{path}: not a readable safetensors file ({detail})") from None
    try:
        module.load_state_dict(arrays)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return module
