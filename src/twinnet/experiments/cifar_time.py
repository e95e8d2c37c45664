"""``cifar-time``: accuracy against wall time, a sweep of training budgets of CIFAR-10 presets.

Each job is a complete run of a preset (``airbench94`` by default) at a fraction of its steps, its
schedule stretched over the shorter run, evaluated once at its end; a figure and a table then set
test accuracy against the seconds spent training (evaluation excluded), so a user can pick a trade-off,
and each budget is set against every other preset's shortest budget that trained at least as long (a lower
bound on its lead at equal time).
A resume with other presets, budgets or seeds adds its runs: the report gathers every finished run
of the folder.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from twinnet import TwinnetError
from twinnet.config import BaseConfig, check_unique
from twinnet.experiments import image
from twinnet.registry import Experiment, register
from twinnet.report import plots
from twinnet.report.blocks import Figure, Section, Table, Text
from twinnet.runs import SUMMARY, RunDir
from twinnet.sweep import Job, finished, run_sweep

KEYS = ("test_acc", "train_time_s", "eval_time_s", "steps", "model", "data_source")


def _numbers(name: str, text: str, kind=float) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise ValueError(f"{name}: expected comma-separated {what}, got {text!r}") from None


@dataclass(frozen=True)
class TimeConfig(BaseConfig):
    resumable: ClassVar[bool] = True  # a sweep: finished runs kept, stopped ones continued from their checkpoints
    resume_may_change: ClassVar[frozenset[str]] = frozenset({"presets", "budgets", "seeds"})  # adds runs

    presets: str = "airbench94"  # comma-separated image presets with a fixed number of steps
    budgets: str = "0.2,0.4,0.6,1.0"  # fractions of each preset's steps
    seeds: str = "0"  # comma-separated seeds: each budget once per seed

    def __post_init__(self) -> None:
        super().__post_init__()
        from twinnet.registry import get_experiment

        fractions, seeds = self.fractions(), self.seed_list()
        if not fractions or not all(0 < f <= 1 for f in fractions):
            raise ValueError(f"budgets must be fractions in (0, 1], got {self.budgets!r}")
        if not seeds or min(seeds) < 0 or max(seeds) >= 2**32:
            raise ValueError(f"seeds must be whole numbers in [0, 2**32), got {self.seeds!r}")
        if not self.names():
            raise ValueError("presets is empty; name at least one image preset (e.g. --set presets=airbench94,cifar-fast)")
        check_unique("presets", self.names())
        check_unique("budgets", fractions)
        check_unique("seeds", seeds)
        for name in self.names():
            try:
                experiment = get_experiment(name)
            except TwinnetError as e:
                raise ValueError(f"presets={self.presets}: {e}") from None
            if experiment.config_cls is not image.ImageConfig:
                raise ValueError(f"{name} is not an image preset; cifar-time sweeps presets like airbench94")

    def names(self) -> list[str]:
        return [p.strip() for p in self.presets.split(",") if p.strip()]

    def fractions(self) -> list[float]:
        return _numbers("budgets", self.budgets)

    def seed_list(self) -> list[int]:
        return _numbers("seeds", self.seeds, int)

    def jobs(self, quick: bool = False) -> list[Job]:
        from twinnet.runner import resolve_config

        out = []
        for name in self.names():
            preset = resolve_config(name, quick=quick)
            full = preset.steps
            if not full:
                raise TwinnetError(f"{name} trains for epochs, not a fixed number of steps; cifar-time takes fractions "
                                 "of a preset's steps (airbench94: 485)")
            budget_of: dict[int, float] = {}  # steps -> the budget that gave them
            for fraction in self.fractions():
                steps = max(1, round(fraction * full))
                if steps in budget_of:
                    raise TwinnetError(f"budgets {budget_of[steps]:g} and {fraction:g} both give {name} {steps:,} "
                                     f"step(s) of its {full:,}; list budgets that differ by at least {1 / full:.2g}")
                budget_of[steps] = fraction
                values = {"steps": steps, "eval_every": steps, "eval_unit": "step"}
                if preset.freeze:  # its layers stop training as far into the shorter run as into the whole one
                    values["freeze"] = image.scale_freeze(preset.freeze, fraction)
                resolve_config(name, quick=quick, values=values)  # every budget's settings checked before any trains
                for seed in self.seed_list():
                    out.append(Job(f"{name}-{steps}steps-seed{seed}", name, seed=seed, quick=quick, cost=steps,
                                   values=values, labels={"preset": name, "fraction": fraction, "seed": seed}))
        return out


LABELS = ("preset", "fraction", "seed")


def run(cfg: TimeConfig, run_dir: RunDir, ctx) -> dict:
    """Run this grid's budgets not yet finished; report every finished run of the folder, so that a
    resume with other presets, budgets or seeds adds its points to the earlier ones."""
    run_sweep(run_dir, cfg.jobs(ctx.quick), threads=ctx.threads, command=ctx.command, data=ctx.data_dir,
              name="cifar-time", summary_check=lambda s: all(k in s for k in KEYS))
    runs = []
    for key, result in finished(run_dir, None).items():
        summary = result["summary"]
        if not all(k in result for k in LABELS) or not all(k in summary for k in KEYS):
            continue  # not a cifar-time budget's line: nothing this report can place
        runs.append({"job": key, **{k: result[k] for k in LABELS}, **{k: summary[k] for k in KEYS},
                     "lossy_data": summary.get("lossy_data"),
                     "training_s": image.training_s(summary)})
    points = _points(runs)
    return {"runs": runs, "points": points, "equal_time": equal_time(points)}


def _points(runs: list[dict]) -> list[dict]:
    """One point per preset and budget: test accuracy and training seconds, mean and std over seeds, and the
    seeds' shortest and longest training time."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["preset"], r["steps"]), []).append(r)
    return [{"preset": p, "steps": s, "seeds": len(rs),
             "test_acc": float(np.mean([r["test_acc"] for r in rs])), "test_acc_std": float(np.std([r["test_acc"] for r in rs])),
             "training_s": float(np.mean([r["training_s"] for r in rs])),
             "training_s_min": min(r["training_s"] for r in rs), "training_s_max": max(r["training_s"] for r in rs)}
            for (p, s), rs in sorted(groups.items())]


