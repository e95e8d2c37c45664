"""The one sweep runner: jobs (experiment, settings, seed), each a complete run directory.

Jobs run in this process one after another, or on worker processes of one thread each. Each
finished job is appended at once (fsynced) to the sweep's results.jsonl, so a resumed sweep skips
it; a job stopped midway continues from its own checkpoint (resumable experiments) or starts
again. A line tells each finished job and the time left, from the jobs' relative costs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinnet import TwinnetError, checkpoint, distributed, hardware
from twinnet.config import repeated
from twinnet.report.build import write_report
from twinnet.runs import CHECKPOINT, CONFIG, REPORT, RESULTS, SUMMARY, RunDir, append_line, read_jsonl
from twinnet.train import Diverged


@dataclass(frozen=True)
class Job:
    """One run of a sweep."""

    key: str  # its folder under the sweep's directory (unique; may hold one "/")
    experiment: str  # a registered experiment (preset)
    values: dict[str, Any] = field(default_factory=dict)  # settings on top of the preset's
    labels: dict[str, Any] = field(default_factory=dict)  # what the job varies, copied into its result
    quick: bool = False
    overrides: tuple[str, ...] = ()  # --set assignments, after ``values``
    seed: int | None = None
    cost: float = 1.0  # relative wall time, to start the longest first and tell the time left


def finished(sweep: RunDir, jobs: list[Job] | None) -> dict[str, dict]:
    """The results already in the sweep's results.jsonl, by job key: of this grid's jobs only (a grid
    changed on resume keeps the others out), or every one with ``jobs=None``. A line not of the form
    the runner writes is refused."""
    keys = None if jobs is None else {j.key for j in jobs}
    out = {}
    for k, r in enumerate(read_jsonl(sweep.file(RESULTS))):
        if not (isinstance(r.get("job"), str) and _plain_key(r["job"]) and isinstance(r.get("summary"), dict)):
            raise TwinnetError(f"{sweep.file(RESULTS)}: result {k + 1} is damaged (its job or summary is not what a "
                               "sweep writes); restore the file, or delete that line to run it again")
        if keys is None or r["job"] in keys:
            out[r["job"]] = r
    return out


def _plain_key(key: str) -> bool:
    """Whether a job key names a folder inside the sweep's directory (no absolute path, no "..")."""
    parts = key.split("/")
    return bool(key) and not key.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def run_sweep(sweep: RunDir, jobs: list[Job], *, workers: int = 0, threads: int = 1, command: str | None = None,
              data: Path | None = None, name: str = "sweep",
              summary_check: Callable[[dict], bool] | None = None,
              announce: Callable[[dict], None] | None = None) -> dict[str, dict]:
    """Run the jobs not yet in results.jsonl; all results of ``jobs`` by key.

    ``workers=0``: here, one after another, each on ``threads`` threads with progress lines; more:
    on that many processes of one thread each (even one: every job then trains as the others do).
    ``summary_check(summary)``: whether a result line's summary holds what the sweep's report needs
    (else it is refused as damaged).
    ``announce(result)``: told of each job as it finishes (its result line, with its ``headline``)."""
    if distributed.world().size > 1:
        raise distributed.refusal(f"{name} is a sweep of runs, which runs its jobs itself (--workers), not under "
                                  "torchrun; launch it without torchrun, or launch one of its runs under torchrun")
    if twice := sorted(repeated(j.key for j in jobs)):  # configs refuse repeated items; this keeps any list honest
        raise TwinnetError(f"{name} would train {', '.join(twice)} more than once into one folder; list each run once")
    done = finished(sweep, jobs)  # first: a damaged results.jsonl is refused before anything is written
    for key, r in done.items():
        if summary_check is not None and not summary_check(r["summary"]):
            raise TwinnetError(f"{sweep.file(RESULTS)}: the result of {key} is damaged (it lacks the figures the "
                               "report needs); restore the file, or delete that line to run it again")
        if (sweep.path / key).is_dir() and not (sweep.path / key / SUMMARY).exists():
            raise TwinnetError(f"{sweep.path / key / SUMMARY} is missing, though results.jsonl lists {key} as "
                               "finished; restore it, or delete that line of results.jsonl to run it again")
    todo = sorted((j for j in jobs if j.key not in done), key=lambda j: -j.cost)  # longest first: no long tail
    in_process = workers == 0
    workers = max(1, min(workers, len(todo)))
    for key in done:  # stopped after its result line, while it wrote its report
        if (sweep.path / key / SUMMARY).exists() and not (sweep.path / key / REPORT).exists():
            write_report(sweep.path / key)
    if done or not in_process:
        print(f"{name}: {len(done)} run{'s' * (len(done) != 1)} already finished, {len(todo)} to run"
              + ("" if in_process else f" on {workers} worker processes"), file=sys.stderr, flush=True)
    start, count = time.perf_counter(), 0
    cost_left, cost_done = sum(j.cost for j in todo), 0.0
    by_key = {j.key: j for j in todo}

    def on_result(result: dict) -> None:
        nonlocal count, cost_left, cost_done
        share, line = result.pop("share_here"), result.pop("headline")  # for the progress line, not the file
        append_line(sweep.file(RESULTS), result, sync=True)  # on disk at once: a resumed sweep skips the job
        done[result["job"]] = result
        count += 1
        job = by_key[result["job"]]
        cost_left -= job.cost
        cost_done += job.cost * share
        elapsed = time.perf_counter() - start
        left = time_left(elapsed, cost_done, cost_left) if count < len(todo) else "done"
        if announce is not None:
            announce({**result, "headline": line})
        else:
            print(f"[{count}/{len(todo)} {elapsed:.0f} s, {left}] {job.key}: {line}", file=sys.stderr, flush=True)

    specs = [{"job": j, "path": str(sweep.path / j.key), "threads": 1 if not in_process else threads,
              "command": command, "data": data, "progress": None if in_process else False} for j in todo]
    if in_process:
        for spec in specs:
            on_result(run_job(spec))
    else:
        _pool(specs, workers, on_result)
    return done


