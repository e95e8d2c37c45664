"""rnn-gradients: the vanishing gradient measured, as the norm of dLoss/dh(t) against t.

The label of a palindrome is its first digit, so what the model must learn reaches it only
through dLoss/dh(1). For each model and length this measures, on a fixed set of fresh samples,
the mean over samples of ||d loss_b / d h_b(t)|| for t = 1..T-1 (loss_b: sample b's own
cross-entropy), at initialisation and after a short training with the recipe, and checks at
initialisation that the NumPy engine's BPTT and PyTorch's autograd measure the same thing.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from twinnet.data.palindrome import PalindromeDataset
from twinnet.recurrent_task import MODEL_NAMES, Recipe, build_models, check_grid, job_config, save_model_structure, \
    train_one
from twinnet.registry import Experiment, register
from twinnet.report import plots
from twinnet.report.blocks import Figure, Section, Table, Text
from twinnet.runs import SUMMARY, RunDir
from twinnet.twins import DTYPES, max_relative_difference


@dataclass(frozen=True)
class GradientsConfig(Recipe):
    resumable: ClassVar[bool] = False

    models: tuple[str, ...] = ("rnn", "lstm", "gru")
    lengths: tuple[int, ...] = (10, 20, 40)  # palindrome lengths T
    measure_samples: int = 512  # fresh samples the norms are averaged over

    def __post_init__(self) -> None:
        super().__post_init__()
        check_grid(self.models, self.lengths)
        self.check_length_fits(max(self.lengths))
        if self.measure_samples < 1:
            raise ValueError(f"measure_samples must be >= 1, got {self.measure_samples}")


def hidden_grad_norms(model, engine: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(L,) mean over samples of ||d loss_b / d h_b(t)||, from one backward of the batch-mean loss.

    h_b(t) reaches sample b's loss only, so d loss_b / d h_b(t) = B * dLoss/dh_b(t).
    """
    if engine == "torch":
        import torch

        p = next(model.parameters())
        model.record_hidden = True
        try:
            model.zero_grad(set_to_none=True)
            logits = model(torch.as_tensor(x, dtype=p.dtype))
            torch.nn.functional.cross_entropy(logits, torch.as_tensor(y, dtype=torch.long)).backward()
            grads = model.hidden_grads()  # (B, L, H)
        finally:
            model.record_hidden = False
            model.zero_grad(set_to_none=True)
    else:
        from twinnet.numpy_nn import CrossEntropyLoss

        loss = CrossEntropyLoss()
        model.record_hidden = True
        try:
            loss.forward(model.forward(np.asarray(x, dtype=model.dtype)), y)
            model.backward(loss.backward())
            grads = model.hidden_grads()
        finally:
            model.record_hidden = False
            model.zero_grad()
    return len(y) * np.linalg.norm(grads.astype(np.float64), axis=2).mean(axis=0)


def run(cfg: GradientsConfig, run_dir: RunDir, ctx) -> dict:
    results = []
    for model in cfg.models:
        save_model_structure(run_dir, job_config(cfg, model, max(cfg.lengths), cfg.seed))
        for length in cfg.lengths:
            job = job_config(cfg, model, length, cfg.seed)
            probe = PalindromeDataset(length, cfg.encoding, dtype=DTYPES[cfg.dtype])
            m = probe.eval_set(cfg.measure_samples, cfg.seed, stream=2)  # neither training nor eval data
            init = hidden_grad_norms(build_models(job)[cfg.engine], cfg.engine, m.x, m.y)
            # the two engines from the same weights in float64: BPTT against autograd
            twins = build_models(job_config(cfg, model, length, cfg.seed, dtype="float64"))
            x64 = m.x.astype(np.float64)
            by_engine = {e: hidden_grad_norms(twins[e], e, x64, m.y) for e in ("numpy", "torch")}
            agree = max_relative_difference(by_engine["numpy"], by_engine["torch"])
            result, learner, _, _ = train_one(job, progress=ctx.progress)
            trained = hidden_grad_norms(learner.model, cfg.engine, m.x, m.y)
            results.append({"model": model, "length": length, "norms_init": init.tolist(),
                            "norms_trained": trained.tolist(), "test_acc": result["test_acc"],
                            "steps_done": result["steps_done"], "engines_max_rel_diff": agree})
            run_dir.append_metrics({k: v for k, v in results[-1].items() if not k.startswith("norms")})
    return {"results": results, "engine": cfg.engine, "steps": cfg.steps}


def _ratio(norms: list[float]) -> float:
    """||dLoss/dh(1)|| / ||dLoss/dh(T-1)||: how much of the last step's gradient reaches the first."""
    return norms[0] / norms[-1] if norms[-1] > 0 else float("nan")


