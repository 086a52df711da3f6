"""Optimizers bound to a Module or to dicts; fused in-place updates; clip_grad_norm(model)."""

import math
import tracemalloc

import numpy as np
import pytest

import nprnn
from nprnn.optim import SGD, Adam, AdamW, clip_grad_norm, make_optimizer
from test_optim import CONFIGS, IDS, make_grads, make_params


def _reference_step(name, kw, state, params, grads, t):
    """The textbook (unfused, allocating) formulas in torch's operation order."""
    lr = kw.get("lr", 1e-3)
    for k, p in params.items():
        g = grads[k]
        s = state.setdefault(k, {})
        wd = kw.get("weight_decay", 1e-2 if name == "adamw" else 0.0)
        if name == "sgd":
            mom, damp = kw.get("momentum", 0.0), kw.get("dampening", 0.0)
            if wd:
                g = g + wd * p
            if mom:
                if "b" not in s:
                    s["b"] = g.copy()
                else:
                    s["b"] *= mom
                    s["b"] += (1.0 - damp) * g
                g = g + mom * s["b"] if kw.get("nesterov") else s["b"]
            p += -lr * g
        elif name in ("adam", "adamw"):
            b1, b2 = kw.get("betas", (0.9, 0.999))
            eps = kw.get("eps", 1e-8)
            if wd:
                if name == "adamw":
                    p *= 1.0 - lr * wd
                else:
                    g = g + wd * p
            m = s.setdefault("m", np.zeros_like(p))
            v = s.setdefault("v", np.zeros_like(p))
            w = 1.0 - b1  # torch's lerp_
            if abs(w) < 0.5:
                m += w * (g - m)
            else:
                m[...] = g - (g - m) * (1.0 - w)
            v *= b2
            v += (1.0 - b2) * g * g
            denom = np.sqrt(v) / (1.0 - b2**t) ** 0.5
            denom += eps
            p += -(lr / (1.0 - b1**t)) * m / denom
        elif name == "adagrad":
            if wd:
                g = g + wd * p
            clr = lr / (1 + (t - 1) * kw.get("lr_decay", 0.0))
            acc = s.setdefault("s", np.full_like(p, kw.get("initial_accumulator_value", 0.0)))
            acc += g * g
            std = np.sqrt(acc)
            std += kw.get("eps", 1e-10)
            p += -clr * g / std
        else:  # rmsprop
            alpha, mom = kw.get("alpha", 0.99), kw.get("momentum", 0.0)
            if wd:
                g = g + wd * p
            v = s.setdefault("v", np.zeros_like(p))
            v *= alpha
            v += (1.0 - alpha) * g * g
            if kw.get("centered"):
                a = s.setdefault("a", np.zeros_like(p))
                w = 1.0 - alpha
                if abs(w) < 0.5:
                    a += w * (g - a)
                else:
                    a[...] = g - (g - a) * (1.0 - w)
                avg = np.sqrt(v + -1.0 * a * a)
            else:
                avg = np.sqrt(v)
            avg += kw.get("eps", 1e-8)
            if mom > 0:
                b = s.setdefault("b", np.zeros_like(p))
                b *= mom
                b += g / avg
                p += -lr * b
            else:
                p += -lr * g / avg


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_fused_updates_are_bit_identical_to_the_formulas(name, kw, dtype):
    params, ref = make_params(dtype), make_params(dtype)
    opt = make_optimizer(name, params, **kw)
    rng, state = np.random.default_rng(5), {}
    for t in range(1, 6):
        grads = make_grads(params, rng)
        opt.step(grads)
        _reference_step(name, kw, state, ref, grads, t)
        for k in params:
            np.testing.assert_array_equal(params[k], ref[k], err_msg=f"{name} step {t} {k}")


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_a_step_allocates_no_array(name, kw):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(300, 400)), "b": rng.normal(size=400)}
    grads = {k: rng.normal(size=p.shape) for k, p in params.items()}
    opt = make_optimizer(name, params, grads=grads, **kw)
    opt.step()  # the first step allocates the state and the scratch, once
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        opt.step()
        opt.step()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < params["b"].nbytes, f"{name}: a step allocated {peak} bytes"


# ----------------------------------------------------------------------------- binding


class Tied(nprnn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nprnn.Linear(3, 3, dtype=np.float64, rng=0)
        self.again = self.enc  # shared: one parameter
        self.head = nprnn.Linear(3, 2, dtype=np.float64, rng=1)

    def forward(self, x):
        return self.head(self.again(self.enc(x)))

    def backward(self, dy):
        return self.enc.backward(self.again.backward(self.head.backward(dy)))


def test_bound_module_step_and_zero_grad():
    model = Tied()
    opt = Adam(model, lr=0.1)
    assert list(opt.params) == ["enc.weight", "enc.bias", "head.weight", "head.bias"]
    assert opt.module is model and opt.params["enc.weight"] is model.enc.params["weight"]
    x = np.random.default_rng(0).normal(size=(4, 3))
    model(x)
    model.backward(np.ones((4, 2)))
    before = model.state_dict()
    grads = {k: g.copy() for k, g in model.grads.items()}
    opt.step()
    ref = {k: v.copy() for k, v in before.items() if not k.startswith("again.")}
    Adam(ref, lr=0.1).step(grads)  # the shared weight stepped once, with its one gradient
    for k, v in ref.items():
        np.testing.assert_array_equal(model.state_dict()[k], v)
    model(x)
    opt.zero_grad()
    assert not any(g.any() for g in model.grads.values())
    assert model.head.pending_forwards == 0  # zero_grad drops pending forwards too


def test_bound_module_against_torch_shared_weights():
    torch = pytest.importorskip("torch")
    model = Tied()

    class TTied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.Linear(3, 3).double()
            self.head = torch.nn.Linear(3, 2).double()

        def forward(self, x):
            return self.head(self.enc(self.enc(x)))

    tm = TTied()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()
                        if not k.startswith("again.")})  # fmt: skip
    opt = nprnn.optim.AdamW(model, lr=0.05)
    topt = torch.optim.AdamW(tm.parameters(), lr=0.05, foreach=False)
    rng = np.random.default_rng(2)
    for _ in range(4):
        x, g = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
        model(x)
        model.backward(g)
        opt.step()
        opt.zero_grad()
        (tm(torch.from_numpy(x)) * torch.from_numpy(g)).sum().backward()
        topt.step()
        topt.zero_grad()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-12, atol=1e-14)


