"""The layer kinds a grader checks: random configurations, the references, and how to call a
student's layer of that kind under a convention (``twinnet.grader.conventions``).

Every check runs in float64 and returns ``{quantity: (student's value, [references])}``; the
references are PyTorch's autograd and, where twinnet has one, the NumPy twin. A configuration's
inputs are fresh copies for the student: any write into them is reported.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from twinnet import numpy_nn as nn
from twinnet.grader.conventions import BUILT_IN
from twinnet.grader.compare import RTOL, Wrong, all_unchanged, error, passes, unchanged
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

    def find(self, key: str):
        """The student's function or class the convention names under ``key`` (a dotted name reaches into
        one: ``Linear.forward``, a static method; an instance's method, such as TUM I2DL's ``Sigmoid.forward(self,
        x) -> (out, cache)``, is that of one instance of the class, made with no arguments for the configuration,
        whose ``backward`` is then the same instance's)."""
        name = self.entry[key]
        found = lookup(self.names, name)
        if found is None:
            raise StudentError(f"no {name} in the submission")
        owner_name, _, attr = name.rpartition(".")
        owner = lookup(self.names, owner_name) if owner_name else None
        if isinstance(owner, type) and _takes_self(inspect.getattr_static(owner, attr, None)):
            if id(owner) not in self.instances:
                self.instances[id(owner)] = self.call(owner, what=f"{owner_name}() (to call its {attr})")
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
        if owner is None or getattr(fn, "__name__", "") not in ("backward", "derivative") or self.kind == "mlp":
            return returned  # (an MLP's backward may return nothing: the grader reads its parameters' gradients)
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

    def needs(self, style: str) -> tuple[str, ...]:
        return self.functional if style == "functional" else self.module


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
        raise Wrong(f"{what} returned {type(result).__name__}{'' if not isinstance(result, (tuple, list)) else f' of {len(result)}'}, expected a tuple of {n}")
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


# --- linear -------------------------------------------------------------------------------------------

def _linear_configs(rng, k):
    fixed = [dict(n=1, d=(3,), m=3), dict(n=4, d=(5,), m=5), dict(n=3, d=(4,), m=2), dict(n=2, d=(2, 3), m=4)]
    return fixed + [dict(n=int(rng.integers(1, 6)), d=(int(rng.integers(1, 8)),), m=int(rng.integers(1, 8)))
                    for _ in range(k)]


def _linear(cfg, ctx: Context) -> Quantities:
    rng = ctx.rng
    d = int(np.prod(cfg["d"]))
    x = rng.standard_normal((cfg["n"], *cfg["d"]))
    weight = rng.standard_normal((cfg["m"], d)) / np.sqrt(d)  # torch's layout (out, in)
    bias = rng.standard_normal(cfg["m"])
    dout = rng.standard_normal((cfg["n"], cfg["m"]))
    xt, wt, bt = _t(x.reshape(cfg["n"], d)), _t(weight), _t(bias)
    out_t = xt @ wt.T + bt
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dx": _g(xt).reshape(x.shape), "dw": _g(wt), "db": _g(bt)}
    twin = _twin(nn.Linear(d, cfg["m"]), x.reshape(cfg["n"], d), dout, weight=weight, bias=bias)
    twin = {"out": twin["out"], "dx": twin["dx"].reshape(x.shape), "dw": twin["dweight"], "db": twin["dbias"]}
    refs = [ref, twin]
    in_out = ctx.entry.get("weight", "in_out" if ctx.convention["style"] == "functional" else "out_in") == "in_out"
    stored = weight.T.copy() if in_out else weight.copy()
    more: Quantities = {}
    columns = ctx.entry.get("batch", "rows") == "columns"  # samples as columns: x (D, N), out (M, N)
    # the weights' gradients averaged over the batch, where the course's cost puts its 1/N (deeplearning.ai, CMU 2022)
    scale = 1 / cfg["n"] if ctx.entry.get("grad", "sum") == "mean" else 1.0
    if ctx.convention["style"] == "functional":
        layout = ctx.entry.get("bias", "flat")  # the grader passes the bias: in the convention's layout
        given = _bias_as(layout, bias)
        to_layout = (lambda a: a.reshape(cfg["n"], d).T.copy()) if columns else (lambda a: a)  # noqa: E731
        x_in, dout_in = to_layout(x), dout.T.copy() if columns else dout
        args = (x_in.copy(), stored.copy(), given.copy())
        out, cache = _forward(ctx.call(ctx.find("forward"), *args, what=f"{ctx.entry['forward']}"),
                              ctx.entry["forward"], 2)
        all_unchanged(("x", "w", "b"), (x_in, stored, given), args)
        dx, dw, db = _pair(ctx.call(ctx.find("backward"), dout_in.copy(), cache, what=ctx.entry["backward"]),
                           ctx.entry["backward"], 3)
        got = {"out": out, "dx": dx, "dw": dw, "db": _row_from_flat(db, layout, cfg["m"])}
        for r in refs:
            r["dw"], r["db"] = (r["dw"].T if in_out else r["dw"]) * scale, _bias_as(layout, r["db"]) * scale
            r["out"], r["dx"] = (r["out"].T, to_layout(r["dx"])) if columns else (r["out"], r["dx"])
        other = to_layout(ctx.rng.standard_normal(x.shape))
        more = _caches_apart(ctx, (x_in.copy(), stored.copy(), given.copy()), (other, stored.copy(), given.copy()),
                             dout_in, {k: ref[k] for k in ("dx", "dw", "db")})
    else:
        layer = _build(ctx, "class", d, cfg["m"])
        layout = _bias_layout(ctx, layer, cfg["m"])
        if ctx.entry.get("weight") == "any":  # the layout of the weight the student's layer created
            in_out = _weight_in_out(ctx, layer, d, cfg["m"])
            if in_out is None:  # square: a layer of one more output, built to see, tells
                in_out = bool(_weight_in_out(ctx, _build(ctx, "class", d, cfg["m"] + 1), d, cfg["m"] + 1))
            stored = weight.T.copy() if in_out else weight.copy()
        _set_params(ctx, layer, {"weight": stored, "bias": _bias_as(layout, bias)})
        xs = x.reshape(cfg["n"], d).copy()
        out = ctx.call(layer.forward, xs, what=f"{ctx.entry['class']}.forward")
        unchanged("x", x.reshape(cfg["n"], d), xs)
        dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        _params_kept(ctx, layer, {"weight": stored, "bias": _bias_as(layout, bias)})
        grads = _grads(ctx, layer)
        got = {"out": out, "dx": dx, "dw": grads.get("weight"),
               "db": _row_from_flat(grads.get("bias"), layout, cfg["m"])}
        for r in refs:
            r["dx"], r["db"] = r["dx"].reshape(cfg["n"], d), _bias_as(layout, r["db"]) * scale
            r["dw"] = (r["dw"].T if in_out else r["dw"]) * scale
        x2 = x.reshape(cfg["n"], d)
        grads_of = lambda dy: {"weight": ((dy.T @ x2).T if in_out else dy.T @ x2) * scale,  # noqa: E731
                               "bias": _bias_as(layout, dy.sum(axis=0)) * scale}
        more = _second_pass(ctx, layer, xs, grads_of(dout), grads_of, dout.shape)
    if d == cfg["m"] and got["out"] is not None:  # a square weight: is it read transposed?
        other = x.reshape(cfg["n"], d) @ weight + bias  # the stored matrix read the other way round
        if _follows(got["out"], other.T if columns else other, ref["out"]):
            layout = "(in, out)" if in_out else "(out, in)"
            raise Wrong(f"forward reads the weight transposed (the convention stores it {layout})")
    result = {k: (got[k], [r[k] for r in refs]) for k in ("out", "dx", "dw", "db")}
    return {**result, **more}


def _weight_in_out(ctx: Context, layer, d: int, m: int) -> bool | None:
    """With ``weight = "any"`` (students who create their parameters themselves): whether the weight the
    layer created is (in, out) rather than (out, in); None where it is square (or neither), which its shape
    cannot tell."""
    weight = _params(ctx, layer).get("weight")
    shape = tuple(np.shape(getattr(weight, "data", weight)))
    if d == m or shape not in ((d, m), (m, d)):
        return None
    return shape == (d, m)


def _bias_layout(ctx: Context, layer, m: int) -> str:
    """The linear layer's bias layout: the convention's, or with ``bias = "any"`` (a course whose students
    create their parameters themselves) the layout of the bias the student's layer created, if it holds M values."""
    layout = ctx.entry.get("bias", "flat")
    if layout != "any":
        return layout
    params = _params(ctx, layer)
    shape = np.shape(getattr(params.get("bias"), "data", params.get("bias")))
    return {(m,): "flat", (1, m): "row", (m, 1): "column"}.get(tuple(shape), "flat")


_BIAS_SHAPES = {"flat": (-1,), "row": (1, -1), "column": (-1, 1)}  # a convention's bias layouts, of M values


def _bias_as(layout: str, b: np.ndarray) -> np.ndarray:
    """A bias of shape (M,) in the convention's layout: ``flat`` (M,), ``row`` (1, M) or ``column`` (M, 1)."""
    return b.reshape(_BIAS_SHAPES[layout])


def _row_from_flat(grad, layout: str, m: int):
    """A gradient given flat, (M,), for a parameter laid out as a row, (1, M), taken as that row: the step
    ``p - lr * grad`` broadcasts it to the same update (courses' own tests rarely read its shape, e.g. UvA 2024's
    ``sum(axis=0)`` for a (1, M) bias). A column parameter's, (M, 1), would broadcast to (M, M): it stays as given."""
    return np.reshape(grad, (1, m)) if layout == "row" and np.shape(grad) == (m,) else grad


def _like_row(grad, expected):
    """``_row_from_flat`` where the expected gradient is a row, (1, M)."""
    return _row_from_flat(grad, "row", np.size(expected)) if np.ndim(expected) == 2 and len(expected) == 1 else grad


class Halted(Exception):
    """Raised instead of calling the student's code once a call has run past the time limit: the
    configurations after it are still sorted into applicable (not run: failed) and not (n/a)."""


class NotApplicable(Exception):
    """A configuration the student's class cannot be given under its convention (a class that takes no
    stride, for a stride of 2): skipped, and counted as such in the layer's row."""


class _Init:
    """An initialiser the grader passes where a class takes one (CMU 11-785's 2019-21 ``Linear(in_feature,
    out_feature, weight_init_fn, bias_init_fn)``): zeros of the shape asked for (a linear layer's bias in the
    convention's layout), since the grader sets the values itself."""

    def __init__(self, name: str, layout: str | None = None) -> None:
        self.name, self.layout = name, layout

    def __call__(self, *shape):
        if self.layout is not None and len(shape) == 1:
            n = int(shape[0])
            return np.zeros({"row": (1, n), "column": (n, 1)}.get(self.layout, (n,)))
        return np.zeros(tuple(int(s) for s in shape))

    def __repr__(self) -> str:
        return self.name


WEIGHT_INIT, BIAS_INIT = _Init("weight_init_fn"), _Init("bias_init_fn")

# module style: each kind's class arguments in the grader's order, with the value an argument that a
# convention's ``args`` leaves out must have (None: it cannot be left out); configurations needing another
# value are not applicable to that class (CMU's ``Conv2d_stride1(in, out, kernel)``: stride 1, padding 0)
ARGUMENTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "linear": (("in_features", None), ("out_features", None), ("weight_init", WEIGHT_INIT), ("bias_init", BIAS_INIT)),
    "conv": (("in_channels", None), ("out_channels", None), ("kernel_size", None), ("stride", 1), ("padding", 0),
             ("weight_init", WEIGHT_INIT), ("bias_init", BIAS_INIT)),
    "maxpool": (("kernel_size", None), ("stride", 1)),
    "batchnorm": (("num_features", None),),
    "elu": (("alpha", 1.0),),
    "leaky_relu": (("negative_slope", 0.01),),
    # the slope of an MLP of leaky ReLUs (UvA 2019's MLP(n_inputs, n_hidden, n_classes, neg_slope)); 0: ReLU
    "mlp": (("inputs", None), ("hidden", None), ("classes", None), ("negative_slope", 0.0)),
}


def _build(ctx: Context, key: str, *args):
    """The student's class named under ``key``, built with ``args`` (the kind's ``ARGUMENTS`` in order), or
    with those the convention's ``args`` lists, in its order."""
    cls = ctx.find(key)
    if key == "class" and "args" in ctx.entry:
        given = {name: fixed for name, fixed in ARGUMENTS[ctx.kind]} | \
            dict(zip((name for name, _ in ARGUMENTS[ctx.kind]), args))
        for name, fixed in ARGUMENTS[ctx.kind]:
            if name not in ctx.entry["args"] and given[name] != fixed:
                raise NotApplicable(f"{name}={given[name]!r}")
        bias_init = _Init("bias_init_fn", ctx.entry.get("bias", "flat") if ctx.kind == "linear" else None)
        args = tuple(bias_init if given[name] is BIAS_INIT else given[name] for name in ctx.entry["args"])
    elif key == "class" and (n := _positional(cls)) is not None and n < len(args):
        # a class that fixes its last arguments (an older year's ELUModule() with alpha 1): graded where they hold
        tail = ARGUMENTS[ctx.kind][n:len(args)]
        if all(fixed is not None for _, fixed in tail):
            for (name, fixed), value in zip(tail, args[n:]):
                if value != fixed:
                    raise NotApplicable(f"{name}={value!r}; {ctx.entry[key]}() takes no {name}, so it is {fixed!r}")
            args = args[:n]
    layer = ctx.call(cls, *args, what=f"{ctx.entry[key]}({', '.join(map(repr, args))})")
    if hasattr(layer, "double") and ctx.convention.get("params") == "attributes":
        ctx.call(layer.double, what=f"{ctx.entry[key]}.double")
    return layer


def _positional(cls) -> int | None:
    """How many arguments ``cls(...)`` takes by position (None: any number, or its signature cannot be read)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


_MISSING = object()
# the attributes courses keep the gradient with respect to a layer's input in, where backward returns nothing
_KEPT_NAMES = ("dx", "dinput", "dinputs", "grad_input", "dldx", "dlda", "dldz")


def _read(owner, key: str):
    """``owner``'s member ``key``, or its entry where it is a dict (a params dict of the student's own keys);
    ``_MISSING`` where it has none."""
    return owner.get(key, _MISSING) if isinstance(owner, dict) else getattr(owner, key, _MISSING)


class _Fields(MutableMapping):
    """A layer's parameters kept as plain attributes that the convention names (``params = {weight = "W",
    bias = "b"}``; a dotted path reaches into a member, or a dict's key: ``conv2d_stride1.W``, ``params.weights``),
    read and written as a ``params = "dict"`` course's dict is. Each read and write is a call into the student's
    code (a property may run): under the time limit, and an exception names the student's line."""

    def __init__(self, ctx: Context, layer, paths: dict[str, str]) -> None:
        self.ctx, self.layer, self.paths = ctx, layer, paths

    def _owner(self, name: str):
        *members, last = self.paths[name].split(".")
        owner = self.layer
        for member in members:
            owner = self.ctx.call(_read, owner, member, what=f"reading {member}")
            if owner is _MISSING:
                raise KeyError(name)
        return owner, last

    def __getitem__(self, name: str):
        if name not in self.paths:
            raise KeyError(name)
        owner, last = self._owner(name)
        value = self.ctx.call(_read, owner, last, what=f"reading {self.paths[name]}")
        if value is _MISSING:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value) -> None:
        owner, last = self._owner(name)
        write = owner.__setitem__ if isinstance(owner, dict) else lambda key, v: setattr(owner, key, v)
        self.ctx.call(write, last, value, what=f"setting {self.paths[name]}")

    def __delitem__(self, name: str) -> None:
        raise TypeError("a layer's parameters are not deleted")

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def _params(ctx: Context, layer) -> dict:
    if isinstance(ctx.entry.get("params"), dict):
        return _Fields(ctx, layer, ctx.entry["params"])
    if ctx.convention.get("params", "dict") == "dict":
        params = getattr(layer, "params", None)
        if not isinstance(params, dict):
            raise Wrong(f"{type(layer).__name__} has no params dict")
        _not_shared(layer, "params", params)
        return params
    return {name: p for name, p in ctx.call(layer.named_parameters, what="named_parameters")}


def _not_shared(layer, name: str, value: dict) -> None:
    """``Wrong`` where ``layer.<name>`` is a dict of the class's own (``params = {}`` in the class body), which the
    layer filled: one dict for every instance, so each new layer overwrites the others' weights."""
    cls = type(layer).__name__
    if value and any(vars(c).get(name) is value for c in type(layer).__mro__):
        raise Wrong(f"{cls}.{name} is one dict shared by every {cls} (a class attribute, {name} = {{}} in the class "
                    f"body, which the layer fills): each {cls} overwrites the others' entries, so the layers of an "
                    f"MLP would share one {'weight' if name == 'params' else 'gradient'}; create it in __init__, "
                    f"self.{name} = {{...}}")


