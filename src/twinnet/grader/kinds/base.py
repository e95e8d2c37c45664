"""What every check shares: the context it is given (the student's names, the convention, the calls), the
``Kind`` record, and the small helpers that make tensors, read results and compare them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from twinnet.grader.compare import Wrong, error, passes
from twinnet.grader.loader import StudentError, call, lookup


Quantities = dict[str, tuple[Any, list]]


def _takes_self(fn) -> bool:
    """Whether a function found on a class is an instance's method (its first parameter is self), not a plain
    function kept in the class as a namespace (an EECS 498 file whose @staticmethod lines were dropped)."""
    if not inspect.isfunction(fn):
        return False
    try:
        return next(iter(inspect.signature(fn).parameters), None) == "self"
    except (TypeError, ValueError):
        return False


UPDATES = ("sgd_momentum", "rmsprop", "adam")  # kinds whose method may be an optimiser's, made with a model


def _needs_more(cls: type, given: int) -> bool:
    """Whether ``cls(...)`` needs more than ``given`` positional arguments (those without defaults), where the
    class is made by ``object.__new__`` (no ``__new__`` of its own that the constructor's bypass would skip)."""
    if cls.__new__ is not object.__new__:
        return False
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                and p.default is p.empty]
    return len(required) > given


@dataclass
class Context:
    """What a check is given besides its configuration."""

    names: dict[str, Any]  # the student's definitions
    files: list  # the student's files (for the line an exception came from)
    entry: dict[str, Any]  # the convention's [layers.KIND] table
    convention: dict[str, Any]
    rng: np.random.Generator
    kind: str = ""  # the layer kind checked (its class's arguments: ``ARGUMENTS``)
    halted: bool = False  # an earlier call ran past the time limit: whether a configuration applies, no more
    # arrays=torch: each array the grader got from the student's results, by id, with what it came from (the
    # student's tensor, or the student's own array), so that a cache goes back to the student as it came
    returned: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    instances: dict[int, Any] = field(default_factory=dict)  # a class's one instance in this configuration
    made_with: tuple = ()  # what that instance is made with: the configuration's slope, where ``args`` says so
    # a layer's gradient arrays reached in a list (Deep Learning from Scratch 2's ``self.grads = [dW, db]``), by the
    # layer's id, as they were before its forward: a backward writes into them in place (``grads[0][...] = dW``)
    gradient_arrays: dict[int, dict[str, Any]] = field(default_factory=dict)

    def find(self, key: str):
        """The student's function or class the convention names under ``key`` (a dotted name reaches into
        one: ``Linear.forward``, a static method; an instance's method, such as TUM I2DL's ``Sigmoid.forward(self,
        x) -> (out, cache)``, is that of one instance of the class, made with no arguments for the configuration,
        whose ``backward`` is then the same instance's; where the table's ``args`` names the class's arguments, as
        I2DL's ``LeakyRelu(slope)``, it is made with the configuration's values of them: ``made_with``; a class whose
        constructor needs more, as I2DL's ``Adam(model, loss_func)`` for its ``_update(w, dw, config, lr)``, is made
        without running the constructor, and its method graded on the arguments it is given: for an optimiser's
        update alone, ``UPDATES``)."""
        name = self.entry[key]
        found = lookup(self.names, name)
        if found is None:
            raise StudentError(f"no {name} in the submission")
        owner_name, _, attr = name.rpartition(".")
        owner = lookup(self.names, owner_name) if owner_name else None
        if isinstance(owner, type) and _takes_self(inspect.getattr_static(owner, attr, None)):
            if id(owner) not in self.instances and self.kind in UPDATES and _needs_more(owner, len(self.made_with)):
                self.instances[id(owner)] = object.__new__(owner)
            if id(owner) not in self.instances:
                made = ", ".join(map(repr, self.made_with))
                self.instances[id(owner)] = self.call(owner, *self.made_with,
                                                      what=f"{owner_name}({made}) (to call its {attr})")
            found = getattr(self.instances[id(owner)], attr)
        return found

    def call(self, fn, *args, what: str):
        if self.halted:
            raise Halted(what)
        if self.convention.get("arrays", "numpy") == "numpy":
            return self._kept(fn, call(self.files, fn, *args, what=what), what)
        args = self._convert(args, to_torch=True, seen=set())  # a course of torch tensors (EECS 498), float64
        try:
            return self._convert(call(self.files, fn, *args, what=what), to_torch=False, seen=set())
        finally:
            self._convert(args, to_torch=False, seen=set())  # a dict the student wrote into (bn_param): arrays

    def _kept(self, fn, returned, what: str):
        """What a module's ``backward`` (or ``derivative``) gave: where the convention's ``dx`` names the attribute
        it keeps the input's gradient in and returns nothing (CS 7643's ``self.dx``), that attribute, read after
        the call; else what it returned."""
        path = self.entry.get("dx")
        owner = getattr(fn, "__self__", None)
        if owner is None or getattr(fn, "__name__", "") not in ("backward", "derivative") or \
                self.kind in ("mlp", "rnn_step", "lstm_step"):
            # (an MLP's backward may return nothing: the grader reads its parameters' gradients; a recurrent
            # cell's returns the gradients of its input and states together)
            return returned
        if path is None:
            if returned is None and self.convention.get("style") == "module":
                try:
                    members = dict(object.__getattribute__(owner, "__dict__"))
                except Exception:  # noqa: BLE001 - a class of __slots__: no hint
                    members = {}
                kept = [name for name, value in members.items()
                        if name.lower() in _KEPT_NAMES and isinstance(value, np.ndarray)]
                if kept:
                    raise Wrong(f"{what} returned None, and keeps an array in self.{kept[0]}: a course whose backward "
                                f"returns nothing and keeps the gradient with respect to the input: dx = \"{kept[0]}\""
                                " in a spec's table for this layer; else return it")
            return returned
        for member in path.split("."):
            owner = call(self.files, _read, owner, member, what=f"reading {path}")
            if owner is _MISSING:
                raise Wrong(f"{what} kept no {path} (dx = \"{path}\": the attribute that holds the gradient with "
                            "respect to the input after backward)")
        if owner is None:
            raise Wrong(f"{what} left {path} None: it should hold the gradient with respect to the input (dx = "
                        f"\"{path}\")")
        return owner.copy() if isinstance(owner, np.ndarray) else owner  # (a buffer the next backward writes into)

    def _convert(self, obj, *, to_torch: bool, seen: set):
        """``obj`` with the grader's arrays as tensors (``to_torch``: the same memory; what came from the
        student goes back as it came), or the student's tensors as arrays, through tuples, lists and dicts (in
        place: the caller's dict is the one the student writes into); a container met twice is left alone."""
        if to_torch and isinstance(obj, np.ndarray):
            known = self.returned.get(id(obj))
            if known is not None and known[0] is obj:
                return known[1]
            return torch.from_numpy(obj if all(st >= 0 for st in obj.strides) else obj.copy())
        if not to_torch and isinstance(obj, (np.ndarray, torch.Tensor)):
            known = self.returned.get(id(obj))
            if known is not None and known[0] is obj:  # converted already (a dict both given and returned)
                return obj
            array = obj
            if isinstance(obj, torch.Tensor):  # bfloat16 as float32: the dtype check then names it
                t = obj.detach().cpu()
                array = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
            self.returned[id(array)] = (array, obj)
            return array
        if not isinstance(obj, (tuple, list, dict)) or isinstance(obj, torch.Size) or id(obj) in seen:
            return obj
        seen.add(id(obj))
        if isinstance(obj, dict):
            for k, v in obj.items():
                obj[k] = self._convert(v, to_torch=to_torch, seen=seen)
            return obj
        items = [self._convert(o, to_torch=to_torch, seen=seen) for o in obj]
        if hasattr(obj, "_fields"):  # a named tuple (torch.return_types too)
            return type(obj)(*items)
        return list(items) if isinstance(obj, list) else tuple(items)


