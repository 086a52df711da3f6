"""nprnn.gradcheck: it must pass right gradients and catch wrong ones."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from nprnn.gradcheck import gradcheck, numerical_grad


def _problem(seed=0):
    """f(W, b) = Σ sin(W) ⊙ A + Σ b³ and its exact gradient."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, 4))
    params = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=5)}

    def f(p):
        return float(np.sum(np.sin(p["W"]) * A) + np.sum(p["b"] ** 3))

    grads = {"W": np.cos(params["W"]) * A, "b": 3 * params["b"] ** 2}
    return f, params, grads


def test_right_gradient_passes():
    f, params, grads = _problem()
    errs = gradcheck(f, params, grads)
    assert set(errs) == {"W", "b"}
    assert max(errs.values()) < 1e-8


def test_factor_two_is_caught():
    f, params, grads = _problem()
    errs = gradcheck(f, params, {"W": 2 * grads["W"], "b": grads["b"]})
    assert errs["W"] == pytest.approx(0.5, rel=1e-6)  # ‖2g − g‖ / ‖2g‖
    assert errs["b"] < 1e-8


def test_one_entry_off_is_caught():
    f, params, grads = _problem()
    wrong = {k: v.copy() for k, v in grads.items()}
    wrong["b"][3] += 1e-3
    errs = gradcheck(f, params, wrong)
    assert errs["b"] > 1e-5
    assert errs["W"] < 1e-8


def test_sign_error_in_one_entry_is_caught():
    f, params, grads = _problem()
    wrong = {k: v.copy() for k, v in grads.items()}
    wrong["W"][1, 2] *= -1
    assert gradcheck(f, params, wrong)["W"] > 1e-3


def test_error_is_zero_when_both_gradients_are_zero():
    params = {"a": np.ones(3)}
    assert gradcheck(lambda p: 1.0, params, {"a": np.zeros(3)}) == {"a": 0.0}
    # and a non-zero analytic gradient of a constant function is caught
    assert gradcheck(lambda p: 1.0, params, {"a": np.ones(3)})["a"] == 1.0


def test_params_are_not_modified():
    f, params, grads = _problem()
    saved = {k: v.copy() for k, v in params.items()}
    gradcheck(f, params, grads)
    for k in params:
        assert np.array_equal(params[k], saved[k])


def test_max_entries_samples_that_many_distinct_entries():
    f, params, grads = _problem()
    calls = []

    def counted(p):
        calls.append(1)
        return f(p)

    num = numerical_grad(counted, params, max_entries=4, rng=0)
    assert len(calls) == 2 * 4 * 2  # two evaluations per sampled entry, two arrays
    for name, (idx, d) in num.items():
        assert len(idx) == 4 and len(set(idx.tolist())) == 4
        assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < params[name].size
        np.testing.assert_allclose(d, grads[name].reshape(-1)[idx], rtol=1e-7, atol=1e-9)
    again = numerical_grad(f, params, max_entries=4, rng=0)
    assert all(np.array_equal(num[k][0], again[k][0]) for k in num)  # reproducible


def test_max_entries_larger_than_the_array_checks_everything():
    f, params, grads = _problem()
    num = numerical_grad(f, params, max_entries=1000)
    assert np.array_equal(num["W"][0], np.arange(12))


def test_sampled_check_catches_a_wrong_entry_when_sampled():
    f, params, grads = _problem()
    wrong = {"W": grads["W"].copy(), "b": grads["b"]}
    wrong["W"].reshape(-1)[:] *= 1.01  # every entry off by 1%: any sample sees it
    errs = gradcheck(f, params, wrong, max_entries=3, rng=1)
    assert errs["W"] > 5e-3 and errs["b"] < 1e-8


def test_key_mismatch_is_an_error():
    f, params, grads = _problem()
    msg = "grads must have the keys of params: missing ['b'], extra ['c']"
    with pytest.raises(ValueError, match=re.escape(msg)):
        gradcheck(f, params, {"W": grads["W"], "c": grads["b"]})


def test_shape_mismatch_is_an_error():
    f, params, grads = _problem()
    with pytest.raises(
        ValueError, match=re.escape("grads['W'] has shape (4, 3) but params['W'] is (3, 4)")
    ):
        gradcheck(f, params, {"W": grads["W"].T, "b": grads["b"]})


@pytest.mark.parametrize("kw", [{"eps": 0.0}, {"eps": -1e-6}, {"max_entries": 0}])
def test_bad_options_are_errors(kw):
    f, params, grads = _problem()
    with pytest.raises(ValueError):
        gradcheck(f, params, grads, **kw)


def test_integer_params_are_checked_in_float64():
    params = {"a": np.array([1, 2, 3])}
    errs = gradcheck(lambda p: float(np.sum(p["a"] ** 2)), params, {"a": np.array([2.0, 4, 6])})
    assert errs["a"] < 1e-8


def test_params_grads_and_rng_are_validated():
    f, params, grads = _problem()
    cases = [
        (TypeError, "params must be a mapping (e.g. a dict) of name -> array, got list",
         lambda: gradcheck(f, list(params.values()), grads)),
        (TypeError, "grads must be a mapping (e.g. a dict) of name -> array, got NoneType",
         lambda: gradcheck(f, params, None)),
        (TypeError, "params['W'] must hold real numbers, got dtype complex128",
         lambda: gradcheck(f, {**params, "W": params["W"] + 0j}, grads)),
        (TypeError, "grads['b'] must hold real numbers, got dtype <U",
         lambda: gradcheck(f, params, {**grads, "b": grads["b"].astype(str)})),
        (TypeError, "grads['b'] must be an array, got None",
         lambda: gradcheck(f, params, {**grads, "b": None})),
        (ValueError, "params['b'] contains a non-finite value (nan) at index (0,)",
         lambda: gradcheck(f, {**params, "b": np.full(5, np.nan)}, grads)),
        (ValueError, "grads['W'] must be a rectangular array",
         lambda: gradcheck(f, params, {**grads, "W": [[1.0], [1.0, 2.0]]})),
        (TypeError, "rng must be a np.random.Generator, an int seed >= 0 or None, got 'x'",
         lambda: gradcheck(f, params, grads, max_entries=1, rng="x")),
        (ValueError, "rng must be a np.random.Generator, an int seed >= 0 or None, got -1",
         lambda: numerical_grad(f, params, max_entries=1, rng=-1)),
        (TypeError, "params must be a mapping",
         lambda: numerical_grad(f, [np.ones(2)])),
    ]  # fmt: skip
    for exc, text, fn in cases:
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            with pytest.raises(exc, match="^" + re.escape(text)):
                fn()


def test_float32_and_list_params_are_accepted():
    f, params, grads = _problem()
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    errs = gradcheck(f, {k: v.tolist() for k, v in params.items()}, grads)
    assert max(errs.values()) < 1e-8
    errs = gradcheck(f, p32, grads)  # f sees float64 copies of the float32 values
    assert max(errs.values()) < 1e-4
    gen = np.random.default_rng(3)
    a = numerical_grad(f, params, max_entries=2, rng=gen)
    b = numerical_grad(f, params, max_entries=2, rng=np.random.default_rng(3))
    assert all(np.array_equal(a[k][0], b[k][0]) for k in a)
