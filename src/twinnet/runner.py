"""``twinnet run``: resolve the configuration, create the run directory, train, record, report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinnet import TwinnetError, distributed, hardware
from twinnet.config import apply_overrides, comma_items, make_config, parse_assignments, to_dict
from twinnet.registry import get_experiment
from twinnet.report.build import write_report
from twinnet.runs import CONFIG, ENV, METRICS, RESULTS, SUMMARY, RunDir, environment
from twinnet.train import Diverged


@dataclass(frozen=True)
class RunContext:
    """What a run is given besides its configuration: recorded in env.json, never in process globals."""

    data_dir: Path | None = None  # where real datasets live (None: the loaders' own search)
    threads: int = 1  # torch, BLAS and engine threads
    progress: bool | None = None  # a progress bar (None: only on a terminal; False: neither bar nor log lines)
    command: str | None = None  # what started the run (recorded in env.json, and in the env.json of its parts)
    quick: bool = False  # a smoke-test-sized run (--quick): its parts are marked so too


def resolve_config(name: str, overrides: list[str] = (), quick: bool = False, seed: int | None = None,
                   values: dict[str, Any] | None = None):
    """The config class's defaults, the preset's, its quick settings, ``values`` (a sweep's job), then
    ``--set`` and ``--seed``."""
    experiment = get_experiment(name)
    assignments = list(overrides) + ([f"seed={seed}"] if seed is not None else [])
    # validated once, all together: a setting may need another (engine=numpy with norm_bias_lr=1)
    changes = parse_assignments(experiment.config_cls, assignments, context=f" for {name}")
    chosen = {**(experiment.quick if quick else {}), **(values or {})}
    asked = {**chosen, **changes}
    base = {**(experiment.defaults if experiment.defaults_for is None else experiment.defaults_for(asked)), **chosen}
    context = f"for {name}: " if overrides else f"{name}: "
    return make_config(experiment.config_cls, {**base, **changes}, context=context)


_WARNED_DATA_DIRS: set[str] = set()


def resolve_data_dir(path: Path | None) -> Path | None:
    """The data directory of a run: ``--data-dir`` (checked), else $TWINNET_DATA_DIR, as an absolute path."""
    if path is None:
        path = os.environ.get("TWINNET_DATA_DIR") or None
        if path and not Path(path).exists():  # a stale setting must not stop runs that read no data
            if path in _WARNED_DATA_DIRS:  # the command line and the runner both ask: said once
                return None
            _WARNED_DATA_DIRS.add(path)
            print(f"twinnet: warning: $TWINNET_DATA_DIR={path} does not exist, so it is ignored (set it to the "
                  "folder holding mnist/ and cifar10/, or unset it)", file=sys.stderr)
            os.environ.pop("TWINNET_DATA_DIR")  # ... by the loaders too, which read it where no folder is given
            return None
        return Path(path).resolve() if path else None
    path = Path(path)
    if not path.exists():  # a folder, or one archive in it (CIFAR-10's loader takes either)
        raise TwinnetError(f"the data directory {path} does not exist; give --data-dir the folder holding mnist/ "
                           "and cifar10/ (the README's section 'Real data' says what each holds)")
    return path.resolve()


def headline(path: Path) -> str | None:
    """The one-line result of a finished run, as ``twinnet run`` prints it (None if its experiment has none)."""
    from twinnet import seeds

    run_dir = RunDir(path)
    experiment = get_experiment(run_dir.read_json(CONFIG)["experiment"])
    if seeds.is_group(path):
        return seeds.headline(run_dir.read_json(SUMMARY), experiment.name)
    return experiment.headline(run_dir.read_json(SUMMARY)) if experiment.headline is not None else None


def announce(path: Path) -> None:
    """Print a finished run's headline (if its experiment has one), then its directory, on stdout."""
    line = headline(path)
    if line is not None:
        print(line)
    print(path)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``): a run ends as after Ctrl-C, with what it wrote kept and the resume hint."""


@contextlib.contextmanager
def sigterm_interrupts():
    """While inside, SIGTERM raises ``Terminated`` in the main thread (elsewhere: a no-op)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:  # None: a handler not set from Python; the default is the closest
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)