@dataclass(frozen=True)
class Kind:
    """One layer kind: which names a convention must give, its configurations, and its check."""

    name: str
    title: str
    functional: tuple[str, ...]  # keys of [layers.KIND] a functional convention must name
    module: tuple[str, ...]  # ... and a module one (empty: not gradable in that style)
    configs: Callable[[np.random.Generator, int], list[dict]]
    check: Callable[[dict, Context], Quantities]
    # each configuration as a convention's table reads it (the pointwise losses' (N,) vectors under dims = 1), so
    # that its label in the table says what was graded; None: as drawn
    shaped: Callable[[dict, dict], dict] | None = None
    functional_title: str = ""  # the title in the functional style where its check there is another (the MLP's)

    def needs(self, style: str) -> tuple[str, ...]:
        return self.functional if style == "functional" else self.module

    def titled(self, style: str) -> str:
        return self.functional_title if style == "functional" and self.functional_title else self.title

    def draw(self, rng: np.random.Generator, k: int, entry: dict) -> list[dict]:
        """The configurations graded under the table ``entry``: the fixed ones, then ``k`` drawn."""
        drawn = self.configs(rng, k)
        return drawn if self.shaped is None else [self.shaped(cfg, entry) for cfg in drawn]


def _t(a, grad: bool = True) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _g(t: torch.Tensor) -> np.ndarray:
    return np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy()


