"""mlp-compare: the NumPy and PyTorch MLPs, from the same initial weights, on moons, circles and blobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from twinnet import hardware, trace
from twinnet.architectures import mlp_layers
from twinnet.config import check_unique
from twinnet.data.arrays import ArrayDataset
from twinnet.data.toy import MAX_NOISE, TOY_DATASETS, make_toy, noise_refusal
from twinnet.learner import make_learner
from twinnet.registry import Experiment, Published, get_experiment, register
from twinnet.report import analysis, plots
from twinnet.report.blocks import Figure, Section, Table, Text
from twinnet.runs import CONFIG, SUMMARY, RunDir
from twinnet.structure import save_structures
from twinnet.train import Diverged, fit, train_config
from twinnet.twins import build_twins, max_relative_difference

ENGINES = ("numpy", "torch")
PUBLISHED_ON = ("moons", "circles")  # the datasets the published student results are for


@dataclass(frozen=True)
class MLPCompareConfig(train_config(optimizer="sgd", lr=0.1, momentum=0.9, epochs=60)):
    datasets: tuple[str, ...] = TOY_DATASETS  # any of moons, circles, blobs
    n_samples: int = 1000  # points per dataset, split 80/20
    noise: float = 0.1  # Gaussian noise of moons/circles; blobs use std 10*noise
    test_fraction: float = 0.2
    standardize: bool = True  # scale inputs by the train split's mean and std
    hidden: tuple[int, ...] = (20,)  # hidden layer widths
    dtype: Literal["float32", "float64"] = "float64"  # float64 shows the twins agree to ~1e-12
    same_init: bool = True  # NumPy model starts from the PyTorch model's weights
    grid: int = 200  # decision-boundary grid resolution per axis

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [d for d in self.datasets if d not in TOY_DATASETS]
        if unknown or not self.datasets:
            raise ValueError(f"datasets must be a non-empty list from {', '.join(TOY_DATASETS)}; got {unknown}")
        check_unique("datasets", self.datasets)
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        if self.n_samples < 10:
            raise ValueError(f"n_samples must be >= 10, got {self.n_samples}")
        if self.grid < 10:
            raise ValueError(f"grid must be >= 10, got {self.grid}")
        if not 0 <= self.noise <= MAX_NOISE:
            raise ValueError(noise_refusal(self.noise))
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1, got {self.test_fraction}")
        # both engines: weights, their gradients and two moments each; activations, their gradients and the
        # pre-activations of a batch (of the training split, or of 1,024 grid points drawn at once)
        widths = (2, *self.hidden, 3)
        weights = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
        batch = max(1024, self.batch_len(self.n_samples))
        hardware.check_fits(2 * 8 * (4 * weights + 3 * batch * sum(widths)), f"hidden={list(self.hidden)}")
        # the decision-boundary grid: its points, both engines' predictions and the figure's regions, measured at
        # about 100 bytes a point (grid=2000: 400 MB above grid=30's peak)
        hardware.check_fits(80 * self.grid ** 2, f"grid={self.grid} (a decision boundary of grid x grid points)")


def _grid(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.15 * (hi - lo)
    return np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], n), np.linspace(lo[1] - pad[1], hi[1] + pad[1], n))


def run(cfg: MLPCompareConfig, run_dir: RunDir, ctx) -> dict:
    results, agreement = [], {}
    splits = {d: make_toy(d, cfg.n_samples, cfg.noise, cfg.seed, cfg.test_fraction) for d in cfg.datasets}  # all first
    for dataset in cfg.datasets:
        split = splits[dataset]
        mean, std = (split.train.x.mean(0), split.train.x.std(0)) if cfg.standardize else (0.0, 1.0)
        scale = lambda x: (x - mean) / std  # noqa: E731
        train, test = ArrayDataset(scale(split.train.x), split.train.y), ArrayDataset(scale(split.test.x), split.test.y)
        n_classes = len(split.classes)

        build = lambda nn: nn.Sequential(*mlp_layers(nn, 2, cfg.hidden, n_classes))  # noqa: E731
        models = build_twins(build, cfg.dtype, cfg.seed, cfg.same_init)
        arch = "-".join(str(d) for d in (2, *cfg.hidden, n_classes))
        save_structures(run_dir, f"MLP {arch}", models, (2,), min(cfg.batch_len(len(split.train)), 256))
        batch = min(cfg.batch_len(len(split.train)), trace.MAX_BATCH)  # one step of the run's batch, traced
        trace.save_trace(run_dir, f"MLP {arch} on {dataset}", build, train.x[:batch].astype(cfg.dtype), train.y[:batch])

        learners = {engine: make_learner(models[engine], cfg) for engine in ENGINES}
        xx, yy = _grid(split.train.x, cfg.grid)
        grid_points = scale(np.c_[xx.ravel(), yy.ravel()])
        arrays = dict(x_train=split.train.x, y_train=split.train.y, x_test=split.test.x, y_test=split.test.y,
                      xx=xx, yy=yy, classes=np.array(split.classes))
        for engine, learner in learners.items():
            try:
                history = fit(
                    learner, train, test, cfg, desc=f"{dataset}/{engine}", progress=ctx.progress,
                    on_eval=lambda rec, d=dataset, e=engine: run_dir.append_metrics({"dataset": d, "engine": e, **rec}),
                )
            except Diverged as e:
                e.summary = {"outcome": "diverged", "diverged_at_step": e.step, "dataset": dataset, "engine": engine,
                             "results": results}
                e.args = (f"{dataset}, {engine} engine: {e}",)
                raise
            last = history.last
            results.append({"dataset": dataset, "engine": engine, **{k: last[k] for k in
                            ("test_acc", "test_loss", "train_acc", "train_loss")}})
            arrays[f"step_loss_{engine}"] = np.array(history.step_losses)
            arrays[f"grid_{engine}"] = learner.predict(grid_points, 8192).argmax(1).reshape(xx.shape)
        agreement[dataset] = {
            "max_rel_loss_diff": max_relative_difference(arrays["step_loss_numpy"], arrays["step_loss_torch"]),
            "steps": len(arrays["step_loss_numpy"]),
            "same_init": cfg.same_init,
            "dtype": cfg.dtype,
        }
        run_dir.save_arrays(f"{dataset}.npz", **arrays)
    return {"results": results, "agreement": agreement}


def figures(path: Path) -> None:
    """Per dataset: its points, both engines' decision boundaries, their curves and their agreement."""
    run_dir = RunDir(path)
    summary, metrics = run_dir.read_json(SUMMARY), run_dir.metrics()
    arrays = {d: run_dir.load_arrays(f"{d}.npz") for d in summary["agreement"]}  # all read before any is drawn
    for dataset, a in arrays.items():
        _figures(run_dir, dataset, metrics, a, summary["agreement"][dataset].get("dtype", "float64"))