def test_dict_with_grads_binds_and_dedupes_shared():
    p = {"w": np.ones(3), "b": np.zeros(2)}
    g = {"w": np.full(3, 0.5), "b": np.ones(2)}
    opt = SGD(p, grads=g, lr=0.1)
    opt.step()
    np.testing.assert_allclose(p["w"], 0.95)
    opt.zero_grad()
    assert not g["w"].any()
    shared = SGD({**p, "w2": p["w"]}, grads={**g, "w2": g["w"]}, lr=0.1)
    assert list(shared.params) == ["w", "b"]
    with pytest.raises(ValueError, match=r"^params 'w' and 'w2' are the same array"):
        SGD({**p, "w2": p["w"]}, grads={**g, "w2": np.ones(3)}, lr=0.1)
    with pytest.raises(ValueError, match=r"^params 'w' and 'w2' are the same array"):
        SGD({**p, "w2": p["w"]}, lr=0.1)  # unbound: the grads could not be told apart


def test_binding_errors_are_one_line_and_name_the_argument():
    model = Tied()
    cases = [
        (lambda: Adam([model.params]), TypeError,
         r"^params must be an nprnn\.Module or a non-empty dict .*got a list: .*ModuleList"),
        (lambda: Adam(model, grads=model.grads), TypeError,
         r"^grads must not be given with a Module"),
        (lambda: Adam(nprnn.Sequential()), ValueError,
         r"^params: the Sequential has no parameters$"),
        (lambda: Adam({"w": np.ones(2)}, grads={"w": np.ones(3)}), ValueError,
         r"^grad 'w' has shape \(3,\): expected \(2,\)$"),
        (lambda: Adam({"w": np.ones(2)}, grads={"v": np.ones(2)}), ValueError,
         r"^grads do not match the parameters: missing \['w'\], unexpected \['v'\]$"),
        (lambda: Adam({"w": np.ones(2)}, grads=[np.ones(2)]), TypeError, r"^grads must be a dict"),
        (lambda: Adam({"w": np.ones(2)}).step(), TypeError, r"^step\(\) needs grads"),
        (lambda: Adam({"w": np.ones(2)}).zero_grad(), TypeError,
         r"^zero_grad\(\) has no gradients"),
    ]  # fmt: skip
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match) as e:
            fn()
        assert "\n" not in str(e.value)


def test_step_refuses_a_model_changed_after_binding():
    model = Tied()
    opt = Adam(model, lr=0.1)
    model.to(np.float32)
    with pytest.raises(RuntimeError, match=r"^the Tied's parameters changed since this optim"):
        opt.step()
    assert opt.step_count == 0


def test_state_dict_keeps_lr_and_round_trips():
    model = Tied()
    opt = Adam(model, lr=0.1)
    model(np.ones((1, 3)))
    model.backward(np.ones((1, 2)))
    opt.step()
    opt.lr = 0.025
    d = opt.state_dict()
    assert d["lr"] == 0.025 and "exp_avg.enc.weight" in d and d["step"] == 1
    other = Adam(Tied(), lr=0.1)
    other.load_state_dict(d)
    assert other.lr == 0.025 and other.step_count == 1
    with pytest.raises(ValueError, match=r"^optimizer state lr must lie in"):
        other.load_state_dict({**d, "lr": -1.0})
    assert other.lr == 0.025


# ----------------------------------------------------------------------------- clipping


def test_clip_grad_norm_takes_a_module():
    model = Tied()
    model(np.ones((2, 3)))
    model.backward(np.full((2, 2), 10.0))
    grads = {k: g.copy() for k, g in model.grads.items()}
    norm = clip_grad_norm(model, 1.0)
    assert norm == pytest.approx(math.sqrt(sum(float((g**2).sum()) for g in grads.values())))
    assert norm > 1
    total = math.sqrt(sum(float((g**2).sum()) for g in model.grads.values()))
    assert total == pytest.approx(1.0, rel=1e-5)
    assert nprnn.optim.clip_grad_norm_ is clip_grad_norm


def test_clip_grad_norm_float32_is_summed_in_float64():
    g = {"a": np.full(200_000, 1e-3, np.float32)}  # > one chunk
    want = math.sqrt(200_000 * float(np.float32(1e-3)) ** 2)
    assert clip_grad_norm(g, 10.0) == pytest.approx(want, rel=1e-12)


def test_adamw_module_binding_through_make_optimizer():
    opt = make_optimizer("adamw", Tied(), lr=None)
    assert isinstance(opt, AdamW) and opt.module is not None
