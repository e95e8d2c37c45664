"""``engine-compare``: one preset trained whole in both engines, the NumPy network against PyTorch's.

The two runs start from the same initial weights (drawn by torch from the run's seed) and see the same
batches in the same order; each is a complete run directory of its own (``numpy/`` and ``torch/``, run
by the sweep runner, so a resume trains neither twice). The report sets their curves side by side, the
relative difference of their training losses step by step, their final figures and the time each
engine took on the same threads. Image presets (the CNNs, the MLPs) and the palindrome presets (the RNNs)
compare; the torch run trains on the CPU in float32, without mixed precision, as the NumPy one does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from twinnet import TwinnetError
from twinnet.config import BaseConfig
from twinnet.experiments.image import ImageConfig, training_s
from twinnet.recurrent_task import PalindromeConfig
from twinnet.registry import Experiment, register
from twinnet.report import analysis, plots
from twinnet.report.blocks import Figure, Section, Table, Text, relocated
from twinnet.runs import CONFIG, REPORT, SUMMARY, RunDir
from twinnet.sweep import Job, run_sweep
from twinnet.twins import relative_differences

ENGINES = ("numpy", "torch")
# losses below this are compared absolutely: a loss trained to ~0 (1e-8 in one engine, 0 in the other)
# has no meaningful relative difference
FLOOR = 1e-4
# per engine: what the torch run must be for the comparison to hold (CPU, float32, no mixed precision)
SAME_FOOTING = {"device": "cpu", "amp": False}


@dataclass(frozen=True)
class EngineCompareConfig(BaseConfig):
    resumable: ClassVar[bool] = True  # a run finished in either engine is kept; a stopped one continues
    resume_may_change: ClassVar[frozenset[str]] = frozenset()

    preset: str = "cnn-vgg"  # an image preset (cnn-vgg, mnist-numpy, mlp-cifar, ...) or palindrome(-best)
    settings: tuple[str, ...] = ()  # key=value settings for both runs, on top of the preset (no engine)
    verify: bool = True  # image presets: check MNIST and CIFAR-10 against their official checksums

    def __post_init__(self) -> None:
        super().__post_init__()
        from twinnet.registry import get_experiment

        try:
            experiment = get_experiment(self.preset)
        except TwinnetError as e:
            raise ValueError(f"preset={self.preset}: {e}") from None
        if experiment.config_cls not in (ImageConfig, PalindromeConfig):
            raise ValueError(f"{self.preset} is not a single run with an engine; engine-compare takes an image preset "
                             "(cnn-vgg, mnist-numpy, mlp-cifar, ...) or palindrome / palindrome-best")
        bad = [s for s in self.settings if "=" not in s or s.split("=", 1)[0].strip() in ("engine", "seed")]
        if bad:
            raise ValueError(f"settings must be key=value pairs other than engine and seed (the comparison sets "
                             f"them), got {', '.join(map(repr, bad))}")
        for job in self.jobs():  # each engine's configuration must hold, before anything trains
            from twinnet.runner import resolve_config

            resolve_config(job.experiment, list(job.overrides), quick=False, values=job.values)

    @property
    def dataset(self) -> str | None:
        """The dataset the preset's runs read (None for the palindromes, which draw their own)."""
        from twinnet.runner import resolve_config

        job = self.jobs()[0]
        return getattr(resolve_config(job.experiment, list(job.overrides), values=job.values), "dataset", None)

    def jobs(self, quick: bool = False) -> list[Job]:
        from twinnet.registry import get_experiment

        fields = {f.name for f in dataclasses.fields(get_experiment(self.preset).config_cls)}
        footing = {k: v for k, v in SAME_FOOTING.items() if k in fields}
        verify = {"verify": False} if not self.verify and "verify" in fields else {}
        return [Job(engine, self.preset, values={"engine": engine, **verify, **(footing if engine == "torch" else {})},
                    overrides=tuple(self.settings), seed=self.seed, quick=quick, labels={"engine": engine},
                    cost=3.0 if engine == "numpy" else 1.0) for engine in ENGINES]