def figures(path: Path) -> None:
    """hidden_grad_norms.png: one panel per length, the norms at initialisation and after training."""
    run_dir = RunDir(path)
    s = run_dir.read_json(SUMMARY)
    lengths = sorted({r["length"] for r in s["results"]})
    fig, ax = plots.figure(len(lengths), 4.6, 3.8)
    colours = {"rnn": "tab:blue", "lstm": "tab:green", "gru": "tab:red", "irnn": "tab:purple"}
    for j, length in enumerate(lengths):
        a = ax[0, j]
        for r in (r for r in s["results"] if r["length"] == length):
            t = np.arange(1, len(r["norms_init"]) + 1)
            c = colours.get(r["model"])
            a.semilogy(t, np.maximum(r["norms_init"], 1e-30), ls="--", color=c, label=f"{r['model']} at init")
            a.semilogy(t, np.maximum(r["norms_trained"], 1e-30), ls="-", color=c, label=f"{r['model']} trained")
        a.set(xlabel="time step t", ylabel="mean ||d loss / d h(t)||", title=f"T = {length}")
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    fig.suptitle(f"gradient reaching each step ({s['engine']} engine; trained = after {s['steps']:,} steps)",
                 y=1.03)
    plots.save(fig, run_dir.file("hidden_grad_norms.png"))


def report(path: Path) -> list:
    s = RunDir(path).read_json(SUMMARY)
    rows = [[MODEL_NAMES[r["model"]], r["length"], f"{_ratio(r['norms_init']):.2e}",
             f"{_ratio(r['norms_trained']):.2e}", f"{100 * r['test_acc']:.1f}%", f"{r['engines_max_rel_diff']:.1e}"]
            for r in s["results"]]
    return [
        Section("dLoss/dh(t) against t", [Figure("hidden_grad_norms.png", (
            "Mean over fresh samples of the norm of each sample's loss gradient with respect to the hidden state "
            "h(t), against the time step t (log scale), one panel per length: dashed at initialisation, solid "
            f"after {s['steps']:,} training steps ({s['engine']} engine)."))]),
        Section("How much gradient reaches the first step", [
            Text("The ratio of the norm at t = 1 (where the label's digit enters) to that at the last step; the last "
                 "column is the largest relative difference between the norms measured by the NumPy engine's BPTT "
                 "and by PyTorch's autograd at initialisation."),
            Table(["model", "T", "dh(1)/dh(T-1) at init", "after training", "test acc after training",
                   "numpy vs torch (float64)"], rows, {1, 2, 3, 4, 5}),
            Text(analysis(s["results"]))]),
    ]


def analysis(results: list[dict]) -> str:
    """What the table shows, from its numbers: at the longest length, which model passes the most gradient back
    to the first step after training and which the least (with their test accuracy), and how each model's
    ratio at initialisation changes from the shortest length to the longest."""
    finite = [r for r in results if math.isfinite(_ratio(r["norms_trained"])) and math.isfinite(_ratio(r["norms_init"]))]
    if not finite:
        return "No finite ratio was measured, so there is nothing to compare."
    longest = max(r["length"] for r in finite)
    at = sorted((r for r in finite if r["length"] == longest), key=lambda r: _ratio(r["norms_trained"]))
    name = lambda r: MODEL_NAMES[r["model"]]  # noqa: E731
    said = lambda r: f"{_ratio(r['norms_trained']):.1e} for the {name(r)} ({100 * r['test_acc']:.1f}% test accuracy)"  # noqa: E731
    text = (f"At T={longest}, after training, the gradient reaching the first step is {said(at[-1])}" +
            (f", and {said(at[0])}." if len(at) > 1 else "."))
    shortest = min(r["length"] for r in finite)
    if shortest < longest:
        changes = []
        for model in dict.fromkeys(r["model"] for r in finite):
            a = [r for r in finite if r["model"] == model and r["length"] == shortest]
            b = [r for r in finite if r["model"] == model and r["length"] == longest]
            if a and b:
                changes.append(f"the {MODEL_NAMES[model]}'s from {_ratio(a[0]['norms_init']):.1e} to "
                               f"{_ratio(b[0]['norms_init']):.1e}")
        if changes:
            text += f" At initialisation, from T={shortest} to T={longest}, the ratio goes " + "; ".join(changes) + "."
    return text


def headline(s: dict) -> str:
    parts = [f"{r['model']} T={r['length']}: {_ratio(r['norms_init']):.1e} -> {_ratio(r['norms_trained']):.1e}"
             for r in s["results"]]
    return "||dLoss/dh(1)|| / ||dLoss/dh(T-1)||, init -> trained: " + "; ".join(parts)


register(Experiment(
    name="rnn-gradients",
    description="the vanishing gradient measured: norm of dLoss/dh(t) against t, at init and after training",
    config_cls=GradientsConfig, run=run, report=report, figures=figures, headline=headline,
    defaults={"steps": 2000},
    quick={"lengths": (4, 8), "steps": 20, "hidden": 8, "eval_every": 10, "eval_size": 64, "final_size": 64,
           "batch_size": 16, "measure_samples": 32},
))
