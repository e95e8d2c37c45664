"""``twinnet check`` grades in a child process, so that nothing a student's file does to its process
(``os._exit``, closing ``sys.stdout``, a crash in native code, raising ``KeyboardInterrupt``) can end
the grading without a verdict or pass for a success: the parent reads the report this process writes,
and a child that ends without one is a failed grade with one line saying so.

    python -m twinnet.grader.child REQUEST.json REPORT.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twinnet import TwinnetError


def grade_isolated(paths: list[Path], convention: dict[str, Any], *, only: list[str] | None, seed: int,
                   configs: int):
    """``grader.grade`` in a child process: its ``Report``, or the ``TwinnetError`` it raised, or one
    saying how the submission ended the child."""
    from twinnet.grader import Report

    with tempfile.TemporaryDirectory(prefix="twinnet-check-") as tmp:
        request, out = Path(tmp) / "request.json", Path(tmp) / "report.json"
        request.write_text(json.dumps({"files": [str(Path(p).absolute()) for p in paths], "convention": convention,
                                       "only": only, "seed": seed, "configs": configs}))
        proc = subprocess.run([sys.executable, "-m", "twinnet.grader.child", str(request), str(out)],
                              stdin=subprocess.DEVNULL)
        try:
            payload = json.loads(out.read_text())
        except (OSError, ValueError):
            payload = None
    if not isinstance(payload, dict) or not ("report" in payload or "error" in payload):
        how = f"exit status {proc.returncode}" if proc.returncode >= 0 else f"signal {-proc.returncode}"
        raise TwinnetError(f"the submission ended the grading process ({how}) before it could report: code that "
                           "exits its process (os._exit, os.kill) or crashes Python; no layer is graded: fix that "
                           "and check again")
    if "error" in payload:
        raise TwinnetError(payload["error"])
    return Report.from_dict(payload["report"])


def main(argv: list[str]) -> None:
    from twinnet import grader
    from twinnet.grader import loader

    request, out = json.loads(Path(argv[0]).read_text()), Path(argv[1])
    loader.ISOLATED = True
    try:
        report = grader.grade([Path(p) for p in request["files"]], request["convention"], only=request["only"],
                              seed=request["seed"], configs=request["configs"])
        payload: dict[str, Any] = {"report": report.as_dict()}
    except TwinnetError as e:
        payload = {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - the grader's own failure, said as one, not blamed on the student
        payload = {"error": f"the grader failed unexpectedly ({type(e).__name__}: {e}); please report it"}
    out.write_text(json.dumps(payload))
    sys.stdout.flush() if not sys.stdout.closed else None
    os._exit(0)  # no exit handler of the student's runs after the report


if __name__ == "__main__":
    main(sys.argv[1:])
