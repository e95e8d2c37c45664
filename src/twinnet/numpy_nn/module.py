"""Module, Parameter and Sequential: the bookkeeping every NumPy layer shares.

Names and layouts follow ``torch.nn`` so that ``state_dict()`` keys of a NumPy
model equal those of its PyTorch twin and weights copy across without transposes.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping

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

    __slots__ = ("data", "grad", "_frozen")

    def __init__(self, data, requires_grad: bool = True):
        self.data = data
        self.grad = None  # None until the first backward, like torch with set_to_none
        self._frozen = not requires_grad  # a frozen weight's gradient stays None, as torch computes none

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        """The number of entries, as ``torch.Tensor.numel``."""
        return int(self.data.size)

    def size(self, dim: int | None = None):
        """The shape, or its ``dim``-th entry, as ``torch.Tensor.size``."""
        return self.shape if dim is None else self.shape[dim]

    @property
    def requires_grad(self) -> bool:
        """Whether backward gives this weight a gradient (torch's flag; set it, or ``requires_grad_``, to freeze)."""
        return not self._frozen

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self._frozen = not value

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        """Freeze (False) or unfreeze this weight, as torch's: a frozen one keeps no gradient, so no optimiser
        moves it."""
        self._frozen = not requires_grad
        return self

    def accumulate(self, g, owned: bool = False) -> None:
        """Add ``g`` to the gradient: a weight used twice in one pass gets both terms. A frozen weight
        (``requires_grad_(False)``) keeps no gradient, as torch computes none for it.

        ``owned``: ``g`` is a fresh array (or a view of one) that nothing else holds, kept as it is;
        otherwise a view is copied, so that the gradient never aliases other memory.
        """
        if self._frozen:
            return
        if self.grad is None:
            self.grad = g if owned else g.copy() if g.base is not None or g is self.data else g
        else:
            self.grad += g

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class _Parameters(list):
    """What ``parameters()`` returns: a list, as the engine indexes it, that ``next()`` also walks, as
    torch users walk the generator torch returns (``next(model.parameters())``)."""

    def __next__(self) -> Parameter:
        if "_walk" not in self.__dict__:
            self._walk = iter(self)
        return next(self._walk)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])  # load_state_dict's answer


class StateDictKeyError(KeyError, RuntimeError):
    """A state_dict whose keys do not match: a KeyError, and the RuntimeError torch raises."""


class StateDictShapeError(ValueError, RuntimeError):
    """A state_dict array of the wrong shape: a ValueError, and the RuntimeError torch raises."""


def factory_dtype(dtype) -> np.dtype:
    """The dtype of a layer's new parameters: float32 (torch's default) unless given, as a NumPy or torch dtype."""
    return np.dtype(np.float32) if dtype is None else backend.as_dtype(dtype)


