"""twinnet: classic deep-learning experiments, each network built twice (NumPy and PyTorch)."""

import os as _os
import stat as _stat
import sys as _sys

__version__ = "0.3.0"

# OpenBLAS's worker threads, once a matrix product is done, spin for up to 2**28 cycles (about
# 0.1 s) waiting for the next one. The NumPy engine runs its elementwise work between products on
# threads of its own, and on a 2-core machine those spinning threads take a core from them: the
# MNIST CNN's NumPy step took 0.106 s with OPENBLAS_THREAD_TIMEOUT=28 and 0.068 s with 4, that is
# 2**4 cycles (bench/engine_vs_torch.py, docs/RESULTS.md). OpenBLAS reads the setting once, when
# NumPy loads it, so it takes effect only if twinnet is imported before NumPy; a value already in
# the environment is kept.
BLAS_SPIN_LIMITED = "numpy" not in _sys.modules or "OPENBLAS_THREAD_TIMEOUT" in _os.environ
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def _matplotlib_config() -> None:
    """Where matplotlib could not write its config folder (a read-only or missing HOME), one folder of this
    user's under the temporary directory instead of its two warnings and a new temporary folder every run.
    Set before any part of twinnet imports matplotlib; a value already in the environment is kept."""
    import tempfile

    if _os.environ.get("MPLCONFIGDIR"):
        return
    folder = _os.path.join(_os.environ.get("XDG_CONFIG_HOME") or _os.path.expanduser("~/.config"), "matplotlib")
    while not _os.path.exists(folder) and _os.path.dirname(folder) != folder:
        folder = _os.path.dirname(folder)  # the nearest folder that exists: matplotlib would create the rest there
    if _os.path.isdir(folder) and _os.access(folder, _os.W_OK):
        return
    user = getattr(_os, "getuid", lambda: 0)()
    mine = _os.path.join(tempfile.gettempdir(), f"twinnet-matplotlib-{user}")
    try:  # this user's alone: matplotlib reads a matplotlibrc from it, so one another user made is not used
        _os.mkdir(mine, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return
    found = _os.lstat(mine)
    if _stat.S_ISDIR(found.st_mode) and found.st_uid == user and not found.st_mode & 0o022:
        _os.environ["MPLCONFIGDIR"] = mine


_matplotlib_config()


class TwinnetError(Exception):
    """A problem the user can fix; the CLI prints it as one line, without a traceback."""