def _figures(run_dir: RunDir, dataset: str, metrics: list[dict], a: dict, dtype: str) -> None:
    classes = [str(c) for c in a["classes"]]

    fig, ax = plots.figure(1, 5.5, 4.5)
    plots.scatter_split(ax[0, 0], a["x_train"], a["y_train"], a["x_test"], a["y_test"], classes)
    ax[0, 0].set_title(f"{dataset}: class by colour, train ○ / test △")
    ax[0, 0].legend(fontsize=7)
    plots.save(fig, run_dir.file(f"{dataset}_data.png"))

    fig, ax = plots.figure(2, 5.0, 4.5)
    for i, engine in enumerate(ENGINES):
        plots.decision_regions(ax[0, i], a["xx"], a["yy"], a[f"grid_{engine}"], len(classes))
        plots.scatter_split(ax[0, i], a["x_train"], a["y_train"], a["x_test"], a["y_test"], classes)
        ax[0, i].set_title(f"{dataset}: {engine} decision boundary")
    plots.save(fig, run_dir.file(f"{dataset}_boundary.png"))

    fig, ax = plots.figure(2, 5.5, 4.0)
    recs = {e: [r for r in metrics if r["dataset"] == dataset and r["engine"] == e] for e in ENGINES}
    for j, (key, label) in enumerate((("loss", "cross-entropy loss"), ("acc", "accuracy"))):
        series, styles = {}, {}
        for engine in ENGINES:
            for split in ("train", "test"):
                name = f"{engine} {split}"
                series[name] = ([r["epoch"] for r in recs[engine]], [r[f"{split}_{key}"] for r in recs[engine]])
                styles[name] = {**plots.ENGINE_STYLE[engine], **plots.SPLIT_STYLE[split]}
        plots.curves(ax[0, j], series, styles, "epoch", label, logy=key == "loss")
        ax[0, j].set_title(f"{dataset}: {label}")
    plots.save(fig, run_dir.file(f"{dataset}_curves.png"))

    fig, ax = plots.figure(1, 6.0, 3.5)
    plots.agreement(ax[0, 0], a["step_loss_numpy"], a["step_loss_torch"], dtype)
    ax[0, 0].set_xlabel("step")
    ax[0, 0].set_ylabel("|loss_numpy - loss_torch| / |loss_torch|")
    ax[0, 0].set_title(f"{dataset}: per-step agreement of the two engines")
    plots.save(fig, run_dir.file(f"{dataset}_agreement.png"))


