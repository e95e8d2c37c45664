"""How twinnet speaks on the console: one line per error or warning, and standard output that says
when it cannot be written."""

from __future__ import annotations

import warnings


def one_line(text: str) -> str:
    """A message on one line, whatever the paths or values in it hold (newlines shown as \\n)."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"twinnet: warning: {one_line(str(message))}\n"


def one_line_warnings() -> None:
    """Warnings worded as twinnet's errors are: one line, ``twinnet: warning: ...``, no source line."""
    warnings.formatwarning = _one_line_warning


class OutputError(OSError):
    """Standard output could not be written (`twinnet summary > /dev/full`): no file of twinnet's is involved."""


class StandardOutput:
    """``sys.stdout`` while a command runs: a write or flush that fails raises ``OutputError``, so that the
    error names standard output instead of speaking of files; everything else is the stream's own."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def _guarded(self, method, *args):
        try:
            return method(*args)
        except BrokenPipeError:  # `twinnet ... | head`: handled on its own
            raise
        except OSError as exc:
            raise OutputError(exc.errno, exc.strerror) from exc

    def write(self, text: str) -> int:
        return self._guarded(self._stream.write, text)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
