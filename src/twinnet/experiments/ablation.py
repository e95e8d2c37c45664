"""``cnn-ablation``: rungs of the CIFAR-10 ladder at one budget, a sweep over the rung presets, and their table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from twinnet.config import check_unique, comma_items, to_dict
from twinnet.experiments import image
from twinnet.experiments.cifar import ABLATION_BUDGET, LADDER, QUICK, VARIANTS, rung
from twinnet.registry import Experiment, register
from twinnet.report import analysis, plots
from twinnet.report.blocks import Figure, Section, Table, Text
from twinnet.runs import CONFIG, ENV, SUMMARY, RunDir
from twinnet.sweep import Job, run_sweep

DEFAULT_VARIANTS = ",".join(LADDER)
# the fields every rung's preset sets itself: the course recipe's and every rung's changes
FIXED = sorted({*rung("course"), *(k for changes in (*LADDER.values(), *VARIANTS.values()) for k in changes)})
KEYS = ("test_acc", "test_loss", "train_acc", "train_loss", "train_time_s", "eval_time_s", "params", "model",
        "data_source")


def _default(name: str):
    return next(f.default for f in dataclasses.fields(image.ImageConfig) if f.name == name)


@dataclass(frozen=True)
class AblationConfig(image.ImageConfig):
    resume_may_change: ClassVar[frozenset[str]] = image.ImageConfig.resume_may_change | {"variants"}  # adds rungs
    resume_adds: ClassVar[frozenset[str]] = frozenset({"variants"})  # a resume's rungs join the folder's
    # comma-separated rungs, each a run of its preset cnn-ablation-<rung> in its own sub-folder
    variants: str = DEFAULT_VARIANTS

    def __post_init__(self) -> None:
        super().__post_init__()
        course = rung("course")
        overridden = [k for k in FIXED if getattr(self, k) != course.get(k, _default(k))]
        if overridden:
            raise ValueError(f"cnn-ablation sets {', '.join(overridden)} in every rung itself (the course's recipe, "
                             "then each rung's changes), so --set of it would change nothing; drop it, or run cnn-vgg "
                             "or cnn-vgg-best with your settings")
        check_unique("variants", self.names())
        unknown = [v for v in self.names() if v not in LADDER and v not in VARIANTS]
        if unknown or not self.names():
            raise ValueError(f"unknown variant(s) {', '.join(unknown) or '(none given)'}; choose from "
                             f"{', '.join([*LADDER, *VARIANTS])}")

    def names(self) -> list[str]:
        return comma_items(self.variants)

    def jobs(self, quick: bool = False) -> list[Job]:
        """One job per rung: its preset, with this config's budget (every field no rung fixes)."""
        budget = {k: v for k, v in to_dict(self).items() if k not in FIXED and k != "variants"}
        return [Job(name, f"cnn-ablation-{name}", values=budget, labels={"variant": name}, quick=quick)
                for name in self.names()]


def run(cfg: AblationConfig, run_dir: RunDir, ctx) -> dict:
    """Train each rung in ``run_dir/<rung>``; a rung already finished there (a resumed run) is not retrained."""
    jobs = cfg.jobs(ctx.quick)
    done = run_sweep(run_dir, jobs, threads=ctx.threads, command=ctx.command,
                     data=ctx.data_dir, name="cnn-ablation", summary_check=lambda s: all(k in s for k in KEYS))
    rows = [{"variant": j.key, "changes": _changes(j.key), **{k: done[j.key]["summary"][k] for k in KEYS}}
            for j in jobs]
    return {"variants": rows, "best": max(rows, key=lambda r: r["test_acc"])["variant"]}


def _changes(name: str) -> str:
    """What a rung changes, as text: its own settings (ladder rungs add to the ones before)."""
    settings = LADDER.get(name, VARIANTS.get(name))
    if not settings:
        return "the course recipe"
    prefix = "+ " if name in LADDER else "best + "
    return prefix + ", ".join(f"{k}={v}" for k, v in settings.items())


def figures(path: Path) -> None:
    """ablation.png: every rung's test curves, from the rungs' own metrics."""
    s = RunDir(path).read_json(SUMMARY)
    fig, ax = plots.figure(2, 5.5, 4.0)
    for r in s["variants"]:
        metrics = RunDir(path / r["variant"]).metrics()
        for j, key in enumerate(("test_acc", "test_loss")):
            ax[0, j].plot([m["epoch"] for m in metrics], [m[key] for m in metrics], label=r["variant"])
    for j, label in enumerate(("test accuracy", "test loss")):
        ax[0, j].set(xlabel="epoch", ylabel=label)
        ax[0, j].grid(alpha=0.3)
        ax[0, j].legend(fontsize=8)
    plots.save(fig, RunDir(path).file("ablation.png"))


