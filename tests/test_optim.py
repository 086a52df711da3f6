"""Optimizers against hand-computed steps and torch.optim; clipping; schedules; state."""

import contextlib
import math
import warnings

import numpy as np
import pytest

from nprnn.optim import (
    OPTIMIZERS,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    LRSchedule,
    RMSprop,
    clip_grad_norm,
    make_optimizer,
)


@contextlib.contextmanager
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# (name, kwargs) configurations covering every code path
CONFIGS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    ("adamw", dict(lr=1e-2)),
    ("adamw", dict(lr=1e-2, betas=(0.3, 0.9), weight_decay=0.5)),
    ("adagrad", dict(lr=0.1)),
    ("adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.3)),
    ("rmsprop", dict(lr=1e-2)),
    ("rmsprop", dict(lr=1e-2, alpha=0.9, weight_decay=0.1, momentum=0.5, centered=True)),
    ("rmsprop", dict(lr=1e-2, alpha=0.3, momentum=0.7)),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)]


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "weight_ih_l0": rng.standard_normal((8, 3)).astype(dtype),
        "bias_ih_l0": rng.standard_normal(8).astype(dtype),
        "fc.weight": rng.standard_normal((2, 2)).astype(dtype),
    }


def make_grads(params, rng):
    return {k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ----------------------------------------------------------------------------- by hand


def test_sgd_by_hand():
    p = {"w": np.array([1.0, 2.0])}
    opt = SGD(p, lr=0.1, momentum=0.5)
    opt.step({"w": np.array([0.5, -1.0])})  # buf = g
    np.testing.assert_allclose(p["w"], [0.95, 2.1], rtol=0, atol=1e-15)
    opt.step({"w": np.array([1.0, 1.0])})  # buf = 0.5 * [0.5, -1] + [1, 1] = [1.25, 0.5]
    np.testing.assert_allclose(p["w"], [0.95 - 0.125, 2.1 - 0.05], rtol=0, atol=1e-15)


def test_adam_first_step_is_lr_times_sign():
    p = {"w": np.array([1.0, -2.0, 3.0])}
    g = np.array([0.3, -4.0, 1e-3])
    Adam(p, lr=0.01, eps=1e-8).step({"w": g})
    # m_hat = g, v_hat = g²: step = lr * g / (|g| + eps)
    np.testing.assert_allclose(p["w"], [1.0, -2.0, 3.0] - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_adamw_decays_before_update_and_adam_couples():
    p1, p2 = {"w": np.array([2.0])}, {"w": np.array([2.0])}
    AdamW(p1, lr=0.1, weight_decay=0.5).step({"w": np.array([1.0])})
    assert p1["w"][0] == pytest.approx(2.0 * (1 - 0.05) - 0.1 * 1.0 / (1.0 + 1e-8), rel=1e-14)
    Adam(p2, lr=0.1, weight_decay=0.5).step({"w": np.array([1.0])})  # g = 1 + 0.5 * 2 = 2
    assert p2["w"][0] == pytest.approx(2.0 - 0.1 * 2.0 / (2.0 + 1e-8), rel=1e-14)


def test_adagrad_and_rmsprop_by_hand():
    p = {"w": np.array([1.0])}
    opt = Adagrad(p, lr=0.5, lr_decay=1.0, eps=1e-10)
    opt.step({"w": np.array([2.0])})  # s = 4, p = 1 - 0.5 * 2 / (2 + eps)
    opt.step({"w": np.array([3.0])})  # clr = 0.5 / (1 + 1) = 0.25, s = 13
    p1 = 1.0 - 0.5 * 2.0 / (2.0 + 1e-10)
    assert p["w"][0] == pytest.approx(p1 - 0.25 * 3 / (math.sqrt(13) + 1e-10), rel=1e-14)
    q = {"w": np.array([1.0])}
    RMSprop(q, lr=0.1, alpha=0.75, eps=1e-8).step({"w": np.array([2.0])})  # v = 0.25 * 4 = 1
    assert q["w"][0] == pytest.approx(1.0 - 0.1 * 2.0 / (1.0 + 1e-8), rel=1e-14)
    c = {"w": np.array([1.0])}
    RMSprop(c, lr=0.1, alpha=0.75, eps=1e-8, centered=True).step({"w": np.array([2.0])})
    # a = 0.5, v - a² = 0.75
    assert c["w"][0] == pytest.approx(1.0 - 0.1 * 2.0 / (math.sqrt(0.75) + 1e-8), rel=1e-14)


def test_step_does_not_modify_grads():
    for name, kw in CONFIGS:
        params = make_params(np.float64)
        grads = make_grads(params, np.random.default_rng(1))
        before = {k: g.copy() for k, g in grads.items()}
        opt = make_optimizer(name, params, **kw)
        opt.step(grads)
        opt.step(grads)
        for k in grads:
            np.testing.assert_array_equal(grads[k], before[k])


# ----------------------------------------------------------------------------- vs torch


def torch_optimizer(torch, name, tparams, kw):
    cls = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "adagrad": torch.optim.Adagrad,
        "rmsprop": torch.optim.RMSprop,
    }[name]
    extra = {} if name == "sgd" else {"foreach": False}
    return cls(tparams, **kw, **extra)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_matches_torch(name, kw, dtype, tol):
    torch = pytest.importorskip("torch")
    params = make_params(dtype)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params.values()]
    opt = make_optimizer(name, params, **kw)
    topt = torch_optimizer(torch, name, tparams, kw)
    rng = np.random.default_rng(42)
    for _ in range(5):
        grads = make_grads(params, rng)
        for tp, g in zip(tparams, grads.values(), strict=True):
            tp.grad = torch.from_numpy(g.copy())
        opt.step(grads)
        topt.step()
        for (k, p), tp in zip(params.items(), tparams, strict=True):
            assert p.dtype == dtype
            assert rel_err(p, tp.detach().numpy()) < tol, k


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_lr_changes_match_torch(dtype, tol):
    torch = pytest.importorskip("torch")
    params = make_params(dtype)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params.values()]
    opt = Adam(params, lr=1e-2)
    topt = torch.optim.Adam(tparams, lr=1e-2, foreach=False)
    rng = np.random.default_rng(3)
    for i in range(4):
        opt.lr = topt.param_groups[0]["lr"] = 1e-2 / (i + 1)
        grads = make_grads(params, rng)
        for tp, g in zip(tparams, grads.values(), strict=True):
            tp.grad = torch.from_numpy(g.copy())
        opt.step(grads)
        topt.step()
    for p, tp in zip(params.values(), tparams, strict=True):
        assert rel_err(p, tp.detach().numpy()) < tol


