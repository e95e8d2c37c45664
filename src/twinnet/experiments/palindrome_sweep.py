"""palindrome-sweep: how long a palindrome each model can learn, over lengths x seeds x models.

A sweep (``twinnet.sweep``) of ``palindrome`` runs, each a complete run directory under ``runs/``,
spread over worker processes (one thread each). Every finished run is appended at once to
results.jsonl, so ``twinnet run palindrome-sweep --resume RUN_DIR`` skips the runs already there,
continues those stopped midway from their checkpoints (saved about every minute), and runs the rest.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from matplotlib.ticker import MaxNLocator

from twinnet import hardware
from twinnet.recurrent_task import BEST, MODEL_NAMES, MODELS, Recipe, check_grid, job_config, job_values, \
    save_model_structure
from twinnet.registry import Experiment, get_experiment, register
from twinnet.report import analysis, plots
from twinnet.report.blocks import Figure, Section, Table, Text
from twinnet.runs import CONFIG, RESULTS, SUMMARY, RunDir
from twinnet.seeds import MAX_SEEDS
from twinnet.sweep import Job, finished, run_sweep

# relative cost of one step per time step (bench/rnn_step.py), to start the longest runs first
COST = {"rnn": 1.0, "irnn": 1.0, "lstm": 3.5, "gru": 2.5}
PASS = 0.99  # "learnt": mean test accuracy over the seeds at least this
PUBLISHED_COLLAPSE = (12, 20)  # the course's published vanilla-RNN runs collapse between these lengths T


@dataclass(frozen=True)
class SweepConfig(Recipe):
    resumable: ClassVar[bool] = True  # `twinnet run --resume RUN_DIR` continues an interrupted sweep
    # a resume may change the grid (runs outside it stay out of the summary) and the workers, never the recipe
    resume_may_change: ClassVar[frozenset[str]] = frozenset({"models", "lengths", "n_seeds", "workers",
                                                             "checkpoint_every", "checkpoint_every_s"})

    models: tuple[str, ...] = ("rnn", "lstm", "gru")
    lengths: tuple[int, ...] = tuple(range(5, 61, 5))  # palindrome lengths T
    n_seeds: int = 5  # seeds seed, seed+1, ..., seed+n_seeds-1 at every (model, length)
    workers: int = 0  # processes (0: one per idle core), each one training at a time on one thread; 1: in this process

    def __post_init__(self) -> None:
        super().__post_init__()
        check_grid(self.models, self.lengths)
        self.check_length_fits(max(self.lengths))
        if self.n_seeds < 1 or self.workers < 0:
            raise ValueError("n_seeds must be >= 1 and workers >= 0")
        if self.n_seeds > MAX_SEEDS:  # as --seeds: a grid of millions of runs is a typo, and would fill memory first
            raise ValueError(f"n_seeds must be at most {MAX_SEEDS}, got {self.n_seeds}")
        if self.seed + self.n_seeds > 2**32:
            raise ValueError(f"seeds run from seed to seed + n_seeds - 1, and {self.seed} + {self.n_seeds} - 1 is past "
                             "the last seed, 2**32 - 1; lower seed or n_seeds")

    def jobs(self, quick: bool = False) -> list[Job]:
        return [Job(f"runs/{m}-T{t}-seed{s}", "palindrome", values=job_values(self, m, t), seed=s,
                    labels={"model": m, "length": t, "seed": s}, cost=COST[m] * t, quick=quick)
                for m in self.models for t in self.lengths for s in range(self.seed, self.seed + self.n_seeds)]


def run(cfg: SweepConfig, run_dir: RunDir, ctx) -> dict:
    """Run the grid's runs not yet in results.jsonl (the runner holds the directory's lock)."""
    jobs = cfg.jobs(ctx.quick)
    workers = 0 if cfg.workers == 1 else cfg.workers or hardware.default_threads()[0]  # 0: here; else one per idle core
    most = hardware.MAX_THREADS_PER_CORE * hardware.cores()  # as for threads: beyond it a mistake, not a choice
    if workers > most:
        warnings.warn(f"workers={workers} is more than {hardware.MAX_THREADS_PER_CORE}x this machine's "
                      f"{hardware.cores()} cores, which would only slow the sweep (each worker trains on one thread); "
                      f"using {most}", stacklevel=2)
        workers = most
    keys = {j.key for j in jobs}
    if outside := [k for k in finished(run_dir, None) if k not in keys]:  # a resume that narrowed the grid
        warnings.warn(f"{len(outside)} finished run{'s' if len(outside) > 1 else ''} of this folder "
                      f"({', '.join(outside[:3])}{', ...' if len(outside) > 3 else ''}) lie outside the grid now set, "
                      "so the summary and report leave them out (they stay in results.jsonl); resume with their "
                      "models, lengths and n_seeds too to count them", stacklevel=2)
    done = run_sweep(run_dir, jobs, workers=workers, threads=ctx.threads,
                     command=ctx.command, data=ctx.data_dir, name="palindrome-sweep",
                     summary_check=lambda s: isinstance(s.get("test_acc"), (int, float))
                     and isinstance(s.get("outcome"), str))
    for model in cfg.models:
        save_model_structure(run_dir, job_config(cfg, model, max(cfg.lengths), cfg.seed))
    return summarise(cfg, [{**r["summary"], "job": r["job"]} for j in jobs if (r := done.get(j.key))])


def summarise(cfg: SweepConfig, results: list[dict]) -> dict:
    """Per model and length: mean, spread and each seed's accuracy; the longest T learnt."""
    table, longest = {}, {}
    for model in cfg.models:
        rows = []
        for length in sorted(cfg.lengths):
            accs = [r["test_acc"] for r in results if r["model"] == model and r["length"] == length]
            if accs:
                rows.append({"length": length, "mean": float(np.mean(accs)), "std": float(np.std(accs)),
                             "min": float(np.min(accs)), "max": float(np.max(accs)), "n": len(accs), "accs": accs})
        table[model] = rows
        passed = [r["length"] for r in rows if r["mean"] >= PASS]
        below = [r["length"] for r in rows if r["mean"] < PASS]
        longest[model] = {
            "longest_T": max(passed, default=None),  # the longest T whose mean accuracy over the seeds >= 99%
            # ... and the longest T up to which every length passed
            "longest_T_unbroken": max((t for t in passed if all(b > t for b in below)), default=None),
        }
    missing = len(cfg.jobs()) - len(results)
    jobs = [{k: r.get(k) for k in ("job", "model", "length", "seed", "test_acc", "outcome", "train_time_s",
                                   "eval_time_s")} for r in results]
    return {"pass_threshold": PASS, "longest_T_99": longest, "accuracy": table, "runs": len(results), "jobs": jobs,
            "missing_runs": missing, "runs_per_outcome": {o: sum(r["outcome"] == o for r in results)
                                                          for o in sorted({r["outcome"] for r in results})}}


