"""The one training loop: every experiment and both engines go through ``fit``."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from tqdm.auto import tqdm

from twinnet import TwinnetError
from twinnet.data.arrays import ArrayDataset
from twinnet.learner import Learner, evaluate


def _log_every_s() -> float:
    try:
        return float(os.environ.get("TWINNET_LOG_EVERY_S", "15"))
    except ValueError:
        return 15.0


LOG_EVERY_S = _log_every_s()  # without a terminal, at most one progress line per this many seconds


class Diverged(TwinnetError, FloatingPointError):
    """A training or evaluation loss became NaN or infinite: training stops there.

    ``step``: the step whose loss was not finite; ``summary``: what the experiment records of the
    stopped run (set by the experiment, written to summary.json by the runner)."""

    def __init__(self, message: str, step: int = 0, summary: dict | None = None) -> None:
        super().__init__(message)
        self.step, self.summary = step, summary

    def __reduce__(self):  # across processes (a sweep's workers) with its step and summary
        return type(self), (str(self), self.step, self.summary)


@dataclass(frozen=True)
class LoopSettings:
    """How batches are drawn and how often the model is evaluated."""

    batching: Literal["full", "mini", "sample"] = "mini"  # whole set, batch_size, or one sample per step
    batch_size: int = 32  # used when batching == "mini"
    epochs: int = 10  # passes over the training set (ignored when steps > 0)
    steps: int = 0  # total optimiser steps; 0 means epochs * steps per epoch
    eval_every: int = 1  # evaluate every this many eval_unit
    eval_unit: Literal["epoch", "step"] = "epoch"
    train_eval: Literal["full", "running"] = "full"  # train figures: re-evaluated, or mean of the steps since the last evaluation
    checkpoint_every: int = 0  # steps between calls of on_checkpoint (0: at the end of every epoch)

    def __post_init__(self) -> None:
        if self.batching == "mini" and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1 and self.steps < 1:
            raise ValueError("set epochs >= 1 or steps >= 1")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")

    def batch_len(self, n: int) -> int:
        return {"full": n, "mini": min(self.batch_size, n), "sample": 1}[self.batching]

    def steps_per_epoch(self, n: int) -> int:
        return math.ceil(n / self.batch_len(n))

    def total_steps(self, n: int) -> int:
        return self.steps if self.steps > 0 else self.epochs * self.steps_per_epoch(n)


@dataclass
class History:
    """What a run measured: one record per evaluation, and the loss of every step."""

    records: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    stopped_early: bool = False  # ``stop`` ended the run before its last step

    @property
    def last(self) -> dict:
        return self.records[-1]


@dataclass
class LoopState:
    """Where ``fit`` stands at the end of an epoch: enough, with the learner's state, to continue exactly."""

    step: int
    history: History
    running: tuple[float, int, int]  # loss sum, correct, samples since the last evaluation
    rng_state: dict  # the batch generator's bit-generator state: the next epoch's order and augmentations
    elapsed_s: float


class BatchSource(Protocol):
    """Training data: ``ArrayDataset`` (batches by index) or a generator of fresh samples."""

    def __len__(self) -> int:
        """Samples per epoch."""

    def batches(self, batch_len: int, shuffle: bool, rng: np.random.Generator) -> Iterator[tuple]:
        """Endless (x, y) batches of ``batch_len`` samples."""


