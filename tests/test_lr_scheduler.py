"""nprnn.optim.lr_scheduler against torch.optim.lr_scheduler; state; WarmupDecayLR = LRSchedule."""

import math

import numpy as np
import pytest

from nprnn.optim import SGD, Adam, LRSchedule, lr_scheduler
from nprnn.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiStepLR,
    SequentialLR,
    StepLR,
    WarmupDecayLR,
)


def _opt(lr=0.1):
    return SGD({"w": np.zeros(2)}, grads={"w": np.zeros(2)}, lr=lr)


# name, nprnn factory; _torch_factory builds torch's with the same arguments
CASES = [
    ("lambda", lambda o: LambdaLR(o, lambda e: 0.9**e + 0.01 * e)),
    ("step", lambda o: StepLR(o, step_size=3, gamma=0.5)),
    ("multistep", lambda o: MultiStepLR(o, milestones=[2, 5, 9], gamma=0.3)),
    ("exponential", lambda o: ExponentialLR(o, gamma=0.8)),
    ("constant", lambda o: ConstantLR(o, factor=0.25, total_iters=4)),
    ("linear-warmup", lambda o: LinearLR(o, start_factor=0.1, total_iters=6)),
    ("linear-decay", lambda o: LinearLR(o, 1.0, 0.05, total_iters=10)),
    ("cosine", lambda o: CosineAnnealingLR(o, T_max=8, eta_min=0.01)),
    ("cosine-periodic", lambda o: CosineAnnealingLR(o, T_max=4)),
]


def _torch_factory(torch, name):
    S = torch.optim.lr_scheduler
    return {
        "lambda": lambda o: S.LambdaLR(o, lambda e: 0.9**e + 0.01 * e),
        "step": lambda o: S.StepLR(o, step_size=3, gamma=0.5),
        "multistep": lambda o: S.MultiStepLR(o, milestones=[2, 5, 9], gamma=0.3),
        "exponential": lambda o: S.ExponentialLR(o, gamma=0.8),
        "constant": lambda o: S.ConstantLR(o, factor=0.25, total_iters=4),
        "linear-warmup": lambda o: S.LinearLR(o, start_factor=0.1, total_iters=6),
        "linear-decay": lambda o: S.LinearLR(o, 1.0, 0.05, total_iters=10),
        "cosine": lambda o: S.CosineAnnealingLR(o, T_max=8, eta_min=0.01),
        "cosine-periodic": lambda o: S.CosineAnnealingLR(o, T_max=4),
        "sequential": lambda o: S.SequentialLR(
            o,
            [S.LinearLR(o, 0.2, 1.0, 3), S.CosineAnnealingLR(o, T_max=10, eta_min=1e-3)],
            milestones=[4],
        ),
    }[name]


def _torch_lrs(torch, name, n, lr=0.1):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=lr)
    sched = _torch_factory(torch, name)(opt)
    out = [sched.get_last_lr()[0]]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr()[0])
        assert opt.param_groups[0]["lr"] == out[-1]
    return out


def _ours(factory, n, lr=0.1):
    opt = _opt(lr)
    sched = factory(opt)
    out = [sched.get_last_lr()[0]]
    assert opt.lr == out[0]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr()[0])
        assert opt.lr == out[-1]  # the scheduler drives the optimizer's lr
    return out


def _sequential(o):
    return SequentialLR(o, [LinearLR(o, 0.2, 1.0, 3), CosineAnnealingLR(o, 10, 1e-3)], [4])


@pytest.mark.parametrize("name,factory", CASES + [("sequential", _sequential)])
def test_matches_torch(name, factory):
    torch = pytest.importorskip("torch")
    n = 20
    want = _torch_lrs(torch, name, n)
    got = _ours(factory, n)
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), f"{name} epoch {i}: {a} vs {b}"


def test_warmup_decay_is_lr_schedule_and_torch_sequential():
    torch = pytest.importorskip("torch")
    w, total, r, base = 4, 20, 0.1, 0.3
    ref = LRSchedule(base_lr=base, warmup_steps=w, decay="cosine", total_steps=total,
                     min_lr_ratio=r)  # fmt: skip
    got = _ours(lambda o: WarmupDecayLR(o, w, total, "cosine", r), total + 5, lr=base)
    assert got == [ref.lr_at(i) for i in range(total + 6)]  # bit-identical: the app's schedule
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    S = torch.optim.lr_scheduler
    sched = S.SequentialLR(opt, [S.LinearLR(opt, 1 / w, 1.0, w - 1),
                                 S.CosineAnnealingLR(opt, total - w, r * base)], [w])  # fmt: skip
    want = [sched.get_last_lr()[0]]
    for _ in range(total):
        opt.step()
        sched.step()
        want.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(got[: total + 1], want, rtol=1e-12)
    lin = _ours(lambda o: WarmupDecayLR(o, 0, 10, "linear"), 12, lr=1.0)
    assert lin[:11] == pytest.approx([1 - i / 10 for i in range(11)]) and lin[12] == 0.0


