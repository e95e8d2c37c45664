"""One interface over both engines: a model, its loss and its optimiser, stepped on arrays.

The training loop talks only to a ``Learner``, so the same loop, batches and
schedule drive the NumPy engine and PyTorch.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import numpy as np

from twinnet import distributed
from twinnet.numpy_nn import backend


class Learner(Protocol):
    engine: str

    def train_step(self, x: np.ndarray, y: np.ndarray, total: int | None = None) -> tuple[float, int]:
        """One optimiser step on a batch; returns (batch mean loss, number correct). With several
        ranks, ``(x, y)`` is this rank's shard of a global batch of ``total`` samples, and the step
        is that of the whole global batch's mean loss."""

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Logits (N, C) as a NumPy array, in eval mode."""

    def loss_of(self, logits: np.ndarray, y: np.ndarray) -> float:
        """Mean loss of given logits."""

    @property
    def lr(self) -> float:
        """The first parameter group's learning rate now."""

    def scale_lr(self, factor: float) -> None:
        """Set every parameter group's rate to its own base rate times ``factor`` (a schedule's value)."""

    def state_dict(self) -> dict:
        """The model's weights as NumPy arrays."""

    def load_weights(self, state: dict) -> None:
        """Put weights given as ``state_dict()`` gives them back into the model."""

    def training_state(self) -> dict:
        """Weights, optimiser state and the engine's random state: what a checkpoint holds."""

    def load_training_state(self, state: dict) -> None:
        """Return to the moment ``training_state`` was taken."""

    def random_state(self) -> dict:
        """The engine's random state (dropout masks): with several ranks, each rank's own."""

    def load_random_state(self, state: dict) -> None:
        """Return the engine's random stream to ``random_state``."""

    def synchronize(self) -> None:
        """With several ranks: average the model's running statistics (batch norm) over the ranks, so
        that every rank evaluates and saves the same model. Collective: every rank calls it."""

    def trainable_changed(self) -> None:
        """After parameters stopped training (a frozen layer): with several ranks, the gradient exchange
        set up again for the parameters that still train. Collective: every rank calls it."""


