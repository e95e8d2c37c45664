"""Training steps of CIFAR-10 presets timed side by side, and each preset's training time projected
from them: the time ratio of two recipes from one short run on one machine.

    python bench/preset_steps.py [--presets airbench94,cifar-fast] [--steps 3] [--repeats 3] [--threads 2]
                                 [--compile] [--variant "cifar-fast batch_size=1024" ...]

Each preset is built as ``twinnet run`` builds it (its model and layout, its optimiser and parameter
groups, Muon, lookahead, autocast as this CPU resolves it) and trains on random images of its batch
size. The presets take turns, ``--steps`` timed steps each per turn after one warm-up step, for
``--repeats`` turns, so a machine that speeds up or slows down touches every preset alike; the median
turn is kept. A preset whose layers stop training part-way (airbench's whitening bias after 3 epochs,
``freeze`` stages) is timed in each of its phases in turn, as the run trains them (epochs of CIFAR-10's
50,000 training images): the presets take turns within a phase, so the machine's drift between phases
touches only the presets with more than one. The projection is the sum over phases of their steps times their step time: it leaves out data
augmentation, evaluation and the setup before the first step (a few percent of a full run here), so
compare it with a full run's training time as a ratio, not as seconds. Prints the CPU, one line per
preset, then each preset's projected time against the first preset's. ``--compile`` adds each preset
again with its network through ``torch.compile`` (named ``preset+compile``; compiled during its warm-up
step, which is not timed) and prints the compiled step time against the eager one. ``--variant "PRESET
KEY=VALUE ..."`` (repeatable) adds a preset with settings changed as ``twinnet run --set`` changes them,
named ``PRESET[KEY=VALUE ...]`` and timed in the same turns (a batch size, an optimiser, a model).
"""

from __future__ import annotations

import argparse
import statistics
import time

import twinnet  # noqa: F401,I001 - before NumPy, so that OpenBLAS loads with twinnet's thread setting
import numpy as np
import torch

from twinnet import TwinnetError, hardware
from twinnet.architectures import MODELS
from twinnet.experiments.image import ImageConfig, epoch_hooks, freeze_stages, freezer, param_groups
from twinnet.learner import Lookahead, make_learner
from twinnet.numpy_nn import backend
from twinnet.runner import resolve_config
from twinnet.torch_nn.conv_grad import route_weight_grads
from twinnet.twins import build_twins
from twinnet.whitening import FREEZE_BIAS_AFTER

N_TRAIN = 50_000  # CIFAR-10's training images: the epochs a preset's phases are counted in


def label(name: str, overrides: tuple[str, ...] | list[str] = ()) -> str:
    """A preset's name in the table, with the settings a ``--variant`` changed."""
    return name + (f"[{' '.join(overrides)}]" if overrides else "")


