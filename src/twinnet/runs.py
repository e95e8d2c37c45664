"""Run directories: every file a run leaves, written atomically so nothing is ever half-written."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
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
CHECKPOINT = "checkpoint.pt"  # an image run's weights, optimiser and loop state at the end of its latest epoch
RESULTS = "results.jsonl"  # a sweep's finished runs, one JSON line each
INFLIGHT = "inflight"  # a sweep's checkpoint for each run in progress, removed once its result is in RESULTS


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers see old or new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
    return json.loads(Path(path).read_text())


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunDir:
    """The directory of one run and the files in it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, experiment: str, out: Path | None = None, runs_root: Path = Path("runs")) -> RunDir:
        """A new, empty run directory: ``out`` if given, else runs_root/experiment/timestamp."""
        if out is not None:
            out = Path(out)
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise TwinnetError(f"--out {out} already exists and is not an empty directory; choose another path")
            path = out
        else:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path(runs_root) / experiment / stamp
            k = 1
            while path.exists():
                path = Path(runs_root) / experiment / f"{stamp}-{k}"
                k += 1
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TwinnetError(f"cannot create run directory {path}: {exc.strerror}") from None
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.file(name), obj)

    def read_json(self, name: str) -> Any:
        return read_json(self.file(name))

    def append_metrics(self, record: dict) -> None:
        """One JSON object per line, flushed at once so an interrupted run keeps what it measured."""
        with open(self.file(METRICS), "a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")

    def write_metrics(self, records: list[dict]) -> None:
        """Replace the metrics file with ``records`` in one atomic write (a resumed run drops what came later)."""
        atomic_write_bytes(self.file(METRICS),
                           "".join(json.dumps(r, default=_json_default) + "\n" for r in records).encode())

    def metrics(self) -> list[dict]:
        return read_jsonl(self.file(METRICS))

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        """Arrays for the report (e.g. decision-boundary grids), as one .npz written atomically."""
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.file(name), buf.getvalue())

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.file(name)) as z:
            return {k: z[k] for k in z.files}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def environment(seed: int, threads: int | None) -> dict[str, Any]:
    """Versions, hardware and seed: what is needed to reproduce a run."""
    import sklearn
    import torch

    return {
        "twinnet": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),  # see twinnet/__init__.py
        "openblas_thread_timeout_applied": BLAS_SPIN_LIMITED,  # False: NumPy was loaded before it was set
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "seed": seed,
        "data_dir": os.environ.get("TWINNET_DATA_DIR"),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