def _assign(params: dict, name: str, value: np.ndarray) -> None:
    """``params[name] = value``, written into the student's own array where it can hold it (float64, the
    same shape), as a course's training loop updates it in place: a layer that keeps ``self.W`` and
    ``params = {"weight": self.W}`` computes with what the grader set."""
    current = params[name]
    if isinstance(current, np.ndarray) and current.dtype == np.float64 and current.shape == value.shape and \
            current.flags.writeable:
        current[...] = value
        if np.array_equal(params[name], value):  # not a property that hands out a copy
            return
    params[name] = np.array(value, dtype=np.float64, copy=True)


def _set_params(ctx: Context, layer, values: dict) -> None:
    params = _params(ctx, layer)
    fields = isinstance(params, _Fields)
    for name, value in values.items():
        if name not in params:
            if fields:
                raise Wrong(f"{type(layer).__name__} has no attribute {params.paths[name]} (the convention's {name})")
            raise Wrong(f"{type(layer).__name__} has no parameter {name!r} (it has {', '.join(params) or 'none'})")
        if fields or ctx.convention.get("params", "dict") == "dict":
            where = f".{params.paths[name]}" if fields else f".params[{name!r}]"
            if np.shape(params[name]) != value.shape:
                raise Wrong(f"{type(layer).__name__}{where} has shape {np.shape(params[name])}, the "
                            f"convention's is {value.shape}")
            _assign(params, name, value)
        else:
            if tuple(params[name].data.shape) != value.shape:
                raise Wrong(f"{name} has shape {tuple(params[name].data.shape)}, the convention's is {value.shape}")
            params[name].data = value.copy()
    if hasattr(layer, "zero_grad"):
        ctx.call(layer.zero_grad, what="zero_grad")


def _params_kept(ctx: Context, layer, values: dict) -> None:
    """``Wrong`` where a forward and backward changed a parameter the grader set (``values``), as a backward that
    ends ``self.W -= dW`` does: a layer computes its gradients, and the optimiser's step alone updates its
    parameters (a course's loop would update them twice). Parameters that cannot be read are told elsewhere."""
    try:
        params = _params(ctx, layer)
        now = {name: np.asarray(getattr(params[name], "data", params[name]), dtype=np.float64) for name in values}
    except Exception:  # noqa: BLE001 - the checks that set and read them tell what is wrong
        return
    for name, value in values.items():
        if now[name].shape == value.shape and not np.array_equal(now[name], value, equal_nan=True):
            raise Wrong(f"{type(layer).__name__}'s {name} changed during forward and backward (by up to "
                        f"{np.nanmax(np.abs(now[name] - value)):.3g}): a layer's backward computes the gradients "
                        "and leaves the parameters as they were; the optimiser's step updates them")


def _grads(ctx: Context, layer) -> dict:
    if isinstance(ctx.entry.get("grads"), dict):
        fields, grads = _Fields(ctx, layer, ctx.entry["grads"]), {}
        for name, path in fields.paths.items():  # each attribute read once (a property may run)
            try:
                value = fields[name]
            except KeyError:
                raise Wrong(f"{type(layer).__name__} has no attribute {path} after backward (the convention's "
                            f"gradient of {name})") from None
            grads[name] = None if value is None else np.array(value, copy=True)
        return grads
    if ctx.convention.get("params", "dict") == "dict":
        grads = getattr(layer, "grads", None)
        if not isinstance(grads, dict):
            raise Wrong(f"{type(layer).__name__} has no grads dict")
        _not_shared(layer, "grads", grads)
        return {k: None if v is None else np.array(v, copy=True) for k, v in grads.items()}
    return {name: None if p.grad is None else np.array(p.grad, copy=True) for name, p in _params(ctx, layer).items()}


def _second_pass(ctx: Context, layer, x, first_ref: dict, grads_of: Callable[[np.ndarray], dict],
                 dout_shape) -> Quantities:
    """A second forward and backward with another upstream gradient. The convention says whether the
    parameters' gradients are then overwritten (the second pass's alone) or summed (torch, until
    ``zero_grad``); the other behaviour is named, anything else compared as a quantity."""
    dout2 = ctx.rng.standard_normal(dout_shape)
    ctx.call(layer.forward, x.copy(), what="forward (a second pass)")
    ctx.call(layer.backward, dout2.copy(), what="backward (a second pass)")
    second, alone = _grads(ctx, layer), grads_of(dout2)
    accumulate = ctx.convention.get("grads", "overwrite") == "accumulate"
    out = {}
    for name, g1 in first_ref.items():
        expected = g1 + alone[name] if accumulate else alone[name]
        other = alone[name] if accumulate else g1 + alone[name]
        g2 = _like_row(second.get(name), expected)  # a row parameter's gradient may be flat
        if _follows(g2, other, expected):
            raise Wrong(f"the gradient of {name} is {'overwritten' if accumulate else 'summed'} over backward calls; "
                        f"this convention {'sums it until zero_grad' if accumulate else 'overwrites it'}")
        out[f"d{name} after a second backward"] = (g2, [expected])
    return out


def _caches_apart(ctx: Context, first: tuple, second: tuple, dout, refs: dict[str, np.ndarray]) -> Quantities:
    """Forward ``first``, forward ``second``, then backward ``dout`` with the first forward's cache: the
    first's gradients (``refs``), as when a network holds two such layers. A layer that keeps what its
    backward needs in a module global, not in the cache it returns, gives the second's."""
    forward, backward = ctx.entry["forward"], ctx.entry["backward"]
    _, cache = _forward(ctx.call(ctx.find("forward"), *first, what=forward), forward, 2)
    mine, ctx.instances = ctx.instances, {}  # an instance's method: the other forward is another layer's, as in a net
    try:
        _forward(ctx.call(ctx.find("forward"), *second, what=f"{forward} (another input)"), forward, 2)
    finally:
        ctx.instances = mine
    grads = ctx.call(ctx.find("backward"), dout.copy(), cache, what=f"{backward} (with the first forward's cache)")
    if len(refs) == 1:
        grads = (_single(grads),)
    else:
        grads = _pair(grads, backward, len(refs))
    return {f"{name} from the first cache after another forward": (_like_row(g, refs[name]), [refs[name]])
            for name, g in zip(refs, grads)}


# --- elementwise and image layers -----------------------------------------------------------------------

def _relu_configs(rng, k):
    return [dict(shape=(1, 3)), dict(shape=(2, 3, 4, 5), zeros=True)] + [
        dict(shape=(int(rng.integers(1, 5)), int(rng.integers(1, 9)))) for _ in range(k)]


def _relu(cfg, ctx: Context) -> Quantities:
    x, dout = _away_from_zero(ctx.rng, cfg["shape"]), ctx.rng.standard_normal(cfg["shape"])
    # one input above zero with a gradient below it, in every configuration: a backward that masks by the
    # gradient's sign (dZ[dZ <= 0] = 0) rather than the input's then fails each, not those whose signs agree by chance
    x.flat[0], dout.flat[0] = abs(x.flat[0]), -abs(dout.flat[0])
    if cfg.get("zeros"):  # inputs of exactly 0, as a ReLU's own output gives the next layer's
        x.flat[1::5] = 0.0
    refs = [{"out": np.maximum(x, 0), "dx": dout * (x > 0)}, _twin(nn.ReLU(), x, dout)]
    quantities = _unary(ctx, x, dout, refs, ())
    return _any_subgradient_at_zero(quantities, x, dout) if cfg.get("zeros") else quantities


def _any_subgradient_at_zero(quantities: Quantities, x, dout) -> Quantities:
    """A ReLU's gradients where the input is exactly 0: any subgradient, from 0 (torch's) to dout (x >= 0's mask),
    but finite (x / |x| is 0 / 0 there); what is right there is then compared as torch's, the rest as ever."""
    at = x == 0
    out = dict(quantities)
    for name, (value, refs) in quantities.items():
        if not name.startswith("dx") or getattr(value, "dtype", None) != np.float64 or np.shape(value) != x.shape:
            continue  # (another type, float32 say, or shape: told by the comparison, as in every configuration)
        v = np.array(value, copy=True)
        share = v[at] / dout[at]  # (dout is a normal draw: never 0)
        if not np.all(np.isfinite(v[at])):
            raise Wrong(f"{name} is {v[at][~np.isfinite(v[at])][0]} where the input is exactly 0 (a mask such as "
                        "x / |x| divides 0 by 0 there): ReLU's gradient at 0 is 0, as torch's, or dout with x >= 0")
        if np.any(share < -1e-9) or np.any(share > 1 + 1e-9):
            raise Wrong(f"{name} is {share[(share < -1e-9) | (share > 1 + 1e-9)][0]:.6g} times dout where the input "
                        "is exactly 0: ReLU's gradient there is 0, as torch's, or dout, never outside them")
        v[at] = refs[0][at]
        out[name] = (v, refs)
    return out


def _elu_configs(rng, k):
    return [dict(shape=(1, 3), alpha=1.0), dict(shape=(2, 3, 4, 5), alpha=0.5)] + [
        dict(shape=(int(rng.integers(1, 5)), int(rng.integers(1, 9))), alpha=float(rng.choice([0.1, 1.0, 2.0])))
        for _ in range(k)]


def _elu(cfg, ctx: Context) -> Quantities:
    """ELU(x) = x for x > 0, alpha (e^x - 1) otherwise; alpha is the forward's argument (functional) or the
    class's (module: ``ELUModule(alpha)``)."""
    x, dout = _away_from_zero(ctx.rng, cfg["shape"]), ctx.rng.standard_normal(cfg["shape"])
    xt = _t(x)
    out_t = torch.nn.functional.elu(xt, alpha=cfg["alpha"])
    (out_t * torch.from_numpy(dout)).sum().backward()
    return _unary(ctx, x, dout, [{"out": out_t.detach().numpy(), "dx": _g(xt)}], (cfg["alpha"],))


def _leaky_relu_configs(rng, k):
    return [dict(shape=(1, 3), negative_slope=0.01), dict(shape=(2, 3, 4, 5), negative_slope=0.2)] + [
        dict(shape=(int(rng.integers(1, 5)), int(rng.integers(1, 9))),
             negative_slope=float(rng.choice([0.01, 0.02, 0.1, 0.3]))) for _ in range(k)]


def _leaky_relu(cfg, ctx: Context) -> Quantities:
    """LeakyReLU(x) = x for x > 0, negative_slope * x otherwise; the slope is the forward's argument
    (functional) or the class's (module: UvA 2019's ``LeakyReLUModule(neg_slope)``)."""
    x, dout = _away_from_zero(ctx.rng, cfg["shape"]), ctx.rng.standard_normal(cfg["shape"])
    slope = cfg["negative_slope"]
    refs = [{"out": np.where(x > 0, x, slope * x), "dx": dout * np.where(x > 0, 1.0, slope)},
            _twin(nn.LeakyReLU(slope), x, dout)]
    return _unary(ctx, x, dout, refs, (slope,))


def _smooth_configs(rng, k):
    """A batch of one, images, and one with inputs far out (20 times a normal draw, with 40 and -60 among them,
    where 1 - s and tanh's 1 - t^2 round to 0), then drawn shapes."""
    return [dict(shape=(1, 3)), dict(shape=(2, 3, 4, 5)), dict(shape=(3, 4), scale=20.0)] + [
        dict(shape=(int(rng.integers(1, 5)), int(rng.integers(1, 9)))) for _ in range(k)]


def _smooth(torch_fn):
    """The check of an activation of no parameters whose derivative needs no care at 0 (sigmoid, tanh), against
    ``torch_fn``'s values and autograd gradient."""
    def check(cfg, ctx: Context) -> Quantities:
        x = cfg.get("scale", 2.0) * ctx.rng.standard_normal(cfg["shape"])
        if "scale" in cfg:
            x.flat[:2] = 40.0, -60.0
        dout = ctx.rng.standard_normal(cfg["shape"])
        xt = _t(x)
        out_t = torch_fn(xt)
        (out_t * torch.from_numpy(dout)).sum().backward()
        return _unary(ctx, x, dout, [{"out": out_t.detach().numpy(), "dx": _g(xt)}], ())
    return check


def _unary(ctx: Context, x, dout, refs: list[dict], args: tuple) -> Quantities:
    """A layer of one input (and fixed arguments ``args``): forward, then backward of ``dout``."""
    xs = x.copy()
    if ctx.convention["style"] == "functional":
        out, cache = _forward(ctx.call(ctx.find("forward"), xs, *copy.deepcopy(args), what=ctx.entry["forward"]),
                              ctx.entry["forward"], 2)
        unchanged("x", x, xs)
        dx = _single(ctx.call(ctx.find("backward"), dout.copy(), cache, what=ctx.entry["backward"]))
        # -x: another ReLU mask, other max positions (the values are distinct)
        more = _caches_apart(ctx, (x.copy(), *copy.deepcopy(args)), (-x, *copy.deepcopy(args)), dout,
                             {"dx": refs[0]["dx"]})
    else:
        layer = _build(ctx, "class", *args)
        out = ctx.call(layer.forward, xs, what=f"{ctx.entry['class']}.forward")
        unchanged("x", x, xs)
        if ctx.entry.get("derivative", False):  # backward() returns d out / d x, elementwise (CMU's mytorch, 2022)
            method, name = _backward(layer)
            derivative = ctx.call(method, what=f"{ctx.entry['class']}.{name}")
            if derivative is None or np.shape(derivative) != x.shape:
                raise Wrong(f"{ctx.entry['class']}.{name}() returned {'None' if derivative is None else 'shape '}"
                            f"{'' if derivative is None else np.shape(derivative)}; derivative = true expects "
                            f"d out / d x elementwise, of x's shape {x.shape}")
            dx = np.asarray(derivative) * dout
        else:
            dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        more = {}
    return {"out": (out, [r["out"] for r in refs]), "dx": (dx, [r["dx"] for r in refs]), **more}


def _backward(obj) -> tuple[Callable, str]:
    """The method that takes no arguments and gives the gradient: ``backward()``, or where the class has none,
    ``derivative()`` (CMU 11-785's 2019-21 activations and losses)."""
    name = "derivative" if not hasattr(obj, "backward") and hasattr(obj, "derivative") else "backward"
    return getattr(obj, name), name


def _conv_configs(rng, k):
    # every window whole, (H + 2p - k) % s == 0, as courses assume (a 1x1 filter at stride 3 skips pixels)
    fixed = [dict(n=1, c=1, h=5, w=5, f=2, k=3, s=1, p=1), dict(n=2, c=3, h=7, w=7, f=4, k=3, s=2, p=0),
             dict(n=2, c=2, h=6, w=8, f=3, k=2, s=2, p=0), dict(n=1, c=3, h=5, w=7, f=2, k=3, s=1, p=0),
             dict(n=2, c=2, h=5, w=5, f=2, k=3, s=2, p=2), dict(n=1, c=2, h=7, w=7, f=3, k=1, s=3, p=0)]
    out = []
    while len(out) < k:
        kk, s, p = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
        h, w = (kk - 2 * p + s * int(rng.integers(1, 4)) for _ in range(2))
        if h >= 1 and w >= 1 and _windows_read(h, kk, s, p) and _windows_read(w, kk, s, p):
            out.append(dict(n=int(rng.integers(1, 3)), c=int(rng.integers(1, 4)), h=h, w=w, f=int(rng.integers(1, 4)),
                            k=kk, s=s, p=p))
    return fixed + out