class Preset:
    """One preset's learner, ready to take training steps on one random batch."""

    def __init__(self, name: str, seed: int = 0, compiled: bool = False, overrides: tuple[str, ...] = ()) -> None:
        try:
            cfg = resolve_config(name, list(overrides))
        except (TwinnetError, KeyError, ValueError) as e:  # an unknown preset or a setting it refuses: one line
            raise SystemExit(str(e).strip("'\"")) from None
        if not isinstance(cfg, ImageConfig) or cfg.engine != "torch" or not cfg.steps:
            raise SystemExit(f"{name}: this bench times torch-engine image presets with a fixed number of steps")
        if cfg.small_crop:
            raise SystemExit(f"{name}: its first epochs train on smaller crops, whose steps this bench does not time")
        spec = MODELS[cfg.model]
        model = build_twins(spec.build, cfg.dtype, seed)["torch"]
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        rng = np.random.default_rng(seed)
        images = rng.standard_normal((cfg.batch_size, *spec.input_shape)).astype(np.float32)
        stages = freeze_stages(cfg.freeze)
        try:
            hooks = [freezer(model, stages, cfg, N_TRAIN)]
        except TwinnetError as e:  # a stage beyond the network or the run: one line
            raise SystemExit(f"{name}: {e}") from None
        if spec.prepare is not None:  # airbench's whitening layer, set up from these images (its bias then frozen)
            hooks.append(spec.prepare(model, images, cfg.whiten_eps))
        self.on_epoch = epoch_hooks(hooks)
        # the phases between the epochs after which fewer parameters train: (first epoch, steps)
        per_epoch = cfg.steps_per_epoch(N_TRAIN)
        changes = {e for _, e in stages} | ({FREEZE_BIAS_AFTER} if spec.prepare is not None else set())
        bounds = sorted({0, cfg.steps} | {e * per_epoch for e in changes if e * per_epoch < cfg.steps})
        self.phases = [(start // per_epoch, end - start) for start, end in zip(bounds, bounds[1:])]
        amp = hardware.resolve_amp(cfg.amp, "cpu")
        if hardware.resolve_conv_weight_grad(cfg.conv_weight_grad, "cpu", amp):  # as `twinnet run` decides
            route_weight_grads(model)
        learner = make_learner(model, cfg, params=param_groups(model, cfg), channels_last=cfg.channels_last, amp=amp)
        if compiled:  # the optimiser keeps the same parameters; state dicts gain the wrapper's prefix throughout
            learner.model = learner.forward = torch.compile(learner.model)  # forward: what a step calls
        self.learner = Lookahead(learner, cfg.lookahead, cfg.steps) if cfg.lookahead else learner
        self.name, self.cfg, self.x = label(name, overrides) + ("+compile" if compiled else ""), cfg, images
        self.y = rng.integers(0, 10, cfg.batch_size)

    def enter(self, phase: int) -> None:
        """The layers frozen as they are from this phase's first epoch on, then a warm-up step (the allocator and
        the kernels)."""
        if self.on_epoch is not None:
            self.on_epoch(self.phases[phase][0], self.learner)
        self.learner.train_step(self.x, self.y)

    def time_steps(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.learner.train_step(self.x, self.y)
        return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="airbench94,cifar-fast", help="comma-separated; ratios against the first")
    p.add_argument("--steps", type=int, default=3, help="timed steps per preset per turn")
    p.add_argument("--repeats", type=int, default=3, help="turns; the median is kept")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also each preset with torch.compile, timed in the same turns")
    p.add_argument("--variant", action="append", default=[], metavar='"PRESET KEY=VALUE ..."',
                   help="also PRESET with these settings (as `twinnet run --set` takes them); repeatable")
    args = p.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.threads < 1:
        raise SystemExit("--steps, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    backend.tune_allocator()  # as `twinnet run` does: large blocks reused, not fresh pages every step
    print(f"CPU: {hardware.cpu_name()} ({hardware.cpu_capability()}), {args.threads} threads", flush=True)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    variants = [v.split() for v in args.variant]
    if any(not v or any("=" not in kv for kv in v[1:]) for v in variants):
        raise SystemExit('--variant takes "PRESET KEY=VALUE ...", e.g. --variant "cifar-fast batch_size=1024"')
    given = names + [label(v[0], v[1:]) for v in variants]
    if len(set(given)) < len(given):  # their times would be pooled under one name
        raise SystemExit(f"a preset or variant is given twice ({', '.join(given)}); give each once")
    presets = [Preset(n, compiled=c) for n in names for c in ((False, True) if args.compile else (False,))]
    presets += [Preset(v[0], overrides=tuple(v[1:])) for v in variants]
    turns: dict[str, list[list[float]]] = {q.name: [[] for _ in q.phases] for q in presets}
    for phase in range(max(len(q.phases) for q in presets)):  # phase by phase: a frozen layer stays frozen
        live = [q for q in presets if phase < len(q.phases)]
        for q in live:
            q.enter(phase)
        for _ in range(args.repeats):
            for q in live:
                turns[q.name][phase].append(q.time_steps(args.steps))
    projected = {}
    for q in presets:
        steps = [statistics.median(t) for t in turns[q.name]]
        projected[q.name] = sum(t * n for t, (_, n) in zip(steps, q.phases))
        for (epoch, n), step, times in zip(q.phases, steps, turns[q.name]):
            where = f", from epoch {epoch}, {n} steps" if len(q.phases) > 1 else ""
            print(f"{q.name}: batch {q.cfg.batch_size}{where}: {step:.2f} s/step (turns: "
                  f"{', '.join(f'{t:.2f}' for t in times)}), {q.cfg.batch_size / step:.0f} images/s", flush=True)
        print(f"{q.name}: {q.cfg.steps} steps -> {projected[q.name]:.0f} s projected", flush=True)
    first = presets[0].name
    for q in presets[1:]:
        if not q.name.endswith("+compile"):
            print(f"{q.name} / {first}: {projected[q.name] / projected[first]:.3f} of the training time", flush=True)
    for n in names if args.compile else ():
        print(f"{n}: compiled / eager step time {projected[n + '+compile'] / projected[n]:.3f}", flush=True)


if __name__ == "__main__":
    main()
