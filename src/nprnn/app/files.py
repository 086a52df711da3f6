"""Files that are never half-written: atomic writes, canonical JSON, safetensors arrays,
random-generator states. No pickle: arrays are safetensors read from bytes, everything
else is JSON.

Every write goes to a temporary file in the same directory, is flushed and fsynced, and
moved into place with ``os.replace`` (then the directory is fsynced), so a name always
holds its old or its new complete content. Every failure to read (missing, truncated,
garbage, foreign) raises :class:`~nprnn.app.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile

import numpy as np
import safetensors.numpy as _stn

from .errors import CheckpointError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "canonical_json",
    "sha256_hex",
    "read_json",
    "arrays_to_bytes",
    "parse_arrays",
    "save_arrays",
    "load_arrays",
    "load_arrays_with_metadata",
    "save_rng",
    "load_rng",
    "jsonable_rng_state",
]

_UMASK = os.umask(0)
os.umask(_UMASK)

# ----------------------------------------------------------------------------- atomic files


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # platforms without directory fds (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds the old or the new content, never
    a mix: temp file in the same directory, flush + fsync, ``os.replace``, fsync the dir.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def atomic_write_text(path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(f"cannot store a {type(o).__name__} in JSON")


def canonical_json(obj) -> str:
    """``obj`` as JSON with sorted keys, indent 2, UTF-8 (NumPy scalars as numbers): the
    same object always gives the same text (what the checksums are computed over)."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, default=_json_default)


def atomic_write_json(path, obj) -> None:
    """Atomically write ``obj`` as JSON (sorted keys, indent 2, UTF-8, trailing newline)."""
    atomic_write_text(path, canonical_json(obj) + "\n")


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 hex digits."""
    return hashlib.sha256(data).hexdigest()


def read_bytes(path, fix: str) -> bytes:
    """The file's bytes; :class:`CheckpointError` (with ``fix``) if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CheckpointError(f"cannot read {os.fspath(path)!r}: file not found", fix) from None
    except OSError as e:
        raise CheckpointError(f"cannot read {os.fspath(path)!r}: {e.strerror or e}", fix) from None


def read_json(path, fix: str = "restore the file or start a new run in an empty directory") -> dict:
    """The JSON object in ``path``; :class:`CheckpointError` (with ``fix``) if it is missing,
    not JSON or not an object."""
    data = read_bytes(path, fix)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{os.fspath(path)!r} is not valid JSON ({msg})", fix) from None
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{os.fspath(path)!r} holds a JSON {type(obj).__name__}, not an object", fix
        )
    return obj


# ----------------------------------------------------------------------------- arrays


def arrays_to_bytes(arrays: dict, metadata: dict | None = None) -> bytes:
    """The safetensors serialization of ``arrays`` (C-contiguous copies are made if needed)."""
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict name -> np.ndarray, got {type(arrays).__name__}")
    flat = {}
    for k, a in arrays.items():
        if not isinstance(k, str):
            raise TypeError(f"array names must be strings, got {k!r}")
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"array {k!r} has unsupported dtype {a.dtype}")
        flat[k] = a if a.flags.c_contiguous else a.copy(order="C")  # keeps 0-d arrays 0-d
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must map strings to strings")
    return _stn.save(flat, metadata=metadata)


def save_arrays(path, arrays: dict, metadata: dict | None = None) -> None:
    """Atomically write ``arrays`` (name -> ndarray) as a safetensors file."""
    data = arrays_to_bytes(arrays, metadata)
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise CheckpointError(
            f"cannot write {os.fspath(path)!r}: {e.strerror or e}",
            "check the disk space and permissions",
        ) from None


def parse_arrays(data: bytes, name: str, fix: str = "restore it or retrain") -> tuple[dict, dict]:
    """``(arrays, metadata)`` of the safetensors bytes ``data`` (of the file ``name``);
    :class:`CheckpointError` with ``fix`` if they are truncated, garbage or not numbers."""
    try:
        n = int.from_bytes(data[:8], "little") if len(data) >= 8 else None
        if n is None or n > len(data) - 8:
            raise ValueError("file shorter than its header")
        header = json.loads(data[8 : 8 + int(n)].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError("bad __metadata__")
        arrays = _stn.load(bytes(data))
    except CheckpointError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # safetensors may raise a Rust PanicException (BaseException)
        msg = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(
            f"cannot load {name!r}: {msg} (truncated, or not a safetensors file)", fix
        ) from None
    out = {}
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise CheckpointError(f"cannot load {name!r}: array {k!r} has dtype {a.dtype}", fix)
        out[k] = np.array(a, copy=True)  # own, writable memory
    return out, dict(meta)


def load_arrays_with_metadata(path) -> tuple[dict, dict]:
    """``(arrays, metadata)`` of a safetensors file; :class:`CheckpointError` on any failure."""
    data = read_bytes(path, "check the path of the run directory")
    return parse_arrays(data, os.fspath(path))


def load_arrays(path) -> dict:
    """The arrays (name -> writable ndarray) of a safetensors file; any failure (missing,
    truncated, garbage, bad header) raises :class:`CheckpointError`."""
    return load_arrays_with_metadata(path)[0]


# ----------------------------------------------------------------------------- rng


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def jsonable_rng_state(state):
    """A bit-generator state with its NumPy arrays and integers as JSON lists and ints."""
    if isinstance(state, dict):
        return {k: jsonable_rng_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return [int(x) for x in state.ravel()]
    if isinstance(state, np.integer):
        return int(state)
    return state


def save_rng(rng: np.random.Generator) -> dict:
    """The JSON-able state of ``rng`` (its ``bit_generator.state``, arrays as lists)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    return jsonable_rng_state(rng.bit_generator.state)


def load_rng(d) -> np.random.Generator:
    """A new Generator in the state :func:`save_rng` returned; :class:`CheckpointError` if
    the state is malformed."""
    name = d.get("bit_generator") if isinstance(d, dict) else None
    if name not in _BIT_GENERATORS:
        raise CheckpointError(
            f"bad random-generator state (bit_generator {name!r})", "the checkpoint is damaged"
        )
    bg = getattr(np.random, name)()
    state = dict(d)
    try:
        if name == "MT19937":
            state["state"] = dict(state["state"])
            state["state"]["key"] = np.asarray(state["state"]["key"], dtype=np.uint32)
        elif name == "Philox":
            for k in ("counter", "key"):
                state["state"][k] = np.asarray(state["state"][k], dtype=np.uint64)
            state["buffer"] = np.asarray(state["buffer"], dtype=np.uint64)
        bg.state = state
    except Exception as e:
        raise CheckpointError(
            f"bad random-generator state ({type(e).__name__}: {e})", "the checkpoint is damaged"
        ) from None
    return np.random.Generator(bg)
