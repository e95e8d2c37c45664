"""Each schedule against its torch.optim.lr_scheduler twin, stepped once per optimiser step."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tls

from twinnet.schedules import SCHEDULES, make_schedule

BASE_LR = 0.1
TOTAL = 100


def _torch_lrs(make_scheduler, base_lr: float = BASE_LR, total: int = TOTAL) -> list[float]:
    """The learning rate torch uses at each of ``total`` steps: read it, step the optimiser, step the scheduler."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


CASES = [
    ("constant", {}, lambda o: tls.LambdaLR(o, lambda k: 1.0)),
    ("step", dict(step_size=7, gamma=0.5), lambda o: tls.StepLR(o, step_size=7, gamma=0.5)),
    ("step", dict(step_size=30), lambda o: tls.StepLR(o, step_size=30)),
    ("cosine", {}, lambda o: tls.CosineAnnealingLR(o, T_max=TOTAL)),
    ("cosine", dict(eta_min=1e-3), lambda o: tls.CosineAnnealingLR(o, T_max=TOTAL, eta_min=1e-3)),
    (
        "warmup_cosine",
        dict(warmup_steps=10, start_factor=0.1, eta_min=1e-4),
        lambda o: tls.SequentialLR(
            o,
            [tls.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10), tls.CosineAnnealingLR(o, T_max=90, eta_min=1e-4)],
            milestones=[10],
        ),
    ),
    (
        "warmup_cosine",
        dict(warmup_steps=25),
        lambda o: tls.SequentialLR(
            o, [tls.LinearLR(o, end_factor=1.0, total_iters=25), tls.CosineAnnealingLR(o, T_max=75)], milestones=[25]
        ),
    ),
    ("warmup_cosine", dict(warmup_steps=0), lambda o: tls.CosineAnnealingLR(o, T_max=TOTAL)),
    ("linear", {}, lambda o: tls.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=TOTAL)),
    (
        "linear",
        dict(start_factor=0.5, end_factor=0.1, total_iters=40),
        lambda o: tls.LinearLR(o, start_factor=0.5, end_factor=0.1, total_iters=40),
    ),
    ("onecycle", {}, lambda o: tls.OneCycleLR(o, max_lr=BASE_LR, total_steps=TOTAL, cycle_momentum=False)),
    (
        "onecycle",
        dict(anneal_strategy="linear"),
        lambda o: tls.OneCycleLR(o, max_lr=BASE_LR, total_steps=TOTAL, anneal_strategy="linear", cycle_momentum=False),
    ),
    (
        "onecycle",
        dict(three_phase=True, pct_start=0.25),
        lambda o: tls.OneCycleLR(o, max_lr=BASE_LR, total_steps=TOTAL, three_phase=True, pct_start=0.25, cycle_momentum=False),
    ),
    (
        "onecycle",
        dict(pct_start=0.45, div_factor=10.0, final_div_factor=100.0),
        lambda o: tls.OneCycleLR(
            o, max_lr=BASE_LR, total_steps=TOTAL, pct_start=0.45, div_factor=10.0, final_div_factor=100.0, cycle_momentum=False
        ),
    ),
    (  # airbench's triangle, as airbench94 computes it: np.interp over (0, peak, total)
        "triangle",
        {},
        lambda o: tls.LambdaLR(o, lambda k: float(np.interp(k, [0, int(0.23 * TOTAL), TOTAL], [0.2, 1.0, 0.07]))),
    ),
]


@pytest.mark.parametrize("name, kwargs, make_torch", CASES, ids=[f"{n}-{k}" for n, k, _ in CASES])
def test_schedule_equals_torch(name, kwargs, make_torch):
    schedule = make_schedule(name, BASE_LR, TOTAL, **kwargs)
    ours = [schedule(k) for k in range(TOTAL)]
    theirs = _torch_lrs(make_torch)
    bad = [(k, a, b) for k, (a, b) in enumerate(zip(ours, theirs)) if not math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-15)]
    assert not bad, f"{len(bad)} steps differ, first (step, ours, torch): {bad[:3]}"
    assert all(isinstance(v, float) for v in ours)
    if name != "constant":  # the schedule does move: a constant impostor would fail above
        assert max(theirs) / min(theirs) > 1.5


def test_every_schedule_is_covered():
    assert {name for name, _, _ in CASES} == set(SCHEDULES)


@pytest.mark.parametrize("name, kwargs", [(n, k) for n, k, _ in CASES])
def test_schedules_are_pure_and_picklable(name, kwargs):
    schedule = make_schedule(name, BASE_LR, TOTAL, **kwargs)
    forward = [schedule(k) for k in range(TOTAL)]
    backward = [schedule(k) for k in reversed(range(TOTAL))][::-1]
    assert forward == backward  # no hidden state: the order of calls does not matter
    clone = pickle.loads(pickle.dumps(schedule))
    assert [clone(k) for k in range(TOTAL)] == forward


def test_warmup_reaches_base_lr_at_the_end_of_warmup():
    schedule = make_schedule("warmup_cosine", 0.2, 50, warmup_steps=5, start_factor=0.01)
    assert schedule(0) == pytest.approx(0.002)
    assert schedule(5) == pytest.approx(0.2)
    assert schedule(4) < schedule(5) and schedule(6) < schedule(5)


@pytest.mark.parametrize(
    "name, base_lr, total, kwargs, match",
    [
        ("exponential", 0.1, 10, {}, "unknown schedule 'exponential'"),
        ("cosine", 0.1, 10, dict(gamma=0.5), r"unknown arguments \['gamma'\]"),
        ("step", 0.1, 10, {}, "needs.*step_size"),
        ("step", 0.1, 10, dict(step_size=0), "step_size"),
        ("warmup_cosine", 0.1, 10, {}, "needs.*warmup_steps"),
        ("warmup_cosine", 0.1, 10, dict(warmup_steps=10), "warmup_steps"),
        ("warmup_cosine", 0.1, 10, dict(warmup_steps=2, start_factor=0.0), "start_factor"),
        ("linear", 0.1, 10, dict(end_factor=1.5), "end_factor"),
        ("onecycle", 0.1, 10, dict(pct_start=1.5), "pct_start"),
        ("onecycle", 0.1, 10, dict(anneal_strategy="exp"), "anneal_strategy"),
        ("onecycle", 0.1, 10, dict(pct_start=0.1), "zero steps"),
        ("constant", -0.1, 10, {}, "base_lr"),
        ("cosine", 0.1, 0, {}, "total_steps"),
        ("cosine", 0.1, 2.5, {}, "total_steps"),
    ],
)
def test_bad_arguments_are_rejected(name, base_lr, total, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(name, base_lr, total, **kwargs)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as info:
        make_schedule("cosin", 0.1, 10)
    assert all(name in str(info.value) for name in SCHEDULES)


def test_negative_step_and_one_cycle_overrun_are_rejected():
    with pytest.raises(ValueError, match="step"):
        make_schedule("cosine", 0.1, 10)(-1)
    onecycle = make_schedule("onecycle", 0.1, 10)
    onecycle(10)  # torch allows stepping up to total_steps
    with pytest.raises(ValueError, match="total_steps"):
        onecycle(11)
