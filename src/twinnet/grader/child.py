"""``twinnet check`` grades in a child process, so that nothing a student's file does to its process
(``os._exit``, closing ``sys.stdout``, a crash in native code, raising ``KeyboardInterrupt``) can end
the grading without a verdict or pass for a success: the parent reads the report this process writes.
The child writes down which layer and configuration it is grading; one that ends without a report (or
that a watchdog ends: a call that ran past its time limit and caught the exception) fails the layer it
was grading, with one line saying so, and a new child grades the layers after it.

    python -m twinnet.grader.child REQUEST.json REPORT.json
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from twinnet import TwinnetError
from twinnet.grader import loader
from twinnet.hardware import die_with_parent


_LIVE: set[subprocess.Popen] = set()  # the grading processes running now (``--each`` runs several at once)
_LIVE_LOCK = threading.Lock()
SHOWN_BYTES = 20_000  # of what a submission prints, per grading process; the rest is counted, not shown
STALL_S = 600.0  # no word from the child for this long (its watchdog held off too: native code holding the GIL)


def grade_isolated(paths: list[Path], convention: dict[str, Any], *, only: list[str] | None, seed: int,
                   configs: int, label: str | None = None):
    """``grader.grade`` in a child process: its ``Report``, or the ``TwinnetError`` it raised, or one
    saying how the submission ended the child. A child ended while it graded a layer (the submission
    exited the process, crashed Python, or ran past the time limit and caught its exception) fails that
    layer, and a new child grades the layers after it. What the submission prints goes to stderr (stdout
    is the grades'), each line after ``[label]`` where one is given (``--each``: the student's name)."""
    from twinnet import grader
    from twinnet.grader import KINDS, Report, Row

    # as ``grader.grade`` chooses them (the child refuses unknown ones): a layer the course gives only if named
    kinds = [k for k, entry in convention["layers"].items()
             if (only is None and entry.get("graded", True)) or (only is not None and k in only)]
    rows: dict[str, Row] = {}
    while True:
        todo = [k for k in kinds if k not in rows]
        # a new child grades the layers left as the first would have (an optional one stays optional: naming it
        # in --only would make it required), with the whole convention (the MLP reads its linear layer's entry)
        payload, events, how = _run_child(paths, convention, only and todo, seed, configs, label, among=todo)
        if isinstance(payload, dict) and "error" in payload:
            if payload.get("unloadable"):
                raise loader.LoadError(payload["error"], payload["unloadable"])
            raise TwinnetError(payload["error"])
        if isinstance(payload, dict) and "report" in payload:
            report = Report.from_dict(payload["report"])
            done = {**rows, **{r.kind: r for r in report.rows}}
            return Report(report.convention, seed, loader.named_once(paths), [done[k] for k in kinds if k in done])
        finished = [Row(**e["row"]) for e in events if "row" in e]
        started = [e["kind"] for e in events if "kind" in e]
        loading = [e["killed"] for e in events if str(e.get("killed", "")).startswith("loading ")]
        if not started and loading:
            stopped = Path(loading[-1].removeprefix("loading "))  # the file's resolved path, as the loader has it
            which = [p for p in paths if Path(p).resolve() == stopped]
            shown = dict(zip(map(str, paths), loader.shown_names(paths)))
            name = shown[str(which[0])] if which else stopped.name
            raise loader.LoadError(f"{name} cannot be loaded: it ran for more than {loader.LOAD_LIMIT_S:g} s and "
                                   "caught the time limit's exception (a bare `except:` around a loop at its top "
                                   "level?), so the grader ended it; fix that and check again", which)
        if not any("ready" in e for e in events):  # it ended before it read the request: nothing of the student's ran
            raise TwinnetError(f"the grading process could not start ({how}; its output is above): twinnet and its "
                               f"modules must import in a new Python process ({sys.executable})")
        if not started:
            raise TwinnetError(f"the submission ended the grading process ({how}) before it could report: code that "
                               "exits its process (os._exit, os.kill) or crashes Python; no layer is graded: fix that "
                               "and check again")
        rows.update({r.kind: r for r in finished})
        kind = started[-1]
        if kind not in rows:  # the layer it was grading when it ended
            labels = [e["config"] for e in events if "config" in e]
            killed = [e["killed"] for e in events if "killed" in e]
            where = f"{labels[-1]}: " if labels else ""
            if not killed:
                why = f"the submission ended the grading process ({how}: os._exit, os.kill, or a crash of Python)"
            elif killed[-1].startswith("grading "):  # the configuration's own limit, not a call's
                why = (f"grading it took more than {grader.CONFIG_LIMIT_S:g} s in all, though no call ran past its "
                       f"{loader.CALL_LIMIT_S:g} s limit: the submission's code that runs as what it returned is read "
                       "(an __array__, a property or a __del__ that never ends?) did not end, so the grader ended it")
            else:
                why = (f"{killed[-1]} ran past the {loader.CALL_LIMIT_S:g} s time limit and caught its exception (a "
                       "bare `except:` around a loop?), so the grader ended it")
            text = f"{where}{why}; this layer's other configurations were not run"
            rows[kind] = Row(kind, KINDS[kind].titled(convention["style"]), total=1, worst_error=float("inf"),
                             first_failure=text, failures=[text])
        if all(k in rows for k in kinds):
            return Report(convention["name"], seed, loader.named_once(paths), [rows[k] for k in kinds])


_SHOWN_AS = bytes(c if c == 9 or 32 <= c != 127 else 63 for c in range(256))  # control bytes but tab: "?"
_C1 = re.compile(rb"\xc2[\x80-\x9f]")  # and the control characters U+0080 to U+009F, in UTF-8 (CSI among them)


def _show_some(stream, label: str | None = None) -> None:
    """Pass on to stderr the first ``SHOWN_BYTES`` of what the grading process prints (the submission's own
    prints; stdout is kept for the grades), whole lines, each after ``[label]`` where one is given, and say how
    much more there was: a print in a loop cannot flood the terminal or a grading log, and the lines of students
    graded at once (``--each --jobs``) do not run into each other."""
    prefix = ("[" + "".join(ch if ch.isprintable() else "?" for ch in label) + "] ").encode(errors="replace") \
        if label else b""
    shown = dropped = 0  # bytes written (prefixes included), and the submission's bytes not shown
    pending = b""  # the start of a line not yet ended

    def emit(line: bytes, ended: bool) -> None:
        nonlocal shown, dropped
        # control bytes shown as "?" (a \r\n line's \r left out): a print cannot clear or retitle the teacher's
        # terminal, move its cursor or ring it
        line = _C1.sub(b"?", line.removesuffix(b"\r").translate(_SHOWN_AS))
        room = SHOWN_BYTES - shown
        out = prefix + line + b"\n"  # a line cut short (at the limit, or by the end) ends here too
        keep = out[:room] if room > 0 else b""
        if keep:
            _write_stderr(keep if keep.endswith(b"\n") else keep + b"\n")
            shown += len(keep)
        dropped += len(line) + ended - max(0, min(len(keep), len(prefix) + len(line) + ended) - len(prefix))

    with stream:
        while chunk := stream.read1(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                emit(line, True)
            if len(pending) > 65536:  # a line that does not end: shown as far as it came
                emit(pending, False)
                pending = b""
    if pending:
        emit(pending, False)
    if dropped:
        print(f"twinnet: {f'{label} ' if label else 'the submission '}printed {dropped:,} more bytes, not shown",
              file=sys.stderr)


_STDERR_LOCK = threading.Lock()


def _write_stderr(data: bytes) -> None:
    """One write to stderr, whole, whichever grading process's reader thread gives it."""
    with _STDERR_LOCK, contextlib.suppress(OSError, ValueError):
        if (binary := getattr(sys.stderr, "buffer", None)) is not None:
            binary.write(data)
        else:
            sys.stderr.write(data.decode(errors="replace"))
        sys.stderr.flush()


