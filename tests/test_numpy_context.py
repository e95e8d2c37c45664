"""No hidden process-wide state in the NumPy engine: models of different dtypes, random streams
and threads in one process do not reach into each other."""

from __future__ import annotations

import importlib.util
import sys
import threading
import types

import numpy as np
import pytest

from twinnet import numpy_nn as nnp
from twinnet.numpy_nn import backend, init


@pytest.fixture(autouse=True)
def _keep_shared_generator(monkeypatch):
    """Models here are built with init.manual_seed; leave the default generator as other tests expect it."""
    monkeypatch.setattr(init, "_rng", init._rng)


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((16, 2, 6, 6)), rng.integers(0, 3, 16)


def _model(dtype, dropout: float = 0.0):
    init.manual_seed(0)  # the same initial weights for every model
    model = nnp.Sequential(nnp.Conv2d(2, 4, 3, padding=1), nnp.BatchNorm2d(4), nnp.ReLU(), nnp.MaxPool2d(2),
                           nnp.Flatten(), nnp.Dropout(dropout), nnp.Linear(36, 3))
    return model.to(dtype)


class _Run:
    """A model, its Adam and its loss, stepped on one fixed batch."""

    def __init__(self, dtype, seed: int | None = None, dropout: float = 0.0) -> None:
        self.model = _model(dtype, dropout)
        if seed is not None:
            self.model.manual_seed(seed)
        self.opt = nnp.Adam(self.model.parameters(), lr=1e-2)
        self.loss = nnp.CrossEntropyLoss()
        x, self.y = _data()
        self.x = x.astype(dtype)

    def step(self):
        logits = self.model.forward(self.x)
        loss = self.loss.forward(logits, self.y)
        self.opt.zero_grad()
        self.model.backward(self.loss.backward())
        self.opt.step()
        return logits, loss


def _alone(dtype, steps: int, **kwargs):
    run = _Run(dtype, **kwargs)
    return [run.step() for _ in range(steps)], run


def _assert_same_steps(a, b):
    for (logits_a, loss_a), (logits_b, loss_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(logits_a, logits_b)
        assert loss_a == loss_b


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# --- dtypes -----------------------------------------------------------------------------------


def test_float32_and_float64_models_interleaved_keep_their_dtypes_and_results():
    steps = 4
    alone32, run32 = _alone(np.float32, steps)
    alone64, run64 = _alone(np.float64, steps)
    a, b = _Run(np.float32), _Run(np.float64)
    both32, both64 = [], []
    for _ in range(steps):
        both32.append(a.step())
        both64.append(b.step())
    _assert_same_steps(alone32, both32)
    _assert_same_steps(alone64, both64)
    for run, dtype, steps_ in ((a, np.float32, both32), (b, np.float64, both64)):
        assert all(logits.dtype == dtype for logits, _ in steps_)
        assert {p.dtype for p in run.model.parameters()} == {np.dtype(dtype)}
        assert run.model[1].running_mean.dtype == dtype and run.model[1].num_batches_tracked.dtype == np.int64
        assert all(v.dtype == dtype for state in run.opt.state for k, v in state.items() if k != "step")
    _assert_same_state(run32.model.state_dict(), a.model.state_dict())
    _assert_same_state(run64.model.state_dict(), b.model.state_dict())
    _assert_same_state(run32.opt.state_dict(), a.opt.state_dict())
    _assert_same_state(run64.opt.state_dict(), b.opt.state_dict())


# --- random streams ---------------------------------------------------------------------------


def test_dropout_models_with_own_generators_interleaved_draw_as_alone():
    steps = 3
    alone1, _ = _alone(np.float64, steps, seed=1, dropout=0.5)
    alone2, _ = _alone(np.float64, steps, seed=2, dropout=0.5)
    assert not np.array_equal(alone1[0][0], alone2[0][0])  # the seeds make different masks
    a, b = _Run(np.float64, seed=1, dropout=0.5), _Run(np.float64, seed=2, dropout=0.5)
    default_state = init.generator().bit_generator.state
    both1, both2 = [], []
    for _ in range(steps):
        both1.append(a.step())
        both2.append(b.step())
    _assert_same_steps(alone1, both1)
    _assert_same_steps(alone2, both2)
    assert init.generator().bit_generator.state == default_state  # the default generator was never drawn from


def test_reseeding_one_model_leaves_the_other_alone():
    x = np.ones((8, 50))
    alone = nnp.Sequential(nnp.Dropout(0.5)).manual_seed(2)
    expected = [alone.forward(x) for _ in range(3)]
    a, b = nnp.Sequential(nnp.Dropout(0.5)).manual_seed(1), nnp.Sequential(nnp.Dropout(0.5)).manual_seed(2)
    first_a = a.forward(x)
    got = [b.forward(x)]
    a.manual_seed(1)
    np.testing.assert_array_equal(a.forward(x), first_a)  # reseeding restarts a's own stream
    got += [b.forward(x), b.forward(x)]
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)


