"""``twinnet run``: resolve the configuration, create the run directory, train, record, report."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from twinnet import TwinnetError
from twinnet.config import apply_overrides, make_config, to_dict
from twinnet.registry import get_experiment
from twinnet.report.build import write_report
from twinnet.runs import CONFIG, ENV, METRICS, SUMMARY, RunDir, environment


def resolve_config(name: str, overrides: list[str] = (), quick: bool = False, seed: int | None = None):
    """The config class's defaults, the preset's, its quick settings, then ``--set`` and ``--seed``."""
    experiment = get_experiment(name)
    values = {**experiment.defaults, **(experiment.quick if quick else {})}
    cfg = make_config(experiment.config_cls, values, context=f"{name}: ")
    assignments = list(overrides) + ([f"seed={seed}"] if seed is not None else [])
    return apply_overrides(cfg, assignments, context=f" for {name}")


def use_data_dir(path: Path) -> None:
    """Point the experiments at a folder of real datasets (``--data-dir``): sets TWINNET_DATA_DIR."""
    path = Path(path)
    if not path.is_dir():
        raise TwinnetError(f"the data directory {path} does not exist or is not a directory")
    os.environ["TWINNET_DATA_DIR"] = str(path.resolve())


def headline(path: Path) -> str | None:
    """The one-line result of a finished run, as ``twinnet run`` prints it (None if its experiment has none)."""
    run_dir = RunDir(path)
    experiment = get_experiment(run_dir.read_json(CONFIG)["experiment"])
    return experiment.headline(run_dir.read_json(SUMMARY)) if experiment.headline is not None else None


def announce(path: Path) -> None:
    """Print a finished run's headline (if its experiment has one), then its directory, on stdout."""
    line = headline(path)
    if line is not None:
        print(line)
    print(path)


def set_threads(threads: int | None) -> None:
    """Give torch, NumPy's BLAS and the NumPy engine's own elementwise threads one thread count
    (None leaves the defaults: all cores)."""
    if threads is None:
        return
    import torch
    from threadpoolctl import threadpool_limits

    from twinnet.numpy_nn import backend

    torch.set_num_threads(threads)
    threadpool_limits(threads)
    backend.set_num_threads(threads)


def run_experiment(
    name: str,
    overrides: list[str] = (),
    *,
    quick: bool = False,
    seed: int | None = None,
    out: Path | None = None,
    runs_root: Path = Path("runs"),
    threads: int | None = None,
    resume: Path | None = None,
) -> Path:
    """Run one experiment end to end and return its run directory.

    ``resume``: the directory of an interrupted run of a resumable experiment (its config class
    sets ``resumable = True``); it continues there from its saved configuration, ``overrides`` on top.
    """
    experiment = get_experiment(name)
    command = "twinnet " + shlex.join(sys.argv[1:]) if sys.argv and "twinnet" in sys.argv[0] else None
    if resume is not None:
        cfg, run_dir = _reopen(name, Path(resume), overrides)
        set_threads(threads)
        env = run_dir.read_json(ENV) if run_dir.file(ENV).exists() else environment(cfg.seed, threads)
        env.setdefault("resumed", []).append({"command": command, **environment(cfg.seed, threads)})
        run_dir.write_json(ENV, env)
    else:
        cfg = resolve_config(name, overrides, quick, seed)
        set_threads(threads)
        run_dir = RunDir.create(name, out, runs_root)
        run_dir.write_json(CONFIG, {"experiment": name, "quick": quick, "config": to_dict(cfg)})
        env = environment(cfg.seed, threads)
        env["command"] = command
        run_dir.write_json(ENV, env)
    start = time.perf_counter()
    try:
        summary = experiment.run(cfg, run_dir)
    except BaseException as e:
        if resume is None and not _has_work(run_dir):  # nothing measured or saved: leave no empty run behind
            shutil.rmtree(run_dir.path, ignore_errors=True)
        elif isinstance(e, KeyboardInterrupt) and getattr(experiment.config_cls, "resumable", False):
            print(f"twinnet: to continue: twinnet run {name} --resume {run_dir.path}", file=sys.stderr)
        raise
    summary["wall_time_s"] = round(time.perf_counter() - start, 3)
    run_dir.write_json(SUMMARY, summary)
    write_report(run_dir.path)
    return run_dir.path


def _has_work(run_dir: RunDir) -> bool:
    """Whether a run holds anything worth keeping: metrics, or a checkpoint to resume from."""
    return any(run_dir.path.rglob(METRICS)) or any(run_dir.path.rglob("*.pt"))


def _reopen(name: str, path: Path, overrides: list[str]):
    """The saved configuration (with ``overrides`` applied) and directory of a run to resume."""
    experiment = get_experiment(name)
    if not getattr(experiment.config_cls, "resumable", False):
        raise TwinnetError(f"{name} cannot be resumed; start a new run instead")
    run_dir = RunDir(path)
    if not run_dir.file(CONFIG).exists():
        raise TwinnetError(f"--resume {path}: no {CONFIG} there, so it is no run directory")
    saved = run_dir.read_json(CONFIG)
    if saved.get("experiment") != name:
        raise TwinnetError(f"--resume {path}: that is a run of {saved.get('experiment')!r}, not {name!r}")
    cfg = apply_overrides(make_config(experiment.config_cls, saved["config"], context=f"{name}: "), list(overrides),
                          context=f" for {name}")
    run_dir.write_json(CONFIG, {**saved, "config": to_dict(cfg)})
    return cfg, run_dir
