"""Assemble report.md of a finished run from its files (configuration, environment, structure, results)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from twinnet import TwinnetError, trace
from twinnet.registry import get_experiment
from twinnet.report.blocks import Block, Figure, Section, Table, Text, render_markdown, walk
from twinnet.report.tensorboard import EVENTS
from twinnet.runs import (CHECKPOINT, CONFIG, ENV, METRICS, REPORT, REPORT_HTML, RESULTS, STRUCTURE, SUMMARY,
                          RunDir, atomic_write_bytes)
from twinnet.structure import table_blocks

def _structure_section(run: RunDir) -> list[Block]:
    if not run.file(STRUCTURE).exists():
        return []
    return [Section("Model structure", [
        Section(f"{label} — {engine} engine", table_blocks(table["rows"], table["total"]))
        for label, engines in run.read_json(STRUCTURE).items() for engine, table in engines.items()])]


# what each file a run may leave holds: (shown as, found by, what); the report lists those this run has
FILES = (
    (CONFIG, CONFIG, "configuration"),
    (METRICS, METRICS, "records as they came: one per evaluation, or per measured run"),
    (SUMMARY, SUMMARY, "final figures"),
    (ENV, ENV, "versions, hardware, seed, commands"),
    (STRUCTURE, STRUCTURE, "layer tables"),
    ("trace.json", "trace.json", "one training step traced: shapes and matrix products, layer by layer"),
    (RESULTS, RESULTS, "the summary of every finished run of a sweep, one line each"),
    (CHECKPOINT, CHECKPOINT, "weights, optimiser and loop state to resume from"),
    ("*.npz", "*.npz", "data behind the figures"),
    ("*.png", "*.png", "figures"),
    (EVENTS, "events.out.tfevents.*", "the records as a TensorBoard log: `tensorboard --logdir`"),
    ("<part>/", f"*/{CONFIG}", "one run directory for each part of the run"),
    ("runs/", f"runs/*/{CONFIG}", "one complete run directory for each run of the sweep"),
)


def _files_section(run: RunDir, coming: tuple[str, ...] = ()) -> Section:
    """The files the run has, and those about to be written with its report (``coming``)."""
    present = [f"`{shown}` ({what})" for shown, pattern, what in FILES
               if shown in coming or any(run.path.glob(pattern))]
    return Section("Files", [Text(", ".join(present) + ".")])


def _as_blocks(sections: list, run: RunDir, name: str) -> list[Block]:
    """An experiment's report: Markdown strings (each a Text) or blocks; every figure it names must exist."""
    if not isinstance(sections, (list, tuple)):
        raise TypeError(f"the {name} report returned {type(sections).__name__}, not a list of Markdown strings "
                        "or report blocks")
    blocks = [Text(s) if isinstance(s, str) else s for s in sections]
    for block in walk(blocks):
        if isinstance(block, Figure) and not run.file(block.file).is_file():
            raise TwinnetError(f"{run.path}: the {name} report shows the figure {block.file}, which is not in the "
                               "run directory; run the experiment again")
    return blocks


def _open(path: Path) -> tuple[RunDir, dict, dict]:
    run = RunDir(path)
    if run.path.exists() and not run.path.is_dir():
        raise TwinnetError(f"{run.path} is a file, not a run directory; give the run's folder (the one holding "
                           f"{CONFIG})")
    if not run.path.is_dir():
        raise TwinnetError(f"{run.path}: no such run directory")
    for name in (CONFIG, ENV):
        if not run.file(name).exists():
            raise TwinnetError(f"{run.path} is not a finished run: {name} is missing, so it is not a run directory; "
                               "give the folder `twinnet run` printed last")
    cfg, env = run.read_json(CONFIG), run.read_json(ENV)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict) or not isinstance(env, dict):
        raise TwinnetError(f"{run.path}: {CONFIG} or {ENV} is damaged (not the object a run writes)")
    experiment = get_experiment(str(cfg.get("experiment")))
    if not run.file(SUMMARY).exists() and experiment.progress is None:
        again = (f"finish it with `{experiment.continue_command(run.path)}`"
                 if getattr(experiment.config_cls, "resumable", False) else "run the experiment again")
        raise TwinnetError(f"{run.path} is not a finished run: {SUMMARY} is missing (it was stopped, or is still "
                           f"running); {again}")
    return run, cfg, env


