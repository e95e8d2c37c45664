"""``engine-check``: how closely the NumPy engine agrees with PyTorch, every registered model whole.

Each model is built in both engines from the same weights (``twins.build_twins``), in float64, and
one seeded batch goes forward and back through both (``twinnet.check.torch_twin_check``): the
output, the gradient of the input and of every parameter, each as a relative error
max|numpy - torch| / max|torch|. Float64's round-off is about 1e-16 per operation, so a correct
layer agrees to well under ``tolerance``; a wrong one (a transposed weight, a missing term) is off
by order 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twinnet.config import BaseConfig, check_unique
from twinnet.registry import Experiment, register
from twinnet.report import plots
from twinnet.report.blocks import Figure, Section, Table, Text
from twinnet.runs import SUMMARY, RunDir

EPS64 = float(np.finfo(np.float64).eps)
# errors are relative to max(|PyTorch's|, FLOOR): a gradient that is zero in exact arithmetic (a bias
# before batch norm) compares its round-off with this, not with itself; the batch's gradients are O(1)
FLOOR = 1e-4


@dataclass(frozen=True)
class EngineCheckConfig(BaseConfig):  # its seed: the models' initial weights, the batch and the output gradient
    models: str = "all"  # comma-separated model names (`twinnet summary`), or all of them
    batch: int = 2  # samples in the batch checked
    tolerance: float = 1e-8  # the largest relative error that passes

    def __post_init__(self) -> None:
        from twinnet.architectures import MODELS

        super().__post_init__()
        unknown = [m for m in self.names() if m not in MODELS]
        if unknown or not self.names():
            raise ValueError(f"unknown model(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(MODELS)}")
        check_unique("models", self.names())
        if not 1 <= self.batch <= 64:
            raise ValueError(f"batch must be in [1, 64], got {self.batch}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {self.tolerance}")

    def names(self) -> list[str]:
        from twinnet.architectures import MODELS

        if self.models.strip() == "all":
            return list(MODELS)
        return [m.strip() for m in self.models.split(",") if m.strip()]


def check_model(name: str, batch: int, seed: int) -> dict:
    """One model's relative errors: output, input gradient, and the worst parameter gradient (and which)."""
    import torch

    from twinnet.architectures import MODELS
    from twinnet.check import torch_twin_check
    from twinnet.twins import build_twins

    spec = MODELS[name]
    twins = build_twins(spec.build, "float64", seed)
    torch_model = twins["torch"]
    random_masks = any(isinstance(m, torch.nn.Dropout) for m in torch_model.modules())
    torch_model.train(not random_masks)  # dropout draws its masks from each engine's own generator
    rng = np.random.default_rng([seed, batch])
    x = rng.standard_normal((batch, *spec.input_shape))
    errors = torch_twin_check(twins["numpy"], torch_model, x, rng=rng, floor=FLOOR)
    trains = {n for n, p in torch_model.named_parameters() if p.requires_grad}  # frozen ones take no step
    grads = {k[5:-1]: v for k, v in errors.items() if k.startswith("grad[") and k[5:-1] in trains}
    worst = max(grads, key=grads.get)
    return {"model": name, "mode": "eval" if random_masks else "train", "out": errors["out"], "dx": errors["dx"],
            "grad": grads[worst], "worst_param": worst, "params": len(grads), "input_changed": errors["input_changed"]}


def run(cfg: EngineCheckConfig, run_dir: RunDir, ctx) -> dict:
    rows = []
    for name in cfg.names():
        row = check_model(name, cfg.batch, cfg.seed)
        row["passed"] = max(row["out"], row["dx"], row["grad"]) <= cfg.tolerance and row["input_changed"] == 0
        rows.append(row)
        run_dir.append_metrics(row)
    worst = max(max(r["out"], r["dx"], r["grad"]) for r in rows)
    return {"rows": rows, "worst": worst, "passed": all(r["passed"] for r in rows), "tolerance": cfg.tolerance,
            "batch": cfg.batch}