def stop_all() -> None:
    """End every grading process running now, with what they started (``--each``, interrupted)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        with contextlib.suppress(OSError, AttributeError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()


def _submission_folder(paths) -> Path | None:
    """The folder of the submission's first file, where its grading process runs; None (this one's) where it does
    not exist, so that the grading process itself says which file is missing."""
    folder = Path(paths[0]).absolute().parent if paths else None
    return folder if folder is not None and folder.is_dir() else None


def _child_env() -> dict[str, str]:
    """The environment of a grading process, which starts in another folder than this one: PYTHONPATH's relative
    entries made absolute, and the folder this twinnet was imported from put first where it is not an installed
    package's (a checkout run with PYTHONPATH=src, or from src/), so that the child grades with this very twinnet."""
    import twinnet

    env = dict(os.environ)
    entries = [str(Path(p).absolute()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    root = Path(twinnet.__file__).resolve().parent.parent
    if str(root) not in entries and not {"site-packages", "dist-packages"} & set(root.parts):
        entries.insert(0, str(root))
    if entries:
        env["PYTHONPATH"] = os.pathsep.join(entries)
    return env


def _run_child(paths, convention, only, seed, configs, label=None, among=None) -> tuple[Any, list[dict], str]:
    """One child grading ``only`` (None: every layer) of the layers ``among`` (None: all): its payload (None if
    it wrote none), the progress events it wrote, and how it ended."""
    from twinnet import grader

    with tempfile.TemporaryDirectory(prefix="twinnet-check-") as tmp:
        request, out, progress = Path(tmp) / "request.json", Path(tmp) / "report.json", Path(tmp) / "progress.jsonl"
        request.write_text(json.dumps({"files": [str(Path(p).absolute()) for p in paths], "convention": convention,
                                       "only": only, "among": among, "seed": seed, "configs": configs,
                                       "progress": str(progress),
                                       "config_limit_s": grader.CONFIG_LIMIT_S, "load_limit_s": loader.LOAD_LIMIT_S,
                                       "grace_s": loader.GRACE_S, "parent": os.getpid()}))
        progress.touch()
        # a session of its own, so that processes the submission starts end with it (below); run in the folder of
        # the submission's first file, as its student ran it (a file it writes or clears as it loads is its own, not
        # the teacher's), and -P: that folder is not put before the installed modules (a student's numpy.py)
        proc = subprocess.Popen([sys.executable, "-P", "-m", "twinnet.grader.child", str(request), str(out)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=_submission_folder(paths), env=_child_env())
        with _LIVE_LOCK:
            _LIVE.add(proc)
        printed = threading.Thread(target=_show_some, args=(proc.stdout, label), daemon=True)
        printed.start()
        try:
            while proc.poll() is None:
                try:
                    proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    if time.time() - progress.stat().st_mtime > STALL_S:  # nothing heard: not even its watchdog ran
                        proc.kill()
                        proc.wait()
                        with progress.open("a") as f:
                            f.write(json.dumps({"killed": f"a call (silent for {STALL_S:g} s)"}) + "\n")
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): the child goes with the parent
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError, AttributeError):  # what the submission forked outlives no grading
                os.killpg(proc.pid, signal.SIGKILL)  # (no process groups on Windows)
            printed.join(timeout=5.0)
            with _LIVE_LOCK:
                _LIVE.discard(proc)
        try:
            payload = json.loads(out.read_text())
        except (OSError, ValueError):
            payload = None
        events = []
        for line in progress.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:  # a line cut short as the child ended
                pass
    how = f"exit status {proc.returncode}" if proc.returncode >= 0 else f"signal {-proc.returncode}"
    return payload, events, how


def main(argv: list[str]) -> None:
    from twinnet import grader

    request, out = json.loads(Path(argv[0]).read_text()), Path(argv[1])
    die_with_parent(signal.SIGKILL)  # no grading goes on as an orphan, however `twinnet check` ends
    if os.getppid() != request["parent"]:  # it ended before that took hold
        os._exit(1)
    loader.ISOLATED = True
    grader.CONFIG_LIMIT_S = request["config_limit_s"]
    loader.LOAD_LIMIT_S, loader.GRACE_S = request["load_limit_s"], request["grace_s"]
    log = open(request["progress"], "a", buffering=1)  # noqa: SIM115 - open for the life of the process

    def note(event: str, value: Any) -> None:
        log.write(json.dumps({event: value}) + "\n")

    def hard_stop(what: str) -> None:  # from the watchdog thread: the call would never return
        note("killed", what)
        log.flush()
        os._exit(3)

    grader.PROGRESS, loader.HARD_STOP = note, hard_stop
    note("ready", True)  # started, before any of the submission's code: a process that ends sooner could not start
    try:
        report = grader.grade([Path(p) for p in request["files"]], request["convention"], only=request["only"],
                              seed=request["seed"], configs=request["configs"], among=request.get("among"))
        payload: dict[str, Any] = {"report": report.as_dict()}
    except TwinnetError as e:
        payload = {"error": str(e), "unloadable": getattr(e, "files", [])}
    except Exception as e:  # noqa: BLE001 - the grader's own failure, said as one, not blamed on the student
        payload = {"error": f"the grader failed unexpectedly ({type(e).__name__}: {e}); please report it"}
    out.write_text(json.dumps(payload))
    with contextlib.suppress(Exception):  # the student's code may have put anything in sys.stdout's place
        sys.stdout.flush()
    os._exit(0)  # no exit handler of the student's runs after the report


if __name__ == "__main__":
    main(sys.argv[1:])