def test_base_lr_is_the_initial_lr_and_state_round_trip():
    opt = Adam({"w": np.zeros(1)}, lr=0.2)
    a = StepLR(opt, 2, gamma=0.5)
    assert opt.initial_lr == 0.2
    for _ in range(5):
        a.step()
    assert opt.lr == pytest.approx(0.2 * 0.25)
    b = CosineAnnealingLR(opt, T_max=10)  # a second scheduler starts from initial_lr
    assert b.base_lr == 0.2 and opt.lr == 0.2
    d = a.state_dict()
    assert d == {"scheduler": "StepLR", "last_epoch": 5, "base_lrs": [0.2],
                 "last_lr": [0.05], "step_size": 2, "gamma": 0.5}  # fmt: skip
    fresh_opt = Adam({"w": np.zeros(1)}, lr=0.2)
    c = StepLR(fresh_opt, 2, gamma=0.5)
    c.load_state_dict(d)
    assert c.last_epoch == 5 and fresh_opt.lr == 0.05
    c.step()
    a.step()
    assert c.get_last_lr() == a.get_last_lr()


def test_sequential_state_round_trip():
    o1, o2 = _opt(), _opt()
    s1, s2 = _sequential(o1), _sequential(o2)
    for _ in range(7):
        s1.step()
    s2.load_state_dict(s1.state_dict())
    assert o2.lr == o1.lr
    for _ in range(5):
        s1.step()
        s2.step()
        assert o1.lr == o2.lr


@pytest.mark.parametrize(
    "fn,exc,match",
    [
        (lambda: StepLR("opt", 2), TypeError, r"^optimizer must be an nprnn\.optim optimizer"),
        (lambda: StepLR(_opt(), 0), ValueError, r"^step_size must be an integer >= 1, got 0$"),
        (lambda: CosineAnnealingLR(_opt(), T_max=2.5), TypeError, r"^T_max must be an integer"),
        (lambda: LinearLR(_opt(), start_factor=0.0), ValueError, r"^start_factor must lie in"),
        (lambda: LambdaLR(_opt(), 3), TypeError, r"^lr_lambda must be callable, got int$"),
        (lambda: MultiStepLR(_opt(), [1, -2]), ValueError, r"^milestones\[1\] must be an int"),
        (lambda: SequentialLR(_opt(), [], []), ValueError, r"^schedulers must hold at least"),
        (
            lambda: SequentialLR(_opt(), [StepLR(_opt(), 1)], []),
            ValueError,
            r"^schedulers\[0\] drives another optimizer",
        ),
        (lambda: WarmupDecayLR(_opt(), 5, 3), ValueError, r"^warmup_steps \(5\) must not exceed"),
        (lambda: WarmupDecayLR(_opt(), 1, 3, decay="step"), ValueError, r"^decay must be one of"),
        (
            lambda: StepLR(_opt(), 2).load_state_dict({"scheduler": "LinearLR"}),
            ValueError,
            r"^scheduler state is for 'LinearLR', but this scheduler is 'StepLR'$",
        ),
        (
            lambda: StepLR(_opt(), 2).load_state_dict(StepLR(_opt(), 3).state_dict()),
            ValueError,
            r"^scheduler state has step_size=3, but this StepLR has step_size=2",
        ),
        (lambda: StepLR(_opt(), 2).load_state_dict([]), TypeError, r"^scheduler state must be"),
    ],
)
def test_errors_name_the_argument(fn, exc, match):
    with pytest.raises(exc, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def test_refused_load_changes_nothing():
    opt = _opt()
    s = CosineAnnealingLR(opt, T_max=10)
    s.step()
    lr, epoch = opt.lr, s.last_epoch
    bad = {**s.state_dict(), "last_epoch": -3}
    with pytest.raises(ValueError, match="bad last_epoch"):
        s.load_state_dict(bad)
    assert opt.lr == lr and s.last_epoch == epoch
    assert math.isclose(lr, 0.05 * (1 + math.cos(math.pi / 10)))
    assert lr_scheduler.LRSchedule is LRSchedule