def choose_threads(threads: int | None, run_dir: RunDir | None = None) -> tuple[int, str]:
    """The thread count of a run (of each rank, under torchrun) and what chose it: ``--threads``; else,
    for a resumed run, the count it started with (thread counts can change the last bits of results);
    else ``TWINNET_THREADS``; else the cores other processes leave idle now; under torchrun, the
    machine's cores shared among its ranks (torchrun's own ``OMP_NUM_THREADS=1`` is overridden: one
    rank per core is what it assumes, and --threads 1 asks for it)."""
    if threads is not None:
        if threads < 1:
            raise TwinnetError(f"--threads must be >= 1, got {threads}")
        hardware.check_thread_count(threads, f"--threads {threads}")
        return threads, "--threads"
    if run_dir is not None:
        saved = _read_env(run_dir).get("threads")
        if isinstance(saved, int) and not isinstance(saved, bool) and saved >= 1:
            return min(saved, hardware.cores()), "the resumed run's"
    if distributed.launched() and not os.environ.get("TWINNET_THREADS"):  # sibling ranks are starting: not idle
        return max(1, hardware.cores() // distributed.local_size()), "cores / ranks on this machine"
    return hardware.default_threads()


def choose_data_dir(data: Path | None, run_dir: RunDir | None = None) -> Path | None:
    """The data directory of a run: ``--data-dir``, else $TWINNET_DATA_DIR, else, for a resumed run, the
    one it started with, where that still exists (its env.json keeps it)."""
    chosen = resolve_data_dir(data)
    if chosen is None and run_dir is not None:
        saved = _read_env(run_dir).get("data_dir")
        if isinstance(saved, str) and saved and Path(saved).is_dir():
            print(f"twinnet: reading data from {saved}, as the run did when it started (--data-dir to change)",
                  file=sys.stderr)
            return Path(saved)
        if isinstance(saved, str) and saved:  # said now: the data's own "not found" would not name it
            print(f"twinnet: the data directory this run started with, {saved}, is gone; pass --data-dir where "
                  "that data is now", file=sys.stderr)
    return chosen


@dataclass(frozen=True)
class Prepared:
    """What a run is decided to be before it starts: made by rank 0 alone under torchrun, then sent to every rank."""

    run_dir: RunDir
    saved: dict | None  # a resumed run's config.json
    cfg: Any
    quick: bool
    threads: int
    chosen_by: str
    ctx: RunContext


def _prepare(name, overrides, quick, seed, out, runs_root, threads, resume, command, data, values,
             progress) -> Prepared:
    """Every check of a run, and its new directory: nothing else is written."""
    saved = None
    if resume is not None:
        if out is not None or quick or seed is not None:
            raise TwinnetError("--resume continues RUN_DIR with its saved configuration: drop --out, --quick and --seed")
        run_dir, saved, cfg = reopen(name, Path(resume), overrides)
        quick = saved.get("quick") is True  # as it started
    else:
        cfg = resolve_config(name, overrides, quick, seed, values)
    threads, chosen_by = choose_threads(threads, run_dir if resume is not None else None)
    ctx = RunContext(choose_data_dir(data, run_dir if resume is not None else None), threads, progress, command,
                     quick)
    if resume is None:
        run_dir = RunDir.create(name, out, runs_root)
    return Prepared(run_dir, saved, cfg, quick, threads, chosen_by, ctx)


def _prepare_on_rank0(*args) -> Prepared:
    """``_prepare`` on rank 0, its outcome (or its error) on every rank. The other ranks train in a
    scratch directory of their own, removed at the end: rank 0 alone writes the run's files."""
    w = distributed.world()
    outcome: tuple = ("error", "rank 0 failed before the run began")
    if w.rank == 0:
        try:
            outcome = ("ok", _prepare(*args))
        except Exception as e:  # noqa: BLE001 - sent on as it is to every rank, then raised here as it was
            distributed.broadcast(("error", str(e)))
            raise
    outcome = distributed.broadcast(outcome)
    if outcome[0] == "error":
        raise distributed.ReportedByRank0(outcome[1])
    prepared = outcome[1]
    if w.rank == 0:
        return prepared
    scratch = RunDir(Path(tempfile.mkdtemp(prefix=f"twinnet-rank{w.rank}-")))
    return dataclasses.replace(prepared, run_dir=scratch, ctx=dataclasses.replace(prepared.ctx, progress=False))


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
    command: str | None = None,
    data: Path | None = None,
    values: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> Path:
    """Run one experiment end to end and return its run directory.

    ``resume``: the directory of an interrupted run of a resumable experiment (its config class
    sets ``resumable = True``); it continues there from its saved configuration, ``overrides`` on top
    (only the fields in the config class's ``resume_may_change``). Everything is checked before
    anything is written: a refused resume leaves the run directory as it was. ``command``: what
    started the run, recorded in env.json. ``data``: the data directory (``--data-dir``); ``values``:
    settings on top of the preset's (a sweep's job); ``progress``: see ``RunContext``.
    """
    from twinnet.numpy_nn import backend

    experiment = get_experiment(name)
    args = (name, overrides, quick, seed, out, runs_root, threads, resume, command, data, values, progress)
    w = distributed.world()
    prepared = _prepare(*args) if w.size == 1 else _prepare_on_rank0(*args)
    run_dir, saved, cfg, quick, threads, chosen_by, ctx = (getattr(prepared, f.name)
                                                           for f in dataclasses.fields(Prepared))
    hardware.set_threads(threads)
    backend.tune_allocator()  # the NumPy engine's large temporaries reuse the heap (TWINNET_KEEP_MALLOC=1: not)
    if w.rank > 0:  # trains beside rank 0 in its scratch directory; rank 0 writes the run
        try:
            experiment.run(cfg, run_dir, ctx)
        finally:
            shutil.rmtree(run_dir.path, ignore_errors=True)
        return run_dir.path  # gone: the run is rank 0's
    data_dir = str(ctx.data_dir) if ctx.data_dir is not None else None

    def env_record() -> dict:
        return {**environment(cfg.seed, threads, chosen_by, data_dir), **_launch(threads)}

    with run_dir.lock():
        if resume is None:
            try:
                run_dir.write_json(CONFIG, {"experiment": name, "quick": quick, "config": to_dict(cfg)})
                run_dir.write_json(ENV, {**env_record(), "command": command})
            except OSError as e:
                run_dir.discard()
                raise TwinnetError(f"cannot write in the run directory {run_dir.path}: {e.strerror}; give --out a "
                                   "folder you can write to") from None

        def record_resume() -> None:  # the resume has begun: config.json and env.json say so
            run_dir.remove_leftovers()  # of writes a killed process left unfinished
            if to_dict(cfg) != saved["config"]:  # a setting that moves the work, not its result, was changed
                run_dir.write_json(CONFIG, {**saved, "config": to_dict(cfg)})
            env, damaged = _read_env(run_dir), run_dir.file(ENV)
            try:
                unreadable = damaged.is_file() and not isinstance(run_dir.read_json(ENV), dict)
            except TwinnetError:
                unreadable = damaged.is_file()  # a missing one is simply written
            if unreadable:  # kept beside the new record, not overwritten by it
                kept = damaged.with_name("env.damaged.json")
                os.replace(damaged, kept)
                warnings.warn(f"{damaged} could not be read (damaged or edited); it is kept as {kept.name}, and a "
                              "new env.json records this resume")
            if not isinstance(env.get("resumed"), list):
                env["resumed"] = []
            env["resumed"].append({"command": command, **env_record()})
            run_dir.write_json(ENV, env)

        work_before = _work(run_dir)
        start = time.perf_counter()
        try:
            summary = experiment.run(cfg, run_dir, ctx)
        except Diverged as e:
            with contextlib.suppress(OSError, TwinnetError):  # the divergence is the news, not a failed write
                if resume is not None and _work(run_dir) != work_before:
                    record_resume()
                if e.summary is not None:
                    run_dir.write_json(SUMMARY, {**e.summary, "wall_time_s": round(time.perf_counter() - start, 3)})
                    write_report(run_dir.path)
            raise
        except BaseException as e:
            if resume is None and not _work(run_dir):  # nothing measured or saved: leave no empty run behind
                run_dir.discard()
            elif resume is not None and _work(run_dir) != work_before:  # refused before it trained: nothing to say
                with contextlib.suppress(OSError):  # a full disk, say: the error that stopped the run is the news
                    record_resume()
            if isinstance(e, KeyboardInterrupt) and getattr(experiment.config_cls, "resumable", False) and \
                    (resume is not None or _work(run_dir)):
                print(f"twinnet: to continue: {experiment.continue_command(run_dir.path)}", file=sys.stderr)
            raise
        if resume is not None:
            record_resume()
        summary["wall_time_s"] = round(time.perf_counter() - start, 3)
        run_dir.write_json(SUMMARY, summary)
        try:
            write_report(run_dir.path)
        except KeyboardInterrupt:  # the run is complete and saved; only its figures and report are missing
            print(f"twinnet: the run finished, but its report was not written: twinnet report {run_dir.path} "
                  "writes it", file=sys.stderr)
            raise
    return run_dir.path


def _launch(threads: int) -> dict:
    """How the run was launched, for env.json: the world of ranks (1 without torchrun)."""
    w = distributed.world()
    if w.size == 1 and not distributed.launched():
        return {"world_size": 1}
    import torch

    return {"world_size": w.size, "backend": torch.distributed.get_backend() if torch.distributed.is_initialized()
            else None, "local_world_size": distributed.local_size(), "threads_per_rank": threads,
            "launcher_omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def _read_env(run_dir: RunDir) -> dict:
    """env.json as a dict, or an empty one if it is missing or damaged (it is rewritten whole)."""
    try:
        env = run_dir.read_json(ENV)
    except TwinnetError:
        return {}
    return env if isinstance(env, dict) else {}


def _work(run_dir: RunDir) -> dict[str, int]:
    """When each file holding a run's measurements and checkpoints last changed: a run with none holds
    nothing worth keeping, and a resume whose experiment wrote none of them did not begin."""
    return {str(p): p.stat().st_mtime_ns for pattern in (METRICS, RESULTS, "*.pt") for p in run_dir.path.rglob(pattern)}


def _refuse_finished(run_dir: RunDir) -> None:
    """A single run that finished has nothing to continue, and resuming it would write its summary again
    (its times among it). A folder of runs (its results.jsonl) may be resumed to add runs, and a diverged
    run to try again."""
    if not run_dir.file(SUMMARY).is_file() or run_dir.file(RESULTS).exists():
        return
    try:
        summary = run_dir.read_json(SUMMARY)
    except TwinnetError:  # damaged: the run goes on and writes it whole
        return
    outcome = summary.get("outcome") if isinstance(summary, dict) else None
    if isinstance(outcome, str) and outcome != "diverged":
        raise TwinnetError(f"--resume {run_dir.path}: this run has finished ({SUMMARY} says {outcome}), so there is "
                           f"nothing to continue; `twinnet report {run_dir.path}` draws its report again, and a new "
                           "run (with more steps or epochs) trains longer")


def _added(name: str, started, cfg) -> tuple[Any, list[str]]:
    """``cfg`` with each of its class's ``resume_adds`` (comma-separated lists whose items are runs: reproduce's
    parts, cnn-ablation's rungs) the folder's items and then the new ones: a resume adds runs to a folder and never
    drops a finished one from its report; and a line for each list that differs from what was given."""
    adds = getattr(type(cfg), "resume_adds", frozenset())
    merged, said = {}, []
    for key in sorted(adds):
        old, new = (comma_items(getattr(c, key)) for c in (started, cfg))
        if not set(old) <= set(new):
            merged[key] = ",".join(dict.fromkeys([*old, *new]))
            added = [v for v in new if v not in old]
            said.append((f"{name}: {key} {','.join(added)} added to the folder's {','.join(old)}" if added else
                         f"{name}: the folder's {key} stay {merged[key]}") + " (a resume adds runs, and the finished "
                        "ones stay in the report)" + (f": {key} is now {merged[key]}" if added else ""))
    return (dataclasses.replace(cfg, **merged) if merged else cfg), said


def reopen(name: str, path: Path, overrides: list[str], quiet: bool = False) -> tuple[RunDir, dict, Any]:
    """The directory, saved config.json and configuration (with ``overrides`` applied) of a run to
    resume. Reads only: every check is made here, before the resumed run writes anything (and, unless ``quiet``,
    a list a resume joins to the folder's is said once they have passed)."""
    experiment = get_experiment(name)
    if not getattr(experiment.config_cls, "resumable", False):
        raise TwinnetError(f"{name} cannot be resumed; start a new run instead")
    run_dir = RunDir(path)
    if path.exists() and not path.is_dir():
        raise TwinnetError(f"--resume {path} is a file; give the run's folder (the one holding {CONFIG})")
    if not path.is_dir():
        raise TwinnetError(f"--resume {path}: no such directory")
    if not run_dir.file(CONFIG).exists():
        raise TwinnetError(f"--resume {path}: no {CONFIG} there, so it is no run directory")
    saved = run_dir.read_json(CONFIG)
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise TwinnetError(f"--resume {path}: {CONFIG} is damaged (no configuration in it); start a new run")
    if not isinstance(saved.get("experiment"), str) or not saved["experiment"]:
        raise TwinnetError(f"--resume {path}: {CONFIG} is damaged (it names no experiment); start a new run")
    if not isinstance(saved.get("quick", False), bool):
        raise TwinnetError(f"--resume {path}: {CONFIG} is damaged (quick is {saved['quick']!r}, not true or false); "
                           "set it back as it was, or start a new run")
    if saved.get("experiment") != name:
        raise TwinnetError(f"--resume {path}: that is a run of {saved.get('experiment')!r}, not {name!r}")
    _refuse_finished(run_dir)
    ranks, now = _read_env(run_dir).get("world_size", 1), distributed.world().size
    if isinstance(ranks, int) and ranks != now:  # checked again against its checkpoint, after the data is loaded
        raise TwinnetError(f"--resume {path}: {distributed.other_world(ranks, now)}")
    settings = {f.name for f in dataclasses.fields(experiment.config_cls)}
    unknown = [k for k in saved["config"] if k not in settings]
    if unknown:  # kept readable (a setting since removed), but a typo in a hand edit must not pass unseen
        import warnings

        warnings.warn(f"{path / CONFIG}: {', '.join(map(str, unknown))} is no setting of {name}, so it is ignored "
                      f"(`twinnet run {name} --show-config` lists the settings)", stacklevel=2)
    try:
        started = make_config(experiment.config_cls, saved["config"], context=f"--resume {path}: {CONFIG}: ")
    except TwinnetError as e:  # edited by hand, or damaged: what to do about it
        raise TwinnetError(f"{e}; restore the file as the run wrote it, or start a new run") from None
    cfg, said = _added(name, started, apply_overrides(started, list(overrides), context=f" for {name}"))
    may_change = getattr(experiment.config_cls, "resume_may_change", frozenset())
    changed = [k for k in to_dict(cfg) if to_dict(cfg)[k] != to_dict(started)[k] and k not in may_change]
    if changed:
        allowed = f" (a resume may change only {', '.join(sorted(may_change))})" if may_change else ""
        raise TwinnetError(f"--resume {path}: cannot change {', '.join(changed)} of a run already under way: the "
                           f"continued run would not be the one it started as{allowed}. Drop those --set, or start "
                           "a new run")
    for line in [] if quiet else said:
        print(line, file=sys.stderr)
    return run_dir, saved, cfg
