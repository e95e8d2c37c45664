"""palindrome-sweep: how long a palindrome each model can learn, over lengths x seeds x models.

Runs are spread over worker processes (one BLAS/torch thread each); every finished run is
appended at once to results.jsonl, so ``twinnet run palindrome-sweep --resume RUN_DIR`` skips
the (model, length, seed) triples already there and runs only the rest. Runs in progress save a
checkpoint in ``inflight/`` every minute, so a resumed sweep continues them where they stopped.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from twinnet import TwinnetError, checkpoint, hardware
from twinnet.config import to_dict
from twinnet.experiments.palindrome import (  # CHECKPOINT_EVERY_S: about what a stopped sweep loses per run
    CHECKPOINT_EVERY_S,
    check_grid,
    BEST,
    MODEL_NAMES,
    MODELS,
    Recipe,
    job_config,
    save_model_structure,
    train_one,
)
from twinnet.registry import Experiment, register
from twinnet.report import plots
from twinnet.report.build import markdown_table
from twinnet.runs import INFLIGHT, RESULTS, SUMMARY, RunDir, append_line, read_jsonl

# relative cost of one step per time step (bench/rnn_step.py), to start the longest runs first
COST = {"rnn": 1.0, "irnn": 1.0, "lstm": 3.5, "gru": 2.5}
PASS = 0.99  # "learnt": mean test accuracy over the seeds at least this


@dataclass(frozen=True)
class SweepConfig(Recipe):
    resumable: ClassVar[bool] = True  # `twinnet run --resume RUN_DIR` continues an interrupted sweep
    # a resume may change the grid (runs outside it stay out of the summary) and the workers, never the recipe
    resume_may_change: ClassVar[frozenset[str]] = frozenset({"models", "lengths", "n_seeds", "workers"})

    models: tuple[str, ...] = ("rnn", "lstm", "gru")
    lengths: tuple[int, ...] = tuple(range(5, 61, 5))  # palindrome lengths T
    n_seeds: int = 5  # seeds seed, seed+1, ..., seed+n_seeds-1 at every (model, length)
    workers: int = 0  # processes (0: one per core), each one training at a time on one thread; 1: in this process

    def __post_init__(self) -> None:
        super().__post_init__()
        check_grid(self.models, self.lengths)
        if self.n_seeds < 1 or self.workers < 0:
            raise ValueError("n_seeds must be >= 1 and workers >= 0")

    def triples(self) -> list[tuple[str, int, int]]:
        return [(m, t, self.seed + k) for m in self.models for t in self.lengths for k in range(self.n_seeds)]


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies, however it dies (even SIGKILL),
    so that no worker trains on as an orphan. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):  # pragma: no cover
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the main process's handler still ends us
        pass


def _init_worker(parent: int) -> None:
    """Workers share the cores between them: one thread each for torch, the BLAS and the engine.
    They ignore Ctrl-C, which the main process handles by ending them all, and end when it ends."""
    import signal

    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the request above took hold
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    hardware.set_threads(1)


def run_job(job: dict) -> dict:
    """Train one (model, length, seed), continuing from its checkpoint if it has one; the result with
    its evaluation records (picklable, JSON-ready)."""
    from twinnet.experiments.palindrome import PalindromeConfig

    cfg, path = PalindromeConfig(**job["config"]), job["checkpoint"]

    def train():
        return train_one(cfg, progress=False, checkpoint_path=path, checkpoint_every_s=CHECKPOINT_EVERY_S)

    try:
        result, _, records = train()
    except checkpoint.CheckpointError as e:  # unreadable, or from other settings: start over, the file set aside
        aside = checkpoint.set_aside(path)
        print(f"palindrome-sweep: {e}; {cfg.model} T={cfg.length} seed={cfg.seed} starts again (the checkpoint "
              f"is kept as {aside})", file=sys.stderr, flush=True)
        result, _, records = train()
    keep = ("step", "length", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "time_s")
    return {**result, "records": [{k: r[k] for k in keep} for r in records], "pid": os.getpid()}


def checkpoint_file(run_dir: RunDir, model: str, length: int, seed: int) -> Path:
    """Where the run (model, length, seed) of a sweep keeps its checkpoint while in progress."""
    return run_dir.file(INFLIGHT) / f"{model}-T{length}-seed{seed}.pt"


def _execute(jobs: list[dict], workers: int, on_result, in_process: bool = False) -> None:
    """Run the jobs, calling ``on_result`` in this process as each finishes (in any order).

    ``in_process``: here, one after another, with the caller's thread settings; else on ``workers``
    processes of one thread each (even one: a resumed sweep's last run trains as its first did)."""
    if in_process:  # no start-up cost
        for job in jobs:
            on_result(run_job(job))
        return
    import multiprocessing as mp

    from twinnet.runner import sigterm_interrupts

    with sigterm_interrupts():  # `kill` ends the sweep as Ctrl-C does: workers stopped, results kept
        # spawn, not fork: a forked child inherits torch's OpenMP state and may hang in it
        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(os.getpid(),))
        try:
            for result in pool.imap_unordered(run_job, jobs):
                on_result(result)
            pool.close()  # let the idle workers exit on their own
        except BaseException:
            # interrupted: what finished is already in results.jsonl. (Python may warn at exit
            # about semaphores of the killed workers; nothing is lost.)
            pool.terminate()
            raise
        finally:
            pool.join()


