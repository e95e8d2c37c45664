"""``twinnet check``: a student's own layers against twinnet's references, configuration by configuration.

``grade(paths, convention)`` loads the student's files (``loader``), and for every layer kind the
convention names (``conventions``, ``kinds``) runs seeded random configurations in float64 that
cover what a course's own check skips, comparing each output and gradient with the references
(``compare``). The result is one row per layer: configurations passed, the worst error, the first
failure as a one-line reproduction, and points.
"""

from __future__ import annotations

import difflib
import os
import threading
import zlib
from dataclasses import asdict, dataclass, field, fields
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twinnet import TwinnetError
from twinnet.grader.compare import Wrong, error, passes, scale_hint
from twinnet.grader.conventions import BUILT_IN, load_spec
from twinnet.grader.kinds import KINDS, Context, Halted, NotApplicable
from twinnet.grader.kinds.modules import theirs
from twinnet.grader.loader import StudentError, Submission, left_out_note, load, named_once, shown_names
from twinnet.grader.loader import public

NOT_SUBMITTED = "not in the files (optional in this convention)"  # the table's word for such a row
MAX_CONFIGS = 1000  # random configurations per layer kind: more only makes a grading take hours
SEED_ENV = "TWINNET_CHECK_SEED"  # a teacher's secret seed: students cannot tune to the configurations
# told of the grading as it goes: ("kind", kind), ("config", label) before each configuration, ("row", row
# as a dict) after each kind; `twinnet check`'s child process writes them down, so that its parent can
# tell which layer a killed child was grading and grade the others
PROGRESS: Callable[[str, Any], None] | None = None
# one configuration in all, in `twinnet check`'s child process: each call of the student's code has its own limit,
# but the grader also runs the student's code as it reads what a call returned (an ``__array__``, a property, a
# ``__del__``), which no call's limit covers; a configuration still running after this long is ended there
CONFIG_LIMIT_S = 120.0


def _progress(event: str, value: Any) -> None:
    if PROGRESS is not None:
        PROGRESS(event, value)


@dataclass
class Row:
    """One layer kind's grade."""

    kind: str
    title: str
    passed: int = 0
    total: int = 0
    worst_error: float = 0.0
    first_failure: str | None = None  # "config: what failed", the one-line reproduction
    failures: list[str] = field(default_factory=list)
    points: float = 0.0
    max_points: float = 1.0
    submitted: bool = True  # False: an optional layer none of whose functions the files define (0 of 0 points)
    skipped: int = 0  # configurations the convention's class cannot take (no stride argument, one kernel size)


@dataclass
class Report:
    convention: str
    seed: int
    files: list[str]
    rows: list[Row]

    @property
    def ok(self) -> bool:
        """Every layer submitted passed all its configurations (an optional one not submitted is no verdict),
        and there was at least one."""
        graded = [r for r in self.rows if r.submitted]
        return bool(graded) and all(r.total and r.passed == r.total for r in graded)

    def as_dict(self) -> dict[str, Any]:
        return {"convention": self.convention, "seed": self.seed, "files": self.files, "ok": self.ok,
                "points": round(sum(r.points for r in self.rows), 2),
                "max_points": sum(r.max_points for r in self.rows),
                "layers": [{**asdict(r), "worst_error": r.worst_error if np.isfinite(r.worst_error) else None}
                           for r in self.rows]}  # None: a configuration crashed or returned what cannot be compared

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """The report ``as_dict`` gave (as it comes back from the grading process)."""
        names = {f.name for f in fields(Row)}
        rows = [Row(**{k: v for k, v in layer.items() if k in names}) for layer in d["layers"]]
        for row in rows:
            row.worst_error = float("inf") if row.worst_error is None else row.worst_error
        return cls(d["convention"], d["seed"], d["files"], rows)


def resolve_convention(name: str | None, spec: Path | None) -> dict[str, Any]:
    if spec is not None:
        return load_spec(spec)
    if name not in BUILT_IN:
        raise TwinnetError(f"unknown convention {name!r}; built in: {', '.join(BUILT_IN)} (or describe yours with "
                           "--spec SPEC.toml)")
    return BUILT_IN[name]


