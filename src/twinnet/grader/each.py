"""``twinnet check NAMES... --each DIR``: a whole class graded, one student's folder after another.

Each folder directly inside DIR is one student's submission (hidden folders and ``__MACOSX`` aside); the
files named on the command line are found in it at any depth (``layers.py``, or a path's end such as
``cs231n/layers.py``), the shallowest where several match. Each student is graded in a child process of
their own, as ``twinnet check`` grades one; a student missing some of the files is graded on the others (the
layers only a missing file would hold are not found, and count as such: 0 points where required, not submitted
where optional), and one with a file that cannot be loaded on the files that can (the reason told first, and
not every layer passed); one with none of them, or none that can be loaded, gets 0 points and the reason;
``--jobs N`` grades N students at once. The grades go to a CSV file (rewritten whole
after each student, so that an interrupted grading keeps every grade it gave) and to a table on stdout.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twinnet import TwinnetError
from twinnet.grader.loader import LoadError

SKIPPED = ("__MACOSX", "__pycache__")
CSV_HEAD = ["student", "points", "max_points", "all_passed", "first_failure"]


def students(root: Path) -> list[Path]:
    """The student folders directly inside ``root``, by name."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise TwinnetError(f"--each {root} {what}; give the folder that holds one folder per student")
    found = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIPPED),
                   key=lambda p: p.name)
    if not found:
        raise TwinnetError(f"--each {root} holds no student folders; it should hold one folder per student, each "
                           "with the files to grade")
    return found


def check_names(names: list[Path]) -> list[str]:
    """The file names to find in each folder, as relative POSIX paths; absolute or upward ones refused."""
    out = []
    for name in names:
        if name.is_absolute() or ".." in name.parts:
            raise TwinnetError(f"with --each, {name} must be a file's name (or a path's end, such as "
                               "cs231n/layers.py) to find inside each student's folder, not a path of its own")
        if name.suffix not in (".py", ".ipynb"):
            raise TwinnetError(f"with --each, {name} must name a .py file or a Jupyter notebook (.ipynb)")
        out.append(name.as_posix())
    return out


def find(folder: Path, names: list[str]) -> tuple[list[Path], list[str]]:
    """Each of ``names`` in ``folder`` at any depth, the shallowest match, and the names not found there; a
    ``TwinnetError`` naming what is ambiguous, or that none was found."""
    files, problems, missing = [], [], []
    for name in names:
        last = Path(name).name
        try:
            found = list(folder.rglob(last))
        except OSError as e:  # a folder inside it that cannot be read
            raise TwinnetError(f"{folder.name} cannot be searched ({e.strerror}: {e.filename})") from None
        matches = [p for p in found if p.is_file() and p.as_posix().endswith("/" + name)
                   and not any(part.startswith(".") or part in SKIPPED for part in p.relative_to(folder).parts)]
        if not matches:
            missing.append(name)
            continue
        depth = min(len(p.relative_to(folder).parts) for p in matches)
        shallowest = sorted(p for p in matches if len(p.relative_to(folder).parts) == depth)
        if len(shallowest) > 1:
            problems.append(f"{len(shallowest)} files match {name} ("
                            + ", ".join(p.relative_to(folder).as_posix() for p in shallowest[:3]) + ")")
            continue
        files.append(shallowest[0])
    if problems or not files:
        raise TwinnetError(f"{'; '.join(problems + [f'no {name}' for name in missing])} in {folder.name}")
    return files, missing


