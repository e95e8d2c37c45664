"""twinnet: classic deep-learning experiments, each network built twice (NumPy and PyTorch)."""

__version__ = "0.1.0"


class TwinnetError(Exception):
    """A problem the user can fix; the CLI prints it as one line, without a traceback."""
