"""One interface over both engines: a model, its loss and its optimiser, stepped on arrays.

The training loop talks only to a ``Learner``, so the same loop, batches and
schedule drive the NumPy engine and PyTorch.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import numpy as np

from twinnet.numpy_nn import backend


class Learner(Protocol):
    engine: str

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One optimiser step on a batch; returns (batch mean loss, number correct)."""

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Logits (N, C) as a NumPy array, in eval mode."""

    def loss_of(self, logits: np.ndarray, y: np.ndarray) -> float:
        """Mean loss of given logits."""

    @property
    def lr(self) -> float: ...

    def set_lr(self, lr: float) -> None: ...

    def state_dict(self) -> dict: ...

    def training_state(self) -> dict:
        """Weights, optimiser state and the engine's random state: what a checkpoint holds."""

    def load_training_state(self, state: dict) -> None:
        """Return to the moment ``training_state`` was taken."""


def evaluate(learner: Learner, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> tuple[float, float]:
    """(mean loss, accuracy) of the learner's model on a whole set, in eval mode."""
    logits = learner.predict(x, batch_size)
    return learner.loss_of(logits, y), float((logits.argmax(axis=1) == y).mean())


def skip_input_grad(model) -> None:
    """Spare a Sequential's first Conv2d the gradient of its input: nobody reads it (torch skips it too)."""
    from twinnet.numpy_nn import Conv2d, Sequential

    if isinstance(model, Sequential) and len(model) and isinstance(model[0], Conv2d):
        model[0].input_grad = False


class NumpyLearner:
    """Drives a ``twinnet.numpy_nn`` model; inputs are cast to the model's dtype.

    ``blas_threads``: at most this many BLAS threads in its steps and predictions (None: the process's
    setting). One suits models of small products (the recurrent ones): as fast on an idle machine,
    and a multithreaded BLAS waits for every core it uses, so it crawls when other processes take
    one (bench/threads_under_load.py, docs/RESULTS.md)."""

    engine = "numpy"

    def __init__(self, model, optimizer, loss_fn, clip_norm: float | None = None,
                 blas_threads: int | None = None) -> None:
        self.model, self.optimizer, self.loss_fn, self.clip_norm = model, optimizer, loss_fn, clip_norm
        self.blas_threads = blas_threads
        skip_input_grad(model)
        backend.tune_allocator()

    def _blas(self):
        return backend.blas_threads(self.blas_threads) if self.blas_threads else contextlib.nullcontext()

    def _cast(self, x):
        return backend.xp().asarray(x, dtype=self.model.dtype)

    def train_step(self, x, y):
        with self._blas():
            return self._train_step(x, y)

    def _train_step(self, x, y):
        xp = backend.xp()
        self.model.train()
        logits = self.model.forward(self._cast(x))
        y = xp.asarray(y)
        loss = self.loss_fn.forward(logits, y)
        self.optimizer.zero_grad()
        self.model.backward(self.loss_fn.backward())
        if self.clip_norm is not None:
            from twinnet.numpy_nn.clip import clip_grad_norm_

            clip_grad_norm_(self.optimizer.params, self.clip_norm)
        self.optimizer.step()
        return float(loss), int((logits.argmax(axis=1) == y).sum())

    def predict(self, x, batch_size=1024):
        from twinnet.numpy_nn.module import no_grad

        self.model.eval()
        with no_grad(), self._blas():
            out = [backend.to_numpy(self.model.forward(self._cast(x[i : i + batch_size])))
                   for i in range(0, len(x), batch_size)]
        return np.concatenate(out)

    def loss_of(self, logits, y):
        xp = backend.xp()
        return float(self.loss_fn.forward(xp.asarray(logits), xp.asarray(y)))

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    def set_lr(self, lr):
        self.optimizer.lr = lr

    def state_dict(self):
        return self.model.state_dict()

    def training_state(self):
        from twinnet.numpy_nn import init

        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": init.generator().bit_generator.state}

    def load_training_state(self, state):
        from twinnet.numpy_nn import init

        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        init.generator().bit_generator.state = state["rng"]


class TorchLearner:
    """Drives a ``torch.nn.Module``; inputs become tensors of the model's dtype and device.

    ``amp``: mixed precision, bfloat16 autocast on the model's device (CUDA, or a CPU with bfloat16
    arithmetic); weights, optimiser and loss stay in the model's dtype. ``channels_last``: 4-d inputs
    are laid out NHWC in memory (move the model with ``.to(memory_format=torch.channels_last)`` too).
    """

    engine = "torch"

    def __init__(self, model, optimizer, loss_fn, clip_norm: float | None = None, amp: bool = False,
                 channels_last: bool = False) -> None:
        self.model, self.optimizer, self.loss_fn, self.clip_norm = model, optimizer, loss_fn, clip_norm
        self.amp, self.channels_last = amp, channels_last
        # a schedule sets the first group's rate; every other group keeps its ratio to it (e.g. a 64x rate on
        # batch-norm biases, or 0.1 beside 0.01)
        first = optimizer.param_groups[0]["lr"]
        self._lr_ratios = [g["lr"] / first if first else 1.0 for g in optimizer.param_groups]
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device

    def _tensor(self, a, dtype=None):
        import torch

        t = torch.as_tensor(a, dtype=dtype or self.dtype, device=self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.ndim == 4 else t

    def _autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def train_step(self, x, y):
        import torch

        self.model.train()
        with self._autocast():
            logits = self.model(self._tensor(x))
        logits = logits.to(self.dtype)
        y = self._tensor(y, torch.long)
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.optimizer.step()
        return float(loss.detach()), int((logits.detach().argmax(1) == y).sum())

    def predict(self, x, batch_size=1024):
        import torch

        self.model.eval()
        with torch.no_grad(), self._autocast():
            out = [self.model(self._tensor(x[i : i + batch_size])).to(self.dtype).cpu().numpy()
                   for i in range(0, len(x), batch_size)]
        return np.concatenate(out)

    def loss_of(self, logits, y):
        import torch

        with torch.no_grad():
            return float(self.loss_fn(torch.as_tensor(logits), torch.as_tensor(y, dtype=torch.long)))

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def set_lr(self, lr):
        """The first parameter group's rate; the others move with it, keeping their ratios to it."""
        for group, ratio in zip(self.optimizer.param_groups, self._lr_ratios):
            group["lr"] = lr * ratio

    def state_dict(self):
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}

    def training_state(self):
        import copy

        import torch

        state = {"model": copy.deepcopy(self.model.state_dict()), "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                 "rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_training_state(self, state):
        import torch

        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(torch.as_tensor(state["rng"]).cpu())  # random states are CPU byte tensors
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.as_tensor(state["cuda_rng"]).cpu(), self.device)
