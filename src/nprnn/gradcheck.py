"""Central-difference gradient checking for any scalar function of a dict of arrays.

    errors = gradcheck(lambda p: loss(p), params, grads)   # {name: relative error}

For each entry θ of each array, the numerical derivative is

    (f(θ + ε) − f(θ − ε)) / 2ε,

and the relative error of an array is ‖g_analytic − g_numeric‖ / max(‖g_analytic‖,
‖g_numeric‖, tiny) over the checked entries (0 when both are exactly 0). Use float64:
in float32 the differences drown in rounding. With ε = 1e-6 a correct float64 gradient
of a smooth function typically shows errors of 1e-9 to 1e-11; an error above 1e-6 is a bug.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .validation import as_rng, float_array, positive_int, real_in_range

__all__ = ["gradcheck", "numerical_grad"]


def _arrays(name: str, arrays) -> dict[str, np.ndarray]:
    """``arrays`` as a dict of finite real arrays (ints and bools become float64);
    anything else is an error naming ``name`` and the key."""
    if not isinstance(arrays, Mapping):
        raise TypeError(
            f"{name} must be a mapping (e.g. a dict) of name -> array, "
            f"got {type(arrays).__name__}: wrap the arrays in a dict"
        )
    return {k: float_array(f"{name}[{k!r}]", v) for k, v in arrays.items()}


def numerical_grad(
    f: Callable[[dict], float],
    params: Mapping[str, np.ndarray],
    *,
    eps: float = 1e-6,
    max_entries: int | None = None,
    rng=None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Central differences of ``f`` at ``params``.

    Perturbs entries of float64 copies of ``params`` in place (the caller's arrays are
    not touched), so ``f`` receives float64 arrays. ``max_entries`` samples at most
    that many entries per array (chosen by ``rng``). Returns
    ``{name: (flat_indices, derivatives)}``.
    """
    params = _arrays("params", params)
    real_in_range("eps", eps, low=0, low_open=True)
    if max_entries is not None:
        positive_int("max_entries", max_entries)
    rng = as_rng(rng)
    # float64 copies: a float32 entry cannot even represent θ ± ε faithfully
    work = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    out = {}
    for name, arr in work.items():
        n = arr.size
        idx = np.arange(n)
        if max_entries is not None and n > max_entries:
            idx = np.sort(rng.choice(n, size=max_entries, replace=False))
        flat = arr.reshape(-1)
        derivs = np.empty(len(idx), dtype=np.float64)
        for j, k in enumerate(idx):
            orig = flat[k]
            flat[k] = orig + eps
            f_plus = float(f(work))
            flat[k] = orig - eps
            f_minus = float(f(work))
            flat[k] = orig
            derivs[j] = (f_plus - f_minus) / (2 * eps)
        out[name] = (idx, derivs)
    return out


def gradcheck(
    f: Callable[[dict], float],
    params: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    *,
    eps: float = 1e-6,
    max_entries: int | None = None,
    rng=None,
) -> dict[str, float]:
    """Relative error between ``grads`` and central differences of ``f``, per entry name.

    ``f`` takes a dict shaped like ``params`` and returns a scalar. ``grads`` must have
    the same keys and shapes as ``params``; both hold finite real arrays (ints and bools
    are converted). Returns ``{name: relative_error}``.

    Example:

    >>> import numpy as np, nprnn
    >>> f = lambda p: float((p["w"] ** 2).sum())   # df/dw = 2w
    >>> w = np.array([1.0, -2.0])
    >>> nprnn.gradcheck(f, {"w": w}, {"w": 2 * w})["w"] < 1e-8
    True
    >>> nprnn.gradcheck(f, {"w": w}, {"w": w})["w"] > 0.1   # a wrong gradient
    True
    """
    params = _arrays("params", params)
    grads = _arrays("grads", grads)
    as_rng(rng)  # checked before any call of f
    if set(grads) != set(params):
        missing = sorted(set(params) - set(grads))
        extra = sorted(set(grads) - set(params))
        raise ValueError(f"grads must have the keys of params: missing {missing}, extra {extra}")
    for k in params:
        ps, gs = params[k].shape, grads[k].shape
        if ps != gs:
            raise ValueError(f"grads[{k!r}] has shape {gs} but params[{k!r}] is {ps}")
    num = numerical_grad(f, params, eps=eps, max_entries=max_entries, rng=rng)
    errors = {}
    for name, (idx, d_num) in num.items():
        d_ana = np.asarray(grads[name], dtype=np.float64).reshape(-1)[idx]
        diff = np.linalg.norm(d_ana - d_num)
        scale = max(np.linalg.norm(d_ana), np.linalg.norm(d_num))
        errors[name] = 0.0 if diff == 0 else float(diff / max(scale, 1e-300))
    return errors
