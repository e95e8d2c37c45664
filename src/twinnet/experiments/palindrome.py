"""palindrome: one recurrent model learns to recall the first digit of a palindrome of length T.

The course's recipe is the default (``twinnet.recurrent_task.Recipe``); ``palindrome-best`` adds
our best settings. Resumable: a checkpoint about every minute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twinnet.checkpoint import Checkpointer
from twinnet.config import to_dict
from twinnet.recurrent_task import BEST, MODEL_NAMES, PalindromeConfig, best_for, save_model_structure, train_one
from twinnet.registry import Experiment, register
from twinnet.report import analysis, plots
from twinnet.report.blocks import Figure, Section, Table, Text
from twinnet.runs import CHECKPOINT, SUMMARY, RunDir

STEP_LOSS = "step_loss.npz"


def run(cfg: PalindromeConfig, run_dir: RunDir, ctx) -> dict:
    checkpoints = Checkpointer(run_dir.file(CHECKPOINT), to_dict(cfg), cfg.resume_may_change, tolerant=True,
                               defaults=to_dict(type(cfg)()))
    params = None
    if not checkpoints.exists():  # stopped before its first checkpoint (or the checkpoint is gone): from step 0
        run_dir.restart_metrics()
        params = save_model_structure(run_dir, cfg)

    def restored(state) -> None:  # the checkpoint passed every check of a resume: only now are files written
        nonlocal params
        # a resumed run's metrics file may hold evaluations made after the checkpoint: keep exactly the checkpoint's
        run_dir.write_metrics(state.history.records)
        params = save_model_structure(run_dir, cfg)

    result, _, _, step_losses = train_one(cfg, on_eval=run_dir.append_metrics, progress=ctx.progress,
                                          checkpoints=checkpoints, on_restore=restored)
    run_dir.save_arrays(STEP_LOSS, step_loss=np.asarray(step_losses, np.float64))  # every step's training loss
    return {**result, "parameters": params}


def figures(path: Path) -> None:
    """curves.png: eval and running train figures against steps, and the curriculum's length if it moved."""
    run_dir = RunDir(path)
    s, metrics = run_dir.read_json(SUMMARY), run_dir.metrics()
    lengths, steps = [r["length"] for r in metrics], [r["step"] for r in metrics]
    curriculum = len(set(lengths)) > 1
    fig, ax = plots.figure(3 if curriculum else 2, 4.8, 3.6)
    for key, j, label in (("acc", 0, "accuracy"), ("loss", 1, "cross-entropy loss")):
        series = {"eval (fresh, full length)": (steps, [r[f"test_{key}"] for r in metrics]),
                  "train (running, current length)": (steps[1:], [r[f"train_{key}"] for r in metrics[1:]])}
        plots.curves(ax[0, j], series, {"train (running, current length)": {"linestyle": ":"}}, "step", label,
                     logy=key == "loss")
    if curriculum:
        ax[0, 2].plot(steps, lengths, drawstyle="steps-post")
        ax[0, 2].set(xlabel="step", ylabel="training length T", title="curriculum")
        ax[0, 2].grid(alpha=0.3)
    fig.suptitle(f"{MODEL_NAMES[s['model']]}, T={s['length']}, {s['engine']} engine", y=1.02)
    plots.save(fig, run_dir.file("curves.png"))


def report(path: Path) -> list:
    run_dir = RunDir(path)
    s, metrics = run_dir.read_json(SUMMARY), run_dir.metrics()
    params = [[f"`{p['name']}`", "(" + ", ".join(str(d) for d in p["shape"]) + ")", f"{p['count']:,}"]
              for p in s["parameters"]]
    moved = len({r["length"] for r in metrics}) > 1
    return [
        Section("Result", [
            Table(["model", "T", "engine", "test accuracy", "test loss", "best eval acc", "steps", "outcome",
                   "train time"],
                  [[MODEL_NAMES[s["model"]], s["length"], s["engine"], f"{100 * s['test_acc']:.2f}%",
                    "n/a" if s["test_loss"] is None else f"{s['test_loss']:.4f}", f"{100 * s['best_eval_acc']:.2f}%",
                    f"{s['steps_done']:,}", s["outcome"], f"{s['train_time_s']:.1f} s"]], {1, 3, 4, 5, 6, 8}),
            Text("Test accuracy is measured on fresh samples that no decision (early stopping, curriculum) looked "
                 "at; the curves use a separate fixed eval set.")]),
        Section("Training curves", [Figure("curves.png", (
            "Accuracy and cross-entropy loss (log scale) against steps: on the fixed eval set at the full length "
            "T, and the running mean of the training batches since the previous evaluation, at the length they "
            "were drawn at" + ("; right, the curriculum's training length." if moved else ".")
            + "".join(f" {t}" for t in (analysis.learning_rate(metrics),) if t)))]),
        Section("Parameters (same names and shapes in both engines)", [
            Table(["parameter", "shape", "count"],
                  [*params, ["total", "", f"{sum(p['count'] for p in s['parameters']):,}"]], {2})]),
    ]


def headline(s: dict) -> str:
    return (f"{MODEL_NAMES[s['model']]} T={s['length']} ({s['engine']}): test accuracy {100 * s['test_acc']:.2f}% "
            f"after {s['steps_done']:,} steps ({s['outcome']}) in {s['train_time_s']:.1f} s")


QUICK = {"steps": 40, "hidden": 16, "eval_every": 20, "eval_size": 200, "final_size": 200, "batch_size": 32}

register(Experiment(
    name="palindrome",
    description="one RNN/LSTM/GRU recalls the first digit of a length-T palindrome (course recipe)",
    config_cls=PalindromeConfig, run=run, report=report, figures=figures, headline=headline, quick=QUICK,
))
register(Experiment(
    name="palindrome-best",
    description="palindrome with our best settings: orthogonal W_hh (vanilla RNN), lr 3e-4, curriculum over T, "
                "best weights kept",
    config_cls=PalindromeConfig, run=run, report=report, figures=figures, headline=headline, defaults=BEST,
    defaults_for=best_for, quick=QUICK,
))
