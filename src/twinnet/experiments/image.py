"""Image classification in either engine: one runner behind the mnist, CIFAR-10 and ablation presets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from twinnet import TwinnetError
from twinnet.architectures import MODELS, nn_namespace
from twinnet.config import BaseConfig
from twinnet.data.arrays import ArrayDataset, Split
from twinnet.data.augment import normalize
from twinnet.experiments.common import DTYPES, save_structures, seed_everything
from twinnet.learner import NumpyLearner, TorchLearner
from twinnet.report import plots
from twinnet.report.build import markdown_table
from twinnet.runs import RunDir
from twinnet.schedules import SCHEDULES, make_schedule
from twinnet.train import LoopSettings, fit

OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}


@dataclass(frozen=True)
class ImageConfig(BaseConfig):
    dataset: Literal["mnist", "fashion-mnist", "cifar10"] = "mnist"
    verify: bool = True  # check the data files against the official checksums
    model: str = "mnist-cnn"  # a name from `twinnet summary`
    engine: Literal["numpy", "torch"] = "numpy"
    dtype: Literal["float32", "float64"] = "float32"
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: float = 1e-3  # peak learning rate
    momentum: float = 0.9  # SGD and RMSprop only
    weight_decay: float = 0.0
    schedule: Literal["constant", "step", "cosine", "warmup_cosine", "linear", "onecycle"] = "onecycle"
    warmup_steps: int = 0  # warmup_cosine only
    label_smoothing: float = 0.0
    batch_size: int = 128
    epochs: int = 4
    steps: int = 0  # if > 0, train this many steps instead of `epochs`
    eval_every: int = 1
    eval_unit: Literal["epoch", "step"] = "epoch"
    train_subset: int = 0  # train on this many samples (0: all), for quick runs
    test_subset: int = 0  # evaluate on this many test samples (0: all)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(sorted(MODELS))}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise ValueError("weight_decay and momentum must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.train_subset < 0 or self.test_subset < 0:
            raise ValueError("train_subset and test_subset must be >= 0")
        self.loop()

    def loop(self) -> LoopSettings:
        return LoopSettings(batching="mini", batch_size=self.batch_size, epochs=self.epochs, steps=self.steps,
                            eval_every=self.eval_every, eval_unit=self.eval_unit, train_eval="running")


def load_images(cfg: ImageConfig) -> tuple[Split, str]:
    """The dataset as float arrays, normalised per channel by the training split's statistics, and its source."""
    from twinnet.data import cifar, mnist

    loader = {"mnist": mnist.load_mnist, "fashion-mnist": mnist.load_fashion_mnist, "cifar10": cifar.load_cifar10}
    split = loader[cfg.dataset](verify=cfg.verify)
    source = getattr(split, "source", "") + (" — LOSSY: figures are not comparable to lossless CIFAR-10 results"
                                             if getattr(split, "lossy", False) else "")
    rng = np.random.default_rng(cfg.seed)

    def subset(ds: ArrayDataset, n: int) -> ArrayDataset:
        if not n or n >= len(ds):
            return ds
        idx = np.sort(rng.choice(len(ds), n, replace=False))
        return ArrayDataset(ds.x[idx], ds.y[idx])

    train, test = subset(split.train, cfg.train_subset), subset(split.test, cfg.test_subset)
    axes = (0, 2, 3)  # statistics per channel, over images and pixels
    mean = tuple(split.train.x.mean(axis=axes) / 255)
    std = tuple(split.train.x.std(axis=axes) / 255)
    norm = lambda x: normalize(x, mean, std, DTYPES[cfg.dtype])  # noqa: E731
    return Split(ArrayDataset(norm(train.x), train.y), ArrayDataset(norm(test.x), test.y), split.classes), source


def make_learner(cfg: ImageConfig, model, engine: str):
    """Model, optimiser and loss of one engine, with the same hyperparameters in either."""
    name = OPTIMIZERS[cfg.optimizer]
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer in ("sgd", "rmsprop"):
        kwargs["momentum"] = cfg.momentum
    if engine == "numpy":
        from twinnet import numpy_nn

        opt = getattr(numpy_nn, name)(model.parameters(), **kwargs)
        return NumpyLearner(model, opt, numpy_nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))
    import torch

    opt = getattr(torch.optim, name)(model.parameters(), **kwargs)
    return TorchLearner(model, opt, torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))