def equal_time(points: list[dict]) -> list[dict]:
    """Each preset's budgets against every other preset given at least as long: for a point of A, the
    point of B with the shortest training time not below A's. A longer budget trains at least as well, so
    A's accuracy minus that B's is a lower bound on A's lead at A's training time (no curve is assumed
    between B's points); a point of A that outlasts all of B's has no row. ``every_run`` says whether that
    holds run by run too (B's shortest seed at least A's longest), not only on the seeds' mean times: on a
    machine whose speed drifts one fast run can turn it; None where a summary lacks the seeds' times."""
    rows = []
    for a in points:
        others = {}
        for b in points:
            if b["preset"] != a["preset"] and b["training_s"] >= a["training_s"]:
                best = others.get(b["preset"])
                if best is None or b["training_s"] < best["training_s"]:
                    others[b["preset"]] = b
        rows += [{"preset": a["preset"], "steps": a["steps"], "training_s": a["training_s"], "test_acc": a["test_acc"],
                  "other": b["preset"], "other_steps": b["steps"], "other_training_s": b["training_s"],
                  "other_test_acc": b["test_acc"], "lead": a["test_acc"] - b["test_acc"],
                  "every_run": _every_run_as_long(a, b)} for b in others.values()]
    return rows


def _every_run_as_long(a: dict, b: dict) -> bool | None:
    """Whether each of ``b``'s runs trained at least as long as each of ``a``'s (None: a seed's time unknown)."""
    if a.get("training_s_max") is None or b.get("training_s_min") is None:
        return None
    return b["training_s_min"] >= a["training_s_max"]


def figures(path: Path) -> None:
    s = RunDir(path).read_json(SUMMARY)
    fig, ax = plots.figure(1, 6.0, 4.2)
    for preset in dict.fromkeys(p["preset"] for p in s["points"]):
        pts = [p for p in s["points"] if p["preset"] == preset]
        ax[0, 0].errorbar([p["training_s"] / 60 for p in pts], [100 * p["test_acc"] for p in pts],
                          yerr=[100 * p["test_acc_std"] for p in pts], marker="o", capsize=3, label=preset)
    ax[0, 0].set(xlabel="training time (minutes, evaluation excluded)", ylabel="test accuracy (%)",
                 title="Accuracy against training time")
    ax[0, 0].grid(alpha=0.3)
    ax[0, 0].legend(loc="best", fontsize=8)  # where it covers fewest points
    plots.save(fig, RunDir(path).file("accuracy_vs_time.png"))


