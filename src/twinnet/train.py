"""The one training loop: every experiment and both engines go through ``fit``.

``fit`` owns the loop's policies: the learning-rate schedule (a multiplier of each parameter
group's own base rate), evaluation cadence, keeping the best weights, early stopping (patience, a
target accuracy), checkpoint cadence and resuming, and divergence. The loss is read back from the
learner (a device, for CUDA) only when it is recorded, logged or checkpointed, never every step.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from tqdm.auto import tqdm

from twinnet import TwinnetError, distributed
from twinnet.config import BaseConfig
from twinnet.data.arrays import ArrayDataset
from twinnet.learner import Learner, evaluate


def _log_every_s() -> float:
    text = os.environ.get("TWINNET_LOG_EVERY_S", "15")
    try:
        value = float(text)
        if value >= 0:  # inf: never (nan is not >= 0)
            return value
    except ValueError:
        pass
    # read as this module is imported, before the command line formats warnings: said as it would say one
    print(f"twinnet: warning: TWINNET_LOG_EVERY_S={text!r} is not a number of seconds >= 0, so it is ignored (15 s)",
          file=sys.stderr)
    return 15.0


LOG_EVERY_S = _log_every_s()  # without a terminal, at most one progress line per this many seconds


class Diverged(TwinnetError, FloatingPointError):
    """A training or evaluation loss became NaN or infinite: training stops there.

    ``step``: the step whose loss was not finite; ``summary``: what the experiment records of the
    stopped run (set by the experiment, written to summary.json by the runner). With several ranks
    every rank raises it at the same step (``every_rank``): rank 0 alone reports it."""

    every_rank = True

    def __init__(self, message: str, step: int = 0, summary: dict | None = None) -> None:
        super().__init__(message)
        self.step, self.summary = step, summary

    def __reduce__(self):  # across processes (a sweep's workers) with its step and summary
        return type(self), (str(self), self.step, self.summary)


@dataclass(frozen=True)
class TrainConfig(BaseConfig):
    """How a model is trained: the optimiser, the schedule, the batches, and the loop's policies.

    Declared once; every experiment's config extends it (``train_config`` sets an experiment's own
    defaults), so ``--set lr=...`` means the same everywhere."""

    # muon: Muon for convolution filters at their own rate, Nesterov SGD for the rest (torch image runs;
    # twinnet.torch_nn.optim)
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop", "muon"] = "adam"
    # the optimisers this experiment's models can take (muon: the torch engine's image models alone)
    optimizers: ClassVar[tuple[str, ...]] = ("sgd", "adam", "adamw", "rmsprop")
    lr: float = 1e-3  # base (peak) learning rate; a schedule multiplies each parameter group's own
    momentum: float = 0.0  # SGD, RMSprop, and Muon's SGD groups
    nesterov: bool = False  # SGD with momentum only: Nesterov's form
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    clip_norm: float = 0.0  # clip the gradient's global norm at this (0: no clipping)
    schedule: Literal["constant", "step", "cosine", "warmup_cosine", "linear", "onecycle", "triangle"] = "constant"
    warmup_steps: int = 0  # warmup_cosine only
    batching: Literal["full", "mini", "sample"] = "mini"  # whole set, batch_size, or one sample per step
    batch_size: int = 32  # used when batching == "mini"
    epochs: int = 10  # passes over the training set (ignored when steps > 0)
    steps: int = 0  # total optimiser steps; 0 means epochs * steps per epoch
    eval_every: int = 1  # evaluate every this many eval_unit
    eval_unit: Literal["epoch", "step"] = "epoch"
    train_eval: Literal["full", "running"] = "full"  # train figures: re-evaluated, or mean of the steps since the last evaluation
    eval_start: bool = True  # evaluate before the first step too (the starting point of every curve)
    keep_best: bool = False  # end with the weights of the best evaluation (of the experiment's monitored accuracy)
    patience: int = 0  # stop after this many evaluations without a better monitored accuracy (0: never)
    stop_acc: float = 0.0  # stop once the monitored accuracy reaches this (0: never)
    checkpoint_every: int = 0  # steps between checkpoints (0: at the end of every epoch); always at the end
    # ... and at most one per this many seconds of training (0: no limit); one that came too soon is taken at the
    # first step after that time
    checkpoint_every_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.optimizer not in self.optimizers:
            raise ValueError(f"optimizer={self.optimizer} is not for this experiment; choose one of "
                             f"{', '.join(self.optimizers)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise ValueError("weight_decay and momentum must be >= 0")
        if self.optimizer in ("sgd", "rmsprop", "muon") and not self.momentum < 1:  # the velocity would never decay
            raise ValueError(f"momentum must be in [0, 1) for optimizer={self.optimizer}, got {self.momentum} "
                             "(0.9 is usual)")
        if self.nesterov and (self.optimizer not in ("sgd", "muon") or not self.momentum > 0):
            raise ValueError("nesterov needs optimizer=sgd (or muon) with momentum > 0")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.clip_norm < 0:
            raise ValueError(f"clip_norm must be >= 0, got {self.clip_norm}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule == "warmup_cosine" and self.steps and self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be below the run's steps={self.steps}")
        if self.batching == "mini" and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1 and self.steps < 1:
            raise ValueError("set epochs >= 1 or steps >= 1")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if not 0 <= self.stop_acc <= 1:
            raise ValueError(f"stop_acc must be in [0, 1], got {self.stop_acc}")
        if self.checkpoint_every < 0 or self.checkpoint_every_s < 0:
            raise ValueError("checkpoint_every and checkpoint_every_s must be >= 0")

    def batch_len(self, n: int) -> int:
        return {"full": n, "mini": min(self.batch_size, n), "sample": 1}[self.batching]

    def steps_per_epoch(self, n: int) -> int:
        return math.ceil(n / self.batch_len(n))

    def total_steps(self, n: int) -> int:
        return self.steps if self.steps > 0 else self.epochs * self.steps_per_epoch(n)

    def eval_interval(self, n: int) -> int:
        """Steps between two evaluations, on a training set of ``n`` samples."""
        return self.eval_every * (self.steps_per_epoch(n) if self.eval_unit == "epoch" else 1)

    def lr_factor(self, n: int) -> Callable[[int], float] | None:
        """The schedule as step -> multiplier of every group's base rate (None: constant)."""
        from twinnet.schedules import make_schedule

        if self.schedule == "constant":
            return None
        total = self.total_steps(n)
        if self.schedule == "warmup_cosine" and self.warmup_steps >= total:
            raise TwinnetError(f"warmup_steps={self.warmup_steps} must be below the run's {total:,} steps; lower it")
        extra = {"warmup_steps": self.warmup_steps} if self.schedule == "warmup_cosine" else {}
        extra.update({"step_size": max(1, total // 3)} if self.schedule == "step" else {})
        return make_schedule(self.schedule, 1.0, total, **extra)


def train_config(**defaults: Any) -> type:
    """``TrainConfig`` with an experiment's own defaults, to extend: ``class C(train_config(lr=0.1))``."""
    unknown = set(defaults) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"not fields of TrainConfig: {sorted(unknown)}")
    fields = [(f.name, f.type, dataclasses.field(default=defaults[f.name])) for f in dataclasses.fields(TrainConfig)
              if f.name in defaults]
    return dataclasses.make_dataclass("TrainConfig", fields, bases=(TrainConfig,), frozen=True,
                                      namespace={"__module__": __name__, "__doc__": TrainConfig.__doc__})


@dataclass
class History:
    """What a run measured: one record per evaluation, the loss of every step, and the best evaluation."""

    records: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    stopped_early: bool = False  # a policy (patience, stop_acc) ended the run before its last step
    best: dict | None = None  # {"step", "value", "weights"}: the best evaluation of the monitored accuracy

    @property
    def last(self) -> dict:
        return self.records[-1]


@dataclass
class LoopState:
    """Where ``fit`` stands at a checkpoint: enough, with the learner's state, to continue exactly."""

    step: int
    history: History
    running: tuple[float, int, int]  # loss sum, correct, samples since the last evaluation
    rng_state: dict  # the batch generator's bit-generator state: the next batches and augmentations (stored
    # samples: at the start of the epoch under way, whose first ``batches_into_epoch`` batches are drawn again)
    elapsed_s: float
    source_state: dict = field(default_factory=dict)  # the training data's own state (a curriculum's length)
    world_size: int = 1  # how many ranks trained (a checkpoint resumes under the same number)
    rank_random: list = field(default_factory=list)  # with several ranks: each rank's random_state(), in rank order
    batches_into_epoch: int = 0  # batches of the epoch under way already trained on (a checkpoint mid-epoch)


class BatchSource(Protocol):
    """Training data: ``ArrayDataset`` (batches by index) or a generator of fresh samples.

    A source may also declare state that changes as training goes (a curriculum): ``state()`` (a
    dict, recorded in every evaluation record and checkpoint), ``load_state(state)``, and
    ``update(record)``, called by ``fit`` after each evaluation."""

    def __len__(self) -> int:
        """Samples per epoch."""

    def batches(self, batch_len: int, shuffle: bool, rng: np.random.Generator, epoch: int = 0) -> Iterator[tuple]:
        """Endless (x, y) batches of ``batch_len`` samples, the first in epoch ``epoch`` (from 0: a resume
        passes the epoch it continues)."""


class Checkpoints(Protocol):
    """Where ``fit`` saves its state (``twinnet.checkpoint.Checkpointer``)."""

    def save(self, learner: Learner, state: LoopState) -> None: ...


def global_batch(settings: TrainConfig, n: int) -> TrainConfig:
    """The settings ``fit`` follows on a training set of ``n``: with several ranks, the global batch
    is every rank's batch together (each rank trains on its shard of it), and so are the steps."""
    size = distributed.world().size
    if size == 1 or settings.batching == "full":
        return settings
    return dataclasses.replace(settings, batching="mini", batch_size=settings.batch_len(n) * size)


def batch_indices(n: int, settings: TrainConfig, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The index batches an ``ArrayDataset`` of ``n`` samples yields under ``settings``."""
    indices = ArrayDataset(np.arange(n), np.arange(n))
    for idx, _ in indices.batches(settings.batch_len(n), settings.batching != "full", rng):
        yield idx


def fit(learner: Learner, train: BatchSource, test: ArrayDataset | None, settings: TrainConfig, **kwargs) -> History:
    """Train ``learner`` on ``train`` under ``settings``, evaluating at step 0 and every ``eval_every`` units.

    The batch order depends only on ``settings.seed``, so two learners see the same batches. Keywords:

    - ``val``: a validation set evaluated beside ``test`` (``val_loss``, ``val_acc``);
    - ``monitor``: the accuracy that keep-best, patience and ``stop_acc`` watch (``val_acc``, ``test_acc``);
    - ``on_eval(record)``: sees each evaluation record (to write it down);
    - ``checkpoints``: its ``save(learner, state)`` is called every ``checkpoint_every`` steps (0: each
      epoch; at most once per ``checkpoint_every_s``: one that came too soon is taken at the first step once
      that time has passed) and at the end;
    - ``resume``: such a state (the learner restored to the same moment), continued to the same
      result as an unbroken run;
    - ``on_epoch(epoch, learner)``: called after the last step of each epoch (1, 2, ...), before that
      step's evaluation and checkpoint (what it changes, they see); on resume it is not called again
      for the epochs before the checkpoint;
    - ``desc``, ``progress``: the progress bar's label; ``None`` shows a bar only on a terminal.

    A non-finite loss raises ``Diverged`` (its ``history``: the records so far; no checkpoint holds the
    diverged weights). With ``keep_best`` the learner ends holding the best evaluation's weights.
    """
    history = History()
    try:
        return _fit(learner, train, test, settings, history, **kwargs)
    except Diverged as e:
        e.history = history
        raise


def _fit(
    learner: Learner,
    train: BatchSource,
    test: ArrayDataset | None,
    settings: TrainConfig,
    history: History,
    *,
    val: ArrayDataset | None = None,
    monitor: Literal["val_acc", "test_acc"] = "test_acc",
    on_eval: Callable[[dict], None] | None = None,
    checkpoints: Checkpoints | None = None,
    resume: LoopState | None = None,
    on_epoch: Callable[[int, Learner], None] | None = None,
    desc: str = "train",
    progress: bool | None = None,
) -> History:
    n = len(train)
    world = distributed.world()
    settings = global_batch(settings, n)
    total = settings.total_steps(n)
    per_epoch = settings.steps_per_epoch(n)
    unit = settings.eval_interval(n)
    checkpoint_unit = settings.checkpoint_every or per_epoch
    lr_factor = settings.lr_factor(n)
    track_best = settings.keep_best or settings.patience > 0
    if (track_best or settings.stop_acc) and (val if monitor == "val_acc" else test) is None:
        raise TwinnetError(f"keep_best, patience and stop_acc watch {monitor}, but there is no "
                           f"{'validation' if monitor == 'val_acc' else 'test'} set")
    adaptive = hasattr(train, "update")  # a source with its own state (a curriculum)
    rng = np.random.default_rng(settings.seed)
    first = 1
    running_loss, running_correct, running_seen = 0.0, 0, 0
    pending: list[tuple[Any, Any, int, int]] = []  # (loss, correct, samples, step) not yet read back
    start = time.perf_counter()
    if resume is not None:
        rng.bit_generator.state = resume.rng_state
        vars(history).update(vars(resume.history))
        first = resume.step + 1
        running_loss, running_correct, running_seen = resume.running
        start -= resume.elapsed_s
        if adaptive:
            train.load_state(resume.source_state)
        if world.size > 1:  # each rank's own dropout stream, where it was
            learner.load_random_state(resume.rank_random[world.rank])
        if history.stopped_early:
            first = total + 1
    # stored samples are shuffled once per epoch: a checkpoint mid-epoch keeps the epoch's starting state
    # and its position, and a resume draws the epoch's first batches again (augmentations too) to get there
    replay = hasattr(train, "view")
    epoch_state = copy.deepcopy(rng.bit_generator.state)
    batches = train.batches(settings.batch_len(n), settings.batching != "full", rng, epoch=(first - 1) // per_epoch)
    if resume is not None and replay:
        for _ in range(resume.batches_into_epoch):
            next(batches)
    bar = tqdm(total=total, initial=first - 1, desc=desc, unit="step", leave=False,
               disable=None if progress is None else not progress)

    def sync() -> None:
        """Read the pending losses back from the learner; a non-finite one ends the run. With several
        ranks, each step's figures are those of the whole global batch (every rank syncs at the same steps)."""
        nonlocal running_loss, running_correct, running_seen
        if world.size > 1 and pending:
            sums = distributed.all_sum([[float(loss) * count, int(correct), count] for loss, correct, count, _ in
                                        pending])
            pending[:] = [(s / c, k, int(c), step) for (s, k, c), (_, _, _, step) in zip(sums, pending)]
        for loss, correct, count, step in pending:
            loss = float(loss)
            if not math.isfinite(loss):
                bar.close()
                raise Diverged(f"the training loss became {loss} at step {step}; lower the learning rate", step)
            history.step_losses.append(loss)
            running_loss += loss * count
            running_correct += int(correct)
            running_seen += count
        pending.clear()

    def measure(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(loss, accuracy) on a whole set; with several ranks, each evaluates its shard of it."""
        if world.size == 1:
            return evaluate(learner, x, y)
        part = distributed.shard(len(y), world)
        count = part.stop - part.start
        loss, acc = evaluate(learner, x[part], y[part]) if count else (0.0, 0.0)
        loss_sum, correct, seen = distributed.all_sum([loss * count, acc * count, count])
        return float(loss_sum / seen), float(correct / seen)

    eval_s = resume.history.records[-1].get("eval_s", 0.0) if resume is not None and resume.history.records else 0.0

    def record(step: int) -> None:
        nonlocal running_loss, running_correct, running_seen, eval_s
        sync()
        began = time.perf_counter()
        if world.size > 1:
            learner.synchronize()  # the ranks' batch-norm statistics averaged: one model to evaluate
        rec: dict = {"step": step, "epoch": step / per_epoch, "lr": learner.lr}
        viewable = hasattr(train, "view")  # stored samples (ArrayDataset, ImageSource), not drawn afresh
        if settings.train_eval == "full" and viewable:
            rec["train_loss"], rec["train_acc"] = measure(*train.view(np.arange(len(train))))
        elif step == 0 and viewable:
            # no steps to average yet: an evenly spread sample of the training set (as large as the test set)
            # stands in; evenly spread, because a stored set may be sorted by class
            k = min(len(train), len(test) if test is not None else 10_000)
            idx = np.linspace(0, len(train) - 1, k).astype(np.int64)
            rec["train_loss"], rec["train_acc"] = measure(*train.view(idx))
        else:
            rec["train_loss"] = running_loss / max(running_seen, 1)
            rec["train_acc"] = running_correct / max(running_seen, 1)
        if val is not None:
            rec["val_loss"], rec["val_acc"] = measure(val.x, val.y)
        if test is not None:
            rec["test_loss"], rec["test_acc"] = measure(test.x, test.y)
        for key in ("val_loss", "test_loss"):
            if key in rec and not math.isfinite(rec[key]):
                bar.close()
                raise Diverged(f"the {key.split('_')[0]} loss became {rec[key]} at step {step}; lower the learning "
                               "rate", step)
        rec["time_s"] = time.perf_counter() - start
        eval_s += rec["time_s"] - (began - start)
        rec["eval_s"] = eval_s  # of time_s, the seconds spent evaluating (so far): time_s - eval_s trained
        if adaptive:
            rec.update(train.state())  # the data the running train figures were drawn from
        running_loss, running_correct, running_seen = 0.0, 0, 0
        history.records.append(rec)
        if track_best and (history.best is None or rec[monitor] > history.best["value"]):
            history.best = {"step": step, "value": rec[monitor], "weights": learner.state_dict()}
        if on_eval is not None:
            on_eval(rec)
        if adaptive and step > 0:
            train.update(rec)

    def due(mine: bool) -> bool:
        """A decision of this rank's clock; with several ranks, rank 0's (their clocks differ)."""
        return distributed.agree(mine) if world.size > 1 else mine

    def should_stop(step: int) -> bool:  # asked after each evaluation but step 0's and the last
        last = history.last
        if settings.stop_acc and last[monitor] >= settings.stop_acc:
            return True
        return bool(settings.patience) and step - history.best["step"] >= settings.patience * unit

    if resume is None:
        if lr_factor is not None:
            learner.scale_lr(lr_factor(0))  # step 0's record shows the rate the first step will use
        if settings.eval_start:
            with np.errstate(all="ignore"):  # a non-finite loss is caught and reported as one line
                record(0)
    last_log = last_save = last_start = time.perf_counter()
    owed = False  # a checkpoint due by the steps, not yet by the clock
    for step in range(first, total + 1):
        if lr_factor is not None:
            learner.scale_lr(lr_factor(step - 1))
        if replay and (step - 1) % per_epoch == 0:
            epoch_state = copy.deepcopy(rng.bit_generator.state)
        x, y = next(batches)
        with np.errstate(all="ignore"):
            if world.size > 1:
                part = distributed.shard(len(y), world)
                loss, correct = learner.train_step(x[part], y[part], total=len(y))
                y = y[part]
            else:
                loss, correct = learner.train_step(x, y)
        pending.append((loss, correct, len(y), step))
        if on_epoch is not None and step % per_epoch == 0:
            on_epoch(step // per_epoch, learner)
        bar.update()
        now = time.perf_counter()
        # no terminal (a log file): a line now and then instead of a bar. With several ranks, rank 0's clock
        # decides (every 10 steps, a one-number collective), since reading the losses back is collective
        log_due = bar.disable and progress is None and now - last_log >= LOG_EVERY_S
        if world.size > 1:
            log_due = step % 10 == 0 and distributed.agree(log_due)
        if log_due:
            sync()
            last_log = now
            if world.rank == 0:
                print(_log_line(desc, step, total, running_loss / max(running_seen, 1),
                                running_correct / max(running_seen, 1),
                                history.records[-1] if history.records else {}, now - start,
                                (now - last_start) / (step - first + 1) * (total - step)), file=sys.stderr,
                      flush=True)
        if step % unit == 0 or step == total:
            with np.errstate(all="ignore"):
                record(step)
            if not bar.disable and history.step_losses:
                bar.set_postfix(loss=f"{history.step_losses[-1]:.4f}",
                                test_acc=f"{history.last.get('test_acc', float('nan')):.3f}")
            if step < total and should_stop(step):
                history.stopped_early = True
        end = step == total or history.stopped_early
        # every checkpoint_unit steps, but at most one per checkpoint_every_s: one that came too soon is owed, and
        # taken at the first step after that time has passed (a starved process still saves about that often)
        owed = owed or step % checkpoint_unit == 0
        asked = owed and (world.size == 1 or step % 10 == 0 or step % checkpoint_unit == 0)  # ranks ask together
        if checkpoints is not None and (end or (asked and due(now - last_save >= settings.checkpoint_every_s))):
            owed = False
            sync()  # a diverged run raises here: no checkpoint holds its weights
            streams = []
            if world.size > 1:
                learner.synchronize()
                streams = distributed.gather(learner.random_state())
            # else the last step made them NaN: the next loss says so. Rank 0 alone writes (all hold the same state)
            into = step % per_epoch if replay else 0
            if world.rank == 0 and _finite(learner.state_dict()):
                checkpoints.save(learner, LoopState(step, history, (running_loss, running_correct, running_seen),
                                                    epoch_state if into else rng.bit_generator.state,
                                                    time.perf_counter() - start, train.state() if adaptive else {},
                                                    world.size, streams, into))
            last_save = time.perf_counter()
        if history.stopped_early:
            break

    sync()
    if world.size > 1:
        learner.synchronize()
    bar.close()
    best = history.best
    if settings.keep_best and best is not None and best["step"] != history.last["step"]:
        learner.load_weights(best["weights"])
    return history


def _finite(state: dict) -> bool:
    """Whether every floating-point array of a state dict is finite."""
    return all(np.isfinite(a).all() for a in state.values() if np.issubdtype(np.asarray(a).dtype, np.floating))


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
