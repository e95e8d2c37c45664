"""``--seeds``: one experiment repeated over several seeds, and every figure as mean ± std over them.

A group is a directory holding one complete run directory per seed (``seed-<k>/``, each with its
own report) beside the group's config.json, env.json, summary.json and report.md. Its summary
gives every number the seeds' summaries share as mean, standard deviation (over seeds, ddof 0),
min, max and the per-seed values. ``--resume GROUP`` keeps the finished seeds, continues an
interrupted one from its checkpoint (resumable experiments) or runs it again, and runs the rest.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from twinnet import TwinnetError
from twinnet.config import repeated, to_dict
from twinnet.registry import get_experiment
from twinnet.report.blocks import Section, Table, Text, render_markdown
from twinnet.train import Diverged
from twinnet.runs import CONFIG, ENV, REPORT, REPORT_HTML, SUMMARY, RunDir, atomic_write_bytes, environment

GROUP = "seeds"  # the key of config.json that marks a group and lists its seeds
MAX_SEEDS = 1000
HEADLINE_KEYS = ("test_acc", "best_test_acc", "test_loss", "val_acc")  # shown first where a summary has them


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` as a list of distinct seeds in [0, 2**32)."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, sep, hi = part.partition("-")
            if sep and lo and int(hi) < 0:  # "1--3": no reversed range would be valid either
                raise TwinnetError(f"--seeds {text!r}: the range {part} ends at a negative seed; seeds are in "
                                   "[0, 2**32), e.g. 0-4")
            if sep and lo and int(hi) < int(lo):
                raise TwinnetError(f"--seeds {text!r}: the range {part} runs backwards; write it low-high ({hi}-{lo})")
            if sep and lo and int(hi) - int(lo) >= MAX_SEEDS:
                raise TwinnetError(f"--seeds {text!r}: at most {MAX_SEEDS} seeds")
            seeds += list(range(int(lo), int(hi) + 1)) if sep and lo else [int(part)]
    except ValueError:
        raise TwinnetError(f"--seeds {text!r}: expected integers like 0,1,2 or a range like 0-4") from None
    if len(seeds) > MAX_SEEDS:
        raise TwinnetError(f"--seeds {text!r}: at most {MAX_SEEDS} seeds")
    twice = sorted(repeated(seeds))
    outside = [s for s in seeds if not 0 <= s < 2**32]
    problem = (f"seed {outside[0]} is outside [0, 2**32)" if outside else
               f"seed{'s' if len(twice) > 1 else ''} {', '.join(map(str, twice))} given twice" if twice else
               "no seed" if not seeds else f"only {len(seeds)} seed" if len(seeds) < 2 else "")
    if problem:
        raise TwinnetError(f"--seeds {text!r}: {problem}; give at least two distinct seeds in [0, 2**32), e.g. 0,1,2")
    return seeds


def seed_dir(group: Path, seed: int) -> Path:
    return Path(group) / f"seed-{seed}"


def run_group(name: str, overrides: list[str], seeds: list[int], *, quick: bool = False, out: Path | None = None,
              runs_root: Path = Path("runs"), threads: int | None = None, resume: Path | None = None,
              command: str | None = None, data: Path | None = None) -> Path:
    """Run ``name`` once per seed in one group directory (or continue the group at ``resume``)."""
    from twinnet.runner import choose_data_dir, choose_threads, resolve_config
    from twinnet.sweep import Job, finished, run_sweep

    if resume is not None:
        group = RunDir(resume)
        saved = _read_group(group)
        if saved["experiment"] != name:
            raise TwinnetError(f"--resume {resume}: that is a group of {saved['experiment']!r} runs, not {name!r}")
        if overrides or quick or out is not None:
            raise TwinnetError(f"--resume {resume}: a group of seeds continues with its saved settings; drop --set, "
                               "--quick and --out")
        seeds, quick, overrides = saved[GROUP], saved["quick"], saved["overrides"]
    cfg = resolve_config(name, overrides, quick, seeds[0])  # every setting checked before anything is touched
    # one thread count for every seed (a resumed group keeps the one it started with)
    threads, chosen_by = choose_threads(threads, group if resume is not None else None)
    data = choose_data_dir(data, group if resume is not None else None)
    if resume is None:
        group = RunDir.create(name, out, runs_root)
        group.write_json(CONFIG, {"experiment": name, "quick": quick, GROUP: seeds, "overrides": list(overrides),
                                  "config": {k: v for k, v in to_dict(cfg).items() if k != "seed"}})
        group.write_json(ENV, {**environment(seeds[0], threads, chosen_by, str(data) if data else None),
                               "command": command})
    jobs = [Job(seed_dir(Path("."), s).name, name, overrides=tuple(overrides), quick=quick, seed=s,
                labels={"seed": s}) for s in seeds]
    with group.lock():
        start = time.perf_counter()
        try:
            for key in finished(group, jobs):  # each seed's figures are read from its folder
                if not (group.path / key).is_dir():
                    raise TwinnetError(f"{group.path / key} is missing, though results.jsonl lists {key} as finished; "
                                       "restore that folder, or delete its line of results.jsonl to run that seed "
                                       "again")
            run_sweep(group, jobs, threads=threads, command=command, data=data, name=f"{name} over seeds",
                      announce=lambda r: print(f"seed {r['seed']}: {r['headline'] or r['job']}", flush=True))
            for seed in seeds:  # (run_sweep refuses a finished seed whose summary is gone)
                done = RunDir(seed_dir(group.path, seed)).read_json(SUMMARY)
                if isinstance(done, dict) and done.get("outcome") == "diverged":
                    raise Diverged(f"seed {seed} diverged at step {done.get('diverged_at_step')}: the group cannot "
                                   "give figures over all its seeds; start a new group with a lower learning rate")
        except KeyboardInterrupt:
            print(f"twinnet: to continue the group: twinnet run {name} --resume {group.path}", file=sys.stderr)
            raise
        except TwinnetError:
            if resume is None and not any(group.path.glob("seed-*")):  # refused before its first seed did anything
                group.discard()
            raise
        summary = summarise(group.path, seeds)
        summary["wall_time_s"] = round(time.perf_counter() - start, 3)
        group.write_json(SUMMARY, summary)
        write_group_report(group.path)
    return group.path


def group_config(path: Path, name: str) -> Any:
    """The configuration a resumed group's next run takes (its first seed's; each seed's differs only in
    its seed), read from the group's config.json and checked as a resume checks it."""
    from twinnet.runner import resolve_config

    saved = _read_group(RunDir(path))
    if saved["experiment"] != name:
        raise TwinnetError(f"--resume {path}: that is a group of {saved['experiment']!r} runs, not {name!r}")
    return resolve_config(name, saved["overrides"], saved["quick"], saved[GROUP][0])