def report(path: Path) -> list:
    s = RunDir(path).read_json(SUMMARY)
    rows = [[p["preset"], f"{p['steps']:,}", f"{100 * p['test_acc']:.2f}%" + (f" ± {100 * p['test_acc_std']:.2f}"
                                                                              if p["seeds"] > 1 else ""),
             str(p["seeds"]), f"{p['training_s']:.0f} s" + _time_range(p)] for p in s["points"]]
    lossy = any(r.get("lossy_data") for r in s["runs"])
    note = " Measured on the JPEG copy of CIFAR-10: not comparable to lossless CIFAR-10 results." if lossy else ""
    return [Section("Accuracy against training time", [
        Table(["preset", "steps", "test acc (mean ± std over seeds)", "seeds", "training time (mean, seeds' range)"],
              rows, {1, 2, 3, 4}),
        Text("Each row is a complete run of the preset at that many steps, its schedule over the shorter run, "
             "evaluated once at the end; training time excludes evaluation, on this machine (env.json of each run "
             f"names the CPU and threads).{note}"),
        Figure("accuracy_vs_time.png", "Test accuracy against training time for each preset and budget; error bars: "
                                       "standard deviation over seeds."),
        *_equal_time_blocks(s.get("equal_time", [])),
        *_longest_budget_blocks(s["points"]),
    ])]


def _time_range(point: dict) -> str:
    """The seeds' range, " (716-791)": their shortest and longest training time, where the seeds' times
    differ (a summary written before they were kept has none)."""
    lo, hi = point.get("training_s_min"), point.get("training_s_max")
    return f" ({lo:.0f}-{hi:.0f})" if lo is not None and hi is not None and round(lo) != round(hi) else ""


def longest_budgets(points: list[dict]) -> list[dict]:
    """Each pair of presets at their longest budgets, seen from the one that trained for less time: its
    time as a fraction of the other's, its accuracy minus the other's, and that difference's standard
    error from the seeds' spread (sample variances; None unless both have 2 seeds or more); and the time
    ratio's range over every pairing of a run of one with a run of the other (None where a summary lacks the
    seeds' times)."""
    longest = {}
    for p in points:
        if p["steps"] > longest.get(p["preset"], {"steps": -1})["steps"]:
            longest[p["preset"]] = p
    rows = []
    for a, b in itertools.combinations(longest.values(), 2):
        fast, slow = (a, b) if a["training_s"] <= b["training_s"] else (b, a)
        spread = None
        if fast["seeds"] > 1 and slow["seeds"] > 1:  # std over seeds is the population's: n / (n - 1) for sample
            spread = float(np.sqrt(sum(p["test_acc_std"] ** 2 / (p["seeds"] - 1) for p in (fast, slow))))
        rows.append({"preset": fast["preset"], "steps": fast["steps"], "seeds": fast["seeds"],
                     "other": slow["preset"], "other_steps": slow["steps"], "other_seeds": slow["seeds"],
                     "time_ratio": fast["training_s"] / slow["training_s"],
                     "difference": fast["test_acc"] - slow["test_acc"], "standard_error": spread,
                     "test_acc": fast["test_acc"], "other_test_acc": slow["test_acc"],
                     "time_ratio_range": _ratio_range(fast, slow)})
    return rows


def _ratio_range(fast: dict, slow: dict) -> tuple[float, float] | None:
    """``fast``'s shortest run against ``slow``'s longest, and its longest against ``slow``'s shortest."""
    if not all(p.get(k) for p in (fast, slow) for k in ("training_s_min", "training_s_max")):
        return None  # a summary from before the seeds' times were kept
    return fast["training_s_min"] / slow["training_s_max"], fast["training_s_max"] / slow["training_s_min"]


