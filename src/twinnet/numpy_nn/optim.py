"""Optimisers with ``torch.optim``'s update formulas and defaults."""

from __future__ import annotations

from collections.abc import Iterable

from twinnet.numpy_nn.module import Parameter


class Optimizer:
    """Holds the parameters, the learning rate and per-parameter state."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}: it must be >= 0")
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.lr = lr
        self.state: list[dict] = [{} for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self._update(p, p.grad, state)

    def _update(self, p: Parameter, grad, state: dict) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """torch.optim.SGD: buf = m*buf + (1-dampening)*g (buf = g at the first step); p -= lr*buf."""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr)
        if momentum < 0:
            raise ValueError(f"invalid momentum {momentum}: it must be >= 0")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}: it must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov

    def _update(self, p, grad, state):
        if self.weight_decay:
            grad = grad + self.weight_decay * p.data
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= self.momentum
                buf += grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * grad