STYLE = {"rnn": dict(color="tab:blue", marker="o"), "lstm": dict(color="tab:green", marker="s"),
         "gru": dict(color="tab:red", marker="^"), "irnn": dict(color="tab:purple", marker="d")}


def _accuracy_figure(run_dir: RunDir, s: dict) -> None:
    fig, ax = plots.figure(1, 7.0, 4.5)
    a = ax[0, 0]
    for model, rows in s["accuracy"].items():
        if not rows:
            continue
        t = np.array([r["length"] for r in rows])
        mean, std = np.array([r["mean"] for r in rows]), np.array([r["std"] for r in rows])
        st = STYLE.get(model, {})
        a.plot(t, mean, label=f"{MODEL_NAMES[model]} (mean)", **st)
        a.fill_between(t, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color=st.get("color"), alpha=0.15)
        for r in rows:  # every seed, so the spread is visible, not only summarised
            a.scatter([r["length"]] * len(r["accs"]), r["accs"], s=9, color=st.get("color"), alpha=0.45)
    a.axhline(PASS, color="k", lw=0.8, ls="--", label="99%")
    a.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance (10%)")
    a.set(xlabel="palindrome length T", ylabel="test accuracy", ylim=(0, 1.03),
          title="accuracy against length (mean ± std over seeds; dots: each seed)")
    a.grid(alpha=0.3)
    a.xaxis.set_major_locator(MaxNLocator(integer=True))  # lengths are whole numbers
    a.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside, not over the title
    plots.save(fig, run_dir.file("accuracy_vs_length.png"))