CAPTIONS = {
    "data": "{d}: the points, class by colour, training set as circles and test set as triangles.",
    "boundary": "{d}: the decision regions each engine's trained MLP draws, over the training and test points.",
    "curves": "{d}: cross-entropy loss (log scale) and accuracy against epochs, train and test, both engines (the "
              "NumPy engine's lines wide and pale under PyTorch's).",
    "agreement": "{d}: the relative difference between the two engines' training loss at every step, from the same "
                 "initial weights and batches; steps where they are equal exactly are counted in the legend (a log "
                 "scale has no 0), and the dashed line is {dtype}'s machine epsilon.",
}


def report(path: Path) -> list:
    run = RunDir(path)
    summary = run.read_json(SUMMARY)
    rows = [[r["dataset"], r["engine"], f"{100 * r['train_acc']:.2f}%", f"{100 * r['test_acc']:.2f}%",
             f"{r['train_loss']:.4f}", f"{r['test_loss']:.4f}"] for r in summary["results"]]
    agree_rows = [[d, f"{a['steps']:,}", a["dtype"], a["same_init"], f"{a['max_rel_loss_diff']:.2e}"]
                  for d, a in summary["agreement"].items()]
    config, metrics = run.read_json(CONFIG), run.metrics()
    rate = {d: analysis.learning_rate([m for m in metrics if m.get("dataset") == d]) for d in summary["agreement"]}
    said = [f"{d}: " + analysis.agreement(a["max_rel_loss_diff"], a["steps"], a["dtype"])
            for d, a in summary["agreement"].items()]
    published = get_experiment("mlp-compare").published
    said += [analysis.against_published(r["test_acc"], published, quick=bool(config.get("quick")),
                                        subject=f"{r['dataset']}, {r['engine']} engine") for r in summary["results"]
             if r["dataset"] in PUBLISHED_ON]
    return [
        Section("Final figures", [Table(["dataset", "engine", "train acc", "test acc", "train loss", "test loss"],
                                        rows, {2, 3, 4, 5})]),
        Section("Do the twins agree?", [
            Text("Largest relative difference between the two engines' training-loss curves, step by step (same "
                 "initial weights, same batches)."),
            Table(["dataset", "steps", "dtype", "same init", "max relative difference"], agree_rows, {1, 4})]),
        Section("Analysis", [Text(t) for t in said]),
        *(Section(d, [Figure(f"{d}_{kind}.png", " ".join(filter(None, (caption.format(d=d, dtype=summary[
                                                                            "agreement"][d]["dtype"]),
                                                                        rate[d] if kind == "curves" else ""))))
                      for kind, caption in CAPTIONS.items()])
          for d in summary["agreement"]),
    ]


def headline(summary: dict) -> str:
    lines = [f"{'dataset':<8} {'engine':<6} {'train acc':>9} {'test acc':>9}"]
    lines += [f"{r['dataset']:<8} {r['engine']:<6} {100 * r['train_acc']:>8.2f}% {100 * r['test_acc']:>8.2f}%"
              for r in summary["results"]]
    agreement = summary["agreement"]
    first = next(iter(agreement.values()))
    lines.append(f"largest relative difference between the engines' loss curves ({first['dtype']}, "
                 f"{first['steps']:,} steps): " + ", ".join(f"{d} {a['max_rel_loss_diff']:.1e}"
                                                            for d, a in agreement.items()))
    lines.append(f"wall time {summary['wall_time_s']:.1f} s")
    return "\n".join(lines)


register(
    Experiment(
        name="mlp-compare",
        description="NumPy vs PyTorch MLP from the same weights on moons, circles and blobs",
        config_cls=MLPCompareConfig,
        run=run,
        report=report,
        figures=figures,
        quick={"epochs": 2, "n_samples": 100, "grid": 30},
        headline=headline,
        published=(Published(0.96, "published student results on moons and circles, both engines", high=0.985),),
    )
)