# ----------------------------------------------------------------------------- state


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_state_round_trip_is_bit_identical(name, kw, tmp_path):
    from nprnn.app.files import atomic_write_json, load_arrays, read_json, save_arrays

    rng = np.random.default_rng(7)
    seq = [make_grads(make_params(np.float32), rng) for _ in range(6)]
    ref = make_params(np.float32)
    opt = make_optimizer(name, ref, **kw)
    for g in seq:
        opt.step(g)

    params = make_params(np.float32)
    first = make_optimizer(name, params, **kw)
    for g in seq[:3]:
        first.step(g)
    save_arrays(tmp_path / "o.safetensors", first.state_arrays())
    atomic_write_json(tmp_path / "o.json", first.state_scalars())
    saved = {k: v.copy() for k, v in params.items()}

    resumed_params = {k: v.copy() for k, v in saved.items()}
    resumed = make_optimizer(name, resumed_params, **kw)
    resumed.load_state(load_arrays(tmp_path / "o.safetensors"), read_json(tmp_path / "o.json"))
    assert resumed.step_count == 3
    for g in seq[3:]:
        resumed.step(g)
    for k in ref:
        np.testing.assert_array_equal(resumed_params[k], ref[k])


def test_state_dict_flat_round_trip():
    params = make_params(np.float64)
    opt = Adam(params, lr=1e-2)
    opt.step(make_grads(params, np.random.default_rng(0)))
    d = opt.state_dict()
    assert d["step"] == 1 and set(d) >= {"exp_avg.fc.weight", "exp_avg_sq.weight_ih_l0"}
    other = Adam(make_params(np.float64), lr=1e-2)
    other.load_state_dict(d)
    for k, a in opt.state_arrays().items():
        np.testing.assert_array_equal(other.state_arrays()[k], a)