def report(path: Path) -> list:
    s = RunDir(path).read_json(SUMMARY)
    rows = [[r["variant"], r["changes"], f"{100 * r['test_acc']:.2f}%", f"{r['train_loss']:.4f}",
             f"{r['test_loss']:.4f}", f"{image.training_s(r):.0f} s", f"{r['params']:,}"] for r in s["variants"]]
    first = RunDir(path / s["variants"][0]["variant"]).read_json(SUMMARY)
    links = ", ".join(f"[{r['variant']}]({r['variant']}/report.md)" for r in s["variants"])
    return [
        Section("Ablation", [
            Table(["variant", "changes", "test acc", "train loss", "test loss", "training time", "params"], rows,
                  {2, 3, 4, 5, 6}),
            Text("Ladder rungs each add their change to all rungs above them; `best + ...` rows change one thing in "
                 "the last ladder rung. Train figures are the running mean over the last epoch (with augmentation, "
                 "where it is on); training time leaves out the evaluations. Each rung is a complete run of its "
                 f"preset `cnn-ablation-<rung>` in its own folder, with its own report: {links}. "
                 + _machines(path, s["variants"]) + image.data_note(first))]),
        Section("Analysis", [Text(t) for t in _analysis(path, s["variants"], first) if t]),
        Section("Test curves", [Figure("ablation.png", "Test accuracy and test loss of every rung against epochs, "
                                                       "each rung at the same budget.")]),
    ]


def _machines(path: Path, variants: list[dict]) -> str:
    """Where the rungs' training times were measured: the machine of each rung (each machine a resumed rung
    continued on too), one for all where they agree."""
    where: dict[str, list[str]] = {}
    for r in variants:
        where.setdefault(_machine(path / r["variant"], r), []).append(r["variant"])
    if len(where) == 1:
        text = f"all on {next(iter(where))}"
    else:
        text = "; ".join(f"{', '.join(names)} on {machine}" for machine, names in where.items())
    return (f"Training times are wall-clock seconds where each rung ran ({text}): they compare only between rungs "
            "that had the same machine with its cores to themselves.")


def _machine(folder: Path, row: dict) -> str:
    """The machine a rung trained on, from its env.json (and those it was resumed on) and its device."""
    from twinnet import TwinnetError

    def read(name: str):
        try:
            return RunDir(folder).read_json(name) if (folder / name).is_file() else None
        except TwinnetError:
            return None

    env, summary = read(ENV), read(SUMMARY)
    if not isinstance(env, dict):
        return f"a machine its folder does not record ({row['variant']})"
    device = str(summary.get("device") if isinstance(summary, dict) and summary.get("device") else "cpu")
    names = []
    for e in [env, *(x for x in env.get("resumed") or [] if isinstance(x, dict))]:
        if device.startswith("cuda") and e.get("cuda"):
            name = f"{e['cuda']} (CUDA)"
        else:
            name = str(e.get("cpu") or "an unrecorded CPU") + (
                f" with {e['cpu_capability']}" if e.get("cpu_capability") else "")
        if name not in names:
            names.append(name)
    return " then ".join(names)


def _analysis(path: Path, variants: list[dict], first: dict) -> list[str]:
    """Sentences read from the rungs' figures: what each rung bought, which overfit, and the course's and
    the best rung's accuracy beside the published figures."""
    from twinnet.registry import get_experiment

    lossy, quick = bool(first.get("lossy_data")), bool(RunDir(path).read_json(CONFIG).get("quick"))
    order = list(LADDER)
    ladder = sorted((r for r in variants if r["variant"] in LADDER), key=lambda r: order.index(r["variant"]))
    rungs = []
    for i, r in enumerate(ladder):  # a step names every rung's change it adds (rungs between may not have run)
        added = order[order.index(ladder[i - 1]["variant"]) + 1: order.index(r["variant"]) + 1] if i else []
        rungs.append({"variant": r["variant"], "test_acc": r["test_acc"], "ladder": True,
                      "step": " + ".join(added) or r["variant"]})
    rungs += [{"variant": r["variant"], "test_acc": r["test_acc"], "ladder": False} for r in variants
              if r["variant"] not in LADDER]
    texts = [analysis.ladder(rungs, base=order[-1]),  # every variant is the whole ladder with one change
             analysis.overfitting_across([(r["variant"], RunDir(path / r["variant"]).metrics()) for r in variants])]
    course = next((r for r in rungs if r["variant"] == "course"), None)
    if course is not None:
        texts.append(analysis.against_published(course["test_acc"], get_experiment("cnn-vgg").published, lossy,
                                                quick, subject="The course rung"))
    best = max(rungs, key=lambda r: r["test_acc"])
    if best is not course:  # beside the figures published for the improved reduced VGG (cnn-vgg-best's)
        texts.append(analysis.against_published(best["test_acc"], get_experiment("cnn-vgg-best").published, lossy,
                                                quick, subject=f"The most accurate rung, {best['variant']}"))
    return texts


def headline(s: dict) -> str:
    rungs = "; ".join(f"{r['variant']} {100 * r['test_acc']:.2f}%" for r in s["variants"])
    top = max(r["test_acc"] for r in s["variants"])
    best = [r["variant"] for r in s["variants"] if f"{100 * r['test_acc']:.2f}" == f"{100 * top:.2f}"]
    return rungs + (f" (best: {best[0]})" if len(best) == 1 else f" (tied best: {', '.join(best)})")


register(Experiment(
    name="cnn-ablation",
    description="rungs of the CIFAR-10 ablation ladder (augmentation, schedule, label smoothing, AdamW, "
    "architecture variants) at one budget: a sweep over the cnn-ablation-<rung> presets, and their table",
    config_cls=AblationConfig, run=run, report=report, figures=figures, headline=headline,
    defaults={**rung("course"), **ABLATION_BUDGET}, quick={**QUICK, "variants": "course,augment"},
))