def run(cfg: EngineCompareConfig, run_dir: RunDir, ctx) -> dict:
    jobs = cfg.jobs(ctx.quick)
    done = run_sweep(run_dir, jobs, threads=ctx.threads, command=ctx.command, data=ctx.data_dir,
                     name="engine-compare", summary_check=lambda s: "test_acc" in s and "train_time_s" in s)
    runs = {j.key: _figures_of(done[j.key]["summary"]) for j in jobs}
    rel = _loss_differences(run_dir.path, FLOOR)
    rel = rel[np.isfinite(rel)]  # a diverged run's last losses: its outcome says so
    dtype = _dtype(run_dir.path / "numpy")
    return {"preset": cfg.preset, "runs": runs, "dtype": dtype, "steps_compared": int(len(rel)), "floor": FLOOR,
            "max_rel_loss_diff": float(rel.max(initial=0.0)), "first_rel_loss_diff": float(rel[0]) if len(rel) else None,
            "final_rel_loss_diff": float(rel[-1]) if len(rel) else None,
            "speed_ratio": runs["numpy"]["s_per_step"] / runs["torch"]["s_per_step"]}


def _figures_of(s: dict) -> dict:
    steps = int(s.get("steps", s.get("steps_done", 0)))
    training = training_s(s)
    return {"test_acc": s["test_acc"], "test_loss": s.get("test_loss"), "train_acc": s.get("train_acc"),
            "steps": steps, "train_time_s": s["train_time_s"], "training_s": training,
            "s_per_step": training / max(steps, 1), "outcome": s.get("outcome", "completed")}


def _dtype(path: Path) -> str:
    return str(RunDir(path).read_json(CONFIG)["config"].get("dtype", "float32"))


def _step_losses(path: Path) -> np.ndarray:
    """Every training step's loss of one run: image runs keep it in predictions.npz, palindrome runs in
    step_loss.npz."""
    run = RunDir(path)
    name = "predictions.npz" if run.file("predictions.npz").exists() else "step_loss.npz"
    return np.asarray(run.load_arrays(name)["step_loss"], np.float64)


def _loss_differences(path: Path, floor: float) -> np.ndarray:
    """The two engines' per-step relative loss differences over the steps both recorded, from step 1."""
    losses = [_step_losses(path / e) for e in ENGINES]
    n = min(len(v) for v in losses)
    return relative_differences(losses[0][:n], losses[1][:n], floor)


def figures(path: Path) -> None:
    run = RunDir(path)
    s = run.read_json(SUMMARY)
    metrics = {e: RunDir(path / e).metrics() for e in ENGINES}
    losses = {e: _step_losses(path / e) for e in ENGINES}
    fig, ax = plots.figure(3, 5.0, 3.8)
    for engine in ENGINES:
        style = plots.ENGINE_STYLE[engine]
        steps = np.arange(1, len(losses[engine]) + 1)
        ax[0, 0].plot(steps, losses[engine], label=f"{engine}", **{**style, "lw": style["lw"] / 2})
        recs = [r for r in metrics[engine] if "test_acc" in r]
        ax[0, 1].plot([r["step"] for r in recs], [r["test_acc"] for r in recs], marker=".", label=engine, **style)
    ax[0, 0].set(xlabel="step", ylabel="training loss (every step)", yscale="log",
                 title=f"{s['preset']}: training loss, both engines")
    ax[0, 1].set(xlabel="step", ylabel="test accuracy", title="test accuracy at each evaluation")
    n = min(len(losses["numpy"]), len(losses["torch"]))
    plots.agreement(ax[0, 2], losses["numpy"][:n], losses["torch"][:n], s["dtype"], s.get("floor", FLOOR))
    ax[0, 2].set(xlabel="step", ylabel="relative difference of the losses", title="per-step agreement")
    for a in ax[0, :2]:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    plots.save(fig, run.file("engines.png"))