def test_load_state_rejects_mismatches():
    params = make_params(np.float64)
    opt = Adam(params, lr=1e-2)
    opt.step(make_grads(params, np.random.default_rng(0)))
    arrays, scalars = opt.state_arrays(), opt.state_scalars()
    fresh = Adam(make_params(np.float64), lr=1e-2)
    with pytest.raises(ValueError, match="'sgd'"):
        SGD(make_params(np.float64), lr=0.1).load_state({}, scalars)
    bad = dict(arrays)
    bad["exp_avg.fc.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="exp_avg.fc.weight"):
        fresh.load_state(bad, scalars)
    bad = dict(arrays)
    del bad["exp_avg_sq.bias_ih_l0"]
    with pytest.raises(ValueError, match="exp_avg_sq.bias_ih_l0"):
        fresh.load_state(bad, scalars)
    with pytest.raises(ValueError, match="unexpected.*momentum_buffer.x"):
        fresh.load_state({**arrays, "momentum_buffer.x": np.zeros(1)}, scalars)
    with pytest.raises(ValueError, match="float64"):
        fresh.load_state({k: v.astype(np.float32) for k, v in arrays.items()}, scalars)
    assert fresh.step_count == 0 and fresh.state_arrays() == {}  # nothing changed


def test_step_checks_grads():
    params = make_params(np.float64)
    opt = SGD(params, lr=0.1)
    grads = make_grads(params, np.random.default_rng(0))
    with pytest.raises(ValueError, match="missing.*fc.weight"):
        opt.step({k: v for k, v in grads.items() if k != "fc.weight"})
    with pytest.raises(ValueError, match="unexpected.*'zz'"):
        opt.step({**grads, "zz": np.zeros(1)})
    with pytest.raises(ValueError, match="bias_ih_l0.*expected"):
        opt.step({**grads, "bias_ih_l0": np.zeros(7)})
    with pytest.raises(TypeError, match="float32"):
        opt.step({**grads, "bias_ih_l0": grads["bias_ih_l0"].astype(np.float32)})
    assert opt.step_count == 0


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_step_refuses_non_finite_grads(name, bad):
    params = make_params(np.float64)
    opt = make_optimizer(name, params, lr=0.1)
    grads = make_grads(params, np.random.default_rng(0))
    opt.step(grads)
    before = {k: p.copy() for k, p in params.items()}
    state = opt.state_arrays()
    grads["bias_ih_l0"][1] = bad
    with pytest.raises(
        ValueError, match=r"^grad 'bias_ih_l0' contains a non-finite value .* \(1,\)"
    ):
        opt.step(grads)
    assert opt.step_count == 1  # nothing changed: parameters, buffers, counter
    for k, p in params.items():
        np.testing.assert_array_equal(p, before[k])
    for k, a in opt.state_arrays().items():
        np.testing.assert_array_equal(a, state[k])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_known_finite_skips_only_the_finite_scan(name):
    """known_finite=True gives the same update as the checked step, still checks shapes,
    and does not scan: a NaN it was told is absent reaches the parameters."""
    twins = [make_params(np.float64) for _ in range(2)]
    opts = [make_optimizer(name, p, lr=0.1) for p in twins]
    grads = make_grads(twins[0], np.random.default_rng(1))
    opts[0].step(grads)
    opts[1].step(grads, known_finite=True)
    for k in twins[0]:
        np.testing.assert_array_equal(twins[0][k], twins[1][k])
    with pytest.raises(ValueError, match="bias_ih_l0.*expected"):
        opts[1].step({**grads, "bias_ih_l0": np.zeros(7)}, known_finite=True)
    grads["bias_ih_l0"][0] = np.nan
    opts[1].step(grads, known_finite=True)
    assert np.isnan(twins[1]["bias_ih_l0"][0])


def test_load_state_needs_dicts():
    opt = Adam(make_params(np.float64), lr=1e-2)
    for d in ([], None, "adam"):
        with pytest.raises(TypeError, match=r"^optimizer state must be the dict state_dict\(\)"):
            opt.load_state_dict(d)
    with pytest.raises(TypeError, match=r"^optimizer state scalars must be the dict"):
        opt.load_state({}, [])
    with pytest.raises(TypeError, match=r"^optimizer state arrays must be a dict$"):
        opt.load_state([], {"optimizer": "adam", "step": 0})
    assert opt.step_count == 0


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("sgd", dict(lr=0.0), "lr"),
        ("sgd", dict(lr=-1.0), "lr"),
        ("sgd", dict(lr=float("nan")), "lr"),
        ("sgd", dict(lr=0.1, momentum=-0.1), "momentum"),
        ("sgd", dict(lr=0.1, nesterov=True), "nesterov"),
        ("adam", dict(lr=0.1, betas=(1.0, 0.9)), r"betas\[0\]"),
        ("adam", dict(lr=0.1, betas=(0.9, -0.1)), r"betas\[1\]"),
        ("adam", dict(lr=0.1, betas=0.9), "betas"),
        ("adam", dict(lr=0.1, eps=0.0), "eps"),
        ("adamw", dict(lr=0.1, weight_decay=-1e-3), "weight_decay"),
        ("adagrad", dict(lr=0.1, lr_decay=-1), "lr_decay"),
        ("adagrad", dict(lr=0.1, initial_accumulator_value=-1), "initial_accumulator_value"),
        ("rmsprop", dict(lr=0.1, alpha=1.0), "alpha"),
        ("rmsprop", dict(lr=0.1, momentum=-0.5), "momentum"),
        ("adam", dict(lr=0.1, momentum=0.9), "no option 'momentum'"),
        ("lbfgs", dict(lr=0.1), "optimizer must be one of"),
        ("sgd", dict(lr=None), "needs a learning rate"),
    ],
)
def test_bad_hyperparameters(name, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_optimizer(name, make_params(np.float64), **kw)


def test_make_optimizer_defaults_and_registry():
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "adagrad", "rmsprop"}
    opt = make_optimizer("adamw", make_params(np.float32), lr=None)
    assert isinstance(opt, AdamW) and opt.lr == 1e-3 and opt.weight_decay == 1e-2
    with pytest.raises(TypeError, match="float32/float64"):
        SGD({"w": np.zeros(3, dtype=np.int64)}, lr=0.1)


