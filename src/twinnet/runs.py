"""Run directories: every file a run leaves, written atomically so nothing is ever half-written."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from twinnet import BLAS_SPIN_LIMITED, TwinnetError, __version__

CONFIG, METRICS, SUMMARY, ENV, STRUCTURE, REPORT = (
    "config.json",
    "metrics.jsonl",
    "summary.json",
    "env.json",
    "structure.json",
    "report.md",
)
REPORT_HTML = "report.html"  # the same report as one self-contained page (figures embedded)
CHECKPOINT = "checkpoint.pt"  # a run's weights, optimiser and loop state at its latest checkpoint (twinnet.checkpoint)
RESULTS = "results.jsonl"  # a sweep's finished runs, one JSON line each
TMP_SUFFIX = ".tmp"  # an atomic write in progress: ".NAME.XXXX.tmp" beside NAME


def _file_mode() -> int:
    """The mode a new file gets under this process's umask (0o644 under the usual 022)."""
    try:  # read without changing it: os.umask would set it for a moment, racing other threads' files
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def npz_problem(path: Path, exc: Exception) -> str:
    """Why ``np.load`` refused ``path``, in words (NumPy calls any file that is neither a zip nor a .npy
    "pickled data", which misleads when the file is text or a renamed image)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        head = b""
    if not head.startswith((b"PK", b"\x93NUMPY")):
        return "its first bytes are not a zip archive's, so it is no .npz (another kind of file, or damaged)"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers see old or new, never half.
    The file gets the mode the umask gives a new file (mkstemp alone would leave it private)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as e:  # the folder takes no new file (/proc, read-only): name the file asked for, not the temporary
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fchmod"):  # not on Windows before Python 3.13, where the umask does not apply either
                os.fchmod(f.fileno(), _file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        # a full disk (no file named), or the rename (the temporary file named, gone now): name the file written
        if isinstance(e, OSError) and e.errno is not None and (e.filename is None or str(e.filename) == tmp):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def read_json(path: Path) -> Any:
    """A JSON file of a run; a damaged one is a one-line TwinnetError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise TwinnetError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, absurd nesting
        raise TwinnetError(f"{path} is damaged ({str(e)[:100]}); it is not valid JSON. Restore it or start a new "
                           "run") from None