def run(cfg: ImageConfig, run_dir: RunDir) -> dict:
    t0 = time.perf_counter()
    split, source = load_images(cfg)
    load_s = time.perf_counter() - t0
    spec = MODELS[cfg.model]
    if tuple(split.train.x.shape[1:]) != spec.input_shape:
        raise TwinnetError(f"model {cfg.model} takes inputs {spec.input_shape}, but {cfg.dataset} has "
                           f"{tuple(split.train.x.shape[1:])}")
    seed_everything(cfg.seed)
    models = {e: spec.build(nn_namespace(e)) for e in ("torch", "numpy")}
    save_structures(run_dir, cfg.model, models, spec.input_shape)
    model = models[cfg.engine]
    if cfg.engine == "torch":
        import torch

        model = model.to(getattr(torch, cfg.dtype))
    else:
        model = model.to(DTYPES[cfg.dtype])
    learner = make_learner(cfg, model, cfg.engine)
    settings = cfg.loop()
    total = settings.total_steps(len(split.train))
    extra = {"warmup_steps": cfg.warmup_steps} if cfg.schedule == "warmup_cosine" else {}
    extra.update({"step_size": max(1, total // 3)} if cfg.schedule == "step" else {})
    lr_at = make_schedule(cfg.schedule, cfg.lr, total, **extra)
    history = fit(learner, split.train, split.test, settings, seed=cfg.seed, lr_at=lr_at,
                  desc=f"{cfg.model}/{cfg.engine}",
                  on_eval=lambda rec: run_dir.append_metrics({"engine": cfg.engine, **rec}))
    logits = learner.predict(split.test.x)
    pred = logits.argmax(1)
    run_dir.save_arrays("predictions.npz", y_true=split.test.y, y_pred=pred, classes=np.array(split.classes))
    per_class = [float((pred[split.test.y == c] == c).mean()) for c in range(len(split.classes))]
    last = history.last
    return {
        "engine": cfg.engine,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "data_source": source,
        "params": int(sum(int(np.prod(p.shape)) for p in model.parameters())),
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "train_acc": last["train_acc"],
        "train_loss": last["train_loss"],
        "best_test_acc": max(r["test_acc"] for r in history.records),
        "per_class_acc": dict(zip(split.classes, per_class)),
        "train_time_s": last["time_s"],
        "data_load_s": round(load_s, 3),
        "steps": total,
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Counts (n, n): row = true class, column = predicted class."""
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def report(path: Path) -> list[str]:
    run_dir = RunDir(path)
    s, metrics = run_dir.read_json("summary.json"), run_dir.metrics()
    a = run_dir.load_arrays("predictions.npz")
    classes = [str(c) for c in a["classes"]]
    sections = ["## Final figures\n\n" + markdown_table(
        ["model", "engine", "params", "train acc", "test acc", "train loss", "test loss", "train time"],
        [[s["model"], s["engine"], f"{s['params']:,}", f"{100 * s['train_acc']:.2f}%", f"{100 * s['test_acc']:.2f}%",
          f"{s['train_loss']:.4f}", f"{s['test_loss']:.4f}", f"{s['train_time_s']:.1f} s"]], {2, 3, 4, 5, 6, 7})
        + "\n\nTrain figures are the running mean over the steps since the previous evaluation."
        + (f"\n\nData: {s['data_source']}." if s.get("data_source") else "")]

    fig, ax = plots.figure(2, 5.5, 4.0)
    for j, (key, label) in enumerate((("loss", "cross-entropy loss"), ("acc", "accuracy"))):
        series = {split: ([r["epoch"] for r in metrics], [r[f"{split}_{key}"] for r in metrics])
                  for split in ("train", "test")}
        plots.curves(ax[0, j], series, plots.SPLIT_STYLE, "epoch", label, logy=key == "loss")
        ax[0, j].set_title(f"{s['model']} ({s['engine']}): {label}")
    plots.save(fig, run_dir.file("curves.png"))

    cm = confusion_matrix(a["y_true"], a["y_pred"], len(classes))
    fig, ax = plots.figure(1, 6.5, 5.5)
    plots.confusion(ax[0, 0], cm, classes)
    plots.save(fig, run_dir.file("confusion.png"))
    per_class = markdown_table(["class", "test accuracy", "test images"],
                               [[c, f"{100 * cm[i, i] / max(cm[i].sum(), 1):.2f}%", int(cm[i].sum())]
                                for i, c in enumerate(classes)], {1, 2})
    sections.append("## Training curves\n\n![curves.png](curves.png)")
    sections.append("## Confusion matrix and per-class accuracy\n\n![confusion.png](confusion.png)\n\n" + per_class)
    return sections


def headline(s: dict) -> str:
    lossy = " (JPEG copy)" if "LOSSY" in s.get("data_source", "") else ""
    return (f"{s['model']} ({s['engine']}) on {s['dataset']}{lossy}: test accuracy {100 * s['test_acc']:.2f}% "
            f"(best {100 * s['best_test_acc']:.2f}%), test loss {s['test_loss']:.4f}, "
            f"{s['steps']:,} steps in {s['train_time_s']:.1f} s")
