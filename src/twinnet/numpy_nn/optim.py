"""Optimisers with ``torch.optim``'s update formulas and defaults."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Parameter


class Optimizer:
    """Parameter groups and per-parameter state, as ``torch.optim.Optimizer``.

    ``param_groups`` is a list of dicts, each holding its ``"params"`` and its hyperparameters (``"lr"``, ...);
    a step reads them afresh, so ``optimizer.param_groups[0]["lr"] = 0.01`` takes effect at the next step.
    ``optimizer.lr`` (and each other hyperparameter) reads the first group's and sets every group's.
    """

    # Hyperparameters (group keys) that ``state_dict`` saves and ``load_state_dict`` restores.
    _hyper: tuple[str, ...] = ()
    # Hyperparameters added after checkpoints were first written, with the value every older checkpoint had.
    _added: Mapping[str, object] = {"maximize": False}

    def __init__(self, params: Iterable[Parameter] | Iterable[Mapping], lr: float, **hyper) -> None:
        if _rate(lr) < 0:
            raise ValueError(f"invalid learning rate {lr}: it must be >= 0")
        if isinstance(params, Parameter):
            raise TypeError("optimizer params must be an iterable of Parameters or of parameter groups, "
                            "got one Parameter")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        self.defaults = {"lr": lr, **hyper}
        self.param_groups: list[dict] = []
        self.state: list[dict] = []  # one dict per parameter, in the order of ``params``
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: Mapping) -> None:
        """Train more parameters, with hyperparameters of their own where ``param_group`` names them."""
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters must be an ordered collection (a list), not a set: "
                            "a set's order, and so the state's, changes between runs")
        params = list(params)
        if params and isinstance(params[0], tuple):  # named_parameters(), as torch takes it: names kept aside
            group["param_names"] = [name for name, _ in params]
            params = [p for _, p in params]
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize Parameters, got {type(p).__name__}")
        taken = {id(p) for p in self.params}
        if len({id(p) for p in params} | taken) != len(taken) + len(params):
            raise ValueError("some parameters appear more than once in the optimizer's parameter groups")
        for name, value in self.defaults.items():
            group.setdefault(name, value)
        _rate(group["lr"])  # one number, or a tensor or array of one (kept, as torch keeps it: read at each step)
        _refuse(type(self).__name__, capturable=group.get("capturable", False),
                differentiable=group.get("differentiable", False))
        group["params"] = params
        self.param_groups.append(group)
        self.state.extend({} for _ in params)

    @property
    def params(self) -> list[Parameter]:
        """Every parameter, group after group: the order of ``state`` and of ``state_dict``'s indices."""
        return [p for group in self.param_groups for p in group["params"]]

    def __getattr__(self, name: str):
        # reached only when ordinary lookup fails: a hyperparameter, read from the first group
        groups = self.__dict__.get("param_groups")
        if groups and name in ("lr", *type(self)._hyper):
            return groups[0][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in ("lr", *type(self)._hyper) and "param_groups" in self.__dict__:
            for group in self.param_groups:
                group[name] = value
        else:
            object.__setattr__(self, name, value)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (None, as torch's default), or with ``set_to_none`` False zero those there are."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def step(self, closure: Callable[[], object] | None = None):
        """Update every parameter that has a gradient; ``closure`` (called first) recomputes the loss, returned."""
        loss = None if closure is None else closure()
        # parameters are independent: their updates are shared out between the engine's threads, and
        # an optimiser whose update is elementwise takes a large parameter in cache-sized blocks
        work: list[tuple] = []
        states = iter(self.state)
        for group in self.param_groups:
            if (rate := _rate(group["lr"])) is not group["lr"]:  # a one-element tensor or array: its value now
                group = {**group, "lr": rate}
            for p, state in zip(group["params"], states):
                if p.grad is None:
                    continue
                if self._elementwise:
                    self._begin(p, state, group)
                n = int(p.data.size)
                blocks = self._elementwise and backend.xp(p.data) is np and _flat_alike(p, state)  # CPU: cache blocks
                k = max(1, n // backend._BLOCK_ITEMS) if blocks else 1
                work.extend((p, state, group, None if k == 1 else slice(n * i // k, n * (i + 1) // k))
                            for i in range(k))
        if work:  # every group empty, or no gradient yet: nothing to step, as torch's
            backend.parallel_items(self._run, work, [int(p.data.size if b is None else b.stop - b.start)
                                                     for p, _, _, b in work], like=work[0][0].data)
        return loss

    def _run(self, item: tuple) -> None:
        p, state, group, block = item
        if not self._elementwise:
            self._update(p, p.grad, state, group)
        elif block is None:
            self._update_block(p.data, p.grad, state, group)
        else:
            flat = lambda a: a.ravel(order="K")[block]  # noqa: E731 - views, all in one order (_flat_alike)
            self._update_block(flat(p.data), flat(p.grad), {k: v if k == "step" else flat(v) for k, v in state.items()},
                               group)

    # An optimiser either updates a whole parameter in ``_update`` or, with ``_elementwise``, sets up
    # its state in ``_begin`` (once per step) and updates any flat block of it in ``_update_block``;
    # each reads the hyperparameters from the parameter's ``group``.
    _elementwise = False

    def _update(self, p: Parameter, grad, state: dict, group: Mapping) -> None:
        raise NotImplementedError

    def _begin(self, p: Parameter, state: dict, group: Mapping) -> None:
        raise NotImplementedError

    def _update_block(self, data, grad, state: dict, group: Mapping) -> None:
        raise NotImplementedError

    @classmethod
    def _state_keys(cls, hyper: Mapping[str, object]) -> set[str]:
        """The state a stepped parameter holds under these hyperparameters."""
        return set()

    # --- checkpointing -----------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """A flat copy of hyperparameters and state as NumPy arrays (``np.savez`` can store it).

        Keys: ``"optimizer"`` (class name), ``"hyper.<name>"`` (the first group's), and ``"state.<i>.<name>"``
        for parameter ``i`` once it has been stepped; step counts are int64 scalars. With several groups, also
        ``"groups"`` (their sizes) and ``"hyper.<g>.<name>"`` for group ``g`` >= 1.
        """
        out: dict[str, np.ndarray] = {"optimizer": np.asarray(type(self).__name__)}
        for g, group in enumerate(self.param_groups):
            for name in ("lr", *self._hyper):
                out[f"hyper.{g}.{name}" if g else f"hyper.{name}"] = np.asarray(group[name])
        if len(self.param_groups) > 1:
            out["groups"] = np.asarray([len(group["params"]) for group in self.param_groups], dtype=np.int64)
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
        params = self.params
        sizes = [len(group["params"]) for group in self.param_groups]
        saved_sizes = [int(n) for n in np.atleast_1d(arrays.pop("groups", np.asarray([len(params)])))]
        if saved_sizes != sizes:
            raise ValueError(f"optimizer state is for parameter groups of sizes {saved_sizes}, not {sizes}")
        hypers = []
        for g, group in enumerate(self.param_groups):
            hyper = {}
            for name in ("lr", *self._hyper):
                key = f"hyper.{g}.{name}" if g else f"hyper.{name}"
                if key in arrays:
                    hyper[name] = _like(arrays.pop(key), group[name])
                elif name in self._added:
                    hyper[name] = self._added[name]
                else:
                    raise ValueError(f"optimizer state lacks hyperparameter {name!r}")
            hypers.append(hyper)
        per_param: list[dict[str, np.ndarray]] = [{} for _ in params]
        for key, value in arrays.items():
            parts = key.split(".")
            index = parts[1] if len(parts) == 3 and parts[0] == "state" else ""
            if not (index.isascii() and index.isdigit()) or int(index) >= len(params):
                raise ValueError(f"unexpected key {key!r} in optimizer state for {len(params)} parameters")
            per_param[int(index)][parts[2]] = value
        group_of = [g for g, n in enumerate(sizes) for _ in range(n)]
        for i, (saved, p) in enumerate(zip(per_param, params)):
            expected = self._state_keys(hypers[group_of[i]])
            if saved and set(saved) != expected:
                raise ValueError(f"state of parameter {i} has {sorted(saved)}, expected {sorted(expected)}")
            for name, value in saved.items():
                want = () if name == "step" else p.shape
                if value.shape != want:
                    raise ValueError(f"state.{i}.{name} has shape {value.shape}, expected {want}")
        for group, hyper in zip(self.param_groups, hypers):
            group.update(hyper)
        self.state = [
            {name: int(v) if name == "step" else _laid_out_like(p.data, v) for name, v in saved.items()}
            for saved, p in zip(per_param, params)
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
    if isinstance(current, (tuple, list)):
        if value.shape != (len(current),):
            raise ValueError(f"saved hyperparameter of shape {value.shape}, expected {len(current)} values")
        return tuple(float(v) for v in value)
    return float(value)


def _plus_decay(grad, data, weight_decay: float):
    """grad + weight_decay * data in one new array (``grad`` itself is the caller's and stays untouched)."""
    out = data * weight_decay
    out += grad
    return out


def _rate(lr):
    """A learning rate as a number: torch's optimisers take a one-element tensor too (an array here alike)."""
    if isinstance(lr, (int, float)) or not hasattr(lr, "item"):
        return lr
    if math.prod(tuple(lr.shape)) != 1:
        raise ValueError(f"a learning rate is one number, got an array of shape {tuple(lr.shape)}")
    return float(lr.item())


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"invalid {name} {value}: it must be >= 0")


def _refuse(optimizer: str, **flags: bool) -> None:
    """torch options that change what a step is (a graph to capture, a step to differentiate): refused here."""
    for name, value in flags.items():
        if value:
            raise ValueError(f"{optimizer} supports {name}=False only: the NumPy engine's step is a plain array update")


# ``foreach`` and ``fused`` choose torch's kernels, not the update: accepted, and one implementation here.


class SGD(Optimizer):
    """torch.optim.SGD: buf = m*buf + (1-dampening)*g (buf = g at the first step); p -= lr*buf.

    ``maximize`` steps up the gradient instead of down.
    """

    _hyper = ("momentum", "dampening", "weight_decay", "nesterov", "maximize")

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[Mapping],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        if momentum < 0:
            raise ValueError(f"invalid momentum {momentum}: it must be >= 0")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}: it must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        _refuse("SGD", differentiable=differentiable)
        super().__init__(params, lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, maximize=bool(maximize))

    @classmethod
    def _state_keys(cls, hyper):
        return {"momentum_buffer"} if hyper["momentum"] else set()

    def _update(self, p, grad, state, group):
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * grad


class Adam(Optimizer):
    """torch.optim.Adam: m, v moving averages of g and g^2; p -= lr/(1-b1^t) * m / (sqrt(v/(1-b2^t)) + eps).

    ``weight_decay`` adds ``wd * p`` to the gradient (L2), or with ``decoupled_weight_decay`` multiplies p by
    1 - lr*wd (AdamW); ``amsgrad`` divides by the running maximum of v; ``maximize`` steps up the gradient.
    """

    _hyper = ("betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")
    _added = {"maximize": False, "decoupled_weight_decay": False}

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[Mapping],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _check_nonnegative(epsilon=eps, weight_decay=weight_decay)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"invalid beta parameter at index {i}: {beta} (it must be in [0, 1))")
        _refuse(type(self).__name__, capturable=capturable, differentiable=differentiable)
        super().__init__(params, lr, betas=(float(betas[0]), float(betas[1])), eps=eps, weight_decay=weight_decay,
                         amsgrad=bool(amsgrad), maximize=bool(maximize),
                         decoupled_weight_decay=bool(decoupled_weight_decay))

    @classmethod
    def _state_keys(cls, hyper):
        return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if hyper["amsgrad"] else set())

    _elementwise = True

    def _begin(self, p, state, group):
        xp = backend.xp(p.data)
        if not state:
            state["step"] = 0
            for name in self._state_keys(group) - {"step"}:
                state[name] = xp.zeros_like(p.data)
        state["step"] += 1

    def _update_block(self, data, grad, state, group):
        xp = backend.xp(data)
        t = state["step"]
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        if group["maximize"]:
            grad = -grad
        if weight_decay:
            if group["decoupled_weight_decay"]:
                data *= 1 - lr * weight_decay
            else:
                grad = _plus_decay(grad, data, weight_decay)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        tmp = xp.multiply(grad, grad)  # the one scratch array of the update, reused below
        tmp *= 1 - beta2
        v *= beta2
        v += tmp
        xp.multiply(grad, 1 - beta1, out=tmp)
        m *= beta1
        m += tmp
        if group["amsgrad"]:
            v = xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        # denom = sqrt(v) / sqrt(1 - b2^t) + eps, with eps outside the correction as in torch
        xp.sqrt(v, out=tmp)
        tmp /= (1 - beta2**t) ** 0.5
        tmp += group["eps"]
        xp.divide(m, tmp, out=tmp)
        tmp *= lr / (1 - beta1**t)
        data -= tmp


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr*wd before the Adam step."""

    _added = {"maximize": False, "decoupled_weight_decay": True}

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[Mapping],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, capturable=capturable,
                         differentiable=differentiable, decoupled_weight_decay=True)


class RMSprop(Optimizer):
    """torch.optim.RMSprop: v = alpha*v + (1-alpha)*g^2; p -= lr * g / (sqrt(v) + eps).

    ``centered`` subtracts the squared mean gradient from v; ``momentum`` keeps a buffer
    buf = momentum*buf + g / (sqrt(v) + eps) and steps p -= lr*buf; ``maximize`` steps up the gradient.
    """

    _hyper = ("alpha", "eps", "weight_decay", "momentum", "centered", "maximize")

    def __init__(  # torch takes every argument here positionally, capturable and the rest included
        self,
        params: Iterable[Parameter] | Iterable[Mapping],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _check_nonnegative(epsilon=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        _refuse("RMSprop", capturable=capturable, differentiable=differentiable)
        super().__init__(params, lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                         centered=bool(centered), maximize=bool(maximize))

    @classmethod
    def _state_keys(cls, hyper):
        keys = {"step", "square_avg"}
        if hyper["momentum"] > 0:
            keys.add("momentum_buffer")
        if hyper["centered"]:
            keys.add("grad_avg")
        return keys

    _elementwise = True

    def _begin(self, p, state, group):
        xp = backend.xp(p.data)
        if not state:
            state["step"] = 0
            for name in self._state_keys(group) - {"step"}:
                state[name] = xp.zeros_like(p.data)
        state["step"] += 1

    def _update_block(self, data, grad, state, group):
        xp = backend.xp(data)
        alpha = group["alpha"]
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"]:
            grad = _plus_decay(grad, data, group["weight_decay"])
        v = state["square_avg"]
        tmp = xp.multiply(grad, grad)  # the one scratch array of the update, reused below
        tmp *= 1 - alpha
        v *= alpha
        v += tmp
        if group["centered"]:
            g_avg = state["grad_avg"]
            xp.multiply(grad, 1 - alpha, out=tmp)
            g_avg *= alpha
            g_avg += tmp
            xp.multiply(g_avg, g_avg, out=tmp)
            xp.subtract(v, tmp, out=tmp)
            xp.sqrt(tmp, out=tmp)
        else:
            xp.sqrt(v, out=tmp)
        tmp += group["eps"]
        xp.divide(grad, tmp, out=tmp)
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += tmp
            xp.multiply(buf, group["lr"], out=tmp)
        else:
            tmp *= group["lr"]
        data -= tmp