# ----------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_clip_grad_norm_matches_torch(scale):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = {k: scale * rng.standard_normal(s) for k, s in [("a", (4, 5)), ("b", (7,))]}
    tparams = [
        torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads.values()
    ]
    for tp, g in zip(tparams, grads.values(), strict=True):
        tp.grad = torch.from_numpy(g.copy())
    norm = clip_grad_norm(grads, 1.0)
    tnorm = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
    assert norm == pytest.approx(float(tnorm), rel=1e-12)
    for g, tp in zip(grads.values(), tparams, strict=True):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-12, atol=0)
    if scale == 100.0:
        total = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        assert total == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_exact_and_nonfinite():
    g = {"a": np.array([3.0, 4.0], dtype=np.float32)}
    assert clip_grad_norm(g, 10.0) == 5.0
    np.testing.assert_array_equal(g["a"], np.array([3.0, 4.0], dtype=np.float32))
    assert clip_grad_norm(g, 1.0) == 5.0
    assert g["a"].dtype == np.float32
    np.testing.assert_allclose(g["a"], [0.6, 0.8], rtol=1e-6)
    bad = {"a": np.array([np.inf, 1.0]), "b": np.array([2.0])}
    assert math.isinf(clip_grad_norm(bad, 1.0))
    np.testing.assert_array_equal(bad["b"], [2.0])  # untouched
    assert math.isnan(clip_grad_norm({"a": np.array([np.nan])}, 1.0))
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(g, 0.0)