def _longest_budget_blocks(points: list[dict]) -> list:
    """A sentence per pair of presets at their longest budgets: time, accuracy, and whether the seeds can
    tell the accuracies apart (a difference of two standard errors or more)."""
    sentences = []
    for r in longest_budgets(points):
        diff = 100 * r["difference"]
        said = f"{abs(diff):.2f} points {'higher' if diff > 0 else 'lower'}" if round(diff, 2) else "as accurate"
        text = (f"{r['preset']} ({r['steps']:,} steps, {r['seeds']} seed{'s' * (r['seeds'] > 1)}) trains in "
                f"{r['time_ratio']:.2f}x the time of {r['other']} ({r['other_steps']:,} steps, {r['other_seeds']} "
                f"seed{'s' * (r['other_seeds'] > 1)}) and is {said} ({100 * r['test_acc']:.2f}% against "
                f"{100 * r['other_test_acc']:.2f}%).")
        spread = r.get("time_ratio_range")
        if spread and round(spread[0], 2) != round(spread[1], 2):  # the machine's timing noise, told beside it
            text += (f" Run against run, the time ratio lies between {spread[0]:.2f}x and {spread[1]:.2f}x "
                     "(the seeds' shortest and longest training times).")
        if r["standard_error"] is None:
            text += " One seed on a side leaves no spread to judge that difference by."
        else:
            se = 100 * r["standard_error"]
            text += (f" The standard error of that difference, from the seeds' spread, is {se:.2f} points: "
                     + ("twice it or more, a difference these seeds resolve." if abs(diff) >= 2 * se else
                        "less than twice it, so these seeds cannot tell the two presets' accuracy apart."))
        sentences.append(text)
    return [Text("At each preset's longest budget: " + " ".join(sentences))] if sentences else []


def _equal_time_blocks(rows: list[dict]) -> list:
    """The comparison at equal training time, as a table and a sentence drawn from it."""
    ahead = [r for r in rows if r["lead"] > 0]
    if not ahead:
        return []
    runs = {True: "yes", False: "on the means only", None: "not recorded"}
    table = Table(["preset (steps)", "its training time", "its test acc", "against (steps) given at least as long",
                   "its training time", "its test acc", "lead, at least", "as long run by run"],
                  [[f"{r['preset']} ({r['steps']:,})", f"{r['training_s']:.0f} s", f"{100 * r['test_acc']:.2f}%",
                    f"{r['other']} ({r['other_steps']:,})", f"{r['other_training_s']:.0f} s",
                    f"{100 * r['other_test_acc']:.2f}%", f"{100 * r['lead']:+.2f}", runs[r.get("every_run")]]
                   for r in ahead], {1, 2, 4, 5, 6})
    best = max(ahead, key=lambda r: r["lead"])
    caveat = {True: " Each of its runs trained at least as long as each of the first preset's, so the bound holds run "
                    "by run.",
              False: " That holds for the seeds' mean times only: some run of the first preset trained longer than "
                     "some run of the other (the machine's speed varied), so the bound is on the means.",
              None: ""}[best.get("every_run")]
    return [
        Text("At equal training time: each budget set against the other preset's shortest budget that trained at "
             "least as long. A longer budget trains at least as well, so each lead is a lower bound at the first "
             f"preset's training time. The largest: {best['preset']} at {best['steps']:,} steps is at least "
             f"{100 * best['lead']:.2f} points ahead of {best['other']} ({100 * best['test_acc']:.2f}% in "
             f"{best['training_s']:.0f} s against {100 * best['other_test_acc']:.2f}% in "
             f"{best['other_training_s']:.0f} s).{caveat} Budgets not ahead are left out: the other preset trained "
             "longer there, so they bound nothing."),
        table,
    ]


def headline(s: dict) -> str:
    return "; ".join(f"{p['preset']} {p['steps']} steps: {100 * p['test_acc']:.2f}% in {p['training_s']:.0f} s"
                     for p in s["points"])


register(Experiment(
    name="cifar-time",
    description="accuracy against training time: a sweep of budgets (fractions of the steps) of CIFAR-10 presets, "
    "airbench94 by default, with its figure and table, and each preset against the others at equal time",
    config_cls=TimeConfig, run=run, report=report, figures=figures, headline=headline,
    defaults={}, quick={"budgets": "0.5,1.0"},
))