def _is_device(arg) -> bool:
    """Whether a positional argument of ``Module.to`` names a device ("cpu", "cuda:0", a torch.device)."""
    if type(arg).__module__ == "torch" and type(arg).__name__ == "device":
        return True
    return isinstance(arg, str) and (arg == "cpu" or arg.partition(":")[0] == "cuda")


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
        # as torch: a name is a parameter, a buffer or a sub-module, never two of them at once
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._buffers.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        elif name in self._parameters or name in self._modules:
            if value is not None:  # a bare array would leave the old Parameter registered, and trained
                kind = "parameter" if name in self._parameters else "module"
                raise TypeError(f"cannot assign {type(value).__name__} as {kind} {name!r} "
                                f"(a {'Parameter' if kind == 'parameter' else 'Module'} or None expected)")
            self._parameters.pop(name, None)
            self._modules.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def _new_name(self, name, registry: dict, what: str) -> None:
        """torch's checks of a name given to ``register_*``/``add_module``: a non-empty string without '.',
        not already an attribute of another kind (a child named "forward" would replace the method)."""
        if not isinstance(name, str):
            raise TypeError(f"{what} name should be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{what} name must be a non-empty string without '.', got {name!r}")
        if hasattr(self, name) and name not in registry:
            raise KeyError(f"attribute {name!r} already exists")

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        """A state array saved in ``state_dict`` but not trained (e.g. running statistics)."""
        if not persistent:
            raise ValueError("register_buffer supports persistent=True only: every buffer is saved in state_dict")
        self._new_name(name, self._buffers, "buffer")
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """``setattr(self, name, param)``, as torch's: a Parameter, or None for none."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter {name!r} "
                            "(a Parameter or None expected)")
        self._new_name(name, self._parameters, "parameter")
        setattr(self, name, param)

    def add_module(self, name: str, module: Module | None) -> None:
        """``setattr(self, name, module)``, as torch's: a Module, or None for none."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._new_name(name, self._modules, "module")
        setattr(self, name, module)

    register_module = add_module

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
    def _walk(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Every module under every name it has: ``state_dict`` keys a shared module's arrays under
        each of its names, as torch's does."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child._walk(f"{prefix}.{name}" if prefix else name)

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, each once under its first name unless ``remove_duplicate``
        is False, as torch's."""
        seen = set() if memo is None else memo
        for name, m in self._walk(prefix):
            if remove_duplicate:
                if m in seen:
                    continue
                seen.add(m)
            yield name, m

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct sub-modules with their names, each once (as torch's)."""
        seen: set[int] = set()
        for name, child in self._modules.items():
            if id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, child in self.named_children():
            yield child

    def get_submodule(self, target: str) -> Module:
        """The sub-module at a dotted path ("features.0"); "" is this module."""
        m = self
        for name in target.split(".") if target else []:
            if name not in m._modules:
                raise AttributeError(f"{type(m).__name__} has no sub-module {name!r} (in {target!r})")
            m = m._modules[name]
        return m

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at a dotted path ("features.0.weight")."""
        owner, _, name = target.rpartition(".")
        m = self.get_submodule(owner)
        if name not in m._parameters:
            raise AttributeError(f"{type(m).__name__} has no parameter {name!r} (in {target!r})")
        return m._parameters[name]

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """Each parameter once, under its first name, as torch: a shared weight is stepped once.
        ``recurse`` False: this module's own parameters only."""
        seen: set[int] = set()
        for mname, m in self._walk(prefix) if recurse else [(prefix, self)]:
            for pname, p in m._parameters.items():
                if remove_duplicate:
                    if id(p) in seen:
                        continue
                    seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self, recurse: bool = True) -> list[Parameter]:
        """``named_parameters``' parameters: a list that ``next()`` also walks, as torch's generator."""
        return _Parameters(p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, object]]:
        """The buffers that are set (running statistics, ...), as torch's: each once unless ``remove_duplicate``
        is False."""
        seen: set[int] = set()
        for mname, m in self._walk(prefix) if recurse else [(prefix, self)]:
            for bname, b in m._buffers.items():
                if b is None or (remove_duplicate and id(b) in seen):
                    continue
                seen.add(id(b))
                yield (f"{mname}.{bname}" if mname else bname), b

    def buffers(self, recurse: bool = True) -> Iterator[object]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn: Callable[[Module], object]) -> Module:
        """Call ``fn`` on every sub-module (children first), then on this module, as torch's (weight init)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter: a frozen one keeps no gradient, so no optimiser moves it."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (None, as torch's default), or with ``set_to_none`` False zero those there are."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
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

    def to(self, *args, dtype=None, device=None) -> Module:
        """Cast every parameter and floating buffer to ``dtype`` (float32 or float64; a torch dtype names the
        same), and move them all to ``device``: "cpu" (NumPy arrays), "cuda" or "cuda:N" (CuPy arrays); None
        keeps either. As in torch, positional arguments may give either: ``to("cpu")``, ``to(torch.float64)``."""
        if len(args) > 2:
            raise TypeError(f"to() takes a device and a dtype at most, got {len(args)} positional arguments")
        for arg in args:
            if _is_device(arg):
                device = arg
            else:
                dtype = arg
        dtype = None if dtype is None else backend.as_dtype(dtype)
        device = None if device is None else str(device)
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

    def cpu(self) -> Module:
        """``to(device="cpu")``: NumPy arrays."""
        return self.to(device="cpu")

    def cuda(self, device=None) -> Module:
        """``to(device="cuda")`` (or GPU ``device``: its index, "cuda:1" or a torch.device): CuPy arrays."""
        if device is None or isinstance(device, int):
            return self.to(device="cuda" if device is None else f"cuda:{device}")
        return self.to(device=str(device))

    def _arrange(self) -> None:
        """Lay this module's own parameters out in memory as its computation wants them (called
        whenever they are replaced: construction, ``to``, ``load_state_dict``). Shapes never change."""

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # --- weights interchange ---------------------------------------------
    def state_dict(self, *, prefix: str = "") -> dict[str, np.ndarray]:
        """Copies of parameters and buffers as NumPy arrays, keyed exactly as torch keys them (after ``prefix``)."""
        out: dict[str, np.ndarray] = {}
        for mname, m in self._walk():
            dot = prefix + (f"{mname}." if mname else "")
            for pname, p in m._parameters.items():
                out[dot + pname] = backend.to_numpy(p.data).copy()
            for bname, b in m._buffers.items():
                if b is not None:
                    out[dot + bname] = backend.to_numpy(b).copy()
        return out

    def load_state_dict(self, state_dict: Mapping[str, object], strict: bool = True) -> IncompatibleKeys:
        """Load arrays (NumPy or torch tensors); float64 weights make the module compute in float64.

        Every key must match (unless ``strict`` is False: then the keys that match are loaded, and the others
        reported) and every shape must agree; nothing is changed unless all do. Each array stays on the device
        of the one it replaces. Returns the missing and unexpected keys, as torch's does.
        """
        arrays = {k: backend.to_numpy(v) for k, v in state_dict.items()}
        own = self.state_dict()
        missing = sorted(set(own) - set(arrays))
        unexpected = sorted(set(arrays) - set(own))
        if strict and (missing or unexpected):
            raise StateDictKeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for k, v in arrays.items():
            if k in own and v.shape != own[k].shape:
                raise StateDictShapeError(f"state_dict shape mismatch for {k!r}: got {v.shape}, "
                                          f"expected {own[k].shape}")
        for mname, m in self._walk():
            dot = f"{mname}." if mname else ""
            for pname, p in m._parameters.items():
                if dot + pname in arrays:
                    p.data = backend.xp(p.data).array(arrays[dot + pname])
                    p.grad = None
            for bname, b in list(m._buffers.items()):
                if dot + bname in arrays:
                    m.register_buffer(bname, backend.xp(b).array(arrays[dot + bname]))
            m._arrange()
        return IncompatibleKeys(missing, unexpected)

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
    """Modules applied in order; children named "0", "1", ... as in ``torch.nn.Sequential``, or by the keys of
    one ``OrderedDict`` given instead."""

    def __init__(self, *args: Module) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], Mapping):
            for name, layer in args[0].items():
                self.add_module(name, layer)
        else:
            for i, layer in enumerate(args):
                self.add_module(str(i), layer)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is None:  # torch keeps the name with None in it, and its forward then fails: refused here
            raise TypeError(f"a Sequential holds Modules, got None for {name!r}; remove a layer with del seq[i]")
        super().add_module(name, module)

    def __len__(self) -> int:
        return len(self._modules)

    def _index(self, i: int) -> str:
        """The name of the ``i``-th child (negative counts from the end)."""
        names = list(self._modules)
        if not -len(names) <= i < len(names):
            raise IndexError(f"index {i} is out of range for a Sequential of {len(names)}")
        return names[i]

    def __getitem__(self, i: int | slice) -> Module:
        if isinstance(i, slice):  # a Sequential of the same modules under the same names, as torch's
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return self._modules[self._index(i)]

    def __setitem__(self, i: int, module: Module) -> None:
        self.add_module(self._index(i), module)

    def __delitem__(self, i: int | slice) -> None:
        names = list(self._modules)[i] if isinstance(i, slice) else [self._index(i)]
        self._renumber([m for name, m in self._modules.items() if name not in names])

    def _renumber(self, layers: list[Module]) -> None:
        """Hold ``layers``, named "0", "1", ...: torch renames the children after a deletion or an insertion."""
        for name in list(self._modules):
            delattr(self, name)
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end, named by its position."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        """Put ``module`` before the ``index``-th child; the children are renamed "0", "1", ... as in torch."""
        if not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        n = len(self)
        if not -n <= index <= n:
            raise IndexError(f"index {index} is out of range for inserting into a Sequential of {n}")
        layers = list(self)
        layers.insert(index, module)
        self._renumber(layers)
        return self

    def pop(self, i: int | slice) -> Module:
        """Remove the ``i``-th child and return it; the rest are renamed "0", "1", ... as in torch."""
        module = self[i]
        del self[i]
        return module

    def __add__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise ValueError(f"add operator supports only Sequential objects, got {type(other).__name__}")
        return Sequential(*self, *other)

    def __iadd__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise ValueError(f"add operator supports only Sequential objects, got {type(other).__name__}")
        return self.extend(list(other))

    def forward(self, x):
        for layer in self._modules.values():
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(list(self._modules.values())):
            dout = layer.backward(dout)
        return dout
