"""``cnn-ablation``: several rungs of the CIFAR-10 ladder at one budget, and the table comparing them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from twinnet import TwinnetError
from twinnet.config import to_dict
from twinnet.experiments import image
from twinnet.experiments.cifar import LADDER, QUICK, VARIANTS, rung
from twinnet.registry import Experiment, register
from twinnet.report import plots
from twinnet.report.build import markdown_table
from twinnet.runs import CONFIG, ENV, SUMMARY, RunDir
from twinnet.train import Diverged

DEFAULT_VARIANTS = ",".join(LADDER)
# the fields every rung sets itself: the course recipe's and every rung's changes
FIXED = sorted({*rung("course"), *(k for changes in (*LADDER.values(), *VARIANTS.values()) for k in changes)})


def _default(name: str):
    return next(f.default for f in dataclasses.fields(image.ImageConfig) if f.name == name)


@dataclass(frozen=True)
class AblationConfig(image.ImageConfig):
    resume_may_change: ClassVar[frozenset[str]] = image.ImageConfig.resume_may_change | {"variants"}  # adds rungs
    # comma-separated rungs, each trained in its own sub-folder; a rung's settings override the fields below
    variants: str = DEFAULT_VARIANTS

    def __post_init__(self) -> None:
        super().__post_init__()
        course = rung("course")
        overridden = [k for k in FIXED if getattr(self, k) != course.get(k, _default(k))]
        if overridden:
            raise ValueError(f"cnn-ablation sets {', '.join(overridden)} in every rung itself (the course's recipe, "
                             "then each rung's changes), so --set of it would change nothing; drop it, or run cnn-vgg "
                             "or cnn-vgg-best with your settings")
        unknown = [v for v in self.names() if v not in LADDER and v not in VARIANTS]
        if unknown or not self.names():
            raise ValueError(f"unknown variant(s) {', '.join(unknown) or '(none given)'}; choose from "
                             f"{', '.join([*LADDER, *VARIANTS])}")

    def names(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]

    def variant(self, name: str) -> image.ImageConfig:
        """The image-runner configuration of one rung: this config's budget, the rung's recipe."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(image.ImageConfig)}
        return image.ImageConfig(**{**base, **rung(name)})


def run(cfg: AblationConfig, run_dir: RunDir) -> dict:
    """Train each rung in ``run_dir/<rung>``; a rung already finished there (a resumed run) is not retrained."""
    rows = []
    for name in cfg.names():
        sub = RunDir(run_dir.path / name)
        summary = sub.read_json(SUMMARY) if sub.file(SUMMARY).exists() else None
        if isinstance(summary, dict) and summary.get("outcome") == "diverged":
            raise Diverged(f"rung {name} diverged at step {summary.get('diverged_at_step')} in an earlier part of this "
                           "run; leave it out (--set variants=...) or start a new run with a lower learning rate")
        if summary is None:
            vcfg = cfg.variant(name)
            if not sub.file(CONFIG).exists():  # a new rung (a resumed one keeps its files until it trains)
                sub.path.mkdir(exist_ok=True)
                sub.write_json(CONFIG, {"experiment": "cnn-ablation", "variant": name, "config": to_dict(vcfg)})
                if run_dir.file(ENV).exists():
                    sub.write_json(ENV, run_dir.read_json(ENV))
            try:
                summary = image.run(vcfg, sub)
            except Diverged as e:  # the rung's folder says so; the ablation stops with its one line
                if e.summary is not None:
                    sub.write_json(SUMMARY, e.summary)
                raise Diverged(f"rung {name}: {e}", e.step) from None
            sub.write_json(SUMMARY, summary)
        keys = ("test_acc", "test_loss", "train_acc", "train_loss", "train_time_s", "params", "model", "data_source")
        if not isinstance(summary, dict) or any(k not in summary for k in keys):
            raise TwinnetError(f"{sub.file(SUMMARY)} is damaged (it lacks the rung's figures); delete it to train the "
                               "rung again")
        rows.append({"variant": name, "changes": _changes(name), **{k: summary[k] for k in keys}})
    return {"variants": rows, "best": max(rows, key=lambda r: r["test_acc"])["variant"]}


def _changes(name: str) -> str:
    """What a rung changes, as text: its own settings (ladder rungs add to the ones before)."""
    settings = LADDER.get(name, VARIANTS.get(name))
    if not settings:
        return "the course recipe"
    prefix = "+ " if name in LADDER else "best + "
    return prefix + ", ".join(f"{k}={v}" for k, v in settings.items())


def report(path: Path) -> list[str]:
    run_dir = RunDir(path)
    s = run_dir.read_json(SUMMARY)
    rows = [[r["variant"], r["changes"], f"{100 * r['test_acc']:.2f}%", f"{r['train_loss']:.4f}",
             f"{r['test_loss']:.4f}", f"{r['train_time_s']:.0f} s", f"{r['params']:,}"] for r in s["variants"]]
    table = markdown_table(["variant", "changes", "test acc", "train loss", "test loss", "train time", "params"], rows,
                           {2, 3, 4, 5, 6})
    source = s["variants"][0].get("data_source")
    fig, ax = plots.figure(2, 5.5, 4.0)
    for r in s["variants"]:
        metrics = RunDir(path / r["variant"]).metrics()
        for j, key in enumerate(("test_acc", "test_loss")):
            ax[0, j].plot([m["epoch"] for m in metrics], [m[key] for m in metrics], label=r["variant"])
    for j, label in enumerate(("test accuracy", "test loss")):
        ax[0, j].set_xlabel("epoch")
        ax[0, j].set_ylabel(label)
        ax[0, j].grid(alpha=0.3)
        ax[0, j].legend(fontsize=8)
    plots.save(fig, run_dir.file("ablation.png"))
    return ["## Ablation\n\n" + table + "\n\nLadder rungs each add their change to all rungs above them; "
            "`best + ...` rows change one thing in the last ladder rung. Train figures are the running mean over "
            "the last epoch (with augmentation, where it is on). Each rung's run is in its own folder."
            + (f"\n\nData: {source}." if source else ""),
            "## Test curves\n\n![ablation.png](ablation.png)"]


def headline(s: dict) -> str:
    return "; ".join(f"{r['variant']} {100 * r['test_acc']:.2f}%" for r in s["variants"]) + f" (best: {s['best']})"


register(
    Experiment(
        name="cnn-ablation",
        description="rungs of the CIFAR-10 ablation ladder (augmentation, schedule, label smoothing, AdamW, "
        "architecture variants) at one budget, and their table",
        config_cls=AblationConfig,
        run=run,
        report=report,
        headline=headline,
        defaults={**rung("course"), "epochs": 10, "eval_every": 1},
        quick={**QUICK, "variants": "course,augment"},
    )
)
