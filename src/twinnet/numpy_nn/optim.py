"""Optimisers with ``torch.optim``'s update formulas and defaults."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Parameter


class Optimizer:
    """Holds the parameters, the learning rate and per-parameter state."""

    # Hyperparameters (attribute names) that ``state_dict`` saves and ``load_state_dict`` restores.
    _hyper: tuple[str, ...] = ()

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
        # parameters are independent: their updates are shared out between the engine's threads, and
        # an optimiser whose update is elementwise takes a large parameter in cache-sized blocks
        work: list[tuple] = []
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            if self._elementwise:
                self._begin(p, state)
            n = int(p.data.size)
            blocks = self._elementwise and backend.xp(p.data) is np and _flat_alike(p, state)  # CPU: cache blocks
            k = max(1, n // backend._BLOCK_ITEMS) if blocks else 1
            work.extend((p, state, None if k == 1 else slice(n * i // k, n * (i + 1) // k)) for i in range(k))
        backend.parallel_items(self._run, work, [int(p.data.size if s is None else s.stop - s.start) for p, _, s in work],
                               like=self.params[0].data)

    def _run(self, item: tuple) -> None:
        p, state, block = item
        if not self._elementwise:
            self._update(p, p.grad, state)
        elif block is None:
            self._update_block(p.data, p.grad, state)
        else:
            flat = lambda a: a.ravel(order="K")[block]  # noqa: E731 - views, all in one order (_flat_alike)
            self._update_block(flat(p.data), flat(p.grad), {k: v if k == "step" else flat(v) for k, v in state.items()})

    # An optimiser either updates a whole parameter in ``_update`` or, with ``_elementwise``, sets up
    # its state in ``_begin`` (once per step) and updates any flat block of it in ``_update_block``.
    _elementwise = False

    def _update(self, p: Parameter, grad, state: dict) -> None:
        raise NotImplementedError

    def _begin(self, p: Parameter, state: dict) -> None:
        raise NotImplementedError

    def _update_block(self, data, grad, state: dict) -> None:
        raise NotImplementedError

    @classmethod
    def _state_keys(cls, hyper: Mapping[str, object]) -> set[str]:
        """The state a stepped parameter holds under these hyperparameters."""
        return set()

    # --- checkpointing -----------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """A flat copy of hyperparameters and state as NumPy arrays (``np.savez`` can store it).

        Keys: ``"optimizer"`` (class name), ``"hyper.<name>"``, and ``"state.<i>.<name>"``
        for parameter ``i`` once it has been stepped; step counts are int64 scalars.
        """
        out: dict[str, np.ndarray] = {"optimizer": np.asarray(type(self).__name__)}
        for name in ("lr", *self._hyper):
            out[f"hyper.{name}"] = np.asarray(getattr(self, name))
        for i, state in enumerate(self.state):
            for name, value in state.items():
                if name == "step":
                    out[f"state.{i}.step"] = np.asarray(value, dtype=np.int64)
                else:
                    out[f"state.{i}.{name}"] = backend.to_numpy(value).copy()
        return out

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore what ``state_dict`` saved, so training resumes exactly; nothing changes unless all of it fits."""
        arrays = {k: backend.to_numpy(v) for k, v in state.items()}
        kind = str(arrays.pop("optimizer", None))
        if kind != type(self).__name__:
            raise ValueError(f"optimizer state is for {kind}, not {type(self).__name__}")
        hyper = {}
        for name in ("lr", *self._hyper):
            if f"hyper.{name}" not in arrays:
                raise ValueError(f"optimizer state lacks hyperparameter {name!r}")
            hyper[name] = _like(arrays.pop(f"hyper.{name}"), getattr(self, name))
        per_param: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        for key, value in arrays.items():
            parts = key.split(".")
            index = parts[1] if len(parts) == 3 and parts[0] == "state" else ""
            if not (index.isascii() and index.isdigit()) or int(index) >= len(self.params):
                raise ValueError(f"unexpected key {key!r} in optimizer state for {len(self.params)} parameters")
            per_param[int(index)][parts[2]] = value
        expected = self._state_keys(hyper)
        for i, (saved, p) in enumerate(zip(per_param, self.params)):
            if saved and set(saved) != expected:
                raise ValueError(f"state of parameter {i} has {sorted(saved)}, expected {sorted(expected)}")
            for name, value in saved.items():
                want = () if name == "step" else p.shape
                if value.shape != want:
                    raise ValueError(f"state.{i}.{name} has shape {value.shape}, expected {want}")
        for name, value in hyper.items():
            setattr(self, name, value)
        self.state = [
            {name: int(v) if name == "step" else _laid_out_like(p.data, v) for name, v in saved.items()}
            for saved, p in zip(per_param, self.params)
        ]


def _laid_out_like(data, value):
    """A copy of ``value`` in the dtype and memory layout of ``data``."""
    xp = backend.xp(data)
    out = xp.empty_like(data)
    out[...] = xp.asarray(value)  # CuPy takes host arrays only explicitly
    return out


def _dense(a) -> bool:
    """Whether ``a`` fills its memory without gaps, in some order of its axes (ravel(order="K") is a view)."""
    order = np.argsort(a.strides)[::-1]
    return bool(a.transpose(order).flags.c_contiguous)