def _twin(layer, x: np.ndarray, dout: np.ndarray, **params: np.ndarray) -> dict:
    """twinnet's own NumPy layer (float64, ``params`` loaded) on ``x``: out, dx and d<param> for each."""
    layer.double()
    for name, value in params.items():
        getattr(layer, name).data = value.copy()
    layer.train()
    out = layer.forward(x.copy())
    dx = layer.backward(dout.copy())
    return {"out": out, "dx": dx, **{f"d{name}": p.grad for name, p in layer.named_parameters()}}


def _pair(result, what: str, n: int) -> tuple:
    """A student's tuple result of ``n`` items, or ``Wrong`` saying what came back instead."""
    if result is None:
        raise Wrong(f"{what} returned None")
    if not isinstance(result, (tuple, list)) or len(result) != n:
        length = f" of {len(result)}" if isinstance(result, (tuple, list)) else ""
        raise Wrong(f"{what} returned {type(result).__name__}{length}, expected a tuple of {n}")
    return tuple(result)


def _forward(result, what: str, n: int) -> tuple:
    """A forward's tuple result (``_pair``), its output (the first item) checked at once for what no comparison
    can use (None, text, objects), so that a backward failing on the cache beside such an output is not blamed."""
    items = _pair(result, what, n)
    error("out", items[0], [])
    return items


def _single(result):
    """A backward's one gradient, also where it came back as a tuple or list of one."""
    return result[0] if isinstance(result, (tuple, list)) and len(result) == 1 else result


def _valid(name: str, value, like: np.ndarray) -> np.ndarray:
    """``value`` as a float64 array, for a check that reads it before comparing it; ``Wrong`` where it cannot be
    compared with ``like`` (None, another shape or dtype, not finite)."""
    error(name, value, [like])
    return np.asarray(value, dtype=np.float64)


def _follows(theirs, wrong, right) -> bool:
    """Whether ``theirs`` is a known mistake's value ``wrong`` (to 1e-9) where that differs from the ``right``
    one: the failure is then named by its cause, not by a relative error."""
    return theirs is not None and np.shape(theirs) == np.shape(wrong) and np.allclose(theirs, wrong, rtol=1e-9) \
        and not np.allclose(wrong, right, rtol=1e-6)