def read_jsonl(path: Path, finished: bool = False) -> list[dict]:
    """One JSON object per line. A last line cut short (a process killed while appending it, with no
    newline after it) is left out, unless the file is ``finished`` (its run wrote every line whole); a
    damaged line elsewhere is a one-line TwinnetError."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TwinnetError(f"cannot read {path}: {e}") from None
    lines = text.split("\n")
    records = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            if k == len(lines) - 1 and not finished:  # no newline after it: an append that never finished
                break
            if k == len(lines) - 1:
                raise TwinnetError(f"{path} ends in a line cut short (line {k + 1}), though its run finished: the file "
                                   "was damaged since; restore it (nothing was redrawn from it)") from None
            raise TwinnetError(f"{path} line {k + 1} is damaged (not JSON); restore the file or start a new "
                               "run") from None
        if not isinstance(record, dict):
            raise TwinnetError(f"{path} line {k + 1} is not a JSON object; restore the file or start a new run")
        records.append(record)
    return records


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers_consistent(path: Path, records: list[dict]) -> None:
    """Refuse records where a field that holds numbers elsewhere holds something else (an edit that left
    ``"test_acc": "high"``): its figures would be drawn from it as categories, without a word."""
    numeric = {k for r in records for k, v in r.items() if _is_number(v)}
    for k, record in enumerate(records):
        for key in numeric & record.keys():
            value = record[key]
            if value is not None and not _is_number(value):
                raise TwinnetError(f"{path}: record {k + 1} holds {key} = {json.dumps(value)[:40]}, where the other "
                                   "records hold numbers; restore the file, or run the experiment again")


class RunDir:
    """The directory of one run and the files in it."""

    def __init__(self, path: Path, created: Path | None = None) -> None:
        self.path = Path(path)
        self.created = created  # the topmost folder this process made for it (removed again if nothing is kept)

    @classmethod
    def create(cls, experiment: str, out: Path | None = None, runs_root: Path = Path("runs")) -> RunDir:
        """A new, empty run directory: ``out`` if given, else runs_root/experiment/timestamp."""
        if out is not None:
            out = Path(out)
            # the run's path is its last line printed, for scripts: no character that ends a line or controls
            if any(unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029" for ch in str(out)):
                raise TwinnetError(f"--out {str(out)!r} holds a newline or another control character; choose a name "
                                   "without one (the run's path is printed as the last line, for scripts to read)")
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise TwinnetError(f"--out {out} already exists and is not an empty directory; choose another path")
            if out.is_symlink() and not out.exists():
                raise TwinnetError(f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist; "
                                   "create that folder first, or choose another path")
            path = out
        else:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path(runs_root) / experiment / stamp
            k = 1
            while path.exists():
                path = Path(runs_root) / experiment / f"{stamp}-{k}"
                k += 1
        created = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TwinnetError(f"cannot create run directory {path}: {exc.strerror}; give --out (or --runs-dir) a "
                               "folder you can write to") from None
        return cls(path, created)

    def discard(self) -> None:
        """Remove a new run that kept nothing: its folder and those of the folders this process made above it
        that nothing else has filled since (another run may have started in them), else its contents."""
        if self.created is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            for parent in self.path.parents:
                if parent == self.created.parent:
                    break
                try:
                    parent.rmdir()  # only when empty
                except OSError:
                    break
            return
        for p in self.path.iterdir():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.file(name), obj)

    def read_json(self, name: str) -> Any:
        return read_json(self.file(name))

    def append_metrics(self, record: dict) -> None:
        """One JSON object per line, flushed at once so an interrupted run keeps what it measured."""
        append_line(self.file(METRICS), record)

    def write_metrics(self, records: list[dict]) -> None:
        """Replace the metrics file with ``records`` in one atomic write (a resumed run drops what came later)."""
        atomic_write_bytes(self.file(METRICS),
                           "".join(json.dumps(r, default=_json_default) + "\n" for r in records).encode())

    def restart_metrics(self) -> None:
        """A resumed run with no checkpoint starts again from step 0: what it recorded before is set aside
        (metrics.before-restart.jsonl, never overwritten by a second restart's), not lost, and said."""
        import warnings

        old = self.file(METRICS)
        if not old.exists():
            return
        records = old.read_bytes().count(b"\n")
        if records == 0:
            old.unlink()
            return
        kept, k = self.file("metrics.before-restart.jsonl"), 0
        while kept.exists():
            k += 1
            kept = self.file(f"metrics.before-restart-{k}.jsonl")
        old.rename(kept)
        warnings.warn(f"{self.path}: no checkpoint to continue from, so this run starts again from step 0; the "
                      f"{records:,} metric record(s) of its earlier attempt are kept in {kept.name}", stacklevel=2)

    def metrics(self) -> list[dict]:
        """The evaluations recorded; a finished run's (its summary written after its last record) must end
        in a whole line. A diverged run may be resumed: it keeps its old summary while it appends again."""
        try:
            summary = read_json(self.file(SUMMARY)) if self.file(SUMMARY).is_file() else None
        except TwinnetError:  # damaged: said where it is read for itself
            summary = None
        finished = isinstance(summary, dict) and summary.get("outcome") != "diverged"
        path = self.file(METRICS)
        if finished and (not path.exists() or (path.is_file() and path.stat().st_size == 0)):
            # a finished run recorded at least its last evaluation: drawing its figures from nothing would
            # replace good ones with empty axes
            raise TwinnetError(f"{path} is {'empty' if path.exists() else 'missing'}, but this run finished and "
                               "recorded its evaluations there; restore the file, or run the experiment again")
        records = read_jsonl(path, finished=finished)
        _numbers_consistent(path, records)
        return records

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        """Arrays for the report (e.g. decision-boundary grids), as one .npz written atomically."""
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.file(name), buf.getvalue())

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays of a .npz the run wrote; never unpickles (a file holding objects is refused)."""
        path = self.file(name)
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except OSError as e:
            raise TwinnetError(f"cannot read {path}: {e.strerror or e}; restore it from the run or run the experiment "
                               "again") from None
        except ValueError as e:  # object arrays (pickles), or not an .npz at all
            raise TwinnetError(f"{path} cannot be read safely ({npz_problem(path, e)}); restore it from the run "
                               "or run the experiment again") from None
        except Exception as e:  # noqa: BLE001 - a damaged zip: BadZipFile, EOFError, ...
            raise TwinnetError(f"{path} is damaged ({type(e).__name__}); restore it or run the experiment "
                               "again") from None

    @contextlib.contextmanager
    def lock(self):
        """Hold an exclusive lock on the directory while a run writes in it: a second process (a second
        ``--resume``, say) is refused with one line instead of writing beside the first. No file is made.
        Where there is no ``fcntl`` (Windows), the run goes unguarded."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield self
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TwinnetError(f"another process is running in {self.path}; wait for it to end (or stop it), "
                                   "then resume") from None
            except OSError:  # a file system without locks on directories (some NFS): run unguarded
                pass
            yield self
        finally:
            os.close(fd)  # releases the lock

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files of atomic writes a killed process left unfinished (call with the lock held)."""
        leftovers = [p for p in self.path.rglob(f".*{TMP_SUFFIX}") if p.is_file()]
        for p in leftovers:
            p.unlink(missing_ok=True)
        return leftovers


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
        return True
    except (ValueError, RecursionError):
        return False


def append_line(path: Path, record: dict, sync: bool = False) -> None:
    """Append one JSON line; ``sync``: on disk before this returns (a result others depend on).

    A last line cut short (a process killed, or a disk filled, while appending it) is cut off first,
    so that the new line starts a line of its own (``read_jsonl`` leaves the cut line out)."""
    with open(path, "ab+") as f:
        end = f.seek(0, os.SEEK_END)
        if end:
            f.seek(max(0, end - (1 << 20)))
            tail = f.read()
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                if _is_json(tail[cut + 1:]):  # whole, only its newline missing (read_jsonl counts it): keep it
                    f.write(b"\n")
                else:
                    f.truncate(end - len(tail) + cut + 1 if cut >= 0 else (0 if end <= 1 << 20 else end))
        f.write((json.dumps(record, default=_json_default) + "\n").encode())
        f.flush()
        if sync:
            os.fsync(f.fileno())


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int, threads: int, threads_chosen_by: str = "--threads",
                data_dir: str | None = None) -> dict[str, Any]:
    """Versions, hardware, thread settings and seed: what is needed to reproduce a run."""
    import sklearn
    import torch

    from twinnet import hardware

    return {
        "twinnet": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        **hardware.describe(threads, threads_chosen_by),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),  # see twinnet/__init__.py
        "openblas_thread_timeout_applied": BLAS_SPIN_LIMITED,  # False: NumPy was loaded before it was set
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "seed": seed,
        "data_dir": data_dir,
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