def run_job(spec: dict) -> dict:
    """Run (or continue) one job in its folder; its result line. A diverged run ends the sweep."""
    from twinnet.registry import get_experiment
    from twinnet.runner import headline, run_experiment

    job, path = spec["job"], Path(spec["path"])
    kwargs = {"threads": spec["threads"], "command": spec["command"], "data": spec["data"], "progress": spec["progress"]}
    trained = True  # whether this call trained it (for the time left)
    try:
        if _complete(path):  # finished, but stopped before its result line was written
            trained = False
            if not (path / REPORT).exists():  # ... or even before its report
                write_report(path)
        elif (path / CONFIG).exists() and getattr(get_experiment(job.experiment).config_cls, "resumable", False):
            try:
                run_experiment(job.experiment, [], resume=path, **kwargs)
            except checkpoint.CheckpointError as e:  # unreadable, or from other settings: start over, the file kept
                aside = checkpoint.set_aside(path / CHECKPOINT)
                print(f"{job.key}: {e}; it starts again (the checkpoint is kept as {aside})", file=sys.stderr,
                      flush=True)
                run_experiment(job.experiment, [], resume=path, **kwargs)
        else:
            if path.exists():  # stopped before it could be resumed: it starts again
                RunDir(path, created=path).discard()
            path.parent.mkdir(parents=True, exist_ok=True)
            run_experiment(job.experiment, list(job.overrides), quick=job.quick, seed=job.seed, out=path,
                           values=job.values, **kwargs)
    except Diverged as e:
        raise Diverged(f"{job.key}: {e}", e.step) from None
    summary = RunDir(path).read_json(SUMMARY)
    # the share of its cost trained here: all of it, less what a run that says where it resumed had done before
    steps, resumed = summary.get("steps_done") or 0, summary.get("resumed_from_step") or 0
    share = (1.0 - min(resumed / steps, 1.0) if steps else 1.0) if trained else 0.0
    return {"job": job.key, **job.labels, "summary": summary, "headline": headline(path) or "", "share_here": share,
            "pid": os.getpid()}


def _complete(path: Path) -> bool:
    """Whether the job's folder holds a finished run (its summary, not that of a diverged one)."""
    try:
        summary = RunDir(path).read_json(SUMMARY) if (path / SUMMARY).exists() else None
    except TwinnetError:
        return False
    return isinstance(summary, dict) and summary.get("outcome") != "diverged"


def time_left(elapsed: float, cost_done: float, cost_left: float) -> str:
    """The wall time still to go, extrapolated from the cost trained so far in this process. Jobs in
    flight count as not started, and jobs resuming from a checkpoint at their whole cost until
    they finish, so early on it errs long."""
    if cost_left <= 0:
        return "done"
    if cost_done <= 0:  # only jobs that had finished before the stop
        return "time left not known yet"
    seconds = elapsed * cost_left / cost_done
    return f"about {seconds / 3600:.1f} h left" if seconds >= 5400 else f"about {seconds / 60:.0f} min left"


def _init_worker(parent: int) -> None:
    """Workers share the cores between them: one thread each for torch, the BLAS and the engine.
    They ignore Ctrl-C, which the main process handles by ending them all, and end when it ends."""
    import signal

    hardware.die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request above took hold
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    hardware.set_threads(1)
    from twinnet.console import one_line_warnings

    one_line_warnings()  # as the main process words them: `twinnet: warning: ...`


QUIET_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"


def _pool(specs: list[dict], workers: int, on_result) -> None:
    """Run the specs on ``workers`` processes, calling ``on_result`` here as each finishes (any order)."""
    import multiprocessing as mp

    from twinnet.runner import sigterm_interrupts

    with sigterm_interrupts():  # `kill` ends the sweep as Ctrl-C does: workers stopped, results kept
        # spawn, not fork: a forked child inherits torch's OpenMP state and may hang in it. The pool starts
        # multiprocessing's resource tracker, a fresh interpreter that takes its warning filters from the
        # environment: after an interrupt it would warn of the stopped workers' semaphores, which it cleans up
        previous = os.environ.get("PYTHONWARNINGS")
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (previous, QUIET_TRACKER)))
        try:
            pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(os.getpid(),))
        finally:
            if previous is None:
                del os.environ["PYTHONWARNINGS"]
            else:
                os.environ["PYTHONWARNINGS"] = previous
        try:
            for result in pool.imap_unordered(run_job, specs):
                on_result(result)
            pool.close()  # let the idle workers exit on their own
        except BaseException:  # interrupted: what finished is already in results.jsonl
            pool.terminate()
            raise
        finally:
            pool.join()