def _windows_read(size: int, k: int, s: int, p: int) -> bool:
    """Whether some window of a convolution (kernel ``k``, stride ``s``, padding ``p``) over ``size`` pixels covers
    one of them, not only padding: where none does, the right gradients are zero, and a backward that leaves
    them so would pass."""
    return any(i * s < p + size and i * s + k > p for i in range((size + 2 * p - k) // s + 1))


def _conv(cfg, ctx: Context) -> Quantities:
    """``_conv_on``; where it fails at padding 0 and the same layer passes with padding (the windows still whole),
    ``Wrong`` names the cause: a slice such as ``[pad:-pad]``, which is empty when pad is 0; and where it fails on
    an image whose height and width differ and passes on a square one (W set to H), a height and width swapped."""
    quantities, failure, ok = _attempt(lambda: _conv_on(cfg, ctx))
    if ok:
        return quantities
    if cfg["p"] == 0:
        whole = [p for p in (1, 2, 3) if all((cfg[d] + 2 * p - cfg["k"]) % cfg["s"] == 0 for d in ("h", "w"))]
        try:
            padded = whole and _probe(lambda: _conv_on({**cfg, "p": whole[0]}, ctx)) is not None
        except NotApplicable:  # a class that takes no padding: this configuration's own verdict stands
            padded = False
        if padded:
            here = f" (at pad 0: {failure})" if failure is not None else ""
            where = "[:, pad:-pad, pad:-pad, :]" if ctx.entry.get("images") == "nhwc" else "[:, :, pad:-pad, pad:-pad]"
            raise Wrong(f"wrong only where pad is 0: the same layer passes with pad {whole[0]}; a slice such as "
                        f"{where} is empty when pad is 0 (slice pad:pad + H instead){here}")
    _images_told(ctx, lambda other: _conv_on(cfg, other), failure, "(k, k, C, F) filters, ")
    if cfg["h"] != cfg["w"]:
        _off_square_told(cfg, failure, lambda square: _conv_on(square, ctx), "a loop over the output's rows bounded by "
                         "its width")
    if failure is not None:
        raise failure
    return quantities


def _off_square_told(cfg, failure, grade: Callable[[dict], Quantities], example: str) -> None:
    """Where an image layer failed on an image whose height and width differ and ``grade`` passes on a square one
    (W set to H), ``Wrong`` saying so, with ``example`` of such a swap."""
    if _probe(lambda: grade({**cfg, "w": cfg["h"]})) is not None:
        here = f" (at H = {cfg['h']}, W = {cfg['w']}: {failure})" if failure is not None else ""
        raise Wrong(f"wrong only where the height and width differ: the same layer passes on a square image (H = W = "
                    f"{cfg['h']}); a height and a width swapped somewhere, such as {example}{here}")


def _conv_on(cfg, ctx: Context) -> Quantities:
    rng = ctx.rng
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    w = rng.standard_normal((cfg["f"], cfg["c"], cfg["k"], cfg["k"])) / cfg["k"]
    b = rng.standard_normal(cfg["f"])
    xt, wt, bt = _t(x), _t(w), _t(b)
    out_t = torch.nn.functional.conv2d(xt, wt, bt, stride=cfg["s"], padding=cfg["p"])
    dout = rng.standard_normal(tuple(out_t.shape))
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dx": _g(xt), "dw": _g(wt), "db": _g(bt)}
    twin = _twin(nn.Conv2d(cfg["c"], cfg["f"], cfg["k"], cfg["s"], cfg["p"]), x, dout, weight=w, bias=b)
    refs = [ref, {"out": twin["out"], "dx": twin["dx"], "dw": twin["dweight"], "db": twin["dbias"]}]
    more: Quantities = {}  # a module's gradients after a second backward: summed or overwritten, as its convention says
    if ctx.convention["style"] == "functional":
        other = rng.standard_normal(x.shape)
        if ctx.entry.get("images") == "nhwc":  # deeplearning.ai's: every array in the course's layout, refs too
            x, w, b, dout, other = _nhwc(x), _nhwc_filters(w), b.reshape(1, 1, 1, -1), _nhwc(dout), _nhwc(other)
            refs = [{"out": _nhwc(r["out"]), "dx": _nhwc(r["dx"]), "dw": _nhwc_filters(r["dw"]),
                     "db": r["db"].reshape(1, 1, 1, -1)} for r in refs]
            ref = refs[0]
        conv_param = {"stride": cfg["s"], "pad": cfg["p"]}
        args = (x.copy(), w.copy(), b.copy(), dict(conv_param))
        out, cache = _forward(ctx.call(ctx.find("forward"), *args, what=ctx.entry["forward"]), ctx.entry["forward"], 2)
        all_unchanged(("x", "w", "b"), (x, w, b), args)
        got = dict(zip(("dx", "dw", "db"), _pair(ctx.call(ctx.find("backward"), dout.copy(), cache,
                                                          what=ctx.entry["backward"]), ctx.entry["backward"], 3)))
        more = _caches_apart(ctx, (x.copy(), w.copy(), b.copy(), dict(conv_param)),
                             (other, w.copy(), b.copy(), dict(conv_param)), dout,
                             {k: ref[k] for k in ("dx", "dw", "db")})
    else:
        layer = _build(ctx, "class", cfg["c"], cfg["f"], cfg["k"], cfg["s"], cfg["p"])
        try:
            own = np.shape(_params(ctx, layer)["weight"])
        except Exception:  # noqa: BLE001 - a probe only: setting the weight says what is wrong
            own = None
        if own == (cfg["f"], cfg["c"], cfg["k"]):
            raise Wrong(f"{type(layer).__name__}'s weight has shape {own}, (out, in, kernel): a 1-D convolution, "
                        "which the conv kind, 2-D on (N, C, H, W) images, cannot grade")
        _set_params(ctx, layer, {"weight": w, "bias": b})
        xs = x.copy()
        out = ctx.call(layer.forward, xs, what=f"{ctx.entry['class']}.forward")
        unchanged("x", x, xs)
        dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        _params_kept(ctx, layer, {"weight": w, "bias": b})
        grads = _grads(ctx, layer)
        got = {"dx": dx, "dw": grads.get("weight"), "db": grads.get("bias")}

        def grads_of(dy):
            wt2, bt2 = _t(w), _t(b)
            (torch.nn.functional.conv2d(_t(x, False), wt2, bt2, stride=cfg["s"], padding=cfg["p"])
             * torch.from_numpy(dy)).sum().backward()
            return {"weight": _g(wt2), "bias": _g(bt2)}

        more = _second_pass(ctx, layer, x, {"weight": ref["dw"], "bias": ref["db"]}, grads_of, dout.shape)
    result = {"out": (out, [r["out"] for r in refs]), **{k: (got[k], [r[k] for r in refs]) for k in ("dx", "dw", "db")}}
    return {**result, **more}


def _images_told(ctx: Context, grade: Callable[[Context], Quantities], failure, more: str = "") -> None:
    """Where a functional layer fails on (N, C, H, W) images and ``grade`` passes given them as (N, H, W, C), the
    other convention's layout (deeplearning.ai's), ``Wrong`` saying which spec setting grades it."""
    if ctx.convention["style"] != "functional" or ctx.entry.get("images", "nchw") != "nchw":
        return
    try:
        _, theirs, ok = _attempt(lambda: grade(replace(ctx, entry={**ctx.entry, "images": "nhwc"})))
    except NotApplicable:  # a configuration the other layout cannot give (pooling windows of another height than
        return  # width): the first verdict stands
    except StudentError as e:  # past the time limit: raised, as every probe's is, saying where it ran so long
        raise StudentError(f"{e.args[0]} given (N, H, W, C) images, tried to see whether the layer takes them (given "
                           f"(N, C, H, W): {failure})", e.where, timed_out=e.timed_out) from None
    # or, under a course's own spec (not a built-in convention, each channels-first), it gets past the shapes that
    # stopped it here, to where code of NumPy 1's era stops (float() of a (1, 1, 1) bias, deeplearning.ai's own
    # advice), and here it raised on the shapes (a broadcast, an index)
    era = ctx.convention.get("name") not in BUILT_IN and isinstance(theirs, StudentError) and \
        _SCALAR in str(theirs) and isinstance(failure, StudentError) and bool(_ON_SHAPES.search(str(failure)))
    if ok or era:
        here = f"; given them, {theirs}" if era else f" (here: {failure})" if failure is not None else ""
        raise Wrong(f"the layer takes (N, H, W, C) images, {more}as deeplearning.ai's course does, and this convention "
                    f"gives (N, C, H, W): images = \"nhwc\" in a spec's table for this layer{here}")


_SCALAR = "arrays can be converted to Python scalars"  # NumPy 2's float() of a (1, 1, 1) array; NumPy 1 gave a number
_ON_SHAPES = re.compile(r" raised (ValueError|IndexError)\b")


def _nhwc(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images as (N, H, W, C), deeplearning.ai's layout (``images = "nhwc"``)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _nhwc_filters(w: np.ndarray) -> np.ndarray:
    """(F, C, k, k) filters as (k, k, C, F), deeplearning.ai's layout beside (N, H, W, C) images."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _pool_configs(rng, k):
    fixed = [dict(n=1, c=1, h=4, w=4, ph=2, pw=2, s=2), dict(n=2, c=3, h=5, w=5, ph=3, pw=3, s=1),
             dict(n=1, c=2, h=7, w=5, ph=3, pw=3, s=2), dict(n=2, c=1, h=8, w=9, ph=2, pw=3, s=3)]  # every window whole: (H - ph) % s == 0, as courses assume
    out = []
    for _ in range(k):
        ph, pw, s = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        out.append(dict(n=int(rng.integers(1, 3)), c=int(rng.integers(1, 3)), h=ph + s * int(rng.integers(0, 3)),
                        w=pw + s * int(rng.integers(0, 3)), ph=ph, pw=pw, s=s))
    return fixed + out


def _maxpool(cfg, ctx: Context) -> Quantities:
    """``_maxpool_on``; where it fails on (N, C, H, W) images and passes on (N, H, W, C) ones, that is told."""
    quantities, failure, ok = _attempt(lambda: _maxpool_on(cfg, ctx))
    if ok:
        return quantities
    _images_told(ctx, lambda other: _maxpool_on(cfg, other), failure)
    # the same windows on a square image, where they still tile it whole
    if cfg["h"] != cfg["w"] and cfg["h"] >= cfg["pw"] and (cfg["h"] - cfg["pw"]) % cfg["s"] == 0:
        _off_square_told(cfg, failure, lambda square: _maxpool_on(square, ctx), "an output allocated as (N, C, W_out, "
                         "H_out)")
    if failure is not None:
        raise failure
    return quantities


def _maxpool_on(cfg, ctx: Context) -> Quantities:
    x = _distinct(ctx.rng, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    xt = _t(x)
    out_t = torch.nn.functional.max_pool2d(xt, (cfg["ph"], cfg["pw"]), cfg["s"])
    dout = ctx.rng.standard_normal(tuple(out_t.shape))
    (out_t * torch.from_numpy(dout)).sum().backward()
    refs = [{"out": out_t.detach().numpy(), "dx": _g(xt)},
            _twin(nn.MaxPool2d((cfg["ph"], cfg["pw"]), cfg["s"]), x, dout)]
    nhwc = ctx.convention["style"] == "functional" and ctx.entry.get("images") == "nhwc"
    if nhwc:
        if cfg["ph"] != cfg["pw"]:  # deeplearning.ai's pool_forward(A_prev, {"f", "stride"}): square windows
            raise NotApplicable("hparameters give one window size, f")
        refs = [{k: _nhwc(r[k]) for k in ("out", "dx")} for r in refs]
        got = _unary(ctx, _nhwc(x), _nhwc(dout), refs, ({"f": cfg["ph"], "stride": cfg["s"]},))
    elif ctx.convention["style"] == "functional":
        got = _unary(ctx, x, dout, refs, ({"pool_height": cfg["ph"], "pool_width": cfg["pw"], "stride": cfg["s"]},))
    elif cfg["ph"] != cfg["pw"]:
        raise NotApplicable("a module takes one kernel size here")
    else:
        got = _unary(ctx, x, dout, refs, (cfg["ph"], cfg["s"]))
    return _overwritten_told(got, x, dout, cfg, nhwc=nhwc)


def _overwritten_told(got: Quantities, x: np.ndarray, dout: np.ndarray, cfg, nhwc: bool = False) -> Quantities:
    """``got``; where windows overlap and its dx is what a backward that assigns each window's gradient, rather than
    adding it, gives, ``Wrong`` saying so (``x``, ``dout``: (N, C, H, W); ``nhwc``: the student's are (N, H, W, C))."""
    if cfg["s"] < max(cfg["ph"], cfg["pw"]) and "dx" in got and not passes(error("dx", *got["dx"])):
        def overwritten(whole: bool) -> np.ndarray:
            dx = _pool_overwritten(x, dout, cfg["ph"], cfg["pw"], cfg["s"], whole)
            return _nhwc(dx) if nhwc else dx

        if any(_close(got["dx"][0], overwritten(whole)) for whole in (False, True)):
            raise Wrong(f"dx: where windows overlap (stride {cfg['s']}, windows {cfg['ph']}x{cfg['pw']}), a pixel that "
                        "is the maximum of several windows gets only the last one's gradient: add each window's "
                        "(dx[...] += ...), not assign it")
    return got


def _pool_overwritten(x: np.ndarray, dout: np.ndarray, ph: int, pw: int, s: int, whole: bool) -> np.ndarray:
    """Max pooling's input gradient as a backward that assigns each window's gradient (``=``, not ``+=``),
    window after window in row-major order, would give it: to the window's maximum, or (``whole``) to the whole
    window as a mask, ``dx[window] = (window == window.max()) * dout``, zeroing the rest of it."""
    dx = np.zeros_like(x)
    n, c = np.indices(x.shape[:2])
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s:i * s + ph, j * s:j * s + pw]
            if whole:
                top = window.max(axis=(2, 3), keepdims=True)
                dx[:, :, i * s:i * s + ph, j * s:j * s + pw] = (window == top) * dout[:, :, i:i + 1, j:j + 1]
                continue
            a, b = np.divmod(window.reshape(*x.shape[:2], -1).argmax(axis=2), pw)
            dx[n, c, i * s + a, j * s + b] = dout[:, :, i, j]
    return dx


# --- dropout ---------------------------------------------------------------------------------------------

def _dropout_configs(rng, k):
    """Inputs of 100,000 values or more (the kept fraction then lies within 0.7% of the keep probability at 5
    standard deviations), at keep probabilities away from 0.5, where p's two meanings differ."""
    fixed = [dict(shape=(1000, 100), keep=0.8), dict(shape=(50, 8, 16, 16), keep=0.3),
             dict(shape=(250, 400), keep=0.65)]
    return fixed + [dict(shape=(int(rng.integers(200, 400)), int(rng.integers(500, 1000))),
                         keep=float(rng.choice([0.2, 0.3, 0.7, 0.8, 0.9]))) for _ in range(k)]


def _dropout(cfg, ctx: Context) -> Quantities:
    """Dropout's mask is random, so its properties are checked, not its values: in train mode each output is 0
    or x / keep (inverted dropout), a fraction keep of them kept, the same ones again for the same seed, and
    backward lets dout through the student's own mask (out / x); in test mode x and dout pass unchanged.
    The convention's ``p`` is the keep probability (CS231n since 2018) or the drop probability (2016-17)."""
    rng, keep = ctx.rng, cfg["keep"]
    meaning = ctx.entry.get("p", "keep")
    p = keep if meaning == "keep" else 1 - keep
    x, dout = _away_from_zero(rng, cfg["shape"]), rng.standard_normal(cfg["shape"])
    seed = int(rng.integers(2**31))
    forward, backward = ctx.entry["forward"], ctx.entry["backward"]

    def param(mode: str, s: int = seed) -> dict:
        return {"p": p, "mode": mode, "seed": s}

    def run(mode: str) -> tuple:
        xs = x.copy()
        out, cache = _forward(ctx.call(ctx.find("forward"), xs, param(mode), what=f"{forward} (mode {mode})"),
                              forward, 2)
        unchanged("x", x, xs)
        return out, cache

    def back(cache, mode: str):
        return _single(ctx.call(ctx.find("backward"), dout.copy(), cache, what=f"{backward} (mode {mode})"))

    out, cache = run("train")
    out = _valid("out (train mode)", out, x)
    kept = out != 0
    share, spread = kept.mean(), 5 * np.sqrt(keep * (1 - keep) / x.size)  # 5 binomial standard deviations
    if kept.all():
        raise Wrong(f"train mode dropped none of the values at p = {p:g} (mode \"train\" drops each with "
                    f"probability {1 - keep:g})")
    if abs(share - (1 - keep)) <= spread:
        other = "drop" if meaning == "keep" else "keep"
        raise Wrong(f"kept {share:.3f} of the values at p = {p:g}: p is taken as the {other} probability, where this "
                    f"convention's p is the {meaning} probability (p = \"{other}\" in a spec, if that is the course's: "
                    "CS231n's p was the drop probability until 2017, the keep probability since 2018)")
    ratio = out[kept] / x[kept]  # what the kept values were multiplied by: 1 / keep
    # to the grader's tolerance (a float32 mask scales by 1 / keep rounded to float32: 2e-8 off, not a bug)
    if kept.any() and np.allclose(ratio, ratio[0], rtol=RTOL, atol=0) and not np.isclose(ratio[0], 1 / keep, rtol=RTOL):
        if np.isclose(ratio[0], 1, rtol=RTOL):
            raise Wrong("the kept values are x itself: the dropout is not inverted (train mode divides what it keeps "
                        "by the keep probability, so that test mode returns x unchanged)")
        divided = ", divided by p, the drop probability" if meaning == "drop" and np.isclose(ratio[0], 1 / p) else ""
        digits = next((d for d in range(4, 18) if f"{ratio[0]:.{d}g}" != f"{1 / keep:.{d}g}"), 17)  # shown apart
        raise Wrong(f"the kept values are x times {ratio[0]:.{digits}g}{divided}; inverted dropout divides them by the "
                    f"keep probability {'1 - p = ' if meaning == 'drop' else ''}{keep:g} (x times {1 / keep:.{digits}g})")
    if abs(share - keep) > spread:
        raise Wrong(f"kept {share:.3f} of the values at p = {p:g}, where the keep probability is {keep:g} "
                    f"(+-{spread:.3f}: 5 standard deviations)")
    again, _ = run("train")
    if np.shape(again) == out.shape and not np.allclose(again, out, rtol=1e-12):
        raise Wrong("the same dropout_param['seed'] gave another mask on a second call: seed NumPy with it "
                    "(np.random.seed(dropout_param['seed']), as the starter code does), so that gradient checks "
                    "see one mask")
    dx = back(cache, "train")
    out_test, cache_test = run("test")
    dx_test = back(cache_test, "test")
    through = dout * out / x  # the student's own mask: 0 or 1 / keep
    more = _caches_apart(ctx, (x.copy(), param("train")), (-x, param("train", seed + 1)), dout, {"dx": through})
    return {"out (train mode)": (out, [np.where(kept, x / keep, 0.0)]), "dx (train mode)": (dx, [through]),
            "out (train mode, the same seed again)": (again, [out]), "out (test mode)": (out_test, [x]),
            "dx (test mode)": (dx_test, [dout]), **more}


# --- batch norm -----------------------------------------------------------------------------------------

def _bn_configs(rng, k):
    """Fixed small shapes with the usual eps and momentum, then drawn shapes with other eps and momentum
    (in the functional style, where they come in ``bn_param``: a layer that ignores them fails)."""
    return [dict(n=2, d=3), dict(n=5, d=1), dict(n=8, d=4)] + [
        dict(n=int(rng.integers(2, 9)), d=int(rng.integers(1, 6)), eps=float(rng.choice([1e-5, 1e-3, 1e-2])),
             keep=float(rng.choice([0.9, 0.8, 0.95]))) for _ in range(k)]


def _spatial_bn_configs(rng, k):
    """Images (N, C, H, W): a batch of one (the statistics are still over H and W), one channel, then drawn."""
    return [dict(n=2, c=3, h=4, w=5), dict(n=1, c=2, h=3, w=3), dict(n=4, c=1, h=2, w=2)] + [
        dict(n=int(rng.integers(1, 4)), c=int(rng.integers(1, 5)), h=int(rng.integers(2, 5)), w=int(rng.integers(1, 5)),
             eps=float(rng.choice([1e-5, 1e-3, 1e-2])), keep=float(rng.choice([0.9, 0.8, 0.95]))) for _ in range(k)]


def _batchnorm(cfg, ctx: Context, backward_only: bool = False) -> Quantities:
    """Batch norm of features (N, D), or spatial batch norm of images (N, C, H, W) with one mean and variance
    per channel over N, H and W: the training output and gradients, the running statistics, test mode.
    ``backward_only`` (the alternative backward's row): a misreading of test mode or of the running statistics,
    which the training cache does not carry, is left to the batch norm row to name."""
    rng, n = ctx.rng, cfg["n"]
    shape = (n, cfg["d"]) if "d" in cfg else (n, cfg["c"], cfg["h"], cfg["w"])
    d, axes = shape[1], (0,) if len(shape) == 2 else (0, 2, 3)  # d: features or channels

    def per(v):  # (d,) against x's shape
        return v.reshape(-1, *(1,) * (len(shape) - 2))

    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    rm, rv = rng.standard_normal(d), rng.random(d) + 0.5
    dout = rng.standard_normal(shape)
    functional = ctx.convention["style"] == "functional"
    layer = None if functional else _build(ctx, "class", d)
    eps = cfg.get("eps", 1e-5) if functional else float(ctx.entry.get("eps", 1e-5))  # a module's: its default
    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    out_t = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    (out_t * torch.from_numpy(dout)).sum().backward()
    biased = ctx.entry.get("running_var", "biased") == "biased"
    var = x.var(axis=axes, ddof=0 if biased else 1)
    keep = ctx.entry.get("momentum", "keep") == "keep"
    momentum = (cfg.get("keep", 0.9) if functional else 0.9) if keep else 0.1
    new = (1 - momentum) if keep else momentum  # the weight of this batch's statistics
    ref = {"out": out_t.detach().numpy(), "running_mean": (1 - new) * rm + new * x.mean(axis=axes),
           "running_var": (1 - new) * rv + new * var, "dx": _g(xt), "dgamma": _g(gt), "dbeta": _g(bt)}
    test_x = rng.standard_normal(shape)
    # a course whose own test mode divides by sqrt(running_var), no eps (TUM's I2DL): test_eps = "none"
    test_eps = 0.0 if ctx.entry.get("test_eps", "inside") == "none" else eps
    ref_test = per(gamma) * (test_x - per(ref["running_mean"])) / np.sqrt(per(ref["running_var"]) + test_eps) \
        + per(beta)
    more: Quantities = {}
    if functional:
        param = {"mode": "train", "eps": eps, "momentum": momentum, "running_mean": rm.copy(), "running_var": rv.copy()}
        xs, gs, bs = x.copy(), gamma.copy(), beta.copy()
        out, cache = _forward(ctx.call(ctx.find("forward"), xs, gs, bs, param, what=ctx.entry["forward"]),
                              ctx.entry["forward"], 2)
        all_unchanged(("x", "gamma", "beta"), (x, gamma, beta), (xs, gs, bs))
        stats = {k: _flat_statistic(param.get(k), d) for k in ("running_mean", "running_var")}
        dx, dgamma, dbeta = _pair(ctx.call(ctx.find("backward"), dout.copy(), cache, what=ctx.entry["backward"]),
                                  ctx.entry["backward"], 3)
        dgamma, dbeta = _flat_statistic(dgamma, d), _flat_statistic(dbeta, d)  # summed with keepdims=True
        param["mode"] = "test"
        test = ctx.call(ctx.find("forward"), test_x.copy(), gamma.copy(), beta.copy(), param,
                        what=f"{ctx.entry['forward']} (mode test)")
        test_out = test[0] if isinstance(test, (tuple, list)) else test
        fresh = lambda: {**param, "mode": "train", "running_mean": rm.copy(), "running_var": rv.copy()}  # noqa: E731
        more = _caches_apart(ctx, (x.copy(), gamma.copy(), beta.copy(), fresh()),
                             (rng.standard_normal(shape) * 3 - 1, gamma.copy(), beta.copy(), fresh()), dout,
                             {k: ref[k] for k in ("dx", "dgamma", "dbeta")})
        more = {k: ((_flat_statistic(v, d), r) if k.startswith(("dgamma", "dbeta")) else (v, r))
                for k, (v, r) in more.items()}
    else:
        # a course's own layout of gamma, beta and the statistics (CMU's (1, D): layout = "row"), their names
        shaped = (lambda v: v.reshape(1, -1)) if ctx.entry.get("layout", "flat") == "row" else (lambda v: v)
        for key in ("running_mean", "running_var", "dgamma", "dbeta"):
            ref[key] = shaped(ref[key])
        if hasattr(layer, "momentum"):
            layer.momentum = momentum
        _set_params(ctx, layer, {"weight": shaped(gamma), "bias": shaped(beta)})
        running = _Fields(ctx, layer, ctx.entry.get("running", {"mean": "running_mean", "var": "running_var"}))
        if absent := [running.paths[k] for k in ("mean", "var") if k not in running]:  # None: filled in later
            raise Wrong(f"{type(layer).__name__} has no attribute {' or '.join(absent)} (its running statistics; a "
                        "course's own names go in the spec: running = {mean = \"running_M\", var = \"running_V\"})")
        running["mean"], running["var"] = shaped(rm.copy()), shaped(rv.copy())
        xs = x.copy()
        out = ctx.call(layer.forward, xs, what=f"{ctx.entry['class']}.forward")
        unchanged("x", x, xs)
        stats = {f"running_{k}": running.get(k) for k in ("mean", "var")}
        stats = {k: None if v is None else np.array(v, copy=True) for k, v in stats.items()}
        dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        _params_kept(ctx, layer, {"weight": shaped(gamma), "bias": shaped(beta)})
        grads = _grads(ctx, layer)
        dgamma, dbeta = grads.get("weight"), grads.get("bias")
        if "eval_keyword" in ctx.entry:  # CMU's forward(Z, eval=True)
            test_out = ctx.call(lambda z: layer.forward(z, **{ctx.entry["eval_keyword"]: True}), test_x.copy(),
                                what=f"{ctx.entry['class']}.forward({ctx.entry['eval_keyword']}=True)")
        else:
            if not callable(getattr(layer, "eval", None)):
                raise Wrong(f"{type(layer).__name__} has no eval() method for evaluation mode (a forward that "
                            "takes it as a keyword: eval_keyword = \"eval\" in the spec, for forward(Z, eval=True))")
            ctx.call(layer.eval, what="eval")
            test_out = ctx.call(layer.forward, test_x.copy(), what=f"{ctx.entry['class']}.forward (eval)")
        if hasattr(layer, "train"):  # back to training mode for a second pass: summed or overwritten gradients

            def grads_of(dy):
                g2, b2 = _t(gamma), _t(beta)
                (torch.nn.functional.batch_norm(_t(x, False), None, None, g2, b2, training=True, eps=eps)
                 * torch.from_numpy(dy)).sum().backward()
                return {"weight": shaped(_g(g2)), "bias": shaped(_g(b2))}

            ctx.call(layer.train, what="train")
            more = _second_pass(ctx, layer, x, {"weight": ref["dgamma"], "bias": ref["dbeta"]}, grads_of, dout.shape)
    got = {"out": out, **stats, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    if _close(out, ref["out"]) and not _close(dx, ref["dx"]) and _close(dx, _bn_dx(x, gamma, beta, dout, 1e-300)):
        raise Wrong(f"dx is batch norm's gradient without eps (eps = {eps:g} here): the backward divides by "
                    "sqrt(var) where the forward divides by sqrt(var + eps); use the forward's sqrt(var + eps) in "
                    "the backward too (keep it in the cache)")
    # where the eps is misplaced, named (a relative error of 1e-4 alone does not say so); never in the alternative
    # backward's row, which tells a wrong output only beside wrong gradients. Training's output names it whatever
    # the gradients (its cache moves them too); test mode's, a near miss of its own, only where training's every
    # quantity is right: what is far off there is told first, as the rows' rule is
    if not backward_only:
        _bn_eps_placed(out, x, x.mean(axis=axes), x.var(axis=axes), ref["out"], gamma, beta, eps, per, "out")
        from twinnet.grader import NEAR_MISS

        if all(_error_of(got[k], ref[k]) < NEAR_MISS for k in ref):
            mean, var = np.ravel(ref["running_mean"]), np.ravel(ref["running_var"])
            if test_eps:
                _bn_eps_placed(test_out, test_x, mean, var, ref_test, gamma, beta, eps, per, "out (test mode)")
            elif _exactly_and_apart(test_out, per(gamma) * (test_x - per(mean)) / np.sqrt(per(var) + eps) + per(beta),
                                    ref_test):
                raise Wrong(f"out (test mode) divides by sqrt(var + eps) (eps = {eps:g} here), where this convention's "
                            "test mode divides by sqrt(var), with no eps (test_eps = \"none\" in its spec, as the "
                            "course's own forward does)")
    stat_name = "biased" if biased else "unbiased"
    for key in () if backward_only else ("running_var",):
        other = (1 - new) * rv + new * x.var(axis=axes, ddof=1 if biased else 0)
        other = other if np.shape(ref[key]) == other.shape else other.reshape(np.shape(ref[key]))
        if _follows(got[key], other, ref[key]):
            raise Wrong(f"the running variance is updated with the {'unbiased' if biased else 'biased'} batch "
                        f"variance; this convention uses the {stat_name} one")
    # in a failure, the course's own attribute names beside the grader's (CMU's dLdBW for dgamma)
    own = {} if functional else {**{f"d{g}": ctx.entry.get("grads", {}).get(p) for g, p in (("gamma", "weight"),
                                                                                           ("beta", "bias"))},
                                 **{f"running_{k}": ctx.entry.get("running", {}).get(k) for k in ("mean", "var")}}
    result = {(f"{k} ({own[k]})" if own.get(k) else k): (got[k], [ref[k]]) for k in ref}
    result = {**result, "out (test mode)": (test_out, [ref_test]), **more}
    if not functional and ctx.entry.get("layout", "flat") == "row":
        # gamma's and beta's gradients flat, (D,), beside the layout's (1, D): they update the (1, D) parameters
        # alike (a step's w - lr * dw broadcasts), and the course's own tests never read their shape
        result = {k: (_row_from_flat(v, "row", d) if k.startswith(("dgamma", "dbeta", "dweight", "dbias")) else v, r)
                  for k, (v, r) in result.items()}
    return result


# where a batch norm puts its eps instead of sqrt(var + eps): what it divides by, told as written
_EPS_PLACED = {"sqrt(var) + eps, eps outside the square root": lambda v, eps: np.sqrt(v) + eps,
               "sqrt(var) + sqrt(eps)": lambda v, eps: np.sqrt(v) + np.sqrt(eps),
               "sqrt(var), with no eps": lambda v, eps: np.sqrt(v)}


def _exactly_and_apart(theirs, wrong, right) -> bool:
    """Whether a student's value is ``wrong`` to rounding, where ``wrong`` is told apart from ``right`` (an eps
    misplaced moves an output by about 1e-5 relative: so close a match says which formula it followed)."""
    return theirs is not None and np.shape(theirs) == np.shape(wrong) and \
        np.allclose(theirs, wrong, rtol=1e-11, atol=0) and not np.allclose(wrong, right, rtol=1e-6)


def _bn_eps_placed(theirs, x, mean, var, right, gamma, beta, eps: float, per, name: str) -> None:
    """``Wrong`` naming it where a batch norm's output (``name``) divides by another of ``_EPS_PLACED`` than
    sqrt(var + eps): a relative error of 1e-4 alone does not say that the eps is what is off."""
    for said, denominator in _EPS_PLACED.items():
        wrong = per(gamma) * (x - per(mean)) / per(denominator(var, eps)) + per(beta)
        # to rounding, not to 1e-8: an eps far smaller than the convention's (CMU's 1e-8 under a spec left at
        # 1e-5) is within 1e-8 of none, and is a setting of the spec, not a formula of the student's to mend
        if _exactly_and_apart(theirs, wrong, right):
            raise Wrong(f"{name} divides by {said} (eps = {eps:g} here), where batch norm divides by "
                        "sqrt(var + eps): put eps inside the square root")


def _bn_dx(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dout: np.ndarray, eps: float) -> np.ndarray:
    """Training-mode batch norm's dx (features (N, D) or images (N, C, H, W)) with this ``eps`` (torch refuses
    0: 1e-300 is none beside any variance but 0)."""
    xt = _t(x)
    (torch.nn.functional.batch_norm(xt, None, None, _t(gamma, False), _t(beta, False), training=True, eps=eps)
     * torch.from_numpy(dout)).sum().backward()
    return _g(xt)


def _flat_statistic(value, d: int):
    """A running statistic or a gradient kept as (1, D) or (1, C, 1, 1) (a batch mean or sum taken with
    keepdims=True) as the (D,) one: the course's test-mode forward and its checks broadcast it alike (test mode is
    graded on its own)."""
    return value.reshape(d) if tuple(getattr(value, "shape", ())) in ((1, d), (1, d, 1, 1)) else value


def _batchnorm_alt(cfg, ctx: Context) -> Quantities:
    """CS231n's ``batchnorm_backward_alt``, graded on its gradients alone: the forward it is given is batch
    norm's, graded on that row, so a forward's bug is not charged twice under the backward's name. A forward
    whose output is wrong hands the backward its cache, which may carry the bug: where the gradients are wrong
    too, the failure says so, so that the forward is mended first."""
    forward = ctx.entry.get("forward") or f"{ctx.entry.get('class', 'the layer')}.forward"
    quantities = _batchnorm(cfg, ctx, backward_only=True)
    grads = {k: v for k, v in quantities.items() if k.startswith(("dx", "dgamma", "dbeta"))}

    def wrong(name: str) -> float | None:
        value, refs = quantities[name]
        try:
            err = error(name, value, refs)
        except Wrong:
            return np.inf
        return err if not passes(err) else None

    out_error = wrong("out") if "out" in quantities else None
    if out_error is not None:
        bad = [(k, e) for k in grads if (e := wrong(k)) is not None]
        if bad:
            k, e = bad[0]
            raise Wrong(f"{k}: relative error {e:.2e}, but {forward}'s out is wrong here too "
                        f"(relative error {out_error:.2e}) and this backward is given its cache: mend the "
                        "forward (the batch norm row) first, then grade this again")
    return grads


# --- layer norm and group norm ------------------------------------------------------------------------------

def _ln_configs(rng, k):
    """A batch of one (layer norm's statistics are each sample's own), then drawn shapes and eps."""
    return [dict(n=1, d=4), dict(n=4, d=3), dict(n=6, d=7)] + [
        dict(n=int(rng.integers(1, 7)), d=int(rng.integers(2, 8)), eps=float(rng.choice([1e-5, 1e-3, 1e-2])))
        for _ in range(k)]


def _layernorm(cfg, ctx: Context) -> Quantities:
    """Each row of x (N, D) normalised over its D features, then gamma and beta (D,); ln_param = {"eps": eps}.
    A layer that normalises each feature over the batch, as batch norm does, is told so."""
    rng, n, d, eps = ctx.rng, cfg["n"], cfg["d"], cfg.get("eps", 1e-5)
    x = rng.standard_normal((n, d)) * 2 + 1
    gamma, beta, dout = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal((n, d))
    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    out_t = torch.nn.functional.layer_norm(xt, (d,), gt, bt, eps)
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dx": _g(xt), "dgamma": _g(gt), "dbeta": _g(bt)}
    twin = _twin(nn.LayerNorm(d, eps=eps), x, dout, weight=gamma, bias=beta)
    twin = {"out": twin["out"], "dx": twin["dx"], "dgamma": twin["dweight"], "dbeta": twin["dbias"]}
    result = _normalisation(ctx, (x, gamma, beta), (), {"eps": eps}, dout, [ref, twin],
                            rng.standard_normal((n, d)) * 3 - 1)
    out = result["out"][0]
    over_batch = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta
    if _follows(out, over_batch, ref["out"]):
        raise Wrong("out normalises each feature over the batch (axis 0), as batch norm does; layer norm normalises "
                    "each sample over its D features (axis 1)")
    return result


def _gn_configs(rng, k):
    """Groups of two channels, one group (layer norm over C, H and W), a group per channel (instance norm), a
    batch of one, then drawn shapes, groups and eps."""
    fixed = [dict(n=2, c=4, h=3, w=3, g=2), dict(n=2, c=3, h=2, w=3, g=1), dict(n=2, c=4, h=2, w=2, g=4),
             dict(n=1, c=6, h=3, w=2, g=3)]
    drawn = []
    for _ in range(k):
        g = int(rng.integers(1, 4))
        drawn.append(dict(n=int(rng.integers(1, 4)), c=g * int(rng.integers(1, 4)), h=int(rng.integers(2, 5)),
                          w=int(rng.integers(1, 5)), g=g, eps=float(rng.choice([1e-5, 1e-3, 1e-2]))))
    return fixed + drawn


def _groupnorm(cfg, ctx: Context) -> Quantities:
    """x (N, C, H, W) normalised over each group of C / G channels (and H, W), then gamma and beta (1, C, 1, 1),
    or where the layer fails with those, flat (C,): ``forward(x, gamma, beta, G, gn_param)`` with gn_param =
    {"eps": eps}."""
    rng, c, eps = ctx.rng, cfg["c"], cfg.get("eps", 1e-5)
    shape = (cfg["n"], c, cfg["h"], cfg["w"])
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta, dout = rng.standard_normal((1, c, 1, 1)), rng.standard_normal((1, c, 1, 1)), rng.standard_normal(shape)
    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    out_t = torch.nn.functional.group_norm(xt, cfg["g"], gt.reshape(c), bt.reshape(c), eps)
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dx": _g(xt), "dgamma": _g(gt), "dbeta": _g(bt)}
    other_x = rng.standard_normal(shape) * 3 - 1

    def graded(g, b) -> Quantities:  # dgamma and dbeta in gamma's shape, or flat (C,) wherever they come so
        result = _normalisation(ctx, (x, g, b), (cfg["g"],), {"eps": eps}, dout, [ref], other_x)
        return {k: (np.reshape(v, (1, c, 1, 1)) if k.startswith(("dgamma", "dbeta")) and np.shape(v) == (c,) else v,
                    r) for k, (v, r) in result.items()}

    result, failure, ok = _attempt(lambda: graded(gamma, beta))
    if ok:
        return result
    # gamma and beta flat, (C,), as CS231n's 2018-19 docstring gave them (its notebook: (1, C, 1, 1)); where both
    # layouts fail, the one under which more quantities pass is the layer's own, and its failure is the one told
    flat, _, flat_ok = _attempt(lambda: graded(gamma.reshape(c), beta.reshape(c)))
    if flat_ok or _passing(flat) > _passing(result):
        return flat
    if failure is not None:
        raise failure
    return result


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


def _normalisation(ctx: Context, inputs: tuple, extra: tuple, param: dict, dout, refs: list[dict],
                   other_x) -> Quantities:
    """A functional normalisation, ``forward(x, gamma, beta, *extra, param) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, dgamma, dbeta)``, against ``refs``; then the first cache after a forward
    of ``other_x``."""
    x, gamma, beta = inputs
    forward, backward = ctx.entry["forward"], ctx.entry["backward"]

    def args(first) -> tuple:
        return (first.copy(), gamma.copy(), beta.copy(), *extra, dict(param))

    given = args(x)
    out, cache = _forward(ctx.call(ctx.find("forward"), *given, what=forward), forward, 2)
    all_unchanged(("x", "gamma", "beta"), inputs, given)
    grads = _pair(ctx.call(ctx.find("backward"), dout.copy(), cache, what=backward), backward, 3)
    got = {"out": out, **dict(zip(("dx", "dgamma", "dbeta"), grads))}
    more = _caches_apart(ctx, args(x), args(other_x), dout, {k: refs[0][k] for k in ("dx", "dgamma", "dbeta")})
    return {**{k: (v, [r[k] for r in refs]) for k, v in got.items()}, **more}


# --- losses ----------------------------------------------------------------------------------------------

def _loss_configs(rng, k):
    """Logits of ordinary size, of size 1000 (an unstable softmax overflows), confidently wrong ones
    (``confidently_wrong``: the true class at probability ~1e-22, so a clamped log shows), and a batch whose
    labels leave out the last class (``last_class_absent``: a one-hot width read from the labels shows)."""
    fixed = [dict(n=1, c=3, scale=1.0), dict(n=4, c=5, scale=1000.0), dict(n=2, c=4, scale=1.0, last_class_absent=True)]
    drawn = [dict(n=int(rng.integers(1, 7)), c=int(rng.integers(2, 8)), scale=float(rng.choice([1.0, 5.0])))
             for _ in range(k)]
    # the confidently wrong one last: a clamped log fails it alone, by design, so another bug is the first failure
    return fixed + drawn + [dict(n=3, c=4, scale=1.0, confidently_wrong=True)]


def _logits(cfg, rng):
    x = rng.standard_normal((cfg["n"], cfg["c"])) * cfg["scale"]
    y = rng.integers(0, cfg["c"] - 1 if cfg.get("last_class_absent") else cfg["c"], cfg["n"])
    if cfg.get("confidently_wrong"):
        x[np.arange(cfg["n"]), y] -= 50.0
    return x, y


def _labels_cause(cfg, x, y, grade_on: Callable[[np.ndarray], Quantities]) -> Wrong | None:
    """Where ``cfg``'s labels leave out the last class and grading failed: ``Wrong`` naming the cause if the
    same scores pass with any one label moved to the last class (``grade_on(labels)``, each sample's in turn:
    a bug of another kind may pass where one sample's true class changes, not wherever it does), else None."""
    if not cfg.get("last_class_absent"):
        return None
    for i in range(len(y)):
        moved = y.copy()
        moved[i] = x.shape[1] - 1
        if _probe(lambda: grade_on(moved)) is None:
            return None
    return Wrong(f"wrong where the batch's labels {y.tolist()} leave out the last of the {x.shape[1]} classes, and "
                 f"right once one label is {x.shape[1] - 1}: the number of classes is taken from the labels (y.max() "
                 "+ 1), not from the scores' width (x.shape[1])")


def _with_labels_cause(cfg, x, y, grade_on: Callable[[np.ndarray], Quantities]) -> Quantities:
    """``grade_on(y)``, its failure named by ``_labels_cause`` where that tells it."""
    quantities, failure, ok = _attempt(lambda: grade_on(y))
    if not ok and (cause := _labels_cause(cfg, x, y, grade_on)) is not None:
        raise cause
    if failure is not None:
        raise failure
    return quantities


def _softmax_loss(cfg, ctx: Context) -> Quantities:
    x, y = _logits(cfg, ctx.rng)
    return _with_labels_cause(cfg, x, y, lambda labels: _softmax_loss_on(ctx, x, labels))


def _softmax_loss_on(ctx: Context, x: np.ndarray, y: np.ndarray) -> Quantities:
    xt = _t(x)
    loss_t = torch.nn.functional.cross_entropy(xt, torch.from_numpy(y))
    loss_t.backward()
    twin = nn.CrossEntropyLoss()
    twin_loss = twin.forward(x.copy(), y)
    quantities = _loss_call(ctx, x, y, [float(loss_t.detach()), twin_loss], [_g(xt), twin.backward()])
    quantities = _log_epsilon(quantities, x, y, "mean", of_logits=True)
    if _batch_max_rows(quantities["dx"][0], x, quantities["dx"][1][0]):
        raise Wrong(f"dx is not finite in the rows far below the batch's largest score (the reference is): the "
                    f"softmax {_BATCH_MAX}")
    _underflow(quantities["loss"][0], twin_loss, quantities["dx"][0], quantities["dx"][1][0])
    _overflow(x, quantities["loss"][0], quantities["dx"][0])
    return quantities


def _underflow(loss, loss_ref: float, dx, dx_ref: np.ndarray) -> None:
    """``Wrong`` saying why, where a loss is inf or nan beside a right gradient: the softmax was stable, the log of
    a probability that underflowed to 0 was not (inf; nan where a one-hot target's 0 multiplies it)."""
    try:  # (None would read as nan: it is told as None by the comparison)
        got = np.asarray(loss, dtype=np.float64)
        underflowed = loss is not None and got.size == 1 and bool(np.isposinf(got) or np.isnan(got)) and \
            _close(dx, dx_ref)
    except Exception:  # noqa: BLE001 - not numbers: said by the comparison
        underflowed = False
    if underflowed:
        raise Wrong(f"loss is {_shown(loss)} where the reference is {loss_ref:.4g}, though dx is right: the loss's "
                    "own computation is not stable at logits this far apart (the log of a probability that "
                    "underflowed to 0" + (", and 0 * log(0) is nan where a target of 0 multiplies it" if
                                          np.isnan(got).any() else "")
                    + ", or an exp that overflowed); take log-probabilities as shifted - log(sum(exp(shifted))), "
                    "shifted being each row minus its largest score, not log(softmax)")


def _overflow(x: np.ndarray, loss, dx) -> None:
    """``Wrong`` saying why, where a loss of scores ``x`` too large for float64's exp (709) gives a loss or dx
    that is not finite."""
    if np.abs(x).max() > 709 and (_not_finite(loss) or _not_finite(dx)):
        raise Wrong(f"the loss or dx is not finite on scores of size {np.abs(x).max():.0f} (the reference's are): "
                    "exp overflows (or underflows to 0 / 0) there; subtract each row's largest score before exp "
                    "(the softmax is unchanged by the shift)")


def _not_finite(value, nan_only: bool = False) -> bool:
    """Whether a student's value is numbers (not None, nor a tensor that needs its gradient) of which one is not
    finite (nan, where ``nan_only``); anything else is told by the comparison."""
    try:
        a = np.asarray(value, dtype=np.float64) if value is not None else None
    except Exception:  # noqa: BLE001 - not numbers
        return False
    return a is not None and bool(np.isnan(a).any() if nan_only else not np.all(np.isfinite(a)))


def _loss_call(ctx: Context, x, y, loss_refs: list, dx_refs: list) -> Quantities:
    xs, ys = x.copy(), y.copy()
    loss, dx = _pair(ctx.call(ctx.find("function"), xs, ys, what=ctx.entry["function"]), ctx.entry["function"], 2)
    unchanged("x", x, xs)
    unchanged("y", y, ys)
    return {"loss": (loss, loss_refs), "dx": (dx, dx_refs)}


def _svm_loss(cfg, ctx: Context) -> Quantities:
    x, y = _logits(cfg, ctx.rng)
    return _with_labels_cause(cfg, x, y, lambda labels: _svm_loss_on(ctx, x, labels))


def _svm_loss_on(ctx: Context, x: np.ndarray, y: np.ndarray) -> Quantities:
    xt = _t(x)
    correct = xt[torch.arange(len(y)), torch.from_numpy(y)][:, None]
    margins = torch.clamp(xt - correct + 1.0, min=0.0)
    margins = margins * (1 - torch.nn.functional.one_hot(torch.from_numpy(y), x.shape[1]))  # j != y_i
    loss_t = margins.sum() / len(y)  # CS231n's: summed over classes, averaged over the batch
    loss_t.backward()
    twin, c = nn.MultiMarginLoss(), x.shape[1]  # torch's hinge is also averaged over the classes
    twin_loss = twin.forward(x.copy(), y) * c
    return _loss_call(ctx, x, y, [float(loss_t.detach()), twin_loss], [_g(xt), twin.backward() * c])


# --- recurrent --------------------------------------------------------------------------------------------

def _rnn_configs(rng, k):
    fixed = [dict(n=1, t=1, d=3, h=4), dict(n=2, t=4, d=3, h=5), dict(n=3, t=6, d=2, h=2)]
    return fixed + [dict(n=int(rng.integers(1, 4)), t=int(rng.integers(1, 7)), d=int(rng.integers(1, 5)),
                         h=int(rng.integers(1, 6))) for _ in range(k)]


def _rnn_tensors(cfg, rng, steps: int | None):
    shape = (cfg["n"], cfg["d"]) if steps is None else (cfg["n"], steps, cfg["d"])
    return (rng.standard_normal(shape), rng.standard_normal((cfg["n"], cfg["h"])),
            rng.standard_normal((cfg["d"], cfg["h"])) / 2, rng.standard_normal((cfg["h"], cfg["h"])) / 2,
            rng.standard_normal(cfg["h"]))


def _rnn_step(cfg, ctx: Context) -> Quantities:
    arrays = _rnn_tensors(cfg, ctx.rng, None)
    ts = [_t(a) for a in arrays]
    out_t = torch.tanh(ts[0] @ ts[2] + ts[1] @ ts[3] + ts[4])
    dout = ctx.rng.standard_normal(tuple(out_t.shape))
    (out_t * torch.from_numpy(dout)).sum().backward()
    return _rnn_call(ctx, arrays, dout, out_t.detach().numpy(), [_g(t) for t in ts],
                     ("dx", "dprev_h", "dWx", "dWh", "db"))


def _rnn(cfg, ctx: Context) -> Quantities:
    arrays = _rnn_tensors(cfg, ctx.rng, cfg["t"])
    ts = [_t(a) for a in arrays]
    h, states = ts[1], []
    for step in range(cfg["t"]):
        h = torch.tanh(ts[0][:, step] @ ts[2] + h @ ts[3] + ts[4])
        states.append(h)
    out_t = torch.stack(states, dim=1)  # (N, T, H)
    dout = ctx.rng.standard_normal(tuple(out_t.shape))  # every step's hidden state feeds the loss
    (out_t * torch.from_numpy(dout)).sum().backward()
    return _rnn_call(ctx, arrays, dout, out_t.detach().numpy(), [_g(t) for t in ts], ("dx", "dh0", "dWx", "dWh", "db"))


def _rnn_call(ctx: Context, arrays, dout, out_ref, grads_ref, names, check_out=None) -> Quantities:
    """Call the student's forward and backward; ``check_out(out)``, where given, may raise ``Wrong`` naming
    what the forward's output follows before its backward runs."""
    copies = [a.copy() for a in arrays]
    out, cache = _forward(ctx.call(ctx.find("forward"), *copies, what=ctx.entry["forward"]), ctx.entry["forward"], 2)
    all_unchanged(("x", "h0", "Wx", "Wh", "b"), arrays, copies)
    if check_out is not None:
        check_out(out)
    grads = _pair(ctx.call(ctx.find("backward"), dout.copy(), cache, what=ctx.entry["backward"]),
                  ctx.entry["backward"], 5)
    return {"out": (out, [out_ref]), **{n: (g, [r]) for n, g, r in zip(names, grads, grads_ref)}}


def _lstm_tensors(cfg, rng, steps: int | None):
    """x, h0 (or prev_h), Wx (D, 4H), Wh (H, 4H), b (4H,), and for one step prev_c."""
    n, d, h = cfg["n"], cfg["d"], cfg["h"]
    x = rng.standard_normal((n, d) if steps is None else (n, steps, d))
    return (x, rng.standard_normal((n, h)), rng.standard_normal((d, 4 * h)) / 2,
            rng.standard_normal((h, 4 * h)) / 2, rng.standard_normal(4 * h) / 2, rng.standard_normal((n, h)))


def _lstm_cell(x, h, c, wx, wh, b, order: str):
    """One LSTM step with the gates' blocks of the 4H columns in ``order`` (CS231n's "ifog", torch's "ifgo")."""
    a = x @ wx + h @ wh + b
    gates = dict(zip(order, a.chunk(4, dim=1)))
    c = torch.sigmoid(gates["f"]) * c + torch.sigmoid(gates["i"]) * torch.tanh(gates["g"])
    return torch.sigmoid(gates["o"]) * torch.tanh(c), c


def _other_gate_order(theirs, order: str, compute, *, c0=None) -> None:
    """Raise ``Wrong`` naming the gate order ``theirs`` (a forward's output) follows, where it is not ``order``
    and another order of the 4H columns' blocks gives it; ``compute(order)`` is the reference in that order
    (``compute(order, c0)`` with ``c0``, a sequence's: also named where it starts the cell state there, not at 0)."""
    from itertools import permutations

    try:
        theirs = np.asarray(theirs, dtype=np.float64)
    except (TypeError, ValueError):
        return
    def close(a, b):
        return a.shape == b.shape and bool(np.all(np.abs(a - b) <= 1e-7 * max(float(np.abs(b).max()), 1e-3)))
    if close(theirs, compute(order)):
        return
    for other in ("".join(p) for p in permutations("ifgo")):
        if other != order and close(theirs, compute(other)):
            raise Wrong(f"the gates' blocks of the 4H columns are in the order {other}, where this convention's is "
                        f"{order} (gates = \"{other}\" in a spec, if that is the course's)")
    if c0 is not None and close(theirs, compute(order, c0)):
        raise Wrong("the cell state starts as h0; the course's lstm_forward starts it at zero (c0 = 0, only the "
                    "hidden state starts as h0)")


def _lstm_step(cfg, ctx: Context) -> Quantities:
    x, h, wx, wh, b, c = _lstm_tensors(cfg, ctx.rng, None)
    arrays = (x, h, c, wx, wh, b)  # the call's order: x, prev_h, prev_c, Wx, Wh, b
    ts = [_t(a) for a in arrays]
    next_h, next_c = _lstm_cell(ts[0], ts[1], ts[2], ts[3], ts[4], ts[5], ctx.entry.get("gates", "ifog"))
    dh, dc = ctx.rng.standard_normal(tuple(next_h.shape)), ctx.rng.standard_normal(tuple(next_c.shape))
    ((next_h * torch.from_numpy(dh)).sum() + (next_c * torch.from_numpy(dc)).sum()).backward()
    copies = [a.copy() for a in arrays]
    out = _forward(ctx.call(ctx.find("forward"), *copies, what=ctx.entry["forward"]), ctx.entry["forward"], 3)
    all_unchanged(("x", "prev_h", "prev_c", "Wx", "Wh", "b"), arrays, copies)
    with torch.no_grad():
        _other_gate_order(out[0], ctx.entry.get("gates", "ifog"),
                          lambda order: _lstm_cell(*ts, order)[0].numpy())
    grads = _pair(ctx.call(ctx.find("backward"), dh.copy(), dc.copy(), out[2], what=ctx.entry["backward"]),
                  ctx.entry["backward"], 6)
    names = ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db")
    return {"next_h": (out[0], [next_h.detach().numpy()]), "next_c": (out[1], [next_c.detach().numpy()]),
            **{n: (g, [_g(t)]) for n, g, t in zip(names, grads, ts)}}


def _lstm_states(ts, order: str, c0=None):
    """Every step's hidden state (N, T, H) of an LSTM over x (N, T, D) from h0, with c(0) = 0 as the course's
    lstm_forward starts (or ``c0``)."""
    h, c, states = ts[1], torch.zeros_like(ts[1]) if c0 is None else c0, []
    for step in range(ts[0].shape[1]):
        h, c = _lstm_cell(ts[0][:, step], h, c, ts[2], ts[3], ts[4], order)
        states.append(h)
    return torch.stack(states, dim=1)


def _lstm(cfg, ctx: Context) -> Quantities:
    x, h0, wx, wh, b, _ = _lstm_tensors(cfg, ctx.rng, cfg["t"])
    arrays = (x, h0, wx, wh, b)
    ts = [_t(a) for a in arrays]
    order = ctx.entry.get("gates", "ifog")
    out_t = _lstm_states(ts, order)
    dout = ctx.rng.standard_normal(tuple(out_t.shape))
    (out_t * torch.from_numpy(dout)).sum().backward()

    def gate_order(out):
        with torch.no_grad():
            _other_gate_order(out, order, lambda other, c0=None: _lstm_states(ts, other, c0).numpy(), c0=ts[1])
    return _rnn_call(ctx, arrays, dout, out_t.detach().numpy(), [_g(t) for t in ts], ("dx", "dh0", "dWx", "dWh", "db"),
                     gate_order)


# --- word embedding ----------------------------------------------------------------------------------------

def _embedding_configs(rng, k):
    """Words that occur once first, then words that repeat (a word twice in a sentence: its gradients add up)."""
    fixed = [dict(n=2, t=3, v=8, d=3, repeats=False), dict(n=1, t=1, v=2, d=4, repeats=False),
             dict(n=2, t=4, v=3, d=2, repeats=True)]
    return fixed + [dict(n=int(rng.integers(1, 5)), t=int(rng.integers(2, 7)), v=int(rng.integers(2, 9)),
                         d=int(rng.integers(1, 6)), repeats=True) for _ in range(k)]


def _word_embedding(cfg, ctx: Context) -> Quantities:
    """out[n, t] = W[x[n, t]] for integer x (N, T) and W (V, D); backward -> dW, each word's gradients summed
    over every place it occurs. ``dW[x] += dout``, which counts a repeated word once, is told so."""
    rng, n, t = ctx.rng, cfg["n"], cfg["t"]

    def words() -> np.ndarray:
        if not cfg["repeats"]:
            return rng.permutation(cfg["v"])[: n * t].reshape(n, t)
        x = rng.integers(0, cfg["v"], (n, t))
        x.flat[-1] = x.flat[0]  # one word twice at least
        return x

    x, w = words(), rng.standard_normal((cfg["v"], cfg["d"]))
    dout = rng.standard_normal((n, t, cfg["d"]))
    wt = _t(w)
    out_t = torch.nn.functional.embedding(torch.from_numpy(x), wt)
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dW": _g(wt)}
    forward, backward = ctx.entry["forward"], ctx.entry["backward"]
    xs, ws = x.copy(), w.copy()
    out, cache = _forward(ctx.call(ctx.find("forward"), xs, ws, what=forward), forward, 2)
    all_unchanged(("x", "W"), (x, w), (xs, ws))
    dw = _single(ctx.call(ctx.find("backward"), dout.copy(), cache, what=backward))
    once = np.zeros_like(w)
    once[x] += dout  # NumPy buffers an indexed +=: each word's row is written once, whatever its count
    if _follows(dw, once, ref["dW"]):
        raise Wrong("dW counts a word that occurs more than once in x once: dW[x] += dout writes each index once "
                    "(NumPy buffers an indexed +=); np.add.at(dW, x, dout) adds every occurrence")
    more = _caches_apart(ctx, (x.copy(), w.copy()), (words(), w.copy()), dout, {"dW": ref["dW"]})
    return {"out": (out, [ref["out"]]), "dW": (dw, [ref["dW"]]), **more}


# --- optimisers ---------------------------------------------------------------------------------------------

def _optim_configs(rng, k):
    """The course's default hyperparameters first, then drawn ones (an update that ignores ``config`` and
    keeps the defaults fails those)."""
    return [dict(shape=(3, 4), steps=5, seed=int(rng.integers(2**31)), drawn=i > 0) for i in range(max(2, k))]


def _drawn_hyper(name: str, rng) -> dict:
    """Hyperparameters other than the defaults, for ``_optimizer(name)``."""
    lr = float(rng.choice([0.003, 0.03, 0.2]))
    return {"sgd_momentum": {"learning_rate": lr, "momentum": float(rng.choice([0.5, 0.8, 0.95]))},
            "rmsprop": {"learning_rate": lr, "decay_rate": float(rng.choice([0.8, 0.95, 0.99])),
                        "epsilon": float(rng.choice([1e-6, 1e-4]))},
            "adam": {"learning_rate": lr, "beta1": float(rng.choice([0.8, 0.95])),
                     "beta2": float(rng.choice([0.99, 0.9999])), "epsilon": float(rng.choice([1e-6, 1e-4]))}}[name]


def _optimizer(name: str):
    """A check of the CS231n optimiser ``name`` against ``torch.optim``, step by step."""
    hyper = {"sgd_momentum": ({"learning_rate": 0.1, "momentum": 0.9},
                              lambda p, c: torch.optim.SGD([p], lr=c["learning_rate"], momentum=c["momentum"])),
             "rmsprop": ({"learning_rate": 0.01, "decay_rate": 0.9, "epsilon": 1e-8},
                         lambda p, c: torch.optim.RMSprop([p], lr=c["learning_rate"], alpha=c["decay_rate"],
                                                          eps=c["epsilon"])),
             "adam": ({"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
                      lambda p, c: torch.optim.Adam([p], lr=c["learning_rate"], betas=(c["beta1"], c["beta2"]),
                                                    eps=c["epsilon"]))}
    config0, make = hyper[name]

    def check(cfg, ctx: Context) -> Quantities:
        rng = np.random.default_rng(cfg["seed"])
        w = rng.standard_normal(cfg["shape"])
        p = torch.tensor(w.copy(), requires_grad=True)
        hyper_now = _drawn_hyper(name, rng) if cfg.get("drawn") else config0
        opt, config, mine, result = make(p, hyper_now), dict(hyper_now), w.copy(), {}
        if name == "adam" and ctx.entry.get("first_t", 1) == 2:  # CS231n's 2017 starter: t counted from 2
            opt.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(p),
                            "exp_avg_sq": torch.zeros_like(p)}
        for step in range(1, cfg["steps"] + 1):
            dw = rng.standard_normal(cfg["shape"])
            p.grad = torch.from_numpy(dw.copy())
            opt.step()
            dws = dw.copy()
            out = _pair(ctx.call(ctx.find("function"), mine, dws, config, what=ctx.entry["function"]),
                        ctx.entry["function"], 2)
            unchanged("dw", dw, dws)
            mine, config = out
            result[f"w after step {step}"] = (mine, [p.detach().numpy().copy()])
            if not isinstance(config, dict):
                raise Wrong(f"{ctx.entry['function']} returned a {type(config).__name__} as its config, not a dict")
            mine = np.array(mine, dtype=np.float64, copy=True) if mine is not None else mine
            if mine is None:
                break
            if step == 1:
                _first_step(name, mine, w, dw, hyper_now, p.detach().numpy(), ctx.entry.get("first_t", 1))
        return result

    return check


def _first_step(name: str, mine, w, dw, hyper: dict, ref, first_t: int = 1) -> None:
    """``Wrong`` naming it where the student's first step of optimiser ``name`` (from a zero velocity, cache or
    moments) is exactly that of a known misreading of the update, and not the reference's."""
    if np.shape(mine) != np.shape(w) or not np.all(np.isfinite(mine)):
        return
    for misread, message in _first_step_misreadings(name, w, dw, hyper, first_t):
        if np.allclose(mine, misread, rtol=1e-9, atol=0) and not np.allclose(mine, ref, rtol=1e-6, atol=0):
            raise Wrong(message)


def _first_step_misreadings(name: str, w, dw, hyper: dict, first_t: int = 1) -> list[tuple[np.ndarray, str]]:
    """The first steps of an optimiser's known misreadings, each with what to tell: Adam's t = 2 (CS231n's 2017
    starter code, where torch counts the first step as t = 1; t = 1 where the convention's ``first_t`` is 2) and no
    bias correction; RMSprop's epsilon inside the square root and its decay rate weighing the new squared gradient;
    Nesterov's momentum for the plain one."""
    lr = hyper["learning_rate"]
    if name == "sgd_momentum":
        mu = hyper["momentum"]
        return [(w - (1 + mu) * lr * dw, "the update is Nesterov's momentum (w - momentum * v_prev + (1 + momentum) "
                 "* v): this convention's sgd_momentum is the plain one, v = momentum * v - learning_rate * dw, "
                 "then w + v, as torch's SGD with momentum")]
    if name == "rmsprop":
        decay, eps = hyper["decay_rate"], hyper["epsilon"]
        return [(w - lr * dw / np.sqrt((1 - decay) * dw**2 + eps), "epsilon is inside the square root, dw / "
                 "sqrt(cache + epsilon); RMSprop (CS231n's and torch's) adds it outside, dw / (sqrt(cache) + "
                 "epsilon)"),
                (w - lr * dw / (np.sqrt(decay * dw**2) + eps), "the cache keeps (1 - decay_rate) of itself and adds "
                 "decay_rate times the new squared gradient; decay_rate is the old cache's weight: cache = "
                 "decay_rate * cache + (1 - decay_rate) * dw**2")]
    if name == "adam" and first_t == 2:  # the paper's count, where this course's starter's is t = 2
        return [(w - lr * dw / (np.abs(dw) + hyper["epsilon"]), "the first step's bias correction uses t = 1 (as "
                 "the paper and torch), and this convention counts as its starter code does, config['t'] from 1, "
                 "incremented before use, so that the first step is t = 2 (first_t = 2 in its spec)")]
    if name == "adam":
        b1, b2, eps = hyper["beta1"], hyper["beta2"], hyper["epsilon"]
        m_hat, v_hat = (1 - b1) * dw / (1 - b1**2), (1 - b2) * dw**2 / (1 - b2**2)
        return [(w - lr * m_hat / (np.sqrt(v_hat) + eps), "the first step's bias correction uses t = 2 "
                 "(config['t'] starts at 1 and is incremented before use, as CS231n's 2017 starter code had it); "
                 "the first step is t = 1, as in the original paper and torch: start t at 0, or increment it after "
                 "use (a course whose starter counts so: first_t = 2 in a spec)"),
                (w - lr * (1 - b1) * dw / (np.sqrt((1 - b2) * dw**2) + eps), "the first step has no bias "
                 "correction: increment config['t'] at each step and divide the moments by (1 - beta1**t) and (1 - "
                 "beta2**t) before the update, as the original paper and torch do")]
    return []


# --- module-style losses and whole models -------------------------------------------------------------------

def _softmax_ce(cfg, ctx: Context) -> Quantities:
    """The loss (and softmax) on the convention's targets; where that fails but the targets of the other
    layout (one-hot for labels, or the reverse) pass, ``Wrong`` says so rather than a bare error."""
    x, y = _logits(cfg, ctx.rng)
    near_one = False  # the labels' probabilities all ~1: the loss ~0, where a clamp at 1 - eps shows as eps
    if ctx.entry.get("input", "logits") == "probabilities" and not cfg.get("confidently_wrong"):
        # no label at a probability below 1e-2, so that a loss of probabilities that clamps its log (log(p +
        # 1e-10)) is graded alike at every seed (the clamp shows in the confidently wrong configuration, by
        # design); on huge logits, where another label's probability may underflow to 0 and then has no finite
        # log whatever the student wrote, each sample's label is its most probable class: the loss (about 0) is
        # called, and must be a finite number, and its gradient is graded
        if cfg["scale"] >= 1000:
            y, near_one = x.argmax(axis=1), True
        else:
            p = torch.softmax(torch.from_numpy(x), dim=1).numpy()
            classes = p.shape[1] - 1 if cfg.get("last_class_absent") else p.shape[1]
            for i in np.flatnonzero(p[np.arange(len(y)), y] < 1e-2):
                y[i] = ctx.rng.choice(np.flatnonzero(p[i, :classes] >= 1e-2)) if p[i, :classes].max() >= 1e-2 \
                    else p[i, :classes].argmax()
    layout = ctx.entry.get("target", "labels")
    quantities, failure, ok = _attempt(lambda: _softmax_ce_on(ctx, x, y, layout, near_one))
    if ok:
        return quantities
    other = "labels" if layout == "one_hot" else "one_hot"
    # (a loss whose epsilon caps it there is left to fail by its relative error: what is told is the layout)
    def probe_other() -> Quantities:  # a configuration n/a on the other targets tells nothing of them
        try:
            return _softmax_ce_on(ctx, x, y, other, near_one, tell_cap=False)
        except NotApplicable:
            return {}

    probe, probe_failure, probe_ok = _attempt(probe_other)
    # only a verdict on the loss itself says which targets it takes; or the student's code raised on the
    # convention's targets and ran on the others, some of its quantities right (a loss that also overflows there)
    raised = isinstance(failure, StudentError) and probe_failure is None and _passing(probe) > 0
    if (probe_ok and "loss" in probe) or raised:
        said = {"labels": "integer labels", "one_hot": "one-hot targets"}
        raise Wrong(f"{ctx.entry['loss']} takes {said[other]}, and this convention gives {said[layout]} (a course "
                    f"that uses {said[other]}: target = \"{other}\" in a spec)")
    # a width read from the labels is the student's own only where the convention gives labels, not one-hot rows
    if layout == "labels" and (cause := _labels_cause(cfg, x, y, lambda labels: _softmax_ce_on(ctx, x, labels, layout,
                                                                                              near_one))) is not None:
        raise cause
    if failure is not None:
        raise failure
    return quantities


def _softmax_ce_on(ctx: Context, x: np.ndarray, y: np.ndarray, layout: str, near_one: bool, *,
                   tell_cap: bool = True) -> Quantities:
    """The loss graded on ``layout``'s targets; ``near_one``: the labels are the most probable classes of huge
    logits, so the loss (about 0) must only be finite; ``tell_cap``: as ``_log_epsilon``'s."""
    xt = _t(x)
    reduction = ctx.entry.get("reduction", "mean")
    loss_t = torch.nn.functional.cross_entropy(xt, torch.from_numpy(y), reduction=reduction)
    (loss_t.sum() if reduction == "none" else loss_t).backward()  # "none": each sample's loss, d(their sum)/dx
    scale = grad_scale(ctx.entry, len(y))
    dx_ref = _g(xt) * scale
    target = np.eye(x.shape[1])[y] if layout == "one_hot" else y.copy()
    xs = x.copy()
    loss_fn = _build(ctx, "loss")
    shown: Quantities = {}  # the softmax's own output, where the student's code has one
    if ctx.entry.get("input", "logits") == "logits":
        loss, dx, _ = _loss_calls(ctx, ctx.entry, loss_fn, xs, target)
    else:
        softmax = _build(ctx, "softmax")
        probs = ctx.call(softmax.forward, xs, what=f"{ctx.entry['softmax']}.forward")
        if probs is None:
            raise Wrong(f"{ctx.entry['softmax']}.forward returned None")
        expected = torch.softmax(torch.from_numpy(x), dim=1).numpy()
        if _batch_max_rows(probs, x, expected):
            raise Wrong(f"{ctx.entry['softmax']}.forward's probabilities are not finite (the reference's are): it "
                        f"{_BATCH_MAX}")
        # with one-hot targets the courses' loss of probabilities, sum(t * log p), reads the log of every class's,
        # and where one underflows to 0 that formula is nan (0 * log 0), however carefully written, so only the
        # softmax is graded there (it must still be right and finite); labels were chosen above to be safe. The
        # loss is still called there: one that raises (a stub, or math.log of 0) makes the configuration n/a, so
        # that a right softmax beside an unfinished loss earns nothing for the loss
        read = expected if layout == "one_hot" else expected[np.arange(len(y)), y]
        if read.min() < 1e-250:
            unchanged("x", x, xs)
            if _close(probs, expected):
                try:
                    _loss_calls(ctx, ctx.entry, loss_fn, np.array(probs, copy=True), target)
                except StudentError as e:
                    if e.timed_out:
                        raise
                    raise NotApplicable(f"probabilities of exactly 0, where {e}") from None
            return {"probabilities": (probs, [expected])}
        p_copy = np.array(probs, copy=True)
        shown = {"probabilities": (p_copy, [expected])}
        loss, dp, name = _loss_calls(ctx, ctx.entry, loss_fn, probs, target)
        unchanged("probabilities", p_copy, probs)
        if dp is None:
            raise Wrong(f"{ctx.entry['loss']}.backward returned None")
        if _shape(dp) not in (None, np.shape(probs)):  # told as the loss's, before the softmax's backward trips on it
            raise Wrong(f"{ctx.entry['loss']}.{name} returned shape {_shape(dp)}, where the gradient in the "
                        f"probabilities it was given has their shape, {np.shape(probs)}")
        if _close(p_copy, expected) and _zero_over_zero(dp, p_copy, y):  # the softmax right: the loss's 0 / 0
            of_mean = (1 / len(y) if reduction == "mean" else 1.0) * scale  # the label's gradient: -of_mean / p
            per_sample = "p[np.arange(N), y]" if np.isclose(of_mean, 1) else "(N * p[np.arange(N), y])"
            raise Wrong(f"{ctx.entry['loss']}.{name}'s gradient is not finite where a class that is not the label has "
                        f"probability exactly 0 (logits of size {np.abs(x).max():.0f}; the reference's is finite): "
                        "its target of 0 divided by that 0; divide at the labels only, dx[np.arange(N), y] = -1 / "
                        f"{per_sample}, the other entries 0" + (
                            f"; its loss is {_shown(loss)} there too (0 * log(0)): take the log of the labels' own "
                            "probabilities, p[np.arange(N), y], only" if _not_finite(loss, nan_only=True) else ""))
        dx = ctx.call(softmax.backward, np.array(dp, copy=True), what=f"{ctx.entry['softmax']}.backward")
    unchanged("x", x, xs)
    if near_one:
        try:
            finite = loss is not None and bool(np.all(np.isfinite(np.asarray(loss, dtype=np.float64))))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            if shown and not _close(shown["probabilities"][0], expected):  # the softmax's failure is the news
                return {**shown, "dx": (dx, [dx_ref])}
            zeros = (layout != "one_hot" and bool(shown) and loss is not None and expected.min() == 0
                     and "nan" in _shown(loss))
            raise Wrong(f"the loss is {_shown(loss)}, not a finite number, on logits of size {np.abs(x).max():.0f} "
                        "with every label its sample's most probable class (the loss there is about 0)"
                        + ("; the other classes' probabilities are exactly 0 there, and 0 * log(0) is nan: a loss "
                           "that multiplies a one-hot mask by log(p) reads them, so read the labels' own "
                           "probabilities, p[np.arange(N), y], before the log" if zeros else ""))
        return {**shown, "dx": (dx, [dx_ref])}
    loss_ref = loss_t.detach().numpy() if reduction == "none" else float(loss_t.detach())
    # a loss of logits that overflowed, or one whose softmax was stable and its log was not (inf, or nan; each
    # sample's loss kept, only nan: its inf is told by the comparison, as the overflow's advice would not fit)
    if not shown and (_not_finite(loss, nan_only=reduction == "none") or _not_finite(dx)):
        if reduction != "none":
            _underflow(loss, loss_ref, dx, dx_ref)
        _overflow(x, loss, dx)  # (an inf loss beside a finite dx, where not told here: told below)
    if reduction == "mean" and scale == 1 and _sum_gradient(loss, loss_ref, dx, dx_ref, len(y)):
        raise Wrong(f"dx is the gradient of the losses' sum, {len(y)} (N) times the mean's, where the loss is their "
                    "mean: divide it by N; for a course whose loss's backward gives the sum's gradient by design (CMU "
                    "11-785's 2022 handout, whose Linear divides by N): grad = \"sum\" in a spec")
    return _log_epsilon({**shown, "loss": (loss, [loss_ref]), "dx": (dx, [dx_ref])}, x, y, reduction,
                        of_logits=not shown, tell_cap=tell_cap, scale=scale)


def _sum_gradient(loss, loss_ref: float, dx, dx_ref: np.ndarray, n: int) -> bool:
    """Whether a loss that returned the mean (a number, or an array of one) has the sum's gradient, ``n`` times the
    mean's."""
    try:
        return n > 1 and np.size(loss) == 1 and _close(np.ravel(np.asarray(loss, dtype=np.float64))[0], loss_ref) \
            and _close(dx, dx_ref * n)
    except Exception:  # noqa: BLE001 - not numbers (a tensor that needs grad): the comparison tells it
        return False


def grad_scale(entry: dict, n: int) -> float:
    """What a loss's gradient is times its reduction's, for a batch of ``n``: ``grad`` (the reduction the
    backward's gradient is of) where it differs from ``reduction`` (CMU 11-785's 2022 loss: the mean, and the
    sum's gradient, n times the mean's); "none" gives each sample's loss, and the gradient of their sum."""
    of = {"none": "sum"}.get(entry.get("reduction", "mean"), entry.get("reduction", "mean"))
    grad = entry.get("grad", of)
    return 1.0 if grad == of else float(n) if grad == "sum" else 1.0 / n


def _loss_calls(ctx: Context, entry: dict, loss_fn, inputs, target) -> tuple[Any, Any, str]:
    """The student's loss ``loss_fn`` (the convention's ``entry["loss"]``) called as its convention says:
    forward(inputs, target), then its backward, given the forward's inputs again or nothing (it kept them); the
    loss, the gradient, and the name of the backward method called."""
    loss = entry["loss"]
    takes = entry.get("backward", "nothing" if ctx.convention.get("params") == "attributes" else "inputs")
    value = ctx.call(loss_fn.forward, inputs, target, what=f"{loss}.forward")
    numbers = [i for i, v in enumerate(value) if _one_number(v)] if isinstance(value, (tuple, list)) else []
    if (item := entry.get("loss_item")) is not None:  # a forward returning more than the loss: CS 7643's (probs, loss)
        if not isinstance(value, (tuple, list)) or len(value) <= item:
            raise Wrong(f"{loss}.forward returned {type(value).__name__}"
                        f"{f' of {len(value)}' if isinstance(value, (tuple, list)) else ''}; loss_item = {item} "
                        f"expects a tuple whose item {item} is the loss" + (
                            "; a forward that returns the loss alone needs no loss_item"
                            if not isinstance(value, (tuple, list)) else ""))
        if entry.get("reduction", "mean") != "none" and item not in numbers and len(numbers) == 1:
            raise Wrong(f"{loss}.forward's item {item} (loss_item = {item}) is not a number, and its item "
                        f"{numbers[0]} is: the loss is there (loss_item = {numbers[0]})")
        value = value[item]
    elif entry.get("reduction", "mean") != "none" and len(numbers) == 1 and len(value) > 1:  # (value: a tuple)
        raise Wrong(f"{loss}.forward returned a tuple of {len(value)}, its item {numbers[0]} a number: a course whose "
                    f"loss's forward returns the loss beside other values (CS 7643's (probs, loss)): loss_item = "
                    f"{numbers[0]} in a spec's table for this layer; else return the loss alone")
    back, name = _backward(loss_fn) if takes == "nothing" else (loss_fn.backward, "backward")
    try:
        grad = ctx.call(back, *(() if takes == "nothing" else (inputs, target)), what=f"{loss}.{name}")
    except StudentError as e:  # a backward(self) where the convention passes the inputs again: the spec's setting
        if takes == "nothing" or e.timed_out or "TypeError" not in str(e) or _positional(back) != 0:
            raise
        raise Wrong(f"{e}: {loss}.{name}() takes no arguments (it keeps what forward was given), and this "
                    "convention gives it the forward's inputs again; for a course whose loss keeps them, write a spec "
                    "with backward = \"nothing\" for this layer") from None
    return value, grad, name


def _one_number(value) -> bool:
    """Whether ``value`` is one number, or an array of one (not text, None, an object or a ragged list)."""
    try:
        array = np.asarray(value)
        return array.size == 1 and array.dtype.kind in "iuf"
    except Exception:  # noqa: BLE001 - whatever the student returned: not a number
        return False


# what courses add inside a loss's log (-log(p + 1e-7)) so that it never reads log(0); float64's machine epsilon
LOG_EPSILONS = tuple(10.0 ** -k for k in range(4, 17)) + (float(np.finfo(np.float64).eps), 1e-20)


def _log_epsilon(quantities: Quantities, x: np.ndarray, y: np.ndarray, reduction: str, *, of_logits: bool,
                 tell_cap: bool = True, scale: float = 1.0) -> Quantities:
    """A loss that adds a small epsilon inside its log, -log(p + eps) (one of ``LOG_EPSILONS``), the guard courses
    teach: its loss, and its dx where the epsilon reaches it, graded against the cross-entropy with that epsilon,
    so that the guard passes alike at every seed, wherever every true class is far more probable than the epsilon
    (``GUARD_MARGIN`` times: each sample's loss then moves by at most about 1 / GUARD_MARGIN). Where one is not
    (the configuration whose true class is at ~1e-22 always; for a loss of logits, logits of size 1000 too), the
    epsilon changes the loss itself: ``Wrong`` says so (unless not ``tell_cap``: the loss then fails by its
    relative error). A quantity is given the shifted reference only where it fails the exact one and matches the
    shifted one, so nothing else changes."""
    failing = [k for k in ("loss", "dx") if k in quantities and not _passing({k: quantities[k]})]
    if not failing:
        return quantities
    for eps in LOG_EPSILONS:
        loss_ref, dx_ref, p_true = _cross_entropy_with(x, y, reduction, eps)
        dx_ref = dx_ref * scale  # ``grad_scale``'s
        shifted = {"loss": (quantities["loss"][0], [loss_ref]), "dx": (quantities["dx"][0], [dx_ref])}
        if not _passing({"loss": shifted["loss"]}):
            continue  # the loss tells the epsilon; a dx alone matching a shifted one is not evidence of it
        if p_true.min() < GUARD_MARGIN * eps:
            if not tell_cap:
                return quantities
            mantissa, exponent = f"{eps:.3e}".split("e")
            shown = f"{float(mantissa):g}e{int(exponent)}"  # 1e-7 and 1e-4, not 1e-07 or 0.0001
            smallest = f"{p_true.min():.1g}" if p_true.min() > 0 else "0 in float64"
            advice = ("leave the epsilon out: log-probabilities taken as shifted - log(sum(exp(shifted))) never read "
                      "log(0)" if of_logits else "leave it out, or make it far smaller than any probability (1e-300)")
            raise Wrong(f"loss is the cross-entropy with its log guarded by {shown} (log(p + {shown}), or p clipped "
                        f"at {shown}), which caps each sample's loss at -log({shown}) = {-np.log(eps):.3g} and moves "
                        f"it wherever a true class is not far more probable than {shown}: here the least probable "
                        f"is at {smallest}, and the loss is {_scalar(quantities['loss'][0])} where the cross-entropy "
                        f"is {_scalar(quantities['loss'][1][0])}; {advice}")
        return {**quantities, **{k: shifted[k] for k in failing if _passing({k: shifted[k]})}}
    return quantities


GUARD_MARGIN = 1000.0  # an epsilon this many times below every true class's probability is a guard, not a change


def _zero_over_zero(dp, probs: np.ndarray, y: np.ndarray) -> bool:
    """Whether a loss's gradient in the probabilities is not finite exactly where a probability other than the
    label's is 0 (-t / p with t = 0 there: 0 / 0), and finite elsewhere."""
    try:
        d, zero = np.asarray(dp, dtype=np.float64), np.asarray(probs, dtype=np.float64) == 0
        if d.shape != zero.shape or d.shape != (len(y), d.shape[-1]):
            return False
        zero[np.arange(len(y)), y] = False
    except Exception:  # noqa: BLE001 - not numbers (a tensor that needs grad), not (N, C): the comparison tells it
        return False
    return bool(zero.any() and np.array_equal(~np.isfinite(d), zero))


def _shape(value) -> tuple | None:
    """A student's value's shape; None where it has none to read (a ragged list: the comparison says so)."""
    try:
        return np.shape(value)
    except (TypeError, ValueError):
        return None


def _scalar(value) -> str:
    """A loss for a message: its value, or its sum over the samples where it is one per sample."""
    a = np.asarray(value, dtype=np.float64)
    return f"{float(a.reshape(-1)[0]):.4g}" if a.size == 1 else f"{float(a.sum()):.4g} summed over the samples"


def _cross_entropy_with(x: np.ndarray, y: np.ndarray, reduction: str, eps: float):
    """The cross-entropy of -log(softmax(x)[y] + eps), reduced as ``reduction`` says; its gradient in x (of the
    losses' sum, where ``reduction`` is "none"); and the true classes' probabilities, softmax(x)[y]."""
    xt = _t(x)
    p_true = torch.softmax(xt, dim=1)[torch.arange(len(y)), torch.from_numpy(y)]
    losses = -torch.log(p_true + eps)
    loss = {"mean": losses.mean, "sum": losses.sum}.get(reduction, lambda: losses)()
    loss.sum().backward()
    return (loss.detach().numpy() if reduction == "none" else float(loss.detach())), _g(xt), p_true.detach().numpy()


_BATCH_MAX = ("subtracts the whole batch's largest score, so that the rows far below it underflow to 0 / 0; subtract "
              "each row's own, x.max(axis=1, keepdims=True)")


def _batch_max_rows(mine, x: np.ndarray, reference: np.ndarray) -> bool:
    """Whether a student's array (the softmax's output, or the loss's gradient) is not finite in exactly the rows
    of ``x`` whose every score underflows once shifted by the whole batch's maximum, and right in the others."""
    with np.errstate(all="ignore"):
        under = np.exp(x - x.max()).sum(axis=1) == 0
    try:
        a = np.asarray(mine, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if not under.any() or a.shape != reference.shape or a.ndim != 2:
        return False
    return bool(np.array_equal(~np.isfinite(a).all(axis=1), under)
                and np.allclose(a[~under], reference[~under], atol=1e-12))


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
    except (TypeError, ValueError):
        return False
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


def _mlp_configs(rng, k):
    """Three MLPs, then one with no hidden layer: a logistic regression, as the courses' docstrings ask of an
    empty ``n_hidden``."""
    return [dict(n=4, inputs=5, hidden=[6], classes=3, steps=3), dict(n=1, inputs=3, hidden=[4, 4], classes=2, steps=2),
            dict(n=6, inputs=4, hidden=[5, 3], classes=4, steps=3),
            dict(n=3, inputs=4, hidden=[], classes=3, steps=2)][: max(1, k)]


def _find_layers(model, name: str) -> list:
    """Objects of a class named ``name`` inside ``model`` (attributes, lists, tuples, dicts), in order,
    each once (by name: the model may use its own import of the class)."""
    found, seen = [], set()

    def walk(obj, depth):
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if type(obj).__name__ == name.rsplit(".", 1)[-1]:  # a dotted name: the class's own
            found.append(obj)
            return
        if isinstance(obj, (list, tuple)):
            for o in obj:
                walk(o, depth + 1)
        elif isinstance(obj, dict):
            for o in obj.values():
                walk(o, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (np.ndarray, type)):
            for o in vars(obj).values():
                walk(o, depth + 1)

    walk(model, 0)
    return found


def _in_call_order(ctx: Context, model, layers: list, inputs: int) -> list:
    """``layers`` in the order the model's forward calls them (a model may create its output layer first),
    found by one forward of a fixed batch with each layer's forward watched; as found if that cannot be
    told (the forward fails: the check proper then reports it)."""
    order: list = []
    watched = []  # (layer, its own instance attribute "forward" if it had one)
    for layer in layers:
        def watch(*args, _layer=layer, _forward=layer.forward, **kwargs):
            if not any(o is _layer for o in order):
                order.append(_layer)
            return _forward(*args, **kwargs)
        try:
            own = vars(layer).get("forward") if hasattr(layer, "__dict__") else None
            layer.forward = watch
            watched.append((layer, own))
        except (AttributeError, TypeError):  # __slots__ or a property: no watching, the order as found
            break
    try:
        if len(watched) == len(layers):
            ctx.call(model.forward, np.linspace(-1, 1, 2 * inputs).reshape(2, inputs), what="forward")
    except StudentError:
        order = []
    finally:
        for layer, own in watched:
            if own is None:
                del layer.forward
            else:
                layer.forward = own
    return order if len(order) == len(layers) else layers


def _mlp(cfg, ctx: Context) -> Quantities:
    """The student's MLP against torch's for a few SGD steps from the same weights on the same batches. An MLP that
    ends in a softmax is given the convention's gradient: the loss's in the logits where the convention fuses the
    softmax into the loss's backward (``fused``, CS324), else the loss's in the probabilities. One that fails so
    and passes whole given the other, where the student's own loss's backward gives that other gradient (a
    softmax whose backward applies its Jacobian in a fused course, beside a loss whose backward gives the gradient
    in the probabilities, or the reverse in another), passes, as the student's own training loop would train it."""
    fused = bool(ctx.entry.get("fused", False))
    if ctx.entry.get("output", "probabilities") == "logits":
        return _mlp_given(cfg, ctx, fused)
    start = copy.deepcopy(ctx.rng)  # the other reading draws the same weights and batches
    quantities, failure, ok = _attempt(lambda: _mlp_given(cfg, ctx, fused))
    if ok:
        return quantities
    if _loss_gives(ctx, not fused) and (other := _probe(
            lambda: _mlp_given(cfg, replace(ctx, rng=copy.deepcopy(start)), not fused))) is not None:
        return other
    if failure is not None:
        raise failure
    return quantities


def _loss_gives(ctx: Context, fused: bool) -> bool:
    """Whether the student's own loss of probabilities (the convention's ``softmax_cross_entropy``) gives, from its
    backward, the gradient ``_mlp_given`` gives the MLP under reading ``fused``: in the logits, (p - t) / N, or in
    the probabilities, -t / (p N). False where the convention has no such loss or the student's cannot be run."""
    entry = ctx.convention["layers"].get("softmax_cross_entropy")
    if not entry or entry.get("input", "logits") != "probabilities":
        return False
    x = np.random.default_rng(0).standard_normal((3, 4))
    p = torch.softmax(torch.from_numpy(x), dim=1).numpy()
    y = np.array([0, 3, 1])
    t = np.eye(4)[y]
    n = len(y) if entry.get("reduction", "mean") == "mean" else 1  # "none": the gradient of the losses' sum
    n /= grad_scale(entry, len(y))
    expected = (p - t) / n if fused else -t / (p * n)
    target = t if entry.get("target", "labels") == "one_hot" else y
    loss_ctx = replace(ctx, entry=entry, kind="softmax_cross_entropy")
    try:
        loss_fn = _build(loss_ctx, "loss")
        _, dp, _ = _loss_calls(loss_ctx, entry, loss_fn, p.copy(), target.copy())
        return bool(np.allclose(np.asarray(dp, dtype=np.float64), expected, rtol=1e-3, atol=0))
    except Exception as e:  # noqa: BLE001 - a probe only (an odd value returned too): the loss's row tells it
        if getattr(e, "timed_out", False):
            raise
        return False


def _mlp_given(cfg, ctx: Context, fused: bool) -> Quantities:
    """``_mlp``'s check, the MLP's backward given the loss's gradient in the logits (``fused``) or in the
    probabilities."""
    rng = ctx.rng
    sizes = [cfg["inputs"], *cfg["hidden"], cfg["classes"]]
    layers = []
    activation = ctx.entry.get("activation", "relu")
    slope = float(rng.choice([0.02, 0.1, 0.3])) if activation == "leaky_relu" else 0.0  # UvA 2019's default: 0.02
    make = {"relu": torch.nn.ReLU, "elu": torch.nn.ELU,  # ELU: alpha 1
            "leaky_relu": lambda: torch.nn.LeakyReLU(slope)}[activation]
    with torch.random.fork_rng():  # the starting weights from the grading seed: --seed reproduces them
        torch.manual_seed(int(rng.integers(2**31)))
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(a, b).double(), make()]
    net = torch.nn.Sequential(*layers[:-1])
    model = _build(ctx, "class", cfg["inputs"], list(cfg["hidden"]), cfg["classes"],
                   *((slope,) if activation == "leaky_relu" else ()))
    linears = _find_layers(model, ctx.entry["linear"])
    torch_linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    if len(linears) != len(torch_linears):
        raise Wrong(f"found {len(linears)} {ctx.entry['linear']} layers in the model, expected {len(torch_linears)}")
    linears = _in_call_order(ctx, model, linears, cfg["inputs"])
    chosen = ctx.convention["layers"].get("linear", {}).get("weight", "out_in")
    lin_ctx = Context(ctx.names, ctx.files, ctx.convention["layers"].get("linear", {}), ctx.convention, rng, "linear",
                      ctx.halted)
    in_out = chosen == "in_out"
    if chosen == "any":  # as the layers' own weights are laid out: the first that is not square tells
        seen = [_weight_in_out(lin_ctx, mine, t.in_features, t.out_features) for mine, t in zip(linears, torch_linears)]
        in_out = next((s for s in seen if s is not None), False)

    bias_layouts = [_bias_layout(lin_ctx, mine, t.out_features) for mine, t in zip(linears, torch_linears)]

    def layout(w, b, k):
        return {"weight": w.T.copy() if in_out else w.copy(), "bias": _bias_as(bias_layouts[k], b).copy()}

    for k, (mine, theirs) in enumerate(zip(linears, torch_linears)):
        _set_params(lin_ctx, mine, layout(theirs.weight.detach().numpy(), theirs.bias.detach().numpy(), k))
    lr, result = 0.1, {}
    for step in range(1, cfg["steps"] + 1):
        x = rng.standard_normal((cfg["n"], cfg["inputs"]))
        y = rng.integers(0, cfg["classes"], cfg["n"])
        net.zero_grad()
        logits = net(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
        loss.backward()
        probs = torch.softmax(logits, dim=1).detach().numpy()
        out = ctx.call(model.forward, x.copy(), what=f"{ctx.entry['class']}.forward")
        onehot = np.eye(cfg["classes"])[y]
        # the mean loss's gradient; linear layers that average their weights' gradients over the batch (grad =
        # "mean") are given the summed loss's instead, so that the weights' gradients are torch's either way
        per = 1 if lin_ctx.entry.get("grad", "sum") == "mean" else cfg["n"]
        if ctx.entry.get("output", "probabilities") == "logits":
            expected, dout = logits.detach().numpy(), (probs - onehot) / per
        elif fused:
            expected, dout = probs, (probs - onehot) / per  # the softmax's backward passes it through
        else:
            expected, dout = probs, -onehot / (np.asarray(out if out is not None else probs) * per)
        result[f"output at step {step}"] = (out, [expected])
        if step == 1 and not _close(out, expected):
            _misplaced_activations(ctx, out, x, torch_linears, make, activation, expected is probs)
        before = [_snapshot(lin_ctx, mine) for mine in linears] if step == 1 else []
        ctx.call(model.backward, dout, what=f"{ctx.entry['class']}.backward")
        for k, (was, mine) in enumerate(zip(before, linears)):
            now = _snapshot(lin_ctx, mine)
            if changed := [name for name in was if name in now and not (  # values: a reshaped bias is the same one
                    was[name].size == now[name].size and np.array_equal(was[name].ravel(), now[name].ravel()))]:
                raise Wrong(f"{ctx.entry['class']}.backward changed layer {k + 1}'s {' and '.join(changed)}: an "
                            "update inside backward; backward computes the gradients, and the training loop takes "
                            "the step (here the grader, after backward, as the course's loop does)")
        for k, (mine, theirs) in enumerate(zip(linears, torch_linears)):
            grads = _grads(lin_ctx, mine)
            ref = layout(theirs.weight.grad.numpy(), theirs.bias.grad.numpy(), k)
            result[f"dW of layer {k + 1} at step {step}"] = (grads.get("weight"), [ref["weight"]])
            result[f"db of layer {k + 1} at step {step}"] = (_row_from_flat(grads.get("bias"), bias_layouts[k],
                                                                            theirs.out_features), [ref["bias"]])
            params = _params(lin_ctx, mine)
            if grads.get("weight") is not None and grads.get("bias") is not None:  # the same SGD step on both
                for name in ("weight", "bias"):
                    _assign(params, name, np.asarray(params[name]) - lr * np.asarray(grads[name]))
        with torch.no_grad():
            for theirs in torch_linears:
                theirs.weight -= lr * theirs.weight.grad
                theirs.bias -= lr * theirs.bias.grad
        if hasattr(model, "clear_cache"):
            ctx.call(model.clear_cache, what="clear_cache")
    return result


def _snapshot(ctx: Context, layer) -> dict[str, np.ndarray]:
    """A copy of a linear layer's weight and bias (the rest of a params dict may be the layer's own cache; none
    where they cannot be read: the check proper says why)."""
    try:
        return {name: np.array(getattr(v, "data", v), dtype=np.float64, copy=True)
                for name, v in _params(ctx, layer).items() if name in ("weight", "bias")}
    except Exception:  # noqa: BLE001 - a probe only
        return {}


def _own_alpha(cls) -> float | None:
    """The default of an ``alpha`` argument the student's MLP class added, where it is a number other than 1."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    for p in parameters:
        if "alpha" in p.name and isinstance(p.default, (int, float)) and not isinstance(p.default, bool) \
                and p.default != 1:
            return float(p.default)
    return None


def _misplaced_activations(ctx: Context, out, x: np.ndarray, linears: list, make: Callable, activation: str,
                           probabilities: bool) -> None:
    """``Wrong`` naming it where the student's MLP output is its linear layers' with no activation between them,
    or with one after the last layer too, or where it ends in a softmax its convention leaves out, or the reverse."""
    def through(after: Callable[[int], bool], softmax: bool = probabilities, act: Callable = make) -> np.ndarray:
        with torch.no_grad():  # an activation (``act``) after the layers ``after`` picks
            z = torch.from_numpy(x)
            for k, layer in enumerate(linears):
                z = act()(layer(z)) if after(k) else layer(z)
            return (torch.softmax(z, dim=1) if softmax else z).numpy()

    title, linear = KINDS[activation].title, ctx.entry["linear"]
    if activation == "elu" and (alpha := _own_alpha(ctx.find("class"))) is not None and \
            _close(out, through(lambda k: k < len(linears) - 1, act=lambda: torch.nn.ELU(alpha))):
        raise Wrong(f"the output is that of ELUs with alpha = {alpha:g}, the default of {ctx.entry['class']}'s own "
                    f"alpha argument: this convention's ELU has alpha 1, and the course's code builds "
                    f"{ctx.entry['class']}(n_inputs, n_hidden, n_classes), as the grader does")
    if _close(out, through(lambda k: k < len(linears) - 1, softmax=not probabilities)):
        if probabilities:
            raise Wrong(f"the output is the last {linear} layer's scores (logits), with no softmax after them: this "
                        "convention's MLP ends in a softmax, whose probabilities go into the loss (a course whose "
                        "MLP returns scores: output = \"logits\" in a spec)")
        raise Wrong("the output is probabilities, a softmax after the last layer: this convention's MLP returns the "
                    "last layer's scores, which its loss takes (a course whose MLP ends in a softmax: output = "
                    "\"probabilities\" in a spec)")
    if len(linears) > 1 and _close(out, through(lambda k: False)):
        raise Wrong(f"the output is that of its {len(linears)} {linear} layers alone, nothing between them acting: "
                    f"no {title} after every layer but the last, or one whose forward returns its input unchanged")
    if _close(out, through(lambda k: True)):
        raise Wrong(f"the output is that of {'an' if title[0] in 'AEIOU' else 'a'} {title} after every {linear} "
                    "layer, the last one too: the last layer's "
                    f"output goes on as it is ({'to the softmax' if probabilities else 'out of the model'})")


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("linear", "linear (affine)", ("forward", "backward"), ("class",), _linear_configs, _linear),
    Kind("relu", "ReLU", ("forward", "backward"), ("class",), _relu_configs, _relu),
    Kind("elu", "ELU", ("forward", "backward"), ("class",), _elu_configs, _elu),
    Kind("leaky_relu", "leaky ReLU", ("forward", "backward"), ("class",), _leaky_relu_configs, _leaky_relu),
    Kind("sigmoid", "sigmoid", ("forward", "backward"), ("class",), _smooth_configs, _smooth(torch.sigmoid)),
    Kind("tanh", "tanh", ("forward", "backward"), ("class",), _smooth_configs, _smooth(torch.tanh)),
    Kind("dropout", "dropout", ("forward", "backward"), (), _dropout_configs, _dropout),
    Kind("conv", "convolution", ("forward", "backward"), ("class",), _conv_configs, _conv),
    Kind("maxpool", "max pooling", ("forward", "backward"), ("class",), _pool_configs, _maxpool),
    Kind("batchnorm", "batch norm", ("forward", "backward"), ("class",), _bn_configs, _batchnorm),
    Kind("batchnorm_alt", "batch norm, alternative backward", ("forward", "backward"), (), _bn_configs,
         _batchnorm_alt),
    Kind("spatial_batchnorm", "spatial batch norm", ("forward", "backward"), (), _spatial_bn_configs, _batchnorm),
    Kind("layernorm", "layer norm", ("forward", "backward"), (), _ln_configs, _layernorm),
    Kind("spatial_groupnorm", "spatial group norm", ("forward", "backward"), (), _gn_configs, _groupnorm),
    Kind("softmax_loss", "softmax loss", ("function",), (), _loss_configs, _softmax_loss),
    Kind("svm_loss", "SVM (hinge) loss", ("function",), (), _loss_configs, _svm_loss),
    Kind("softmax_cross_entropy", "softmax + cross-entropy", (), ("loss",), _loss_configs, _softmax_ce),
    Kind("rnn_step", "RNN step", ("forward", "backward"), (), _rnn_configs, _rnn_step),
    Kind("rnn", "RNN over time", ("forward", "backward"), (), _rnn_configs, _rnn),
    Kind("lstm_step", "LSTM step", ("forward", "backward"), (), _rnn_configs, _lstm_step),
    Kind("lstm", "LSTM over time", ("forward", "backward"), (), _rnn_configs, _lstm),
    Kind("word_embedding", "word embedding", ("forward", "backward"), (), _embedding_configs, _word_embedding),
    Kind("sgd_momentum", "SGD with momentum", ("function",), (), _optim_configs, _optimizer("sgd_momentum")),
    Kind("rmsprop", "RMSprop", ("function",), (), _optim_configs, _optimizer("rmsprop")),
    Kind("adam", "Adam", ("function",), (), _optim_configs, _optimizer("adam")),
    Kind("mlp", "whole MLP, a few SGD steps", (), ("class", "linear"), _mlp_configs, _mlp),
)}