def grade_each(root: Path, names: list[Path], convention: dict[str, Any], *, only: list[str] | None, seed: int,
               configs: int, csv_path: Path | None, jobs: int = 1,
               grade: Callable | None = None) -> list[dict[str, Any]]:
    """Every student of ``root`` graded, ``jobs`` at a time (each in a process of their own; ``grade``:
    ``grade_isolated``'s signature, for tests); each one's result (student, points, max_points, all_passed,
    first_failure, and each layer's points), in the students' order."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from twinnet.grader.child import grade_isolated, stop_all

    if jobs < 1:
        raise TwinnetError(f"--jobs must be >= 1 (students graded at once), got {jobs}")
    grade = grade or grade_isolated
    wanted = check_names(names)
    folders = students(root)
    kinds = [k for k, entry in convention["layers"].items()
             if (only is None and not entry.get("optional", False) and entry.get("graded", True))
             or (only is not None and k in only)]

    def one(folder: Path) -> dict[str, Any]:
        missing: list[str] = []
        broken: list[str] = []  # why each file left out could not be loaded
        try:
            files, missing = find(folder, wanted)
            while True:
                try:
                    report = grade(files, convention, only=only, seed=seed, configs=configs, label=folder.name)
                    break
                except LoadError as e:  # graded on the files that load, as on the files found
                    bad = {Path(f).resolve() for f in e.files}
                    left = [f for f in files if f.resolve() not in bad]
                    if not bad or not left or len(left) == len(files):
                        raise
                    broken.append(str(e))
                    files = left
        except TwinnetError as e:  # the files are missing, or none can be loaded: 0 points and why
            # (a file given that imports a missing one fails to load: the missing file is the news)
            absent = f"no {', '.join(missing)} in {folder.name}; " if missing else ""
            return {"student": folder.name, "points": 0.0, "max_points": float(len(kinds)), "all_passed": False,
                    "first_failure": absent + "; ".join(broken + [str(e)]), **{k: 0.0 for k in kinds}}
        by_kind = {r.kind: r for r in report.rows}
        failed = next((r for r in report.rows if r.submitted and r.first_failure), None)
        # the missing files named where a layer they would hold was not found, not beside failures of another cause
        absent = (f"no {', '.join(missing)} in {folder.name}" if missing and any(
            r.first_failure and r.first_failure.startswith("not found in the submission") for r in report.rows) else "")
        return {"student": folder.name, "points": round(sum(r.points for r in report.rows), 2),
                "max_points": sum(r.max_points for r in report.rows), "all_passed": report.ok and not broken,
                "first_failure": "; ".join(t for t in (absent, *broken, f"{failed.title}: {failed.first_failure}"
                                                       if failed else "") if t),
                **{k: by_kind[k].points if k in by_kind else 0.0 for k in kinds},
                **{k: r.points for k, r in by_kind.items() if k not in kinds and r.submitted}}

    done: dict[str, dict[str, Any]] = {}
    order = [f.name for f in folders]
    pool = ThreadPoolExecutor(max_workers=jobs)  # threads: each student's grading is a child process
    place = {pool.submit(one, f): k for k, f in enumerate(folders)}
    pending = set(place)
    try:
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            # in the students' order, and every grade finished kept before an interruption among them is raised
            failure = None
            for future in sorted(finished, key=place.get):
                if (e := future.exception()) is not None:
                    failure = failure or e
                    continue
                result = future.result()
                done[result["student"]] = result
                print(f"[{len(done)}/{len(folders)}] {result['student']}: {result['points']:g}/"
                      f"{result['max_points']:g} points" + ("" if result["all_passed"] else
                                                           f" ({shorten(result['first_failure'], 100)})"),
                      file=sys.stderr, flush=True)
                if csv_path is not None:  # every grade given so far, in the students' order
                    write_csv(csv_path, [done[name] for name in order if name in done])
            if failure is not None:
                raise failure
    except BaseException:  # interrupted: no new student starts, and those being graded end now (no grade kept)
        if grade is grade_isolated:
            stop_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [done[name] for name in order]


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word's end, with an ellipsis where it was cut."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    return (cut[:cut.rfind(" ")] if " " in cut[limit // 2:] else cut).rstrip(" ,;:(") + "…"


def write_csv(path: Path, results: list[dict[str, Any]]) -> None:
    """The grades as CSV, one row per student, every layer's points in a column of its own (atomically); an
    empty cell where a student did not submit an optional layer (worth 0 of 0 points, not a 0 earned)."""
    from twinnet.runs import atomic_write_bytes

    columns = CSV_HEAD + [k for k in dict.fromkeys(k for r in results for k in r) if k not in CSV_HEAD]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _inert(v) for k, v in r.items()} for r in results)
    atomic_write_bytes(path, out.getvalue().encode())


def _inert(value: Any) -> Any:
    """A text cell a spreadsheet would take for a formula (a student folder named ``=HYPERLINK(...)``, or a failure
    that begins with one) written after a quote, as spreadsheets write text; numbers and other text as they are."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def is_grades_csv(path: Path) -> bool:
    """Whether ``path`` holds what ``--each --csv`` writes (so that writing it again loses nothing)."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            head = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return head[:len(CSV_HEAD)] == CSV_HEAD


def format_class(results: list[dict[str, Any]], convention: str) -> str:
    """The class's grades as a table, and how many passed everything."""
    from twinnet.report.blocks import markdown_table

    def score(r: dict) -> str:  # optional layers a student submitted count in their own maximum: a share too
        share = f" ({100 * r['points'] / r['max_points']:.0f}%)" if r["max_points"] else ""
        return f"{r['points']:g}/{r['max_points']:g}{share}"

    rows = [[r["student"], score(r), "all passed" if r["all_passed"] else shorten(r["first_failure"], 140)]
            for r in results]
    passed = sum(r["all_passed"] for r in results)
    return (f"twinnet check --each ({convention} convention): {len(results)} students\n"
            + markdown_table(["student", "points", "first failure"], rows)
            + f"\n{passed} of {len(results)} passed every layer")
