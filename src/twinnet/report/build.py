"""Assemble report.md of a finished run from its files (configuration, environment, structure, results)."""

from __future__ import annotations

from pathlib import Path

from twinnet import TwinnetError
from twinnet.registry import get_experiment
from twinnet.runs import (CHECKPOINT, CONFIG, ENV, INFLIGHT, METRICS, REPORT, RESULTS, STRUCTURE, SUMMARY, RunDir,
                          atomic_write_bytes)
from twinnet.structure import format_markdown


def markdown_table(headers: list[str], rows: list[list], align_right: set[int] | None = None) -> str:
    """A Markdown table; ``align_right`` holds the indices of numeric columns."""
    align_right = align_right or set()
    sep = ["---:" if i in align_right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _structure_section(run: RunDir) -> str:
    if not run.file(STRUCTURE).exists():
        return ""
    parts = ["## Model structure"]
    for label, engines in run.read_json(STRUCTURE).items():
        for engine, table in engines.items():
            parts.append(f"### {label} — {engine} engine\n\n" + format_markdown(table["rows"], table["total"]))
    return "\n\n".join(parts)


# what each file a run may leave holds: (shown as, found by, what); the report lists those this run has
FILES = (
    (CONFIG, CONFIG, "configuration"),
    (METRICS, METRICS, "records as they came: evaluations, or a sweep's finished runs"),
    (SUMMARY, SUMMARY, "final figures"),
    (ENV, ENV, "versions, hardware, seed, commands"),
    (STRUCTURE, STRUCTURE, "layer tables"),
    (RESULTS, RESULTS, "every run of a sweep, with its evaluation records"),
    (CHECKPOINT, CHECKPOINT, "weights, optimiser and loop state to resume from"),
    (f"{INFLIGHT}/", f"{INFLIGHT}/*.pt", "checkpoints of a sweep's runs still in progress"),
    ("*.npz", "*.npz", "data behind the figures"),
    ("*.png", "*.png", "figures"),
    ("<part>/", f"*/{CONFIG}", "one run directory for each part of the run"),
)


def _files_section(run: RunDir) -> str:
    present = [f"`{shown}` ({what})" for shown, pattern, what in FILES if any(run.path.glob(pattern))]
    return "## Files\n\n" + ", ".join(present) + "."


def write_report(path: Path) -> Path:
    """Draw the run's figures and write report.md; reads files only, never trains."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise TwinnetError(f"{run.path}: no such run directory")
    for name in (CONFIG, ENV, SUMMARY):
        if not run.file(name).exists():
            raise TwinnetError(f"{run.path} is not a finished run: {name} is missing")
    cfg, env = run.read_json(CONFIG), run.read_json(ENV)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict) or not isinstance(env, dict):
        raise TwinnetError(f"{run.path}: {CONFIG} or {ENV} is damaged (not the object a run writes)")
    experiment = get_experiment(str(cfg.get("experiment")))
    try:
        sections = [*experiment.report(run.path), _structure_section(run)]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise TwinnetError(f"{run.path} is incomplete or damaged: its files lack what the {experiment.name} report "
                           f"needs ({type(e).__name__}: {e}); run the experiment again") from None
    config_rows = [[f"`{k}`", f"`{v}`"] for k, v in cfg["config"].items()]
    env_rows = [[k, f"`{v}`"] for k, v in env.items()]
    text = "\n\n".join(
        s
        for s in [
            f"# {experiment.name}: {experiment.description}",
            f"Command: `{env.get('command', '?')}`  \nStarted: {env.get('started', '?')}"
            + ("  \n**Quick (smoke-test) run: figures are not meaningful.**" if cfg.get("quick") else ""),
            *sections,
            "## Configuration\n\n" + markdown_table(["field", "value"], config_rows),
            "## Environment\n\n" + markdown_table(["what", "value"], env_rows),
            _files_section(run),
        ]
        if s
    )
    atomic_write_bytes(run.file(REPORT), (text + "\n").encode())
    return run.file(REPORT)
