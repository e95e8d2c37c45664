"""The palindrome task behind palindrome, palindrome-sweep and rnn-gradients: the recurrent twins,
the recipe that trains them, and one training run.

The course's recipe is the default: vanilla RNN, RMSprop lr 1e-3, batch 128, 128 hidden units,
gradient norm clipped at 10, 10,000 steps, one-hot digits, fresh samples for every batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twinnet import hardware, trace
from twinnet.config import check_unique
from twinnet.data.palindrome import Curriculum, PalindromeDataset, input_size
from twinnet.learner import evaluate, make_learner
from twinnet.structure import count_parameters, save_structures
from twinnet.train import Diverged, fit, train_config
from twinnet.twins import DTYPES, build_twins

MODELS = ("rnn", "lstm", "gru", "irnn")
MODEL_NAMES = {"rnn": "vanilla RNN", "lstm": "LSTM", "gru": "GRU", "irnn": "IRNN (ReLU, W_hh = I)"}
CLASSES = {"rnn": "VanillaRNN", "lstm": "LSTM", "gru": "GRU", "irnn": "IRNN"}  # in either engine's nn namespace


def check_grid(models, lengths) -> None:
    """Validate the models and lengths of a grid of runs (sweeps, gradient measurements)."""
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models must be a non-empty list from {', '.join(MODELS)}; got {unknown}")
    if not lengths or min(lengths) < 2:
        raise ValueError(f"lengths must be a non-empty list of integers >= 2, got {list(lengths)}")
    check_unique("models", models)
    check_unique("lengths", lengths)


@dataclass(frozen=True)
class Recipe(train_config(optimizer="rmsprop", lr=1e-3, batch_size=128, steps=10_000, clip_norm=10.0,
                          eval_every=250, eval_unit="step", train_eval="running", checkpoint_every=100,
                          checkpoint_every_s=60.0)):
    """How one recurrent model is trained; shared by palindrome, palindrome-sweep and rnn-gradients.
    Checkpoints: at the first multiple of 100 steps after each minute of training."""

    encoding: Literal["onehot", "scalar"] = "onehot"  # digits as 10 one-hot inputs or 1 scalar 0..9
    hidden: int = 128  # hidden units H
    engine: Literal["numpy", "torch"] = "numpy"  # the faster here, by 1.2-1.9x (bench/rnn_step.py)
    dtype: Literal["float32", "float64"] = "float32"
    hh_init: Literal["uniform", "orthogonal", "identity"] = "uniform"  # vanilla RNN's W_hh only
    hh_gain: float = 1.0  # scale of the orthogonal or identity W_hh
    curriculum: bool = False  # train on short palindromes first, lengthening as they are learnt
    curriculum_start: int = 5  # first training length
    curriculum_step: int = 5  # lengthen by this much ...
    curriculum_threshold: float = 0.99  # ... once the running train accuracy since the last evaluation reaches this
    eval_size: int = 2000  # samples in the fixed eval set (curves, keep_best, stop_acc: the "test" figures of fit)
    final_size: int = 10_000  # fresh samples for the final accuracy, never used for a decision

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = {"hidden": self.hidden, "eval_size": self.eval_size, "final_size": self.final_size,
                    "curriculum_step": self.curriculum_step}
        bad = [f"{k}={v}" for k, v in positive.items() if v < 1]
        if bad:
            raise ValueError(f"must be >= 1: {', '.join(bad)}")
        if not self.hh_gain > 0:
            raise ValueError("hh_gain must be > 0")
        # the largest model's (an LSTM's four gates) weights in both engines, with gradients and two moments each
        weights = 4 * self.hidden * (10 + self.hidden + 1) + 10 * (self.hidden + 1)
        hardware.check_fits(2 * 4 * weights * (8 if self.dtype == "float64" else 4), f"hidden={self.hidden}")
        if self.curriculum_start < 2:
            raise ValueError(f"curriculum_start must be >= 2, got {self.curriculum_start}")
        if not 0 < self.curriculum_threshold <= 1:
            raise ValueError("curriculum_threshold must be in (0, 1]")

    def check_length_fits(self, length: int) -> None:
        """Refuse a palindrome length whose training cannot fit in this machine's memory, from a lower estimate:
        the fixed evaluation set's inputs, the final evaluation's fresh samples (built while the first is held) and
        one batch's hidden states through time (what backpropagation through time keeps), each over the T - 1
        steps."""
        itemsize = 8 if self.dtype == "float64" else 4
        per_step = (self.eval_size + self.final_size) * input_size(self.encoding) + self.batch_size * self.hidden
        hardware.check_fits(itemsize * (length - 1) * per_step, f"length={length} (with batch_size={self.batch_size}, "
                            f"hidden={self.hidden}, eval_size={self.eval_size} and final_size={self.final_size})")


@dataclass(frozen=True)
class PalindromeConfig(Recipe):
    resumable = True  # a checkpoint every minute or so; `twinnet run --resume RUN_DIR` continues there
    resume_may_change = frozenset({"checkpoint_every", "checkpoint_every_s"})

    model: Literal["rnn", "lstm", "gru", "irnn"] = "rnn"  # irnn is not the course's RNN (ReLU, W_hh = I)
    length: int = 5  # palindrome length T: T-1 input digits, the label is the last (= the first)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.length < 2:
            raise ValueError(f"length must be >= 2, got {self.length}")
        self.check_length_fits(self.length)
        if self.model != "rnn" and (self.hh_init != "uniform" or self.hh_gain != 1.0):
            raise ValueError("hh_init and hh_gain apply to model=rnn only")


# Our best settings (the course's equations unchanged): W_hh orthogonal (vanilla RNN only), a gentler
# learning rate, a curriculum over T checked every 100 steps, and the weights of the best evaluation,
# stopping once the eval set at the full length is all correct. In short exploratory runs (numpy,
# T = 60, seeds 0-7) the vanilla RNN reached >= 99.9% with these every time, within 1,000 steps.
BEST = {"hh_init": "orthogonal", "lr": 3e-4, "curriculum": True, "eval_every": 100, "keep_best": True, "stop_acc": 1.0}
RNN_ONLY = {"hh_init": "uniform", "hh_gain": 1.0}  # W_hh's settings as every model but the vanilla RNN must have them


def best_for(asked: Mapping[str, Any]) -> dict:
    """Our best settings for the model asked for (``palindrome-best --set model=gru``): W_hh's init the RNN's only."""
    return BEST if asked.get("model", "rnn") == "rnn" else {**BEST, **RNN_ONLY}


def job_values(recipe: Recipe, model: str, length: int) -> dict:
    """The settings of one (model, length) of a grid: the recipe's, W_hh's reaching the vanilla RNN only."""
    values = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(Recipe)}
    if model != "rnn":
        values.update(RNN_ONLY)
    return {**values, "model": model, "length": length}


def job_config(recipe: Recipe, model: str, length: int, seed: int, **changes) -> PalindromeConfig:
    """A PalindromeConfig for one (model, length, seed) of a grid."""
    return PalindromeConfig(**{**job_values(recipe, model, length), **changes, "seed": seed})


def build_models(cfg: PalindromeConfig) -> dict:
    """The model in both engines from the same initial weights (drawn by torch, seeded by cfg.seed)."""
    kwargs = {"hh_init": cfg.hh_init, "hh_gain": cfg.hh_gain} if cfg.model == "rnn" else {}
    return build_twins(lambda nn: getattr(nn, CLASSES[cfg.model])(input_size(cfg.encoding), cfg.hidden, 10, **kwargs),
                       cfg.dtype, cfg.seed)


def save_model_structure(run_dir, cfg: PalindromeConfig) -> list[dict]:
    """Both engines' structure tables into structure.json; returns the parameters (name, shape, count)."""
    models = build_models(cfg)
    steps_in = (cfg.length - 1, input_size(cfg.encoding))
    label = f"{MODEL_NAMES[cfg.model]}, T={cfg.length}"
    save_structures(run_dir, label, models, steps_in, min(cfg.batch_size, 256))
    kwargs = {"hh_init": cfg.hh_init, "hh_gain": cfg.hh_gain} if cfg.model == "rnn" else {}
    sample = PalindromeDataset(cfg.length, cfg.encoding, seed=cfg.seed, dtype=DTYPES[cfg.dtype])
    x, y = next(sample.batches(min(cfg.batch_size, trace.MAX_BATCH)))  # its own stream, not training's
    trace.save_trace(run_dir, label, lambda nn: getattr(nn, CLASSES[cfg.model])(input_size(cfg.encoding), cfg.hidden,
                                                                                 10, **kwargs), x, y)
    return [{"name": n, "shape": list(p.shape), "count": int(np.prod(p.shape))}
            for n, p in models["numpy"].named_parameters()]