def test_generator_reaches_submodules_and_falls_back_to_the_default(monkeypatch):
    inner = nnp.Dropout(0.5)
    model = nnp.Sequential(nnp.Linear(2, 2), nnp.Sequential(inner))
    monkeypatch.setattr(init, "_rng", np.random.default_rng(5))
    assert inner.generator is init.generator()  # none of its own: torch's default generator's part
    g = np.random.default_rng(9)
    assert model.set_generator(g) is model
    assert all(m.generator is g for m in model.modules())
    x = np.ones((4, 30))
    np.testing.assert_array_equal(inner.forward(x), nnp.Dropout(0.5).set_generator(np.random.default_rng(9)).forward(x))


# --- array module -----------------------------------------------------------------------------


class _FakeCupyArray:
    """Stands for a CuPy array (CuPy is not installed here): only its class's module matters."""

    __module__ = "cupy._core.core"


def test_array_module_comes_from_the_arrays(monkeypatch):
    assert backend.xp() is np
    assert backend.xp(np.zeros(2), None, 1.0) is np
    assert not backend.is_cupy(np.zeros(2)) and backend.is_cupy(_FakeCupyArray())
    fake_cupy = types.ModuleType("cupy")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    assert backend.xp(np.zeros(2), _FakeCupyArray()) is fake_cupy
    assert backend.xp(np.zeros(2)) is np  # a loaded CuPy changes nothing for NumPy arrays


def test_work_on_cupy_arrays_runs_whole_on_the_calling_thread():
    calls = []
    backend.parallel(calls.append, 64, size=10, blocks=8, like=np.zeros(64))
    assert len(calls) == 8  # NumPy: cache-sized blocks
    calls.clear()
    backend.parallel(calls.append, 64, size=10, blocks=8, like=_FakeCupyArray())
    assert calls == [slice(0, 64)]
    threads = []
    backend.parallel_items(lambda item: threads.append((item, threading.get_ident())), [1, 2, 3], [1 << 20] * 3,
                           like=_FakeCupyArray())
    assert threads == [(i, threading.get_ident()) for i in (1, 2, 3)]


def test_to_moves_between_dtypes_and_devices():
    model = _model(np.float32)
    assert model.xp is np and model.to() is model and model.dtype == np.float32
    model.to(np.float64, device="cpu")
    assert model.dtype == np.float64 and all(type(a) is np.ndarray for a in model.state_dict().values())
    assert model[1].running_var.dtype == np.float64 and model[1].num_batches_tracked.dtype == np.int64
    with pytest.raises(ValueError, match="unknown device"):
        model.to(device="tpu")
    if importlib.util.find_spec("cupy") is None:
        with pytest.raises(RuntimeError, match="CuPy is not installed"):
            model.to(device="cuda")


# --- grad mode per thread ---------------------------------------------------------------------


def test_no_grad_in_one_thread_leaves_caching_in_another():
    x = np.ones((3, 2))
    mine, theirs = nnp.Linear(2, 2), nnp.Linear(2, 2)
    entered, checked = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def evaluate():
        with nnp.no_grad():
            entered.set()
            checked.wait(10)
            theirs.forward(x)
            try:
                theirs.backward(np.ones((3, 2)))
            except RuntimeError as exc:  # nothing cached under no_grad
                seen["error"] = exc

    worker = threading.Thread(target=evaluate)
    worker.start()
    try:
        assert entered.wait(10)
        mine.forward(x)
        mine.backward(np.ones((3, 2)))  # cached, though the other thread is inside no_grad
        assert mine.weight.grad is not None
    finally:
        checked.set()
        worker.join(10)
    assert "matching forward" in str(seen["error"])


def test_a_forward_running_in_another_thread_does_not_nest_this_threads_forwards():
    """An outermost forward drops the caches of forwards never backpropagated; another thread's
    forward in progress must not make this thread's forwards count as nested."""
    started, release = threading.Event(), threading.Event()

    class Waiting(nnp.Module):
        def forward(self, x):
            started.set()
            release.wait(10)
            return x

    worker = threading.Thread(target=Waiting().forward, args=(np.ones(1),))
    worker.start()
    layer, x = nnp.Linear(2, 2), np.ones((3, 2))
    try:
        assert started.wait(10)
        layer.forward(x)
        layer.forward(x)  # an evaluation-like forward: the first one's cache goes
        layer.backward(np.ones((3, 2)))
        with pytest.raises(RuntimeError, match="matching forward"):
            layer.backward(np.ones((3, 2)))
    finally:
        release.set()
        worker.join(10)