def _flat_alike(p: Parameter, state: dict) -> bool:
    """Whether the data, gradient and state arrays of ``p`` flatten to views in one element order."""
    arrays = [p.data, p.grad, *(v for k, v in state.items() if k != "step")]
    return all(a.strides == p.data.strides for a in arrays) and _dense(p.data)


def _like(value: np.ndarray, current):
    """A saved hyperparameter back in the Python type of the current one."""
    if isinstance(current, bool):
        return bool(value)
    if isinstance(current, tuple):
        if value.shape != (len(current),):
            raise ValueError(f"saved hyperparameter of shape {value.shape}, expected {len(current)} values")
        return tuple(float(v) for v in value)
    return float(value)


def _plus_decay(grad, data, weight_decay: float):
    """grad + weight_decay * data in one new array (``grad`` itself is the caller's and stays untouched)."""
    out = data * weight_decay
    out += grad
    return out


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"invalid {name} {value}: it must be >= 0")


class SGD(Optimizer):
    """torch.optim.SGD: buf = m*buf + (1-dampening)*g (buf = g at the first step); p -= lr*buf."""

    _hyper = ("momentum", "dampening", "weight_decay", "nesterov")

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

    @classmethod
    def _state_keys(cls, hyper):
        return {"momentum_buffer"} if hyper["momentum"] else set()

    def _update(self, p, grad, state):
        if self.weight_decay:
            grad = grad + self.weight_decay * p.data
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * grad


class Adam(Optimizer):
    """torch.optim.Adam: m, v moving averages of g and g^2; p -= lr/(1-b1^t) * m / (sqrt(v/(1-b2^t)) + eps).

    ``weight_decay`` adds ``wd * p`` to the gradient (L2); ``amsgrad`` divides by the running maximum of v.
    """

    _hyper = ("betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False  # AdamW: decay the weights directly instead of through the gradient

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        _check_nonnegative(epsilon=eps, weight_decay=weight_decay)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"invalid beta parameter at index {i}: {beta} (it must be in [0, 1))")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay, self.amsgrad = eps, weight_decay, bool(amsgrad)

    @classmethod
    def _state_keys(cls, hyper):
        return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if hyper["amsgrad"] else set())

    _elementwise = True

    def _begin(self, p, state):
        xp = backend.xp(p.data)
        if not state:
            state["step"] = 0
            for name in self._state_keys({"amsgrad": self.amsgrad}) - {"step"}:
                state[name] = xp.zeros_like(p.data)
        state["step"] += 1

    def _update_block(self, data, grad, state):
        xp = backend.xp(data)
        t = state["step"]
        beta1, beta2 = self.betas
        if self.weight_decay:
            if self._decoupled:
                data *= 1 - self.lr * self.weight_decay
            else:
                grad = _plus_decay(grad, data, self.weight_decay)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        tmp = xp.multiply(grad, grad)  # the one scratch array of the update, reused below
        tmp *= 1 - beta2
        v *= beta2
        v += tmp
        xp.multiply(grad, 1 - beta1, out=tmp)
        m *= beta1
        m += tmp
        if self.amsgrad:
            v = xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        # denom = sqrt(v) / sqrt(1 - b2^t) + eps, with eps outside the correction as in torch
        xp.sqrt(v, out=tmp)
        tmp /= (1 - beta2**t) ** 0.5
        tmp += self.eps
        xp.divide(m, tmp, out=tmp)
        tmp *= self.lr / (1 - beta1**t)
        data -= tmp


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr*wd before the Adam step."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """torch.optim.RMSprop: v = alpha*v + (1-alpha)*g^2; p -= lr * g / (sqrt(v) + eps).

    ``centered`` subtracts the squared mean gradient from v; ``momentum`` keeps a buffer
    buf = momentum*buf + g / (sqrt(v) + eps) and steps p -= lr*buf.
    """

    _hyper = ("alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(params, lr)
        _check_nonnegative(epsilon=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
        self.momentum, self.centered = momentum, bool(centered)

    @classmethod
    def _state_keys(cls, hyper):
        keys = {"step", "square_avg"}
        if hyper["momentum"] > 0:
            keys.add("momentum_buffer")
        if hyper["centered"]:
            keys.add("grad_avg")
        return keys

    _elementwise = True

    def _begin(self, p, state):
        xp = backend.xp(p.data)
        if not state:
            state["step"] = 0
            for name in self._state_keys({"momentum": self.momentum, "centered": self.centered}) - {"step"}:
                state[name] = xp.zeros_like(p.data)
        state["step"] += 1

    def _update_block(self, data, grad, state):
        xp = backend.xp(data)
        alpha = self.alpha
        if self.weight_decay:
            grad = _plus_decay(grad, data, self.weight_decay)
        v = state["square_avg"]
        tmp = xp.multiply(grad, grad)  # the one scratch array of the update, reused below
        tmp *= 1 - alpha
        v *= alpha
        v += tmp
        if self.centered:
            g_avg = state["grad_avg"]
            xp.multiply(grad, 1 - alpha, out=tmp)
            g_avg *= alpha
            g_avg += tmp
            xp.multiply(g_avg, g_avg, out=tmp)
            xp.subtract(v, tmp, out=tmp)
            xp.sqrt(tmp, out=tmp)
        else:
            xp.sqrt(v, out=tmp)
        tmp += self.eps
        xp.divide(grad, tmp, out=tmp)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += tmp
            xp.multiply(buf, self.lr, out=tmp)
        else:
            tmp *= self.lr
        data -= tmp