def train_one(cfg: PalindromeConfig, on_eval=None, progress: bool | None = None, checkpoints=None, on_restore=None):
    """Train one model; returns (result, learner, evaluation records, every step's training loss).
    ``on_eval(rec)`` sees each record.

    ``checkpoints``: a ``twinnet.checkpoint.Checkpointer``; the run continues from its checkpoint,
    if there is one, to the result an unbroken run gives (``on_restore(state)`` is told first)."""
    models = build_models(cfg)
    learner = make_learner(models[cfg.engine], cfg, blas_threads=1)  # one BLAS thread: small products
    curriculum = Curriculum(cfg.curriculum_start, cfg.curriculum_step, cfg.curriculum_threshold) \
        if cfg.curriculum else None
    data = PalindromeDataset(cfg.length, cfg.encoding, seed=cfg.seed, dtype=DTYPES[cfg.dtype], curriculum=curriculum)
    eval_set = data.eval_set(cfg.eval_size, seed=cfg.seed)
    resume = checkpoints.restore(learner) if checkpoints is not None else None
    if resume is not None and on_restore is not None:
        on_restore(resume)
    records = list(resume.history.records) if resume is not None else []

    def record(rec: dict) -> None:
        records.append(rec)
        if on_eval is not None:
            on_eval(rec)

    outcome, history, start, diverged_at = "completed", None, time.perf_counter(), None
    step_losses: list[float] = []
    try:
        history = fit(learner, data, eval_set, cfg, monitor="test_acc", on_eval=record, checkpoints=checkpoints,
                      resume=resume, desc=f"{cfg.model} T={cfg.length}", progress=progress)
        step_losses = history.step_losses
        if history.stopped_early:
            outcome = "stopped early"
    except Diverged as e:  # a result like any other: the sweep goes on, the figures say so
        outcome, best, step_losses, diverged_at = "diverged", e.history.best, e.history.step_losses, e.step
        if cfg.keep_best and best is not None:
            learner.load_weights(best["weights"])
    train_s = time.perf_counter() - start + (resume.elapsed_s if resume is not None else 0.0)
    if history is not None:
        best = history.best
    # the headline accuracy comes from samples no decision (stopping, curriculum) has looked at
    final = data.eval_set(cfg.final_size, cfg.seed, stream=1)
    final_loss, final_acc = evaluate(learner, final.x, final.y)
    result = {
        "model": cfg.model, "length": cfg.length, "seed": cfg.seed, "engine": cfg.engine,
        "test_acc": final_acc, "test_loss": final_loss if np.isfinite(final_loss) else None,
        "best_eval_acc": max((r["test_acc"] for r in records), default=float("nan")),
        "steps_done": records[-1]["step"] if records else 0, "outcome": outcome, "train_time_s": round(train_s, 3),
        "eval_time_s": round(records[-1].get("eval_s", 0.0), 6) if records else 0.0,  # of which evaluating
        "weights_from_step": best["step"] if cfg.keep_best and best is not None else
        (records[-1]["step"] if records else 0),
        "params": count_parameters(models["numpy"]),
        "resumed_from_step": None if resume is None else resume.step,  # continued from a checkpoint there
    }
    if diverged_at is not None:  # the step whose loss was not finite
        result["diverged_at_step"] = diverged_at
    return result, learner, records, step_losses