def evaluate(learner: Learner, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> tuple[float, float]:
    """(mean loss, accuracy) of the learner's model on a whole set, in eval mode."""
    logits = learner.predict(x, batch_size)
    return learner.loss_of(logits, y), float((logits.argmax(axis=1) == y).mean())


def skip_input_grad(model) -> None:
    """Spare the first layer the gradient of its input (a Sequential's first Conv2d, a recurrent
    model): the input is data, nobody reads it (torch skips it too)."""
    from twinnet.numpy_nn import Conv2d, Sequential

    if isinstance(model, Sequential) and len(model) and isinstance(model[0], Conv2d):
        model[0].input_grad = False
    elif hasattr(model, "input_grad"):
        model.input_grad = False


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
        self.blas_threads, self.base_lr = blas_threads, optimizer.lr
        self.world = distributed.world()
        skip_input_grad(model)
        if self.world.size > 1:  # every rank starts from rank 0's weights, and draws its own dropout masks
            distributed.copy_from_rank0([p.data for p in model.parameters()] + self._buffers())
            model.manual_seed(distributed.rank_seed(int(model.generator.integers(2**62)), self.world.rank))

    def _buffers(self) -> list:
        return [b for m in self.model.modules() for b in m._buffers.values()]

    def _blas(self):
        return backend.blas_threads(self.blas_threads) if self.blas_threads else contextlib.nullcontext()

    def _cast(self, x):
        return self.model.xp.asarray(x, dtype=self.model.dtype)

    def train_step(self, x, y, total=None):
        with self._blas():
            return self._train_step(x, y, total)

    def _train_step(self, x, y, total):
        xp = self.model.xp
        self.model.train()
        logits = self.model.forward(self._cast(x))
        y = xp.asarray(y)
        loss = self.loss_fn.forward(logits, y)
        self.optimizer.zero_grad()
        self.model.backward(self.loss_fn.backward())
        if self.world.size > 1:  # every rank's shard makes one batch: its gradients are combined first
            # a frozen weight (requires_grad_(False), the same on every rank) has no gradient to exchange
            distributed.average_gradients([p.grad for p in self.optimizer.params if p.requires_grad], len(y),
                                          total or int(distributed.all_sum([len(y)])[0]))
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
        xp = self.model.xp
        return float(self.loss_fn.forward(xp.asarray(logits), xp.asarray(y)))

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    def scale_lr(self, factor):
        self.optimizer.lr = self.base_lr * factor

    def state_dict(self):
        return self.model.state_dict()

    def load_weights(self, state):
        self.model.load_state_dict(state)

    def training_state(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), **self.random_state()}

    def load_training_state(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_random_state(state)

    def random_state(self):
        return {"rng": self.model.generator.bit_generator.state}

    def load_random_state(self, state):
        self.model.generator.bit_generator.state = state["rng"]

    def synchronize(self):
        if self.world.size > 1:
            distributed.average(self._buffers())

    def trainable_changed(self):
        """Nothing to set up: every rank averages the gradients its optimiser holds."""


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
        # each group's own base rate, which a schedule multiplies (e.g. a 64x rate on batch-norm biases stays 64x)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device
        self.world = distributed.world()
        self.forward = model
        if self.world.size > 1:
            import torch

            self._wrap(init_sync=True)
            torch.manual_seed(distributed.rank_seed(int(torch.randint(2**62, (1,))), self.world.rank))

    def _wrap(self, init_sync: bool) -> None:
        """DistributedDataParallel around the model: the gradients of the parameters that train now,
        all-reduced in buckets during backward; with ``init_sync`` every rank starts from rank 0's weights.
        Batch-norm statistics stay per rank (``synchronize`` averages them, nothing broadcasts them)."""
        from torch.nn.parallel import DistributedDataParallel

        self.forward = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda"
                                               else None, forward_sync_buffers=False, init_sync=init_sync)

    def _tensor(self, a, dtype=None):
        import torch

        t = torch.as_tensor(a, dtype=dtype or self.dtype, device=self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.ndim == 4 else t

    def _autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def train_step(self, x, y, total=None):
        import torch

        self.model.train()
        with self._autocast():
            logits = self.forward(self._tensor(x))
        logits = logits.to(self.dtype)
        y = self._tensor(y, torch.long)
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        objective = loss
        if self.world.size > 1:  # DDP averages the ranks' gradients: weigh each shard by its share of the batch
            total = total or int(distributed.all_sum([len(y)])[0])
            if len(y) * self.world.size != total:
                objective = loss * (len(y) * self.world.size / total)
        objective.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.optimizer.step()
        # left on the device: ``fit`` reads them back only when it records or logs
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

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

    def scale_lr(self, factor):
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def state_dict(self):
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}

    def load_weights(self, state):
        import torch

        self.model.load_state_dict({k: torch.as_tensor(v, device=self.device) for k, v in state.items()})

    def training_state(self):
        import copy

        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), **self.random_state()}

    def load_training_state(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_random_state(state)

    def random_state(self):
        import torch

        state = {"rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_random_state(self, state):
        import torch

        torch.set_rng_state(torch.as_tensor(state["rng"]).cpu())  # random states are CPU byte tensors
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.as_tensor(state["cuda_rng"]).cpu(), self.device)

    def synchronize(self):
        if self.world.size > 1:
            distributed.average(list(self.model.buffers()))

    def trainable_changed(self):
        # DDP waits for a gradient of every parameter that trained when it was built: a frozen one would
        # hang the next step's exchange, so it is built again over those that still train
        if self.world.size > 1:
            self._wrap(init_sync=False)


def make_learner(model, cfg, *, params=None, amp: bool = False, channels_last: bool = False,
                 blas_threads: int | None = None) -> Learner:
    """The one learner factory: ``model`` (either engine) with the optimiser, loss and clipping of
    ``cfg`` (a ``TrainConfig``), the same hyperparameters in either engine.

    ``params``: parameter groups as ``torch.optim`` takes them (dicts with their own ``lr``, etc.)
    instead of all parameters at ``cfg.lr``; a schedule scales each group's own rate."""
    name = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "muon": "Muon"}[cfg.optimizer]
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer in ("sgd", "rmsprop", "muon"):
        kwargs["momentum"] = cfg.momentum
    if cfg.optimizer in ("sgd", "muon") and cfg.nesterov:
        kwargs["nesterov"] = True
    clip = cfg.clip_norm or None
    if not is_torch(model):
        from twinnet import numpy_nn

        if params is not None or cfg.optimizer == "muon":
            raise ValueError("the NumPy engine's runs train one parameter group (no norm_bias_lr, no muon): "
                             "use engine=torch, or optimizer=sgd")
        opt = getattr(numpy_nn, name)(model.parameters(), **kwargs)
        return NumpyLearner(model, opt, numpy_nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
                            clip_norm=clip, blas_threads=blas_threads)
    import torch

    if cfg.optimizer == "muon":
        from twinnet.torch_nn.optim import Muon as optimizer_cls

        if params is None or not any(g.get("orthogonalize") for g in params):
            raise ValueError("optimizer=muon needs the convolution filters in a group of their own: it is for "
                             "the torch engine's image models with convolutions")
    else:
        optimizer_cls = getattr(torch.optim, name)
    opt = optimizer_cls(model.parameters() if params is None else params, **kwargs)
    return TorchLearner(model, opt, torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
                        clip_norm=clip, amp=amp, channels_last=channels_last)