def _read_group(group: RunDir) -> dict:
    """A group's config.json, every field checked."""
    if not group.path.is_dir() or not group.file(CONFIG).exists():
        raise TwinnetError(f"{group.path}: no such group of seeds (no {CONFIG} there)")
    saved = group.read_json(CONFIG)
    if not isinstance(saved, dict) or not isinstance(saved.get(GROUP), list):
        raise TwinnetError(f"{group.path}: {CONFIG} is not that of a group of seeds (run with --seeds)")
    seeds, overrides = saved[GROUP], saved.get("overrides", [])
    valid = (isinstance(saved.get("experiment"), str) and isinstance(saved.get("config"), dict)
             and isinstance(saved.get("quick", False), bool)
             and isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)
             and 2 <= len(seeds) <= MAX_SEEDS and len(set(map(repr, seeds))) == len(seeds)
             and all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < 2**32 for k in seeds))
    if not valid:
        raise TwinnetError(f"{group.path}: {CONFIG} is damaged (its experiment, seeds, quick, overrides or config "
                           "are not what a group writes); start a new group")
    return {**saved, "overrides": overrides, "quick": saved.get("quick", False)}


def _outcome(run: RunDir) -> str | None:
    """A seed's outcome from its summary.json, or None where that cannot be read (the caller says what is missing)."""
    try:
        done = run.read_json(SUMMARY)
    except TwinnetError:
        return None
    return done.get("outcome") if isinstance(done, dict) else None


def is_group(path: Path) -> bool:
    """Whether ``path`` holds a group of seeds rather than one run."""
    try:
        return GROUP in RunDir(path).read_json(CONFIG)
    except (TwinnetError, TypeError):
        return False