def finished(run_dir: RunDir) -> dict[tuple[str, int, int], dict]:
    """The results already in the run directory, by (model, length, seed)."""
    results = read_jsonl(run_dir.file(RESULTS))
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    for k, r in enumerate(results):
        if not (r.get("model") in MODELS and is_int(r.get("length")) and is_int(r.get("seed"))
                and isinstance(r.get("test_acc"), (int, float)) and isinstance(r.get("outcome"), str)
                and isinstance(r.get("records", []), list)):
            raise TwinnetError(f"{run_dir.file(RESULTS)}: result {k + 1} is damaged (its model, length, seed, "
                               "test_acc or outcome is not what a sweep writes); restore the file, or delete that "
                               "line to run it again")
    return {(r["model"], r["length"], r["seed"]): r for r in results}


def run(cfg: SweepConfig, run_dir: RunDir) -> dict:
    """Run the grid's runs not yet in results.jsonl (the runner holds the directory's lock)."""
    done = finished(run_dir)  # first: a damaged results.jsonl is refused before anything is written
    for model in cfg.models:
        save_model_structure(run_dir, job_config(cfg, model, max(cfg.lengths), cfg.seed))
    todo = [t for t in cfg.triples() if t not in done]
    _tidy_inflight(run_dir, done)
    todo.sort(key=lambda t: -COST[t[0]] * t[1])  # longest first, so no worker is left with a long tail
    workers = min(cfg.workers or hardware.default_threads()[0], max(len(todo), 1))  # one per idle core
    print(f"palindrome-sweep: {len(done)} runs already finished, {len(todo)} to run on {workers} "
          f"worker(s)", file=sys.stderr, flush=True)
    start, count = time.perf_counter(), 0
    cost_left, cost_done = sum(COST[m] * t for m, t, _ in todo), 0.0

    def on_result(result: dict) -> None:
        nonlocal count, cost_left, cost_done
        append_line(run_dir.file(RESULTS), result, sync=True)  # one line per run, on disk before its checkpoint goes
        run_dir.append_metrics({k: v for k, v in result.items() if k not in ("records", "pid")})
        checkpoint.remove(checkpoint_file(run_dir, result["model"], result["length"], result["seed"]))
        count += 1
        _, here = run_cost(result)
        cost_left -= COST[result["model"]] * result["length"]  # whole, with what an earlier sweep trained
        cost_done += here
        elapsed = time.perf_counter() - start
        left = time_left(elapsed, cost_done, cost_left) if count < len(todo) else "done"
        print(f"[{count}/{len(todo)} {elapsed:.0f} s, {left}] "
              f"{result['model']} T={result['length']} seed={result['seed']}: test acc "
              f"{100 * result['test_acc']:.2f}% ({result['outcome']}, {result['train_time_s']:.0f} s)",
              file=sys.stderr, flush=True)

    jobs = [{"config": to_dict(job_config(cfg, m, t, s)), "checkpoint": str(checkpoint_file(run_dir, m, t, s))}
            for m, t, s in todo]
    _execute(jobs, workers, on_result, in_process=cfg.workers == 1)
    wanted = set(cfg.triples())  # results of a grid since changed by --set on resume stay out of the summary
    return summarise(cfg, [r for key, r in finished(run_dir).items() if key in wanted])


def _tidy_inflight(run_dir: RunDir, done: dict) -> None:
    """Make the checkpoint folder; drop the checkpoints of runs whose result is in already (stopped
    between the two writes). The runner has removed the temporary files of unfinished writes."""
    run_dir.file(INFLIGHT).mkdir(exist_ok=True)
    for model, length, seed in done:
        checkpoint.remove(checkpoint_file(run_dir, model, length, seed))


def run_cost(result: dict) -> tuple[float, float]:
    """A finished run's cost (COST x length), split into the part an earlier sweep trained before
    it was stopped (up to the step the run resumed from, of the steps it did) and the part trained here."""
    cost = COST[result["model"]] * result["length"]
    before = cost * min((result.get("resumed_from_step") or 0) / max(result["steps_done"], 1), 1.0)
    return before, cost - before


