"""Checks at the boundary: every public entry point validates its inputs here.

Each check raises ``ValueError`` or ``TypeError`` with one message that names the
argument, says what was expected and what came, and where it helps, what to do::

    mask has shape (7, 3) but x is (T=7, B=4): expected (7, 4)

Nothing here copies large arrays except where a dtype must change, so the checks
cost one pass over each input at most (the finiteness test).

Device (CuPy) arrays stay on the device and are checked there: the finiteness test and
the range checks of ids, targets and masks each bring one scalar back to the host (one
synchronisation), never the array. Ids, targets and masks are best passed as host arrays
(a data loader's batches are): checking them costs nothing there, and they then go to
the device with one copy each.
"""

from __future__ import annotations

import numbers
import re

import numpy as np

__all__ = [
    "FLOAT_DTYPES",
    "format_shape",
    "as_array",
    "as_float_dtype",
    "float_array",
    "all_finite",
    "check_finite",
    "index_array",
    "as_bool_mask",
    "mask_array",
    "check_shape",
    "positive_int",
    "real_in_range",
    "one_of",
    "as_rng",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def format_shape(shape) -> str:
    """A shape as Python writes it: ``(3,)``, ``(7, 4)``."""
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _shape(a) -> str:
    return format_shape(a.shape)


def array_module(a):
    """``numpy``, or ``cupy`` for a CuPy array (CuPy is imported only when one comes)."""
    if type(a).__module__.partition(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def on_backend(name: str, arr, be):
    """``arr`` on the device of backend ``be``: host data goes to a GPU backend's device
    (one copy, at the boundary); a GPU array on a host backend is an error that says
    what to do, never a silent copy back."""
    if array_module(arr) is np:
        return arr if be.device == "cpu" else be.asarray(arr)
    if be.device == "cpu":
        raise TypeError(
            f"{name} is a CuPy (GPU) array but nprnn runs on the {be.name!r} backend: call "
            f"nprnn.set_backend('cupy') and model.to('cuda'), or pass {name}.get()"
        )
    return arr


def to_module(a, xp):
    """``a`` as an array of the array module ``xp``: ``a`` itself when it is one, else one
    copy (host → device with ``xp.asarray``, device → host with ``a.get()``)."""
    if array_module(a) is xp:
        return a
    return a.get() if xp is np else xp.asarray(a)


def on_device_of(name: str, arr, param):
    """``arr`` where the parameter ``param`` lives: host data goes to a GPU parameter's
    device (one copy, at the boundary); a GPU array for host parameters is an error that
    says what to do, never a silent copy back."""
    xp = array_module(param)
    if xp is np and array_module(arr) is not np:
        raise TypeError(
            f"{name} is a CuPy (GPU) array but the layer's parameters are on the host: "
            f"call model.to('cuda'), or pass {name}.get()"
        )
    return to_module(arr, xp)


def as_array(name: str, a) -> np.ndarray:
    """``np.asarray(a)``, with NumPy's conversion errors (a ragged nested list) naming ``name``;
    a CuPy array is returned as it is."""
    if array_module(a) is not np:
        return a
    try:
        return np.asarray(a)
    except ValueError as e:
        detail = " ".join(str(e).split())
        ragged = re.search(r"inhomogeneous shape after (\d+) dimension", detail)
        if ragged:
            raise ValueError(
                f"{name} must be a rectangular array, got a ragged nested sequence (rows "
                f"of different lengths after the first {ragged.group(1)} dimension(s)): "
                "give every row the same length"
            ) from None
        raise ValueError(f"{name} could not be converted to an array: {detail}") from None


def _num(v) -> str:
    """A NumPy scalar as it reads best: integral values as ints, others with repr."""
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
        return str(int(v))
    return repr(v)


def as_float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """Return ``np.float32`` or ``np.float64`` as a ``np.dtype``; anything else is an error."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be np.float32 or np.float64, got {dt}")
    return dt


def float_array(name: str, a, *, ndim: int | None = None, dtype=None, finite: bool = True):
    """``a`` as a float ndarray of ``dtype`` (default: its own float dtype, or float64).

    Integer and bool inputs are converted; complex, object and string inputs are refused.
    A float array of the other precision is refused rather than silently converted,
    because mixing float32 and float64 would upcast the whole computation. ``finite``:
    refuse NaN/inf.
    """
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    arr = as_array(name, a)
    if arr.dtype.kind in "biu":
        arr = arr.astype(dtype if dtype is not None else np.float64)
    elif arr.dtype.kind != "f":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    elif arr.dtype not in FLOAT_DTYPES:
        # float16 / longdouble: convert to the working precision
        arr = arr.astype(dtype if dtype is not None else np.float64)
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name} has dtype {arr.dtype} but this computation is {np.dtype(dtype)}: "
            f"convert it with .astype(np.{np.dtype(dtype).name})"
        )
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {_shape(arr)} ({arr.ndim}-D)")
    if finite:
        check_finite(name, arr)
    return arr


def all_finite(arr: np.ndarray) -> bool:
    """Whether every entry of ``arr`` is finite, in one pass without a temporary.

    A sum of finite floats is finite unless it overflows, and any NaN or inf makes it
    non-finite; only then are the entries tested one by one.
    """
    xp = array_module(arr)
    if arr.dtype.kind == "f" and arr.size:
        with np.errstate(over="ignore", invalid="ignore"):
            if bool(xp.isfinite(xp.sum(arr))):
                return True
    return bool(xp.isfinite(arr).all())


def check_finite(name: str, arr: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first NaN or inf entry of ``arr``."""
    if arr.size and not all_finite(arr):
        xp = array_module(arr)
        bad = xp.argwhere(~xp.isfinite(arr))[0]
        idx = tuple(int(i) for i in bad)
        raise ValueError(
            f"{name} contains a non-finite value ({arr[idx]}) at index {idx}: "
            "clean the input (NaN/inf) before passing it"
        )


def index_array(name: str, a, *, high: int | None = None, ndim: int | None = None):
    """``a`` as an int64 array of ids in ``[0, high)`` (``high`` None: any int64 id >= 0).

    The range is checked in ``a``'s own dtype, so a uint64 id beyond int64 is reported
    as it is, not as the negative number a cast would make of it.
    """
    if a is None:
        raise TypeError(f"{name} must be an array of integer ids, got None")
    arr = as_array(name, a)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {_shape(arr)} ({arr.ndim}-D)")
    if arr.size:
        limit = high if high is not None else 2**63  # ids must also fit in int64
        if int(arr.min()) < 0 or int(arr.max()) >= limit:
            bad = np.argwhere((arr < 0) | (arr >= limit))[0]
            idx = tuple(int(i) for i in bad)
            want = f"ids in [0, {high})" if high is not None else "non-negative int64 ids"
            raise ValueError(f"{name} must hold {want}, got {int(arr[idx])} at index {idx}")
    return arr.astype(np.int64, copy=False)


def as_bool_mask(m: np.ndarray, name: str = "mask") -> np.ndarray:
    """``m`` as a bool array: bools pass, numbers must all be 0 or 1."""
    if m.dtype == np.bool_:
        return m
    if m.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold 0/1 values, got dtype {m.dtype}")
    bad = (m != 0) & (m != 1)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must hold only 0 and 1, got {m[idx]} at index {idx}")
    return m.astype(bool)


def mask_array(mask, lengths, T: int, B: int, *, batch_first: bool = False):
    """Normalise ``mask`` / ``lengths`` to a time-major bool mask (T, B), or None.

    ``mask`` has x's two leading dims ((T, B), or (B, T) when ``batch_first``) and
    holds 0/1 (or bools). ``lengths`` (B,) holds ints in [0, T] and means right padding.
    """
    if mask is not None and lengths is not None:
        raise ValueError("pass either mask or lengths, not both")
    want = (B, T) if batch_first else (T, B)
    dims = "(B={1}, T={0})" if batch_first else "(T={0}, B={1})"
    if mask is not None:
        m = as_array("mask", mask)
        if m.shape != want:
            raise ValueError(
                f"mask has shape {_shape(m)} but x is {dims.format(T, B)}: expected {want}"
            )
        m = as_bool_mask(m)
        return m.T if batch_first else m
    if lengths is not None:
        ln = as_array("lengths", lengths)
        if ln.ndim != 1 or ln.shape[0] != B:
            raise ValueError(
                f"lengths has shape {_shape(ln)} but the batch has B={B}: expected ({B},)"
            )
        if ln.dtype.kind not in "iu" and not (
            ln.dtype.kind == "f" and np.all(np.isfinite(ln)) and np.all(ln == np.round(ln))
        ):
            raise TypeError(f"lengths must hold integers, got dtype {ln.dtype}")
        # the range is checked before any cast: a float like 1e300 has no int64 value
        if ln.size and (ln.min() < 0 or ln.max() > T):
            i = int(np.argmax((ln < 0) | (ln > T)))
            raise ValueError(f"lengths must lie in [0, T={T}], got {_num(ln[i])} at index {i}")
        return np.arange(T)[:, None] < ln.astype(np.int64)[None, :]
    return None


def check_shape(name: str, arr: np.ndarray, expected: tuple, *, hint: str = "") -> None:
    """Raise ``ValueError`` if ``arr.shape != expected``."""
    if tuple(arr.shape) != tuple(expected):
        exp = "(" + ", ".join(str(s) for s in expected) + (",)" if len(expected) == 1 else ")")
        msg = f"{name} has shape {_shape(arr)}: expected {exp}"
        raise ValueError(msg + (f" ({hint})" if hint else ""))


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def real_in_range(name: str, value, *, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a float in the given interval (closed unless ``*_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    ok = np.isfinite(v)
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        rng = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        raise ValueError(f"{name} must lie in {rng}, got {value!r}")
    return v


def one_of(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices`` (strings), else a ``ValueError`` listing them."""
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {opts}, got {value!r}")
    return value


def as_rng(rng) -> np.random.Generator:
    """A ``np.random.Generator`` from a Generator, an int seed >= 0 or None (fresh entropy)."""
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(
                f"rng must be a np.random.Generator, an int seed >= 0 or None, got {rng!r}"
            )
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.Generator):
        return rng
    what = repr(rng) if len(repr(rng)) <= 40 else type(rng).__name__
    raise TypeError(f"rng must be a np.random.Generator, an int seed >= 0 or None, got {what}")