def batch_indices(n: int, settings: LoopSettings, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The index batches an ``ArrayDataset`` of ``n`` samples yields under ``settings``."""
    indices = ArrayDataset(np.arange(n), np.arange(n))
    for idx, _ in indices.batches(settings.batch_len(n), settings.batching != "full", rng):
        yield idx


def fit(
    learner: Learner,
    train: BatchSource,
    test: ArrayDataset | None,
    settings: LoopSettings,
    *,
    seed: int = 0,
    lr_at: Callable[[int], float] | None = None,
    on_eval: Callable[[dict], None] | None = None,
    desc: str = "train",
    progress: bool | None = None,
    val: ArrayDataset | None = None,
    stop: Callable[[History], bool] | None = None,
    on_checkpoint: Callable[[LoopState], None] | None = None,
    resume: LoopState | None = None,
) -> History:
    """Train ``learner`` on ``train``, evaluating on both sets at step 0 and every ``eval_every`` units.

    ``train`` is an ``ArrayDataset`` or any ``BatchSource`` (e.g. samples drawn afresh per batch,
    evaluated with ``train_eval="running"``). The batch order depends only on ``seed``, so two learners given the same seed see
    the same batches. ``lr_at(step)`` sets the learning rate before each step.
    ``progress=None`` shows a bar only on a terminal.

    ``val``: a validation set, evaluated beside ``test`` (``val_loss``, ``val_acc``). ``stop(history)``,
    asked after each evaluation, ends training early when it returns True. ``on_checkpoint(state)`` is
    called at the end of every epoch (or every ``settings.checkpoint_every`` steps) and at the last
    step; ``fit(..., resume=state)`` continues from such a state (with the learner restored to the
    same moment) to the same result as an unbroken run.
    """
    n = len(train)
    total = settings.total_steps(n)
    per_epoch = settings.steps_per_epoch(n)
    unit = settings.eval_every * (per_epoch if settings.eval_unit == "epoch" else 1)
    checkpoint_unit = settings.checkpoint_every or per_epoch
    rng = np.random.default_rng(seed)
    history, first = History(), 1
    running_loss, running_correct, running_seen = 0.0, 0, 0
    start = time.perf_counter()
    if resume is not None:
        rng.bit_generator.state = resume.rng_state
        history, first = resume.history, resume.step + 1
        running_loss, running_correct, running_seen = resume.running
        start -= resume.elapsed_s
        if history.stopped_early:
            first = total + 1
    batches = train.batches(settings.batch_len(n), settings.batching != "full", rng)

    def record(step: int) -> None:
        nonlocal running_loss, running_correct, running_seen
        rec: dict = {"step": step, "epoch": step / per_epoch, "lr": learner.lr}
        viewable = hasattr(train, "view")  # stored samples (ArrayDataset, ImageSource), not drawn afresh
        if settings.train_eval == "full" and viewable:
            rec["train_loss"], rec["train_acc"] = evaluate(learner, *train.view(np.arange(len(train))))
        elif step == 0 and viewable:
            # no steps to average yet: an evenly spread sample of the training set (as large as the test set)
            # stands in; evenly spread, because a stored set may be sorted by class
            k = min(len(train), len(test) if test is not None else 10_000)
            idx = np.linspace(0, len(train) - 1, k).astype(np.int64)
            rec["train_loss"], rec["train_acc"] = evaluate(learner, *train.view(idx))
        else:
            rec["train_loss"] = running_loss / max(running_seen, 1)
            rec["train_acc"] = running_correct / max(running_seen, 1)
        if val is not None:
            rec["val_loss"], rec["val_acc"] = evaluate(learner, val.x, val.y)
        if test is not None:
            rec["test_loss"], rec["test_acc"] = evaluate(learner, test.x, test.y)
        for key in ("val_loss", "test_loss"):
            if key in rec and not math.isfinite(rec[key]):
                bar.close()
                raise Diverged(f"the {key.split('_')[0]} loss became {rec[key]} at step {step}; lower the learning "
                               "rate", step)
        rec["time_s"] = time.perf_counter() - start
        running_loss, running_correct, running_seen = 0.0, 0, 0
        history.records.append(rec)
        if on_eval is not None:
            on_eval(rec)

    bar = tqdm(total=total, initial=first - 1, desc=desc, unit="step", leave=False,
               disable=None if progress is None else not progress)
    if resume is None:
        if lr_at is not None:
            learner.set_lr(lr_at(0))  # step 0's record shows the rate the first step will use
        with np.errstate(all="ignore"):  # a non-finite loss is caught and reported as one line
            record(0)
    last_log = last_start = time.perf_counter()
    for step in range(first, total + 1):
        if lr_at is not None:
            learner.set_lr(lr_at(step - 1))
        x, y = next(batches)
        with np.errstate(all="ignore"):
            loss, correct = learner.train_step(x, y)
        if not math.isfinite(loss):
            bar.close()
            raise Diverged(f"the training loss became {loss} at step {step}; lower the learning rate", step)
        history.step_losses.append(loss)
        running_loss += loss * len(y)
        running_correct += correct
        running_seen += len(y)
        bar.update()
        now = time.perf_counter()
        if bar.disable and progress is None and now - last_log >= LOG_EVERY_S:
            # no terminal (a log file): a line now and then instead of a bar
            last_log = now
            print(_log_line(desc, step, total, running_loss / running_seen, running_correct / running_seen,
                            history.last, now - start, (now - last_start) / (step - first + 1) * (total - step)),
                  file=sys.stderr, flush=True)
        if step % unit == 0 or step == total:
            with np.errstate(all="ignore"):
                record(step)
            bar.set_postfix(loss=f"{loss:.4f}", test_acc=f"{history.last.get('test_acc', float('nan')):.3f}")
            if stop is not None and step < total and stop(history):
                history.stopped_early = True
        if on_checkpoint is not None and (step % checkpoint_unit == 0 or step == total or history.stopped_early):
            on_checkpoint(LoopState(step, history, (running_loss, running_correct, running_seen),
                                    rng.bit_generator.state, time.perf_counter() - start))
        if history.stopped_early:
            break

    bar.close()
    return history


def _log_line(desc: str, step: int, total: int, loss: float, acc: float, last: dict, elapsed: float,
              eta: float) -> str:
    """A progress line for a log file: the running train figures since the last evaluation, and the
    last evaluation's test accuracy with its age (it may be many minutes old)."""
    line = f"{desc}: step {step}/{total} loss={loss:.4f} acc={acc:.4f} (running)"
    if "test_acc" in last:
        line += f" test_acc={last['test_acc']:.4f} (step {last['step']}, {_age(elapsed - last['time_s'])} ago)"
    return line + f" elapsed={elapsed:.0f}s eta={eta:.0f}s"


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
