"""The one registry of experiments: name -> config class, run function, report (and figures) functions."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinnet import TwinnetError


@dataclass(frozen=True)
class Published:
    """A published result for the same work (from the course's brief, docs/COURSE.md): a test accuracy,
    or a range of them, and what reached it. Reports set a run's figure beside it."""

    accuracy: float
    what: str
    high: float | None = None  # a range: accuracy to high


@dataclass(frozen=True)
class Experiment:
    """A named, configurable experiment."""

    name: str
    description: str  # one line, shown by `twinnet list`
    config_cls: type
    run: Callable[[Any, Any, Any], dict]  # (config, RunDir, RunContext) -> summary
    # run directory -> the report's sections: Markdown strings (each a section, figures drawn by the function
    # itself) or report blocks (twinnet.report.blocks: Section, Text, Table, Figure)
    report: Callable[[Path], list]
    defaults: Mapping[str, Any] = field(default_factory=dict)  # the preset: overrides of the config class's defaults
    # the settings asked for -> the preset's defaults for them, where a default suits some choices only (W_hh's
    # orthogonal init: the vanilla RNN's, left out for an LSTM); None: ``defaults`` whatever is asked
    defaults_for: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    quick: Mapping[str, Any] = field(default_factory=dict)  # overrides for a smoke-test-sized run
    headline: Callable[[dict], str] | None = None  # summary -> short text printed at the end of a run
    figures: Callable[[Path], None] | None = None  # draws the run's PNGs from its files; called before ``report``
    published: tuple[Published, ...] = ()  # published results for the same work, set beside a run's in its report
    # an unfinished run directory -> a summary of what it has finished so far, for a report in progress
    # (`twinnet report` on a long run that was stopped or is still going); None: only finished runs report
    progress: Callable[[Path], dict] | None = None
    # an interrupted run directory -> the command that continues it (None: `twinnet run NAME --resume DIR`)
    again: Callable[[Path], str] | None = None

    def continue_command(self, path: Path) -> str:
        """The command that continues the interrupted run in ``path``."""
        return self.again(path) if self.again is not None else f"twinnet run {self.name} --resume {path}"


EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in EXPERIMENTS:
        raise ValueError(f"experiment {experiment.name!r} registered twice")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def get_experiment(name: str) -> Experiment:
    """Look an experiment up by name; an unknown name suggests the closest."""
    import twinnet.experiments  # noqa: F401 - importing registers every experiment

    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, EXPERIMENTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TwinnetError(f"unknown experiment {name!r}{hint}; `twinnet list` shows them all")
    return EXPERIMENTS[name]


def all_experiments() -> list[Experiment]:
    import twinnet.experiments  # noqa: F401

    return sorted(EXPERIMENTS.values(), key=lambda e: e.name)