def body_blocks(path: Path, draw: bool = True, structure: bool = True) -> list[Block]:
    """What a finished run found: its experiment's sections (figures drawn first, unless ``draw`` is
    false) and (unless ``structure`` is false) its model's structure and traced step, without the
    configuration, environment and files sections; reads files only."""
    run, cfg, _ = _open(path)
    experiment = get_experiment(str(cfg.get("experiment")))
    if run.file(SUMMARY).exists() and not isinstance(held := run.read_json(SUMMARY), dict):
        what = json.dumps(held)
        what = what if len(what) <= 40 else what[:37] + "..."
        raise TwinnetError(f"{run.file(SUMMARY)} is damaged: it holds {what}, not the run's figures (a JSON object); "
                           "restore it, or run the experiment again")
    with _figures_restored_on_failure(run.path):  # a report that fails leaves the figures of the one before
        try:
            if experiment.figures is not None and draw:
                experiment.figures(run.path)
            sections = experiment.report(run.path)
            details = _structure_section(run) + trace.section(run) if structure else []
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            summary = run.read_json(SUMMARY) if run.file(SUMMARY).exists() else None
            if isinstance(summary, dict) and summary.get("outcome") == "diverged":
                raise TwinnetError(f"{run.path} diverged (a loss that is not finite, at step "
                                   f"{summary.get('diverged_at_step', '?')}), so it has none of the results the "
                                   f"{experiment.name} report shows; run it again with a smaller learning rate "
                                   "(--set lr=...)") from None
            raise TwinnetError(f"{run.path} is incomplete or damaged: its files lack what the {experiment.name} "
                               f"report needs ({type(e).__name__}: {e}); run the experiment again") from None
        return [*_as_blocks(sections, run, experiment.name), *details]


@contextlib.contextmanager
def _figures_restored_on_failure(folder: Path):
    """Put the folder's figures back as they were (and remove new ones) if the block raises: figures drawn
    before the report failed would no longer match the report.md they sit beside."""
    before = {p: (p.read_bytes(), p.stat()) for p in folder.glob("*.png")}
    folder_stat = folder.stat()
    try:
        yield
    except BaseException:
        # best effort: where the folder cannot be written (read-only), restoring fails too, and the error raised
        # is the one that stopped the report (which names the file), not the restore's
        for p in folder.glob("*.png"):
            if p not in before:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
        for p, (data, st) in before.items():
            with contextlib.suppress(OSError):
                if not p.exists() or p.read_bytes() != data:
                    atomic_write_bytes(p, data)
                    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        with contextlib.suppress(OSError):
            os.utime(folder, ns=(folder_stat.st_atime_ns, folder_stat.st_mtime_ns))
        raise


def report_blocks(path: Path, coming: tuple[str, ...] = ()) -> list[Block]:
    """The blocks of a finished run's report (drawing its figures first); reads files only, never trains.
    ``coming``: files to be written with the report, listed in its files section."""
    run, cfg, env = _open(path)
    experiment = get_experiment(str(cfg.get("experiment")))
    body = body_blocks(path)
    config_rows = [[f"`{k}`", f"`{v}`"] for k, v in cfg["config"].items()]
    env_rows = [[k, f"`{v}`"] for k, v in env.items()]
    return [Section(f"{experiment.name}: {experiment.description}", [
        Text(f"Command: `{env.get('command', '?')}`  \nStarted: {env.get('started', '?')}"
             + ("  \n**Quick (smoke-test) run: figures are not meaningful.**" if cfg.get("quick") else "")),
        *body,
        Section("Configuration", [Table(["field", "value"], config_rows)]),
        Section("Environment", [Table(["what", "value"], env_rows)]),
        _files_section(run, coming),
    ])]


def write_report(path: Path) -> Path:
    """Draw the run's figures and write report.md, and the same as a self-contained report.html
    (figures embedded), and the run's records as a TensorBoard event log; reads files only, never trains.

    The experiment's ``figures`` (where it has one) draws the PNGs, then its ``report`` gives the
    sections (Markdown strings or report blocks), set between the run's heading and its structure,
    configuration, environment and files sections."""
    from twinnet.report import html, tensorboard

    run = RunDir(path)
    try:  # a convenience, never a reason to lose the report
        log, problem = tensorboard.log_of(run.path), None
    except TwinnetError as e:
        log, problem = None, e
    blocks = report_blocks(run.path, coming=(EVENTS,) if log else ())  # a damaged run stops here
    if problem is not None:
        import warnings

        warnings.warn(f"the TensorBoard log was not written: {problem}", stacklevel=2)
    text = render_markdown(blocks, level=1)
    page = html.page(blocks, run.path, blocks[0].title if isinstance(blocks[0], Section) else run.path.name)
    atomic_write_bytes(run.file(REPORT), (text + "\n").encode())
    atomic_write_bytes(run.file(REPORT_HTML), page.encode())
    if log:
        atomic_write_bytes(run.file(EVENTS), log)
    return run.file(REPORT)