def _away_from_zero(rng, shape, gap: float = 0.05) -> np.ndarray:
    """Normal values kept at least ``gap`` from 0 (ReLU's kink: finite tolerances, no ties)."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < gap, np.sign(x + 1e-12) * gap, x)


def _distinct(rng, shape) -> np.ndarray:
    """Values with no ties (max pooling's argmax is then unique): a permutation, scaled."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 3.0


class Halted(Exception):
    """Raised instead of calling the student's code once a call has run past the time limit: the
    configurations after it are still sorted into applicable (not run: failed) and not (n/a)."""


class NotApplicable(Exception):
    """A configuration the student's class cannot be given under its convention (a class that takes no
    stride, for a stride of 2): skipped, and counted as such in the layer's row."""


_MISSING = object()


# the attributes courses keep the gradient with respect to a layer's input in, where backward returns nothing
_KEPT_NAMES = ("dx", "dinput", "dinputs", "grad_input", "dldx", "dlda", "dldz")


def _read(owner, key: str):
    """``owner``'s member ``key``, or its entry where it is a dict (a params dict of the student's own keys) or,
    where ``key`` is a number, a list (Deep Learning from Scratch 2's ``self.params = [Wx, Wh, b]``); ``_MISSING``
    where it has none."""
    if isinstance(owner, dict):
        return owner.get(key, _MISSING)
    if isinstance(owner, (list, tuple)) and key.isdigit():
        return owner[int(key)] if int(key) < len(owner) else _MISSING
    return getattr(owner, key, _MISSING)


def _attempt(grade: Callable[[], Quantities]) -> tuple[Quantities, Exception | None, bool]:
    """``grade()``: its quantities (none where the call raised), the ``StudentError`` or ``Wrong`` that it or a
    quantity that cannot be compared raised, and whether every quantity passed; a call past its time limit is raised
    at once (no second call of such code)."""
    try:
        quantities = grade()
    except (StudentError, Wrong) as e:
        if getattr(e, "timed_out", False):
            raise
        return {}, e, False
    try:
        return quantities, None, all(passes(error(k, *v)) for k, v in quantities.items())
    except Wrong as e:  # a quantity that cannot be compared (None, another shape): the others are kept
        return quantities, e, False


def _passing(quantities: Quantities) -> int:
    """How many of ``quantities`` pass; one that cannot be compared does not."""
    count = 0
    for name, value in quantities.items():
        try:
            count += passes(error(name, *value))
        except Wrong:
            pass
    return count


def _probe(grade: Callable[[], Quantities]) -> Quantities | None:
    """``grade()`` tried as another reading of the student's code: its quantities where every one passes, else
    None, whatever it raised (the first verdict then stands)."""
    try:
        quantities = grade()
        return quantities if all(passes(error(k, *v)) for k, v in quantities.items()) else None
    except StudentError as e:
        if e.timed_out:  # the time limit holds for a probe too: the layer's other configurations are not run
            raise
        return None
    except Exception:  # noqa: BLE001 - a probe only
        return None


def _error_of(mine, expected) -> float:
    """A student's value's relative error, inf where it cannot be compared (None, another size, not finite)."""
    try:  # a (1, D) statistic beside the (D,) one, as the rows compare them, is not off for its shape
        if mine is not None and np.size(mine) == np.size(expected):
            mine = np.reshape(mine, np.shape(expected))
        return error("", mine, [expected])
    except (Wrong, TypeError, ValueError):
        return float("inf")


def _close(mine, expected) -> bool:
    """Whether a student's array is finite and matches ``expected`` closely (the softmax before its loss)."""
    try:
        a = np.asarray(mine, dtype=np.float64)
    except Exception:  # noqa: BLE001 - not numbers (a ragged list, a tensor that needs grad): the comparison tells it
        return False
    if a.shape != np.shape(expected) and a.size == np.size(expected) == 1:  # a loss as a 1-element array
        a = a.reshape(np.shape(expected))
    return a.shape == np.shape(expected) and bool(np.all(np.isfinite(a))) and np.allclose(a, expected, atol=1e-12)


def _shown(value) -> str:
    """A loss as a student would read it: ``nan``, ``inf`` or a few of an array's values (not ``np.float64(nan)``);
    ``None`` and what is not numbers as they are."""
    if value is None:
        return "None"
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{value!r:.40}"
    return repr(float(a.reshape(-1)[0])) if a.size == 1 else np.array2string(a.reshape(-1), threshold=6, precision=4)