def is_torch(model) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (else a ``twinnet.numpy_nn`` one)."""
    import sys

    torch = sys.modules.get("torch")  # not imported: no torch model can exist
    return torch is not None and isinstance(model, torch.nn.Module)


class LearnerWrapper:
    """What a recipe adds around a learner's step or prediction, itself a ``Learner``: everything it
    does not change goes to the learner inside (``inner``), so wrappers stack."""

    def __init__(self, inner: Learner) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _weights(learner: Learner) -> dict:
    """The weights an average of them follows: a torch model's own tensors, where it trains (on a GPU, no
    copy to the host and no wait for the device), else ``state_dict()``'s NumPy copies."""
    return learner.model.state_dict() if isinstance(learner, TorchLearner) else learner.state_dict()


def _floating(a) -> bool:
    return a.is_floating_point() if hasattr(a, "is_floating_point") else np.issubdtype(a.dtype, np.floating)


def _copy(a):
    return a.clone() if hasattr(a, "clone") else a.copy()


def _host(a) -> np.ndarray:
    """A NumPy copy of an array or tensor (what checkpoints and ``state_dict`` hold)."""
    return a.detach().cpu().numpy().copy() if hasattr(a, "detach") else np.array(a, copy=True)


def _like(saved, learner: Learner) -> dict:
    """Saved arrays as the learner's weights hold them (on a torch model's device, in its dtypes)."""
    weights = _weights(learner)
    if not isinstance(learner, TorchLearner):
        return {k: np.asarray(v).copy() for k, v in saved.items()}
    import torch

    return {k: torch.as_tensor(np.asarray(v)).to(weights[k].device, weights[k].dtype).clone() for k, v in saved.items()}


class WeightAverage(LearnerWrapper):
    """An exponential moving average of the weights (EMA): training steps the raw weights, predictions
    (evaluations, keep-best, the final figures) use the average, ``decay`` per step.

    Every floating-point entry of the state dict is averaged (batch norm's running statistics too);
    integer ones (counters) follow the raw model. The average is kept beside the weights, updated after
    every step: NumPy arrays for the NumPy engine, tensors on the model's device for torch."""

    def __init__(self, inner: Learner, decay: float = 0.99) -> None:
        super().__init__(inner)
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.average = decay, {k: _copy(v) for k, v in _weights(inner).items()}

    def train_step(self, x, y, total=None):
        out = self.inner.train_step(x, y, total)
        for k, w in _weights(self.inner).items():
            self.average[k] = self.decay * self.average[k] + (1 - self.decay) * w if _floating(w) else _copy(w)
        return out

    def predict(self, x, batch_size=1024):
        raw = {k: _copy(v) for k, v in _weights(self.inner).items()}
        self.inner.load_weights(self.average)
        try:
            return self.inner.predict(x, batch_size)
        finally:
            self.inner.load_weights(raw)

    def state_dict(self):
        return {k: _host(v) for k, v in self.average.items()}

    def load_weights(self, state):
        self.inner.load_weights(state)
        self.average = {k: _copy(v) for k, v in _weights(self.inner).items()}

    def synchronize(self):
        """The average's running statistics too (its weights are the same on every rank already)."""
        self.inner.synchronize()
        _average_buffers(self)

    def training_state(self):
        return {**self.inner.training_state(), "weight_average": {k: _host(v) for k, v in self.average.items()}}

    def load_training_state(self, state):
        self.inner.load_training_state({k: v for k, v in state.items() if k != "weight_average"})
        self.average = _like(state["weight_average"], self.inner)