def test_the_unclipped_norm_is_summed_in_float64():
    # the trainer's norm at --clip 0 (its divergence check): float32 squares of 1e20
    # overflow, the float64 sum does not
    from nprnn.app.train import _clip

    g = {"a": np.full(4, 1e20, dtype=np.float32), "b": np.full(5, 1e20, dtype=np.float32)}
    assert _clip(g, 0.0) == pytest.approx(3e20, rel=1e-7)
    np.testing.assert_array_equal(g["a"], np.float32(1e20))  # not clipped


@pytest.mark.parametrize(
    "grads,exc,match",
    [
        ([np.ones(2)], TypeError, r"^grads must be a dict name -> np\.ndarray .*got list$"),
        (None, TypeError, r"^grads must be a dict .*got NoneType$"),
        ({"a": [1.0, 2.0]}, TypeError, r"^grads\['a'\] must be a np\.ndarray .*got list$"),
        ({"a": None}, TypeError, r"^grads\['a'\] must be a np\.ndarray .*got NoneType$"),
        ({"a": np.full(2, 10)}, TypeError, r"^grads\['a'\] must hold real floats .*int64: conv"),
        ({"a": np.ones(2, bool)}, TypeError, r"^grads\['a'\] must hold real floats .*bool"),
        ({"a": np.ones(2, complex)}, TypeError, r"^grads\['a'\] .* got dtype complex128$"),
        ({"a": np.ones(2, object)}, TypeError, r"^grads\['a'\] .* got dtype object$"),
        ({"a": np.broadcast_to(10.0, (3,))}, ValueError, r"^grads\['a'\] is read-only"),
    ],
)
def test_clip_grad_norm_validates_grads(grads, exc, match):
    with _no_warnings():
        with pytest.raises(exc, match=match):
            clip_grad_norm(grads, 1.0)


def test_clip_grad_norm_refuses_before_scaling():
    a = np.full(3, 10.0)
    with pytest.raises(TypeError, match=r"grads\['b'\]"):
        clip_grad_norm({"a": a, "b": np.ones(2, np.int32)}, 1.0)
    np.testing.assert_array_equal(a, 10.0)  # untouched
    g16 = {"h": np.full(4, 100.0, np.float16), "e": np.zeros((0, 3))}  # float16, empty: fine
    assert clip_grad_norm(g16, 1.0) == pytest.approx(200.0)
    assert g16["h"].dtype == np.float16 and float(np.abs(g16["h"]).max()) < 0.51
    assert clip_grad_norm({}, 1.0) == 0.0


# ----------------------------------------------------------------------------- schedule


def test_lr_schedule_values():
    s = LRSchedule(base_lr=1.0, warmup_steps=4, decay="cosine", total_steps=14, min_lr_ratio=0.1)
    assert [s.lr_at(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s.lr_at(4) == 1.0
    assert s.lr_at(9) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway: cos(pi/2) = 0
    assert s.lr_at(14) == pytest.approx(0.1) and s.lr_at(1000) == pytest.approx(0.1)
    lin = LRSchedule(base_lr=2.0, decay="linear", total_steps=10, min_lr_ratio=0.0)
    assert [lin.lr_at(i) for i in (0, 5, 10, 11)] == pytest.approx([2.0, 1.0, 0.0, 0.0])
    const = LRSchedule(base_lr=0.3, total_steps=5)
    assert all(const.lr_at(i) == 0.3 for i in range(10))
    lrs = [s.lr_at(i) for i in range(4, 15)]
    assert all(a >= b for a, b in zip(lrs[:-1], lrs[1:], strict=True))  # monotone decay


def test_lr_schedule_validation():
    with pytest.raises(ValueError, match="decay must be one of"):
        LRSchedule(base_lr=1.0, decay="step", total_steps=10)
    with pytest.raises(ValueError, match="warmup_steps"):
        LRSchedule(base_lr=1.0, warmup_steps=20, total_steps=10)
    with pytest.raises(ValueError, match="base_lr"):
        LRSchedule(base_lr=0.0, total_steps=10)
    with pytest.raises(ValueError, match="step"):
        LRSchedule(base_lr=1.0, total_steps=10).lr_at(-1)
    with pytest.raises(TypeError):
        LRSchedule(base_lr=1.0, total_steps=10.5)