def figures(path: Path) -> None:
    s = RunDir(path).read_json(SUMMARY)
    rows = s["rows"]
    fig, ax = plots.figure(1, max(6.0, 0.45 * len(rows)), 4.0)
    x = np.arange(len(rows))
    floor = EPS64 / 100  # an exact match drawn at the axis' foot, not at 0 (off a log scale)
    for k, (key, label) in enumerate((("out", "output"), ("dx", "input gradient"), ("grad", "worst parameter gradient"))):
        ax[0, 0].bar(x + (k - 1) * 0.27, [max(r[key], floor) for r in rows], 0.27, label=label)
    ax[0, 0].axhline(EPS64, color="k", lw=0.8, ls="--", label="float64 epsilon")
    ax[0, 0].axhline(s["tolerance"], color="r", lw=0.8, ls=":", label="tolerance")
    ax[0, 0].set_yscale("log")
    ax[0, 0].set_ylim(floor / 2, 1)
    ax[0, 0].set_xticks(x, [r["model"] for r in rows], rotation=45, ha="right", fontsize=8)
    ax[0, 0].set(ylabel="relative error (NumPy against PyTorch)", title="The engines agree, model by model")
    ax[0, 0].legend(fontsize=7, loc="upper right")
    plots.save(fig, RunDir(path).file("engine_check.png"))


def report(path: Path) -> list:
    s = RunDir(path).read_json(SUMMARY)
    rows = [[r["model"] + (" (eval mode)" if r.get("mode") == "eval" else ""), f"{r['out']:.1e}", f"{r['dx']:.1e}", f"{r['grad']:.1e} ({r['worst_param']})",
             str(r["params"]), "yes" if r["passed"] else "**no**"] for r in s["rows"]]
    failed = [r["model"] for r in s["rows"] if not r["passed"]]
    verdict = (f"Every model agrees: the largest relative error is {s['worst']:.1e}, "
               f"{s['worst'] / EPS64:.0f} times float64's epsilon ({EPS64:.1e}), under the tolerance "
               f"{s['tolerance']:.0e}." if not failed else
               f"**{', '.join(failed)} disagree(s)** beyond the tolerance {s['tolerance']:.0e}.")
    return [Section("The NumPy engine against PyTorch", [
        Text(f"{_which(s)}, built in both engines from the same float64 weights, takes one seeded "
             f"batch of {s['batch']} forward and back (loss: the sum of the output times a random gradient), in "
             f"training mode (batch norm on the batch's statistics) except where dropout's random masks would "
             f"differ between the engines (eval mode). Errors are max|NumPy - PyTorch| / max(|PyTorch|, "
             f"{FLOOR:.0e}); frozen parameters are left out. "
             f"{verdict}"),
        Table(["model", "output", "input gradient", "worst parameter gradient", "parameters", "passed"], rows,
              {1, 2, 3, 4}),
        Figure("engine_check.png", "Relative error of the NumPy engine's output, input gradient and worst parameter "
                                   "gradient against PyTorch's, per model, in float64; dashed: float64 epsilon, "
                                   "dotted: the tolerance. Exact agreement is drawn at the foot of the axis."),
    ])]


def _which(s: dict) -> str:
    """Which models the table holds: all that are registered, or the ones chosen (a --quick run's three)."""
    from twinnet.architectures import MODELS

    checked = len(s["rows"])
    if checked >= len(MODELS):
        return f"Each of the {checked} registered models"
    return (f"Each of the {checked} models chosen here (of {len(MODELS)} registered; `--set models=all`, the default "
            f"outside --quick, checks every one)")


def headline(s: dict) -> str:
    return f"{len(s['rows'])} models, largest relative error {s['worst']:.1e}: " + (
        "all agree" if s["passed"] else "DISAGREEMENT")


register(Experiment(
    name="engine-check",
    description="the NumPy engine against PyTorch, every registered model whole in float64: output, input and "
    "parameter gradients",
    config_cls=EngineCheckConfig, run=run, report=report, figures=figures, headline=headline,
    quick={"models": "mlp,mnist-cnn,palindrome-gru"},
))
