"""Settings every test shares: no timing-dependent output, no load-dependent thread counts."""

import pytest


@pytest.fixture(autouse=True)
def _no_progress_lines(monkeypatch):
    """A slow or busy machine makes ``fit`` print progress lines to stderr (one per LOG_EVERY_S seconds
    of a run); what a test sees must not depend on the machine's speed, so no test gets them unless it
    asks (tests of the lines set LOG_EVERY_S themselves). Subprocesses get TWINNET_LOG_EVERY_S."""
    import twinnet.train

    monkeypatch.setattr(twinnet.train, "LOG_EVERY_S", float("inf"))
    monkeypatch.setenv("TWINNET_LOG_EVERY_S", "inf")


@pytest.fixture(autouse=True)
def _one_thread_unless_asked(monkeypatch):
    """Runs without --threads take the cores other processes leave idle, which depends on what else
    the machine is doing; tests pin that default to one thread (tests of the default unset it)."""
    monkeypatch.setenv("TWINNET_THREADS", "1")


@pytest.fixture(autouse=True)
def _numpy_init_seeded_per_test():
    """The NumPy engine draws fresh weights from one process-wide generator: every test starts it
    from the same seed, so what a test sees does not depend on which tests ran before it in the
    same process (a worker of pytest-xdist runs other files first)."""
    from twinnet.numpy_nn import init

    init.manual_seed(0)