class Lookahead(LearnerWrapper):
    """airbench's lookahead: every ``every`` steps an exponential average of the weights takes
    (1 - decay) of the weights now, decay = 0.95**every * (step / total)**3 (the average follows
    closely early and holds on late), and the weights are reset to the average; after the last step
    the weights are the average. Every floating-point entry of the state dict (batch norm's running
    statistics too) is averaged; integer ones follow the raw model."""

    def __init__(self, inner: Learner, every: int, total: int) -> None:
        super().__init__(inner)
        if not 1 <= every <= total:
            raise ValueError(f"need 1 <= every <= total (else no average is taken and the last step loads the "
                             f"initial weights), got every={every}, total={total}")
        self.every, self.total, self.steps = every, total, 0
        self.average = {k: _copy(v) for k, v in _weights(inner).items()}  # beside the weights (see WeightAverage)

    def train_step(self, x, y, total=None):
        out = self.inner.train_step(x, y, total)
        self.steps += 1
        if self.steps % self.every == 0:
            decay = 0.95**self.every * (self.steps / self.total) ** 3
            for k, w in _weights(self.inner).items():
                self.average[k] = self.average[k] + (1 - decay) * (w - self.average[k]) if _floating(w) else _copy(w)
            self.inner.load_weights(self.average)
        elif self.steps == self.total:
            self.inner.load_weights({k: v if _floating(v) else w
                                     for (k, v), w in zip(self.average.items(), _weights(self.inner).values())})
        return out

    def synchronize(self):
        """The average's running statistics too (its weights are the same on every rank already)."""
        self.inner.synchronize()
        _average_buffers(self)

    def training_state(self):
        return {**self.inner.training_state(),
                "lookahead": {"average": {k: _host(v) for k, v in self.average.items()}, "steps": self.steps}}

    def load_training_state(self, state):
        self.inner.load_training_state({k: v for k, v in state.items() if k != "lookahead"})
        self.average = _like(state["lookahead"]["average"], self.inner)
        self.steps = int(state["lookahead"]["steps"])


def _average_buffers(wrapper: LearnerWrapper) -> None:
    """With several ranks, average the entries of ``wrapper.average`` that are not parameters (batch
    norm's running statistics, which each rank gathers from its own shard)."""
    if distributed.world().size > 1:
        weights = {name for name, _ in wrapper.model.named_parameters()}
        distributed.average([a for k, a in wrapper.average.items() if k not in weights])


class FlipAveraged(LearnerWrapper):
    """Test-time augmentation: the logits of each image averaged with those of its mirror image
    (images (N, C, H, W), flipped along W); with ``translate`` (airbench's level 2), half of that and
    half the mean of the same for the image shifted by ``translate`` pixels up-left and down-right
    (reflect padding)."""

    def __init__(self, inner: Learner, translate: int = 0) -> None:
        super().__init__(inner)
        self.translate = translate

    def _mirrored(self, x, batch_size):
        return (self.inner.predict(x, batch_size) + self.inner.predict(np.ascontiguousarray(x[..., ::-1]),
                                                                      batch_size)) / 2

    def predict(self, x, batch_size=1024):
        logits = self._mirrored(x, batch_size)
        t = self.translate
        if not t:
            return logits
        h, w = x.shape[-2:]
        padded = np.pad(x, ((0, 0), (0, 0), (t, t), (t, t)), mode="reflect")
        shifted = [np.ascontiguousarray(padded[..., :h, :w]), np.ascontiguousarray(padded[..., 2 * t:2 * t + h,
                                                                                          2 * t:2 * t + w])]
        return logits / 2 + sum(self._mirrored(s, batch_size) for s in shifted) / 4