def resolve_seed(seed: int | None) -> int:
    """--seed, else the teacher's secret $TWINNET_CHECK_SEED, else 0."""
    if seed is not None:
        return seed
    env = os.environ.get(SEED_ENV, "").strip()
    if not env:
        return 0
    if not (env.isascii() and env.isdigit()):  # "²" is a digit to str.isdigit, not to int()
        raise TwinnetError(f"{SEED_ENV}={env!r}: expected a non-negative integer")
    return int(env)


def grade(paths: list[Path], convention: dict[str, Any], *, only: list[str] | None = None, seed: int = 0,
          configs: int = 6, among: list[str] | None = None) -> Report:
    """Check every layer of ``convention`` (or those in ``only``, each then required even where the convention
    makes it optional; and only those in ``among``, where given, as they were: a child grading what another left)
    in the student's files."""
    if not 1 <= configs <= MAX_CONFIGS:
        raise TwinnetError(f"--configs must be in [1, {MAX_CONFIGS}] (random configurations per layer kind, beside "
                           f"the fixed edge cases; 6 by default), got {configs}")
    layers = convention["layers"]
    kinds = [k for k, entry in layers.items() if entry.get("graded", True)]  # graded = false: the course's own
    if only:
        unknown = [k for k in only if k not in layers]
        if unknown:
            raise TwinnetError(f"--only {','.join(unknown)}: not a layer of the {convention['name']} convention; its "
                               f"layers: {', '.join(layers)}")
        kinds = [k for k in layers if k in only]  # a layer named is graded, graded = false or not
    if among is not None:
        kinds = [k for k in kinds if k in among]
    submission = load(paths)
    rows = []
    for kind in kinds:
        _progress("kind", kind)
        rows.append(_grade_kind(kind, layers[kind], convention, submission, seed, configs, required=bool(only)))
        _progress("row", asdict(rows[-1]))
    return Report(convention["name"], seed, named_once(paths), rows)


def check(namespace: dict[str, Any], *kinds: str, convention: str = "cs231n", seed: int | None = None,
          configs: int = 4) -> Report:
    """Grade the layers defined in ``namespace`` (a notebook's ``globals()``) and print the table:
    ``check(globals(), "conv", "maxpool")``. Every kind of the convention when none is named (those it makes
    optional only if the notebook defines them)."""
    conv = resolve_convention(convention, None)
    unknown = [k for k in kinds if k not in conv["layers"]]
    if unknown:
        raise TwinnetError(f"{', '.join(unknown)}: not a layer of the {convention} convention; its layers: "
                           f"{', '.join(conv['layers'])}")
    submission = Submission({k: v for k, v in namespace.items() if not k.startswith("__")}, [])
    seed = resolve_seed(seed)
    state = np.random.get_state()  # a student's layer may seed NumPy's global generator (dropout's starter code)
    try:
        rows = [_grade_kind(kind, conv["layers"][kind], conv, submission, seed, configs, required=bool(kinds))
                for kind in kinds or conv["layers"]]
    finally:
        np.random.set_state(state)  # the notebook's own stream goes on as if nothing had been graded
    report = Report(conv["name"], seed, ["this notebook"], rows)
    print(format_table(report))
    return report


# what a course names another year's (or another assignment's) version of a missing class: CS231n's assignment 1
# network beside assignment 2's
_KIN = {"FullyConnectedNet": ("TwoLayerNet",)}


def _near_names(missing: list[str], submission, convention: dict) -> str:
    """What the files define that is close to a missing name (``ReLU`` or ``ReluLayer`` for ``Relu``), said, or "";
    of their classes only, where the convention names classes, and none that it names for another layer."""
    classes = convention["style"] == "module"
    assigned = {value for entry in convention["layers"].values() for value in entry.values() if isinstance(value, str)}
    defined = [name for name, value in submission.names.items() if name not in assigned
               and (isinstance(value, type) if classes else callable(value))]
    said = []
    for name in missing:
        if "." in name:
            continue
        low = name.lower()
        close = [d for d in defined if d.lower() in (low, *(low + end for end in ("layer", "_layer", "module")))] \
            or difflib.get_close_matches(name, defined, n=2, cutoff=0.85) or \
            [d for d in _KIN.get(name, ()) if d in defined]
        if close:
            said.append(f"{' or '.join(close[:2])} is defined, not {name}" if len(close) == 1 else
                        f"{' and '.join(close[:2])} are defined, not {name}")
    return "; ".join(said)