def report(path: Path) -> list:
    from twinnet.report.build import body_blocks

    s = RunDir(path).read_json(SUMMARY)
    r = s["runs"]
    rows = [[e, f"{100 * r[e]['test_acc']:.2f}%", "" if r[e]["test_loss"] is None else f"{r[e]['test_loss']:.4g}",
             f"{r[e]['steps']:,}", f"{r[e]['training_s']:.1f} s", f"{1000 * r[e]['s_per_step']:.1f} ms",
             r[e]["outcome"]] for e in ENGINES]
    parted = analysis.parting(_loss_differences(path, s.get("floor", FLOOR)), s["dtype"])
    faster, ratio = ("PyTorch", s["speed_ratio"]) if s["speed_ratio"] >= 1 else ("NumPy", 1 / s["speed_ratio"])
    gap = 100 * (r["numpy"]["test_acc"] - r["torch"]["test_acc"])
    said = [
        analysis.agreement(s["max_rel_loss_diff"], s["steps_compared"], s["dtype"]) + (" " + parted if parted else "")
        if s["steps_compared"] else "No training step was recorded in both engines, so there is nothing to compare "
                                    "step by step.",
        (f"At the first step the losses differed by {s['first_rel_loss_diff']:.1e} (relative), at the last by "
         f"{s['final_rel_loss_diff']:.1e}. " if s["steps_compared"] else "")
        + (f"The NumPy engine's test accuracy is {abs(gap):.2f} points {'above' if gap > 0 else 'below'} PyTorch's "
           f"({100 * r['numpy']['test_acc']:.2f}% against {100 * r['torch']['test_acc']:.2f}%)." if gap else
           f"Both engines reach the same test accuracy, {100 * r['torch']['test_acc']:.2f}%."),
        f"Training took {r['numpy']['training_s']:.1f} s in the NumPy engine and {r['torch']['training_s']:.1f} s "
        f"in PyTorch's, evaluation excluded, on the same threads (env.json): "
        + (f"{faster} was {ratio:.2f} times faster per step." if round(ratio, 2) > 1 else
           "the two took the same time per step, to the hundredth."),
    ]
    blocks = [Section("NumPy against PyTorch, the whole run", [
        Text(f"`{s['preset']}` trained twice from the same initial weights (drawn by torch, seeded) on the same "
             f"batches in the same order, once in each engine, {s['dtype']}, PyTorch on the CPU without mixed "
             "precision."),
        Table(["engine", "test acc", "test loss", "steps", "training time", "per step", "outcome"], rows,
              {1, 2, 3, 4, 5}),
        *(Text(t) for t in said if t),
        Figure("engines.png", "Left: every step's training loss in both engines (log scale; the NumPy engine's "
                              "line wide and pale under PyTorch's). Middle: test accuracy at each evaluation. "
                              "Right: the relative difference of the two training losses at every step, "
                              f"|numpy - torch| / max(|torch|, {FLOOR:g}) (losses below {FLOOR:g} compared "
                              f"absolutely), with the {s['dtype']} machine epsilon dashed; "
                              "steps equal exactly are counted in the legend."),
    ])]
    for k, engine in enumerate(ENGINES):  # each engine's run as its own report shows it
        run = path / engine
        # the network's structure (both engines' tables) and traced step once, with the first engine's run
        found = relocated(body_blocks(run, draw=not (run / REPORT).is_file(), structure=k == 0), engine)
        if k:
            found.append(Text(f"Its model structure and traced step are those shown with the {ENGINES[0]} engine's "
                              f"run above (the same network; its own report, [{engine}/{REPORT}]({engine}/{REPORT}), "
                              "repeats them)."))
        blocks.append(Section(f"The {engine} engine's run", found))
    return blocks


def headline(s: dict) -> str:
    r = s["runs"]
    def secs(t: float) -> str:  # a quick run's fraction of a second is not "0 s"
        return f"{t:.0f} s" if t >= 10 else f"{t:.2g} s"

    return (f"{s['preset']}: numpy {100 * r['numpy']['test_acc']:.2f}% in {secs(r['numpy']['training_s'])}, torch "
            f"{100 * r['torch']['test_acc']:.2f}% in {secs(r['torch']['training_s'])}; loss curves within "
            f"{s['max_rel_loss_diff']:.1e} (relative) over {s['steps_compared']:,} steps")


register(Experiment(
    name="engine-compare",
    description="one preset (cnn-vgg by default, or an RNN's palindrome) trained in both engines from the same "
    "weights on the same batches: curves, per-step agreement, time per engine",
    config_cls=EngineCompareConfig, run=run, report=report, figures=figures, headline=headline,
))
