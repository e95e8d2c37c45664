"""Learning-rate schedules as pure functions of the step, shared by both engines.

``schedule(k)`` is the learning rate of optimiser step ``k`` (counted from 0): the
value ``torch.optim.lr_scheduler``'s twin holds after ``scheduler.step()`` has been
called ``k`` times, once per optimiser step. ``fit`` calls ``lr_at(step - 1)``
before step ``step``, so ``make_schedule(...)`` can be passed as ``lr_at``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


@dataclass(frozen=True)
class Schedule:
    """Base: a peak learning rate and the number of steps the run takes."""

    base_lr: float  # the optimiser's learning rate (the peak, for one-cycle)
    total_steps: int  # optimiser steps in the run

    def __post_init__(self) -> None:
        if not self.base_lr >= 0:
            raise ValueError(f"base_lr must be >= 0, got {self.base_lr}")
        if not _is_int(self.total_steps) or self.total_steps < 1:
            raise ValueError(f"total_steps must be an integer >= 1, got {self.total_steps!r}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.lr(step)

    def lr(self, step: int) -> float:
        raise NotImplementedError


def _cosine(start: float, end: float, pct: float) -> float:
    """From ``start`` (pct 0) to ``end`` (pct 1) along half a cosine."""
    return end + (start - end) * (1 + math.cos(math.pi * pct)) / 2


@dataclass(frozen=True)
class Constant(Schedule):
    """The same rate at every step."""

    def lr(self, step: int) -> float:
        return self.base_lr


@dataclass(frozen=True)
class Step(Schedule):
    """torch StepLR: multiply by ``gamma`` every ``step_size`` steps."""

    step_size: int = 0  # steps between decays; required
    gamma: float = 0.1  # factor applied at each decay

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _is_int(self.step_size) or self.step_size < 1:
            raise ValueError(f"step schedule needs an integer step_size >= 1, got {self.step_size!r}")
        if not self.gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")

    def lr(self, step: int) -> float:
        return self.base_lr * self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class Cosine(Schedule):
    """torch CosineAnnealingLR with T_max = total_steps: base_lr down to ``eta_min`` along half a cosine."""

    eta_min: float = 0.0  # the rate the cosine ends at

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.eta_min >= 0:
            raise ValueError(f"eta_min must be >= 0, got {self.eta_min}")

    def lr(self, step: int) -> float:
        return _cosine(self.base_lr, self.eta_min, step / self.total_steps)


@dataclass(frozen=True)
class WarmupCosine(Schedule):
    """torch SequentialLR of LinearLR(start_factor, 1, warmup_steps) then CosineAnnealingLR(total - warmup, eta_min)."""

    warmup_steps: int = 0  # steps of linear warm-up (0: plain cosine)
    start_factor: float = 1.0 / 3  # fraction of base_lr at step 0 (torch LinearLR's default)
    eta_min: float = 0.0  # the rate the cosine ends at

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _is_int(self.warmup_steps) or not 0 <= self.warmup_steps < self.total_steps:
            raise ValueError(
                f"warmup_steps must be an integer in [0, total_steps={self.total_steps}), got {self.warmup_steps!r}"
            )
        if not 0 < self.start_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1], got {self.start_factor}")
        if not self.eta_min >= 0:
            raise ValueError(f"eta_min must be >= 0, got {self.eta_min}")

    def lr(self, step: int) -> float:
        w = self.warmup_steps
        if step < w:
            return self.base_lr * (self.start_factor + (1 - self.start_factor) * step / w)
        return _cosine(self.base_lr, self.eta_min, (step - w) / (self.total_steps - w))


@dataclass(frozen=True)
class Linear(Schedule):
    """torch LinearLR: the factor moves linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` steps."""

    start_factor: float = 1.0  # fraction of base_lr at step 0
    end_factor: float = 0.0  # fraction of base_lr from step total_iters on
    total_iters: int | None = None  # steps to reach end_factor; None means total_steps

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.start_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1], got {self.start_factor}")
        if not 0 <= self.end_factor <= 1:
            raise ValueError(f"end_factor must be in [0, 1], got {self.end_factor}")
        if self.total_iters is not None and (not _is_int(self.total_iters) or self.total_iters < 1):
            raise ValueError(f"total_iters must be an integer >= 1, got {self.total_iters!r}")

    def lr(self, step: int) -> float:
        n = self.total_steps if self.total_iters is None else self.total_iters
        return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * min(step, n) / n)


@dataclass(frozen=True)
class OneCycle(Schedule):
    """torch OneCycleLR (learning rate only, no momentum cycling): up from base_lr/div_factor to base_lr, then down."""

    pct_start: float = 0.3  # fraction of the steps spent rising
    anneal_strategy: Literal["cos", "linear"] = "cos"
    div_factor: float = 25.0  # start at base_lr / div_factor
    final_div_factor: float = 1e4  # end at base_lr / div_factor / final_div_factor
    three_phase: bool = False  # rise, fall back to the start, then anneal to the end

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.pct_start <= 1:
            raise ValueError(f"pct_start must be in [0, 1], got {self.pct_start}")
        if self.anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {self.anneal_strategy!r}")
        if not self.div_factor > 0 or not self.final_div_factor > 0:
            raise ValueError(f"div_factor and final_div_factor must be > 0, got {self.div_factor}, {self.final_div_factor}")
        starts = [0.0] + [end for end, _, _ in self._phases()[:-1]]
        for (end, _, _), start in zip(self._phases(), starts):
            if end == start:
                raise ValueError(
                    f"pct_start={self.pct_start} with total_steps={self.total_steps} leaves a phase of zero steps"
                )

    def _phases(self) -> list[tuple[float, float, float]]:
        """(last step, rate at its start, rate at its end) of each phase, as torch builds them."""
        initial = self.base_lr / self.div_factor
        final = initial / self.final_div_factor
        rise_end = float(self.pct_start * self.total_steps) - 1
        if self.three_phase:
            return [
                (rise_end, initial, self.base_lr),
                (float(2 * self.pct_start * self.total_steps) - 2, self.base_lr, initial),
                (self.total_steps - 1, initial, final),
            ]
        return [(rise_end, initial, self.base_lr), (self.total_steps - 1, self.base_lr, final)]

    def lr(self, step: int) -> float:
        if step > self.total_steps:
            raise ValueError(f"one-cycle schedule asked for step {step}, past its total_steps={self.total_steps}")
        anneal = _cosine if self.anneal_strategy == "cos" else (lambda a, b, pct: a + (b - a) * pct)
        phases = self._phases()
        start = 0.0
        for i, (end, lr_start, lr_end) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                return anneal(lr_start, lr_end, (step - start) / (end - start))
            start = end
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Triangle(Schedule):
    """airbench's schedule: linear from ``start`` x base_lr up to base_lr at ``peak`` of the run, then
    linear down to ``end`` x base_lr at its last step."""

    start: float = 0.2
    peak: float = 0.23  # fraction of the steps spent rising
    end: float = 0.07

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.peak < 1:
            raise ValueError(f"peak must be in (0, 1), got {self.peak}")
        if self.start < 0 or self.end < 0:
            raise ValueError("start and end must be >= 0")

    def lr(self, step: int) -> float:
        top = int(self.peak * self.total_steps)
        factor = (self.start + (1 - self.start) * step / top if step < top
                  else 1 + (self.end - 1) * min(step - top, self.total_steps - top) / (self.total_steps - top))
        return self.base_lr * factor


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "step": Step,
    "cosine": Cosine,
    "warmup_cosine": WarmupCosine,
    "linear": Linear,
    "onecycle": OneCycle,
    "triangle": Triangle,
}

_REQUIRED = {"step": ("step_size",), "warmup_cosine": ("warmup_steps",)}


def make_schedule(name: str, base_lr: float, total_steps: int, **kwargs) -> Callable[[int], float]:
    """The schedule called ``name`` (see ``SCHEDULES``) as a function step -> learning rate."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    cls = SCHEDULES[name]
    options = [f.name for f in dataclasses.fields(cls)][2:]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ValueError(f"schedule {name!r} got unknown arguments {unknown}; it takes {options}")
    missing = [k for k in _REQUIRED.get(name, ()) if k not in kwargs]
    if missing:
        raise ValueError(f"schedule {name!r} needs {missing}")
    return cls(base_lr, total_steps, **kwargs)