def _numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a summary, by a dotted path; list items are named by their text fields
    (``results.moons/numpy.test_acc``) or, without any, by position."""
    out: dict[str, float] = {}
    if isinstance(obj, bool) or obj is None:
        return out
    if isinstance(obj, (int, float)):
        return {prefix: float(obj)} if np.isfinite(obj) else out
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = [("/".join(str(v) for v in item.values() if isinstance(v, str)) or str(k)
                  if isinstance(item, dict) else str(k), item) for k, item in enumerate(obj)]
    else:
        return out
    for key, value in items:
        out.update(_numbers(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def over_seeds(summaries: list[dict]) -> dict[str, dict]:
    """Mean, std (ddof 0), min, max and per-seed values of every number the summaries (one per seed,
    in the seeds' order) share, by dotted path."""
    per_seed = [_numbers(s) for s in summaries]
    shared = [k for k in per_seed[0] if all(k in p for p in per_seed[1:]) and not k.endswith("wall_time_s")]
    figures = {}
    for key in shared:
        values = np.array([p[key] for p in per_seed])
        figures[key] = {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                        "max": float(values.max()), "values": values.tolist()}
    return figures


def summarise(group: Path, seeds: list[int]) -> dict:
    """Mean, std, min, max and per-seed values of every number the seeds' summaries share."""
    figures = over_seeds([RunDir(seed_dir(group, s)).read_json(SUMMARY) for s in seeds])
    return {GROUP: seeds, "runs": [seed_dir(Path("."), s).name for s in seeds], "figures": figures}


def fmt(key: str, value: float) -> str:
    is_rate = key.split(".")[-1].endswith("acc") or ".per_class_acc." in f".{key}."
    return f"{100 * value:.2f}%" if is_rate else f"{value:.4g}"


def headline(summary: dict, name: str) -> str:
    """One line: the main figures as mean ± std over the seeds."""
    figures = summary["figures"]
    keys = [k for k in HEADLINE_KEYS if k in figures] or list(figures)[:3]
    parts = [f"{k} {fmt(k, figures[k]['mean'])} ± {fmt(k, figures[k]['std'])}" for k in keys]
    seeds = ",".join(str(s) for s in summary[GROUP])
    return f"{name} over seeds {seeds}: " + (", ".join(parts) or "no figures in common")


def write_group_report(path: Path) -> Path:
    """report.md of a group: every shared figure as mean ± std with the per-seed values, and a link
    to each seed's own report. Reads files only."""
    group = RunDir(path)
    saved = _read_group(group)
    experiment = get_experiment(saved["experiment"])
    if not group.file(SUMMARY).exists():  # no figures over its seeds: say why, and what to do
        diverged = [p.parent.name for p in sorted(group.path.glob(f"seed-*/{SUMMARY}"))
                    if _outcome(RunDir(p.parent)) == "diverged"]
        raise TwinnetError(f"{path} is a group of seeds with no figures over them: " + (
            f"{', '.join(diverged)} diverged; start a new group with a lower learning rate" if diverged else
            f"it has not finished (stopped, or still running); continue it with `twinnet run {experiment.name} "
            f"--resume {path}`"))
    summary, env = group.read_json(SUMMARY), group.read_json(ENV)
    try:
        env = env if isinstance(env, dict) else {}
        seeds, figures = list(summary[GROUP]), summary["figures"]
        rows = [[f"`{k}`", f"{fmt(k, f['mean'])} ± {fmt(k, f['std'])}", fmt(k, f["min"]), fmt(k, f["max"]),
                 ", ".join(fmt(k, v) for v in f["values"])] for k, f in figures.items()]
        head = headline(summary, experiment.name)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise TwinnetError(f"{group.file(SUMMARY)} is damaged ({type(e).__name__}: {e}); run the group again") from None
    gone = [s for s in seeds if not seed_dir(group.path, s).is_dir()]
    links = ", ".join(f"[seed {s}]({seed_dir(Path('.'), s).name}/{REPORT})" for s in seeds if s not in gone)
    if gone:  # the figures stand (they are the group's summary.json); only the links would be dead
        names = ", ".join(seed_dir(Path("."), s).name for s in gone)
        links = (links + "; " if links else "") + (
            f"the folder of {names} is missing from this group's folder (deleted or moved?): its figures below come "
            "from the group's summary.json, its own report is gone")
        print(f"twinnet: warning: {path}: {names} missing; the report keeps its figures from the group's summary "
              "but cannot link to its run", file=sys.stderr)
    blocks = [Section(f"{experiment.name} over seeds {', '.join(map(str, seeds))}: {experiment.description}", [
        Text(f"Command: `{env.get('command', '?')}`  \nStarted: {env.get('started', '?')}"
             + ("  \n**Quick (smoke-test) runs: figures are not meaningful.**" if saved.get("quick") else "")),
        Section(head, [Text(
            f"Each figure below is the mean ± standard deviation over the {len(seeds)} seeds (population std, "
            "ddof 0), then its minimum, maximum and the value of each seed in the order of the seeds. Each "
            f"seed's run is a complete run directory with its own report: {links}.")]),
        Section("Figures over seeds", [Table(["figure", "mean ± std", "min", "max", "per seed"], rows, {1, 2, 3})]),
        Section("Configuration (every seed)", [
            Table(["field", "value"], [[f"`{k}`", f"`{v}`"] for k, v in saved["config"].items()])]),
        Text(f"Generated {dt.datetime.now().astimezone().isoformat(timespec='seconds')} from the group's files."),
    ])]
    from twinnet.report import html

    atomic_write_bytes(group.file(REPORT), (render_markdown(blocks, level=1) + "\n").encode())
    atomic_write_bytes(group.file(REPORT_HTML), html.page(blocks, group.path, blocks[0].title).encode())
    return group.file(REPORT)
