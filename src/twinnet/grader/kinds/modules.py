"""Module style: a student's layer class built from the grader's arguments (``ARGUMENTS``), its parameters
and gradients read and set under a convention's names and layouts, and its caches checked to be kept apart.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, MutableMapping
from typing import Any

import numpy as np

from twinnet.grader.compare import Wrong
from twinnet.grader.kinds.base import (
    _MISSING, Context, NotApplicable, Quantities, _follows, _forward, _pair, _read, _single)


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


class _Given:
    """A parameter the grader passes as the array itself, where a class is made with its parameters (Deep Learning
    from Scratch's ``Affine(W, b)``, ``BatchNormalization(gamma, beta)``): zeros of the layer's shape in the
    convention's layout, since the grader sets the values itself, as for any layer."""

    def __init__(self, name: str) -> None:
        self.name = name

    def array(self, ctx: Context, given: dict) -> np.ndarray:
        """This parameter of a layer of ``ctx.kind`` with the sizes ``given``."""
        if ctx.kind == "linear":
            if self.name == "bias":
                layout = ctx.entry.get("bias", "flat")
                return _bias_as(layout if layout in _BIAS_SHAPES else "flat", np.zeros(given["out_features"]))
            sizes = (given["in_features"], given["out_features"])
            return np.zeros(sizes if ctx.entry.get("weight", "out_in") == "in_out" else sizes[::-1])
        if ctx.kind == "conv":
            k = given["kernel_size"]
            return np.zeros((given["out_channels"], given["in_channels"], k, k) if self.name == "weight"
                            else given["out_channels"])
        if ctx.kind in ("rnn_step", "lstm_step"):  # the input-to-hidden and hidden-to-hidden weights, and a bias
            d, h = given["input_size"], given["hidden_size"]  # (or two); an LSTM's of its four gates side by side
            k = 4 * h if ctx.kind == "lstm_step" else h
            if self.name.startswith("bias"):
                return np.zeros(k)
            sizes = (d if self.name == "weight_ih" else h, k)
            return np.zeros(sizes if ctx.entry.get("weight", "out_in") == "in_out" else sizes[::-1])
        d = given["num_features"]  # batch norm's gamma (weight) and beta (bias)
        return np.zeros((1, d) if ctx.entry.get("layout") == "row" else d)

    def __repr__(self) -> str:
        return self.name


WEIGHT, BIAS = _Given("weight"), _Given("bias")
WEIGHT_IH, WEIGHT_HH, BIAS_IH, BIAS_HH = (_Given(name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
SQUARE = object()  # a pooling window's height or width: the kernel size, where windows are square


# a recurrent cell's arguments: its sizes, or its parameters themselves
_CELL = (("input_size", None), ("hidden_size", None), ("weight_ih", WEIGHT_IH), ("weight_hh", WEIGHT_HH),
         ("bias", BIAS), ("bias_ih", BIAS_IH), ("bias_hh", BIAS_HH))


# module style: each kind's class arguments in the grader's order, with the value an argument that a
# convention's ``args`` leaves out must have (None: it cannot be left out); configurations needing another
# value are not applicable to that class (CMU's ``Conv2d_stride1(in, out, kernel)``: stride 1, padding 0)
ARGUMENTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "linear": (("in_features", None), ("out_features", None), ("weight_init", WEIGHT_INIT), ("bias_init", BIAS_INIT),
               ("weight", WEIGHT), ("bias", BIAS)),
    "conv": (("in_channels", None), ("out_channels", None), ("kernel_size", None), ("stride", 1), ("padding", 0),
             ("weight_init", WEIGHT_INIT), ("bias_init", BIAS_INIT), ("weight", WEIGHT), ("bias", BIAS)),
    "maxpool": (("kernel_size", None), ("stride", 1), ("kernel_height", SQUARE), ("kernel_width", SQUARE),
                ("padding", 0)),
    "batchnorm": (("num_features", None), ("weight", WEIGHT), ("bias", BIAS)),
    # CMU 11-785's RNNCell(input_size, hidden_size); Deep Learning from Scratch 2's RNN(Wx, Wh, b), LSTM(Wx, Wh, b)
    "rnn_step": _CELL,
    "lstm_step": _CELL,
    "gru_step": (("input_size", None), ("hidden_size", None)),  # CMU 11-785's GRUCell(input_size, hidden_size)
    # an optimiser made with its hyperparameters (Deep Learning from Scratch's Momentum(lr, momentum))
    "sgd_momentum": (("learning_rate", None), ("momentum", None)),
    "rmsprop": (("learning_rate", None), ("decay_rate", None)),
    "adam": (("learning_rate", None), ("beta1", None), ("beta2", None)),
    "dropout": (("p", None),),  # its probability, as the convention's p reads it (the book's Dropout(dropout_ratio))
    "elu": (("alpha", 1.0),),
    "leaky_relu": (("negative_slope", 0.01),),
    # the slope of an MLP of leaky ReLUs (UvA 2019's MLP(n_inputs, n_hidden, n_classes, neg_slope)); 0: ReLU
    "mlp": (("inputs", None), ("hidden", None), ("classes", None), ("negative_slope", 0.0)),
}


# the sizes a class made with its parameters, or with a window's height and width, need not be given apart:
# the arguments that carry them (Deep Learning from Scratch's Affine(W, b), Pooling(pool_h, pool_w, stride, pad))
CARRIED = {"linear": {"in_features": ("weight",), "out_features": ("weight",)},
           "conv": {"in_channels": ("weight",), "out_channels": ("weight",), "kernel_size": ("weight",)},
           "batchnorm": {"num_features": ("weight", "bias")},
           **dict.fromkeys(("rnn_step", "lstm_step"), {"input_size": ("weight_ih",),
                                                       "hidden_size": ("weight_ih", "weight_hh", "bias", "bias_ih")}),
           "maxpool": {"kernel_size": ("kernel_height", "kernel_width")}}


def _carried(kind: str, name: str, args: list) -> bool:
    """Whether the argument ``name`` is carried by others that ``args`` lists (``CARRIED``)."""
    return any(other in args for other in CARRIED.get(kind, {}).get(name, ()))


def _build(ctx: Context, key: str, *args):
    """The student's class named under ``key``, built with ``args`` (the kind's ``ARGUMENTS`` in order), or
    with those the convention's ``args`` lists, in its order."""
    cls = ctx.find(key)
    if key == "class" and "args" in ctx.entry:
        given = {name: fixed for name, fixed in ARGUMENTS[ctx.kind]} | \
            dict(zip((name for name, _ in ARGUMENTS[ctx.kind]), args))
        for name, fixed in ARGUMENTS[ctx.kind]:
            if name not in ctx.entry["args"] and given[name] is not fixed and given[name] != fixed and \
                    not _carried(ctx.kind, name, ctx.entry["args"]):
                raise NotApplicable(f"{name}={given[name]!r}")
        bias_init = _Init("bias_init_fn", ctx.entry.get("bias", "flat") if ctx.kind == "linear" else None)

        def value(name: str):
            v = given[name]
            return bias_init if v is BIAS_INIT else v.array(ctx, given) if isinstance(v, _Given) else \
                given["kernel_size"] if v is SQUARE else v

        args = tuple(value(name) for name in ctx.entry["args"])
    elif key == "class" and (n := _positional(cls)) is not None and n < len(args):
        # a class that fixes its last arguments (an older year's ELUModule() with alpha 1): graded where they hold
        tail = ARGUMENTS[ctx.kind][n:len(args)]
        if all(fixed is not None for _, fixed in tail):
            for (name, fixed), value in zip(tail, args[n:]):
                if value != fixed:
                    raise NotApplicable(f"{name}={value!r}; {ctx.entry[key]}() takes no {name}, so it is {fixed!r}")
            args = args[:n]
    shown = ", ".join(f"<array of shape {a.shape}>" if isinstance(a, np.ndarray) else repr(a) for a in args)
    layer = ctx.call(cls, *args, what=f"{ctx.entry[key]}({shown})")
    if hasattr(layer, "double") and ctx.convention.get("params") == "attributes":
        ctx.call(layer.double, what=f"{ctx.entry[key]}.double")
    return layer


def _forward_mode(ctx: Context, layer, x, *, train: bool):
    """The layer's forward on ``x`` in training or evaluation mode, as the convention selects it: forward's keyword
    (``train_keyword``: Deep Learning from Scratch's forward(x, train_flg=False); ``eval_keyword``: CMU's forward(Z,
    eval=True)), else the layer's own ``eval()`` before an evaluation (a fresh layer trains)."""
    name = ctx.entry["class"]
    if train and "train_keyword" in ctx.entry:
        keyword = ctx.entry["train_keyword"]
        return ctx.call(lambda z: layer.forward(z, **{keyword: True}), x, what=f"{name}.forward({keyword}=True)")
    if train:
        return ctx.call(layer.forward, x, what=f"{name}.forward")
    if "eval_keyword" in ctx.entry or "train_keyword" in ctx.entry:
        keyword, value = (ctx.entry["eval_keyword"], True) if "eval_keyword" in ctx.entry else \
            (ctx.entry["train_keyword"], False)
        return ctx.call(lambda z: layer.forward(z, **{keyword: value}), x, what=f"{name}.forward({keyword}={value})")
    if not callable(getattr(layer, "eval", None)):
        raise Wrong(f"{type(layer).__name__} has no eval() method for evaluation mode (a forward that takes it as a "
                    "keyword: eval_keyword = \"eval\" in the spec, for forward(Z, eval=True), or train_keyword = "
                    "\"train_flg\" for forward(x, train_flg=False))")
    ctx.call(layer.eval, what="eval")
    return ctx.call(layer.forward, x, what=f"{name}.forward (eval)")


def _made_with(ctx: Context, args: tuple) -> tuple:
    """The arguments a convention's ``args`` lists, in its order, of the kind's ``ARGUMENTS`` given as ``args``;
    ``NotApplicable`` where one left out is not its fixed value."""
    given = dict(zip((name for name, _ in ARGUMENTS[ctx.kind]), args))
    for name, fixed in ARGUMENTS[ctx.kind]:
        if name not in ctx.entry["args"] and given.get(name, fixed) != fixed:
            raise NotApplicable(f"{name}={given[name]!r}")
    return tuple(given[name] for name in ctx.entry["args"])


def _positional(cls) -> int | None:
    """How many arguments ``cls(...)`` takes by position (None: any number, or its signature cannot be read)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


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

    def listed(self, name: str) -> bool:
        """Whether ``name``'s path ends in a list's entry (``grads.0``)."""
        try:
            return isinstance(self._owner(name)[0], list)
        except KeyError:
            return False

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
        if isinstance(owner, list) and last.isdigit():  # a list's entry, by its place
            write = lambda key, v: owner.__setitem__(int(key), v)  # noqa: E731
        else:
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
    if isinstance(ctx.entry.get("grads"), dict):  # the arrays a backward must write into, where a list holds them
        fields = _Fields(ctx, layer, ctx.entry["grads"])
        arrays = {}
        for name in fields.paths:
            if fields.listed(name):
                try:
                    arrays[name] = fields[name]
                except KeyError:
                    continue  # told when the gradients are read
        ctx.gradient_arrays[id(layer)] = arrays


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


def _set_instead(layer, path: str) -> str | None:
    """The name of an array attribute of ``layer`` that differs from ``path`` only in case (``dw`` for ``dW``)."""
    try:
        members = dict(object.__getattribute__(layer, "__dict__"))
    except Exception:  # noqa: BLE001 - a class of __slots__: no hint
        return None
    return next((name for name, value in members.items()
                 if name != path and name.lower() == path.lower() and isinstance(value, np.ndarray)), None)


def _grads(ctx: Context, layer) -> dict:
    if isinstance(ctx.entry.get("grads"), dict):
        fields, grads = _Fields(ctx, layer, ctx.entry["grads"]), {}
        for name, path in fields.paths.items():  # each attribute read once (a property may run)
            try:
                value = fields[name]
            except KeyError:
                instead = _set_instead(layer, path) if "." not in path else None
                raise Wrong(f"{type(layer).__name__} has no attribute {path} after backward (the convention's "
                            f"gradient of {name})" + (f"; it set self.{instead}, another name to Python" if instead
                                                      else "")) from None
            before = ctx.gradient_arrays.get(id(layer), {})
            if name in before and value is not before[name]:
                holder, _, place = path.rpartition(".")
                raise Wrong(f"{type(layer).__name__}.{path} is another object after backward than before: write the "
                            f"gradient into the array the list holds, {holder}[{place}][...] = ..., as the book's "
                            "layers do (a model gathers its layers' gradient arrays once, when it is built, and would "
                            "never see a new one)")
            if value is None and "." not in path and (other := _set_instead(layer, path)) is not None:
                raise Wrong(f"{type(layer).__name__}.{path} is None after backward, which set self.{other} instead: "
                            f"the convention's gradient of {name} is self.{path} (Python tells the names apart)")
            grads[name] = None if value is None else np.array(value, copy=True)
        return grads
    if ctx.convention.get("params", "dict") == "dict":
        grads = getattr(layer, "grads", None)
        if not isinstance(grads, dict):
            raise Wrong(f"{type(layer).__name__} has no grads dict")
        _not_shared(layer, "grads", grads)
        return {k: None if v is None else np.array(v, copy=True) for k, v in grads.items()}
    return {name: None if p.grad is None else np.array(p.grad, copy=True) for name, p in _params(ctx, layer).items()}


def accumulates(entry: dict, convention: dict) -> bool:
    """Whether a module layer's backward adds to its parameters' gradients over calls: its own ``accumulate``,
    where it has one, else the spec's ``grads`` for all its layers."""
    return entry.get("accumulate", convention.get("grads", "overwrite") == "accumulate")


_SHORT = {"weight": "dw", "bias": "db"}  # a linear or convolution layer's gradients, as its quantities name them


def theirs(quantity: str, entry: dict) -> str:
    """A parameter gradient's quantity (``dw``, ``dbias_in after a second backward``) with the attribute a module
    layer keeps it in where its spec's ``grads`` table names one (``dbias_in (dbnx) after ...``), so that a failure
    speaks the student's names too; any other quantity as it is."""
    grads = entry.get("grads")
    base, _, rest = quantity.partition(" ")
    if not isinstance(grads, dict) or rest.startswith("("):
        return quantity
    for name, path in grads.items():
        if base in (f"d{name}", _SHORT.get(name)) and isinstance(path, str) and path != base:
            return f"{base} ({path})" + (f" {rest}" if rest else "")
    return quantity


def _second_pass(ctx: Context, layer, x, first_ref: dict, grads_of: Callable[[np.ndarray], dict],
                 dout_shape, run: Callable[[np.ndarray], Any] | None = None) -> Quantities:
    """A second forward and backward with another upstream gradient (``run(dout)`` makes them, where the layer's
    calls take more than x and dout: an RNN cell's). The convention says whether the parameters' gradients are
    then overwritten (the second pass's alone) or summed (torch, until ``zero_grad``; CMU's RNN cell, over the time
    steps); the other behaviour is named, anything else compared as a quantity."""
    dout2 = ctx.rng.standard_normal(dout_shape)
    if run is None:
        ctx.call(layer.forward, x.copy(), what="forward (a second pass)")
        ctx.call(layer.backward, dout2.copy(), what="backward (a second pass)")
    else:
        run(dout2)
    second, alone = _grads(ctx, layer), grads_of(dout2)
    accumulate = accumulates(ctx.entry, ctx.convention)
    out, told = {}, []  # every gradient that does the other, named (a class may mix = and +=)
    tables = ctx.entry["grads"] if isinstance(ctx.entry.get("grads"), dict) else {}
    for name, g1 in first_ref.items():
        expected = g1 + alone[name] if accumulate else alone[name]
        other = alone[name] if accumulate else g1 + alone[name]
        g2 = _like_row(second.get(name), expected)  # a row parameter's gradient may be flat
        if _follows(g2, other, expected):
            told.append(f"{name} ({tables[name]})" if isinstance(tables.get(name), str) else name)
        out[f"d{name} after a second backward"] = (g2, [expected])
    if told:
        which = f"the gradient of {told[0]} is" if len(told) == 1 else "every parameter's gradient is" if \
            len(told) == len(first_ref) else f"the gradients of {', '.join(told[:-1])} and {told[-1]} are"
        raise Wrong(f"{which} {'overwritten' if accumulate else 'summed'} over backward calls; this convention "
                    f"{'sums' if accumulate else 'overwrites'} {'them' if 1 < len(told) < len(first_ref) else 'it'}"
                    f"{' until zero_grad' if accumulate else ''}")
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


def _backward(obj) -> tuple[Callable, str]:
    """The method that takes no arguments and gives the gradient: ``backward()``, or where the class has none,
    ``derivative()`` (CMU 11-785's 2019-21 activations and losses)."""
    name = "derivative" if not hasattr(obj, "backward") and hasattr(obj, "derivative") else "backward"
    return getattr(obj, name), name