def time_left(elapsed: float, cost_done: float, cost_left: float) -> str:
    """The wall time still to go, extrapolated from the cost (COST x length) trained so far in this
    process. Runs still in flight count as not started, and runs resuming from a checkpoint at
    their whole cost until they finish, so early on it errs long."""
    if cost_left <= 0:
        return "done"
    if cost_done <= 0:  # only runs that had finished before the stop
        return "time left not known yet"
    seconds = elapsed * cost_left / cost_done
    return f"about {seconds / 3600:.1f} h left" if seconds >= 5400 else f"about {seconds / 60:.0f} min left"


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
    missing = len(cfg.triples()) - len(results)
    return {"pass_threshold": PASS, "longest_T_99": longest, "accuracy": table, "runs": len(results),
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
    a.legend(fontsize=8)
    plots.save(fig, run_dir.file("accuracy_vs_length.png"))


def _curves_figure(run_dir: RunDir, results: list[dict], lengths: list[int]) -> None:
    cols = min(4, len(lengths))
    rows_n = -(-len(lengths) // cols)
    from matplotlib.lines import Line2D

    fig, axes = plots.figure(cols, 4.2, 3.2, nrows=rows_n, sharey=True)
    for k, length in enumerate(lengths):
        a = axes[k // cols, k % cols]
        for r in results:
            if r["length"] == length:
                recs = r["records"]
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
    fig.legend(handles=handles, loc="outside upper right", ncols=len(handles), fontsize=8)
    plots.save(fig, run_dir.file("curves_by_length.png"))


def _or_none(t: int | None) -> str:
    return "none passed" if t is None else str(t)


def report(path: Path) -> list[str]:
    run_dir = RunDir(path)
    s = run_dir.read_json(SUMMARY)
    models = [m for m, rows in s["accuracy"].items() if rows]
    results = [r for r in finished(run_dir).values() if r["model"] in models]
    lengths = sorted({row["length"] for m in models for row in s["accuracy"][m]})
    results = [r for r in results if r["length"] in lengths]
    cells = {(m, r["length"]): f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}"
             for m in models for r in s["accuracy"][m]}
    acc_table = markdown_table(["T", *(MODEL_NAMES[m] for m in models)],
                               [[t, *(cells.get((m, t), "") for m in models)] for t in lengths],
                               set(range(len(models) + 1)))
    longest = markdown_table(["model", "longest T with mean >= 99%", "longest T, every shorter T passing too"],
                             [[MODEL_NAMES[m], _or_none(s["longest_T_99"][m]["longest_T"]),
                               _or_none(s["longest_T_99"][m]["longest_T_unbroken"])] for m in models], {1, 2})
    note = f"\n\n**{s['missing_runs']} runs missing**: resume with `twinnet run palindrome-sweep --resume {path}`." \
        if s["missing_runs"] else ""
    _accuracy_figure(run_dir, s)  # drawn once every figure the text needs was read: a damaged summary changes nothing
    _curves_figure(run_dir, results, lengths)
    return [
        "## How long a palindrome each model learns\n\n" + longest + note,
        "## Accuracy against length\n\n![accuracy_vs_length.png](accuracy_vs_length.png)\n\n"
        "Test accuracy (%) on fresh samples, mean ± std over seeds:\n\n" + acc_table,
        "## Training curves\n\n![curves_by_length.png](curves_by_length.png)\n\n"
        f"Every run's evaluation records are in `{RESULTS}` (one JSON line per run).",
    ]


def headline(s: dict) -> str:
    parts = [f"{MODEL_NAMES[m]} {_or_none(v['longest_T'])}" for m, v in s["longest_T_99"].items()]
    return ("longest T with mean test accuracy >= 99%: " + ", ".join(parts)
            + f" ({s['runs']} runs, {s['missing_runs']} missing, {s['wall_time_s']:.0f} s)")


QUICK = {"lengths": (3, 6), "n_seeds": 2, "steps": 30, "hidden": 8, "eval_every": 15, "eval_size": 100,
         "final_size": 100, "batch_size": 32, "workers": 1}

register(Experiment(
    name="palindrome-sweep",
    description="accuracy against palindrome length T for RNN, LSTM and GRU over several seeds (resumable)",
    config_cls=SweepConfig, run=run, report=report, headline=headline, quick=QUICK,
))
register(Experiment(
    name="palindrome-sweep-best",
    description="palindrome-sweep with our best settings (orthogonal W_hh, lr 3e-4, curriculum, best weights)",
    config_cls=SweepConfig, run=run, report=report, headline=headline, defaults=BEST, quick=QUICK,
))