def _grade_kind(kind: str, entry: dict, convention: dict, submission, seed: int, configs: int, *,
                required: bool = False) -> Row:
    """One layer's row; an optional one (not ``required`` by name) that the files lack entirely is not submitted."""
    spec = KINDS[kind]
    row = Row(kind, spec.titled(convention["style"]))
    needed = [entry[k] for k in spec.needs(convention["style"])]
    missing = [name for name in needed if submission.get(name) is None]
    # submitted or not, by the names no other layer of the convention needs (an MLP's Linear is the linear layer's)
    shared = {e[k] for other, e in convention["layers"].items() if other != kind
              for k in KINDS[other].needs(convention["style"]) if k in e}
    own = [name for name in needed if name not in shared] or needed
    if entry.get("optional", False) and not required and all(name in missing for name in own):
        return Row(kind, row.title, max_points=0.0, submitted=False)
    if missing:
        row.first_failure = f"not found in the submission: {', '.join(missing)}" + left_out_note(missing,
                                                                                                 submission.files)
        if other := _convention_submitted(convention, submission):
            row.first_failure += f" (the files define every layer of the {other} convention: try --convention {other})"
        elif near := _near_names(missing, submission, convention):
            how = f"a spec with base = \"{convention['name']}\" and that name in this layer's table" \
                if convention["name"] in BUILT_IN else "that name in the spec's table for this layer"
            row.first_failure += f" ({near}: {how})"
        row.failures.append(row.first_failure)
        return row
    stream = zlib.crc32(kind.encode())
    timed_out = None  # the first configuration that ran past the time limit: the others are not run
    first_near = False  # whether the row's first failure told is only a near miss
    for index, cfg in enumerate(spec.draw(np.random.default_rng([seed, stream]), configs, entry)):
        ctx = Context(submission.names, submission.files, entry, convention,
                      np.random.default_rng([seed, stream, index]), kind, halted=timed_out is not None)
        label = f"{kind} #{index} " + " ".join(f"{k}={v}" for k, v in cfg.items())
        _progress("config", label)
        watchdog = _watchdog(label)
        near = False  # whether this configuration's failure is only a near miss
        try:
            # overflow in the student's code is reported as a non-finite value; the references' autograd on,
            # whatever the files did to torch's switch when they were loaded (torch.set_grad_enabled(False))
            with np.errstate(all="ignore"), torch.enable_grad():
                quantities = spec.check(cfg, ctx)
            problem, worst, failing = None, 0.0, []
            for name, (student, references) in quantities.items():
                name = theirs(name, entry)  # a module's gradient with the attribute the student keeps it in
                e = error(name, student, references)
                worst = max(worst, e)
                if not passes(e):
                    failing.append((name, e, student, references))
            if failing:
                # the first quantity that failed, unless it only just missed (an epsilon added somewhere) and a
                # later one is far off: that one is the bug to tell
                far = [f for f in failing if f[1] >= NEAR_MISS]
                name, e, student, references = far[0] if failing[0][1] < NEAR_MISS and far else failing[0]
                near = e < NEAR_MISS
                problem = f"{name}: relative error {_above_tolerance(e)}{scale_hint(student, references)}"
                if near:
                    problem += (" (a near miss: a small constant in the formula, such as an epsilon where the "
                                "formula has none, rather than a wrong formula)")
        except NotApplicable:
            row.skipped += 1
            continue
        except Halted:  # applicable, but the student's code is not called again after a timeout
            row.total += 1
            row.failures.append(f"{label}: not run, as {timed_out} ran past the time limit")
            continue
        except (StudentError, Wrong) as e:
            problem, worst = str(e), float("inf")
            if getattr(e, "timed_out", False):
                timed_out = f"#{index}"
        except Exception as e:  # noqa: BLE001 - what the student returned broke the comparison: graded as failed
            text = public(str(e).splitlines()[0], "")[:160] if str(e) else ""
            problem, worst = f"what the submission returned cannot be graded ({type(e).__name__}: {text})", float("inf")
        finally:
            if watchdog is not None:
                watchdog.cancel()
        row.total += 1
        row.worst_error = max(row.worst_error, worst)
        if problem is None:
            row.passed += 1
        else:
            row.failures.append(f"{label}: {problem}")
            if not row.first_failure or (first_near and not near):  # a failure far off is told before near misses
                row.first_failure, first_near = row.failures[-1], near
    if not row.total and row.skipped:
        row.first_failure = (f"none of its {row.skipped} configurations applies to the convention's "
                             f"{entry.get('class', kind)} (each needs an argument its args leave out); raise --configs "
                             "or give the class more arguments")
        row.failures.append(row.first_failure)
    row.points = round(row.max_points * row.passed / row.total, 2) if row.total else 0.0
    return row


