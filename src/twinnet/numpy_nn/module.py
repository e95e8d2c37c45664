"""Module, Parameter and Sequential: the bookkeeping every NumPy layer shares.

Names and layouts follow ``torch.nn`` so that ``state_dict()`` keys of a NumPy
model equal those of its PyTorch twin and weights copy across without transposes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Mapping

import numpy as np

from twinnet.numpy_nn import backend


class _ThreadState(threading.local):
    """Per thread, as torch's grad mode is: an evaluation under ``no_grad`` in one thread leaves
    training in another alone. Class attributes are each new thread's starting values."""

    grad_enabled = True  # False inside ``no_grad()``: forwards keep no caches, as torch keeps no graph
    forward_depth = 0  # how many forwards are running; a forward entered at depth 0 starts a new pass


_state = _ThreadState()


class no_grad:
    """Context manager for inference: forwards keep nothing for a backward (saves memory). Acts on
    the calling thread only."""

    def __enter__(self) -> None:
        self._previous, _state.grad_enabled = _state.grad_enabled, False

    def __exit__(self, *exc) -> None:
        _state.grad_enabled = self._previous


def is_grad_enabled() -> bool:
    """False inside ``no_grad()`` on this thread (as ``torch.is_grad_enabled``)."""
    return _state.grad_enabled


def _starts_pass_when_outermost(forward):
    """Wrap a ``forward``: called from outside any other forward, it first drops the caches of
    forwards never backpropagated (evaluation), so they cannot pile up; nested calls keep them."""

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        if _state.forward_depth == 0:
            self.clear_caches()
        _state.forward_depth += 1
        try:
            return forward(self, *args, **kwargs)
        finally:
            _state.forward_depth -= 1

    return wrapper


class Parameter:
    """An array with the gradient accumulated into it by ``backward``."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = None  # None until the first backward, like torch with set_to_none

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    def accumulate(self, g, owned: bool = False) -> None:
        """Add ``g`` to the gradient: a weight used twice in one pass gets both terms.

        ``owned``: ``g`` is a fresh array (or a view of one) that nothing else holds, kept as it is;
        otherwise a view is copied, so that the gradient never aliases other memory.
        """
        if self.grad is None:
            self.grad = g if owned else g.copy() if g.base is not None or g is self.data else g
        else:
            self.grad += g

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class: parameters, buffers and sub-modules registered by attribute, as in torch."""

    _generator: np.random.Generator | None = None  # set_generator's; None: init's default generator

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        # One cache per forward not yet backpropagated: a module applied k times in one pass
        # (a shared layer, an RNN cell) holds k, and backward pops them in reverse order.
        object.__setattr__(self, "_caches", [])

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value) -> None:
        """A state array saved in ``state_dict`` but not trained (e.g. running statistics)."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    # --- computation -----------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__:
            cls.forward = _starts_pass_when_outermost(cls.__dict__["forward"])

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _push_cache(self, cache) -> None:
        """Keep what backward needs; called once by each forward (a no-op inside ``no_grad``)."""
        if _state.grad_enabled:
            self._caches.append(cache)

    def _pop_cache(self):
        """The cache of the latest forward not yet backpropagated."""
        if not self._caches:
            raise RuntimeError(f"{type(self).__name__}.backward called without a matching forward")
        return self._caches.pop()

    def clear_caches(self) -> None:
        """Forget every forward not yet backpropagated, in this module and its children."""
        for m in self.modules():
            m._caches.clear()

    # --- traversal -------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Each parameter once, under its first name, as torch: a shared weight is stepped once."""
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    # --- random numbers --------------------------------------------------
    @property
    def generator(self) -> np.random.Generator:
        """Where this module draws its random numbers (dropout masks): its own generator if
        ``set_generator`` gave it one, else the engine's default, ``init.generator()``."""
        if self._generator is not None:
            return self._generator
        from twinnet.numpy_nn import init  # noqa: PLC0415 - init imports this module

        return init.generator()

    def set_generator(self, generator: np.random.Generator) -> Module:
        """Draw from ``generator`` in this module and every submodule it has now, so that models
        in one process have random streams of their own; initial weights still come from ``init``."""
        for m in self.modules():
            object.__setattr__(m, "_generator", generator)
        return self

    def manual_seed(self, seed: int) -> Module:
        """``set_generator`` with a fresh generator seeded with ``seed``."""
        return self.set_generator(np.random.default_rng(seed))

    # --- arrays: dtype and device ----------------------------------------
    @property
    def dtype(self):
        params = self.parameters()
        return params[0].dtype if params else np.dtype(np.float32)

    @property
    def xp(self):
        """The array module of the parameters (NumPy, or CuPy on a GPU); NumPy if there are none."""
        params = self.parameters()
        return backend.xp(params[0].data) if params else np

    def to(self, dtype=None, *, device: str | None = None) -> Module:
        """Cast every parameter and floating buffer to ``dtype`` (float32 or float64), and move them
        all to ``device``: "cpu" (NumPy arrays), "cuda" or "cuda:N" (CuPy arrays); None keeps either."""
        for m in self.modules():
            for p in m._parameters.values():
                p.data = backend.to_device(p.data, device, dtype)
                p.grad = None
            for name, b in list(m._buffers.items()):
                if b is not None:
                    cast = dtype if np.issubdtype(b.dtype, np.floating) else None
                    m.register_buffer(name, backend.to_device(b, device, cast))
            m._arrange()
        return self

    def _arrange(self) -> None:
        """Lay this module's own parameters out in memory as its computation wants them (called
        whenever they are replaced: construction, ``to``, ``load_state_dict``). Shapes never change."""

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # --- weights interchange ---------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of parameters and buffers as NumPy arrays, keyed exactly as torch keys them."""
        out: dict[str, np.ndarray] = {}
        for mname, m in self.named_modules():
            dot = f"{mname}." if mname else ""
            for pname, p in m._parameters.items():
                out[dot + pname] = backend.to_numpy(p.data).copy()
            for bname, b in m._buffers.items():
                if b is not None:
                    out[dot + bname] = backend.to_numpy(b).copy()
        return out

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Load arrays (NumPy or torch tensors); float64 weights make the module compute in float64.

        Every key must match and every shape must agree; nothing is changed unless all do. Each
        array stays on the device of the one it replaces.
        """
        arrays = {k: backend.to_numpy(v) for k, v in state.items()}
        own = self.state_dict()
        missing = sorted(set(own) - set(arrays))
        unexpected = sorted(set(arrays) - set(own))
        if missing or unexpected:
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for k, v in arrays.items():
            if v.shape != own[k].shape:
                raise ValueError(f"state_dict shape mismatch for {k!r}: got {v.shape}, expected {own[k].shape}")
        for mname, m in self.named_modules():
            dot = f"{mname}." if mname else ""
            for pname, p in m._parameters.items():
                p.data = backend.xp(p.data).array(arrays[dot + pname])
                p.grad = None
            for bname, b in list(m._buffers.items()):
                if dot + bname in arrays:
                    m.register_buffer(bname, backend.xp(b).array(arrays[dot + bname]))
            m._arrange()

    # --- display ---------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines + [")"])


class Sequential(Module):
    """Modules applied in order; children named "0", "1", ... as in ``torch.nn.Sequential``."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def forward(self, x):
        for layer in self._modules.values():
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(list(self._modules.values())):
            dout = layer.backward(dout)
        return dout
