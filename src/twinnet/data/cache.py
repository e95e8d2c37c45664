"""The one cache of decoded datasets: uint8 arrays in an .npz, written atomically, checked on read."""

from __future__ import annotations

import contextlib
import io
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from twinnet.runs import atomic_write_bytes


def read_cache(path: Path, key: str, names: Sequence[str],
               well_formed: Callable[[dict[str, np.ndarray]], bool]) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None if absent; a corrupt, foreign or stale file is removed so it gets rebuilt."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:  # every member is read whole, so its zip CRC is checked
            arrays = {k: z[k] for k in names}
        if str(arrays["key"]) == key and well_formed(arrays):
            return arrays
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        pass
    with contextlib.suppress(OSError):  # if it cannot go, the rebuilt cache replaces it anyway
        path.unlink(missing_ok=True)
    return None


def write_cache(path: Path, arrays: dict[str, np.ndarray], what: str) -> None:
    """Atomically, so an interrupted write leaves no cache rather than a partial one; failure only warns."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # uncompressed: the point is a fast load
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getbuffer())
    except OSError as exc:
        warnings.warn(f"cannot write the cache {path} ({exc}); {what} will be decoded again next time (set "
                      "TWINNET_CACHE_DIR to a folder you can write to)")