def _watchdog(label: str):
    """In ``twinnet check``'s child process, a timer that ends it once the configuration ``label`` has run for
    ``CONFIG_LIMIT_S`` (its parent then fails that layer and grades the others); elsewhere None."""
    from twinnet.grader import loader

    if loader.HARD_STOP is None:
        return None
    timer = threading.Timer(CONFIG_LIMIT_S, loader.HARD_STOP, args=(f"grading {label}",))
    timer.daemon = True
    timer.start()
    return timer


def _convention_submitted(convention: dict, submission) -> str | None:
    """Another built-in convention of the same style whose every required name the files define, one of them a name
    this convention does not use (a UvA 2019 submission's LeakyReLUModule graded as ``uva``), for the hint beside a
    missing name; None if none. (One whose names are all this one's, as the second Deep Learning from Scratch
    book's Affine and Sigmoid are the first's, says nothing about the files.)"""
    ours = {entry[k] for kind, entry in convention["layers"].items() if kind in KINDS
            for k in KINDS[kind].needs(convention["style"]) if isinstance(entry.get(k), str)}
    for name, other in BUILT_IN.items():
        if name == convention.get("name") or other["style"] != convention["style"]:
            continue
        needed = [entry[k] for kind, entry in other["layers"].items() if not entry.get("optional", False)
                  for k in KINDS[kind].needs(other["style"])]
        if needed and all(submission.get(n) is not None for n in needed) and set(needed) - ours:
            return name
    return None


NEAR_MISS = 1e-4  # a failing error below this is a near miss: rounding or an epsilon, not a wrong formula


def _above_tolerance(err: float) -> str:
    """An error that failed, to as many digits as show that it is above the tolerance (1.00e-07 would not)."""
    from twinnet.grader.compare import RTOL

    text = f"{err:.2e}"
    return text if float(text) > RTOL else f"{err:.6e} (just above the tolerance, {RTOL:g})"


def format_table(report: Report) -> str:
    """The report as a fixed-width table, one row per layer, then the total."""
    from twinnet.report.blocks import markdown_table

    def err(v: float) -> str:
        return "n/a" if v == float("inf") else f"{v:.1e}"  # a crash, None, a shape: no number to give

    rows = [[r.title, f"{r.passed}/{r.total}" + (f" ({r.skipped} n/a)" if r.skipped else ""),
             err(r.worst_error) if r.total else "-",
             r.first_failure or "", f"{r.points:g}/{r.max_points:g}"] if r.submitted else
            [r.title, "-", "-", NOT_SUBMITTED, "-"] for r in report.rows]
    table = markdown_table(["layer", "passed", "worst error", "first failure (reproduce with --only and --seed)",
                            "points"], rows)
    total = sum(r.points for r in report.rows)
    verdict = "all passed" if report.ok else "FAILED"
    return (f"twinnet check: {', '.join(shown_names(report.files))} ({report.convention} convention, "
            f"seed {report.seed}, NumPy {np.__version__}, torch {torch.__version__.split('+')[0]})\n{table}\n{verdict}: {total:g}/{sum(r.max_points for r in report.rows):g} points")