def _curves_figure(run_dir: RunDir, results: list[dict], lengths: list[int], curves: dict[str, list[dict]]) -> None:
    cols = min(4, len(lengths))
    rows_n = -(-len(lengths) // cols)
    from matplotlib.lines import Line2D

    fig, axes = plots.figure(cols, 4.2, 3.2, nrows=rows_n, sharey=True)
    for k, length in enumerate(lengths):
        a = axes[k // cols, k % cols]
        for r in results:
            if r["length"] == length:
                recs = curves[r["job"]]
                a.plot([x["step"] for x in recs], [x["test_acc"] for x in recs], lw=0.9, alpha=0.7,
                       color=STYLE.get(r["model"], {}).get("color"))
        a.set_title(f"T = {length}", fontsize=9)
        a.grid(alpha=0.3)
        a.set_xlabel("step", fontsize=8)
    for k in range(len(lengths), rows_n * cols):
        axes[k // cols, k % cols].axis("off")
    axes[0, 0].set_ylabel("eval accuracy")
    handles = [Line2D([], [], color=STYLE[m]["color"], label=MODEL_NAMES[m])
               for m in sorted({r["model"] for r in results}, key=MODELS.index)]
    fig.set_layout_engine("constrained")  # panel titles clear of the x labels above them
    fig.suptitle("training curves at each length (one line per seed)")
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)  # clear of the title
    plots.save(fig, run_dir.file("curves_by_length.png"))


def _or_none(t: int | None) -> str:
    return "none passed" if t is None else str(t)


def _runs(path: Path, s: dict) -> tuple[list[dict], list[int], list[str]]:
    """The sweep's runs of the models and lengths its summary holds, those lengths and models."""
    models = [m for m, rows in s["accuracy"].items() if rows]
    lengths = sorted({row["length"] for m in models for row in s["accuracy"][m]})
    results = [r for r in s["jobs"] if r["model"] in models and r["length"] in lengths]
    if not all(re.fullmatch(r"runs/[a-z]+-T\d+-seed\d+", r["job"]) for r in results):
        raise ValueError("a job that is no run of the sweep")
    return results, lengths, models


def figures(path: Path) -> None:
    run_dir = RunDir(path)
    s = run_dir.read_json(SUMMARY)
    results, lengths, _ = _runs(path, s)  # everything read first: a damaged file draws nothing
    curves = {r["job"]: RunDir(path / r["job"]).metrics() for r in results}
    _accuracy_figure(run_dir, s)
    _curves_figure(run_dir, results, lengths, curves)


def report(path: Path) -> list:
    run_dir = RunDir(path)
    s = run_dir.read_json(SUMMARY)
    again = get_experiment(run_dir.read_json(CONFIG)["experiment"]).continue_command(path)  # -best's or the course's
    results, lengths, models = _runs(path, s)
    cells = {(m, r["length"]): f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}"
             for m in models for r in s["accuracy"][m]}
    seeds = sorted({r["seed"] for r in results})
    return [
        Section("How long a palindrome each model learns", [
            Table(["model", "longest T with mean >= 99%", "longest T, every shorter T passing too"],
                  [[MODEL_NAMES[m], _or_none(s["longest_T_99"][m]["longest_T"]),
                    _or_none(s["longest_T_99"][m]["longest_T_unbroken"])] for m in models], {1, 2}),
            Text(f"**{s['missing_runs']} runs missing**: resume with `{again}`."
                 if s["missing_runs"] else "")]),
        Section("Analysis", [*(Text(_analysis(m, s["accuracy"][m], results)) for m in models),
                             Text(_against_published(s))]),
        Section("Accuracy against length", [
            Figure("accuracy_vs_length.png", f"Test accuracy on fresh samples against the palindrome length T, per "
                                             f"model: mean over the {len(seeds)} seeds, the band one standard "
                                             "deviation either side, a dot for each seed; dashed, the 99% that "
                                             "counts as learnt; dotted, chance."),
            Table(["T", *(MODEL_NAMES[m] for m in models)],
                  [[t, *(cells.get((m, t), "") for m in models)] for t in lengths], set(range(len(models) + 1)),
                  caption="test accuracy (%) on fresh samples, mean ± std over seeds")]),
        Section("Training curves", [
            Figure("curves_by_length.png", "Accuracy on the fixed eval set against steps, one panel per length, "
                                           "one line per run, coloured by model."),
            Text(f"Every run is a complete run directory under `runs/` with its own report; `{RESULTS}` holds each "
                 "one's summary (one JSON line per run).")]),
    ]


def _analysis(model: str, rows: list[dict], results: list[dict]) -> str:
    """Where ``model`` collapses and how its seeds spread, then what limits it."""
    name, runs = MODEL_NAMES[model], [r for r in results if r["model"] == model]
    return f"{analysis.collapse(name, rows, PASS)} {analysis.limit(name, rows, runs, PASS)}".strip()


def _against_published(s: dict) -> str:
    """The vanilla RNN's first failing length beside the course's published collapse range."""
    rows = s["accuracy"].get("rnn")
    if not rows:
        return ""
    low, high = PUBLISHED_COLLAPSE
    failing = [r["length"] for r in rows if r["mean"] < PASS]
    tried = f"T={min(r['length'] for r in rows)} to {max(r['length'] for r in rows)}"
    text = (f"The course's published vanilla-RNN runs collapse somewhere between T={low} and T={high}, varying "
            "from seed to seed. ")
    if not failing:
        return text + f"Here it learnt every length tried ({tried}) with these settings."
    t = failing[0]
    where = ("within that range" if low <= t <= high else "shorter than that range" if t < low else
             "beyond that range")
    return text + f"Here its mean first fell below {100 * PASS:.0f}% at T={t}, {where} ({tried} tried)."


def headline(s: dict) -> str:
    parts = [f"{MODEL_NAMES[m]} {_or_none(v['longest_T'])}" for m, v in s["longest_T_99"].items()]
    return ("longest T with mean test accuracy >= 99%: " + ", ".join(parts)
            + f" ({s['runs']} runs, {s['missing_runs']} missing, {s['wall_time_s']:.0f} s)")


QUICK = {"lengths": (3, 6), "n_seeds": 2, "steps": 30, "hidden": 8, "eval_every": 15, "eval_size": 100,
         "final_size": 100, "batch_size": 32, "workers": 1}

register(Experiment(
    name="palindrome-sweep",
    description="accuracy against palindrome length T for RNN, LSTM and GRU over several seeds (resumable)",
    config_cls=SweepConfig, run=run, report=report, figures=figures, headline=headline, quick=QUICK,
))
register(Experiment(
    name="palindrome-sweep-best",
    description="palindrome-sweep with our best settings (orthogonal W_hh, lr 3e-4, curriculum, best weights)",
    config_cls=SweepConfig, run=run, report=report, figures=figures, headline=headline, defaults=BEST, quick=QUICK,
))
