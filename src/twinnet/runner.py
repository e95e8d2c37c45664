"""``twinnet run``: resolve the configuration, create the run directory, train, record, report."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from twinnet.config import apply_overrides, make_config, to_dict
from twinnet.registry import get_experiment
from twinnet.report.build import write_report
from twinnet.runs import CONFIG, ENV, SUMMARY, RunDir, environment


def resolve_config(name: str, overrides: list[str] = (), quick: bool = False, seed: int | None = None):
    """The config class's defaults, the preset's, its quick settings, then ``--set`` and ``--seed``."""
    experiment = get_experiment(name)
    values = {**experiment.defaults, **(experiment.quick if quick else {})}
    cfg = make_config(experiment.config_cls, values, context=f"{name}: ")
    assignments = list(overrides) + ([f"seed={seed}"] if seed is not None else [])
    return apply_overrides(cfg, assignments, context=f" for {name}")


def set_threads(threads: int | None) -> None:
    """Give torch and NumPy's BLAS the same thread count (None leaves the defaults: all cores)."""
    if threads is None:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def run_experiment(
    name: str,
    overrides: list[str] = (),
    *,
    quick: bool = False,
    seed: int | None = None,
    out: Path | None = None,
    runs_root: Path = Path("runs"),
    threads: int | None = None,
) -> Path:
    """Run one experiment end to end and return its run directory."""
    experiment = get_experiment(name)
    cfg = resolve_config(name, overrides, quick, seed)
    set_threads(threads)
    run_dir = RunDir.create(name, out, runs_root)
    run_dir.write_json(CONFIG, {"experiment": name, "quick": quick, "config": to_dict(cfg)})
    env = environment(cfg.seed, threads)
    env["command"] = "twinnet " + shlex.join(sys.argv[1:]) if sys.argv and "twinnet" in sys.argv[0] else None
    run_dir.write_json(ENV, env)
    start = time.perf_counter()
    summary = experiment.run(cfg, run_dir)
    summary["wall_time_s"] = round(time.perf_counter() - start, 3)
    run_dir.write_json(SUMMARY, summary)
    write_report(run_dir.path)
    return run_dir.path
