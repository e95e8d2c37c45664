"""CS231n's whole networks, in the functional style: a class whose ``params`` dict holds every parameter by name
(W1, b1, ...) and whose ``loss(X)`` gives the scores and ``loss(X, y)`` the loss and a dict of every parameter's
gradient, built from the student's layers: classifiers/fc_net.py's ``FullyConnectedNet`` (or assignment 1's
``TwoLayerNet``), graded as the ``mlp`` kind, and classifiers/cnn.py's ``ThreeLayerConvNet``; and EECS 498's, which
are CS231n's on torch tensors.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from twinnet.grader.compare import Wrong, unchanged
from twinnet.grader.kinds.base import Context, Kind, NotApplicable, Quantities, _attempt, _close
from twinnet.grader.kinds.image import _off_square_told

# the names CS231n's networks have given their constructor's arguments: FullyConnectedNet(hidden_dims, input_dim,
# num_classes, ...) and assignment 1's TwoLayerNet(input_dim, hidden_dim, num_classes, ...), before 2020
# TwoLayerNet(input_size, hidden_size, output_size) with loss(X, y, reg)
_HIDDEN, _INPUTS, _CLASSES = ("hidden_dim", "hidden_size"), ("input_dim", "input_size"), ("num_classes", "output_size")
_PENALTIES = (0.5, 1.0)  # the L2 penalty's factors the course has used: 0.5 reg sum(W^2) and reg sum(W^2)

Forward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def fully_connected(cfg, ctx: Context) -> Quantities:
    """The ``mlp`` kind in the functional style: affine and ReLU layers, an affine last, sizes ``cfg``'s; X is
    (N, 2, D / 2) where D is even, which the network flattens (but for assignment 1's TwoLayerNet before 2020, whose
    X is (N, D))."""
    hidden = list(cfg["hidden"])
    if not hidden:
        raise NotApplicable("no hidden layer")  # the course's networks have one at least
    cls = ctx.find("class")
    accepted = _accepted(cls)
    made = {"hidden_dims": hidden}
    if "hidden_dims" not in accepted and (one := next((k for k in _HIDDEN if k in accepted), None)):
        if len(hidden) != 1:
            raise NotApplicable(f"{len(hidden)} hidden layers")  # a two-layer net
        made = {one: hidden[0]}
    made[next((k for k in _INPUTS if k in accepted), _INPUTS[0])] = cfg["inputs"]
    made[next((k for k in _CLASSES if k in accepted), _CLASSES[0])] = cfg["classes"]
    sizes = [cfg["inputs"], *hidden, cfg["classes"]]
    rng = ctx.rng
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"], params[f"b{i}"] = rng.standard_normal((a, b)) / np.sqrt(a), 0.1 * rng.standard_normal(b)
    n, d = cfg["n"], cfg["inputs"]
    x = rng.standard_normal((n, 2, d // 2) if d % 2 == 0 and "input_size" not in accepted else (n, d))

    def forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        z = x.reshape(len(x), -1)
        for i in range(1, len(sizes)):
            z = z @ p[f"W{i}"] + p[f"b{i}"]
            z = torch.relu(z) if i < len(sizes) - 1 else z
        return z

    return graded(ctx, cls, made, params, forward, x, rng.integers(0, cfg["classes"], n))


def _convnet_configs(rng, k):
    """Small images (even sides, for the 2x2 pooling), odd filter sizes (padded to keep the size), one image alone."""
    return [dict(n=2, image=(3, 6, 6), filters=4, size=3, hidden=5, classes=3),
            dict(n=1, image=(1, 8, 6), filters=2, size=5, hidden=4, classes=4),
            dict(n=3, image=(2, 4, 4), filters=3, size=1, hidden=3, classes=2)][: max(1, k)]


def _convnet(cfg, ctx: Context) -> Quantities:
    """``_convnet_on``; where it fails on an image whose height and width differ and passes on a square one, ``Wrong``
    says so (the course's images are square; its docstring's input_dim (C, H, W) need not be)."""
    quantities, failure, ok = _attempt(lambda: _convnet_on(cfg, ctx))
    if ok:
        return quantities
    c, h, w = cfg["image"]
    if h != w:
        _off_square_told({"h": h, "w": w}, failure, lambda square: _convnet_on({**cfg, "image": (c, h, square["w"])},
                                                                               ctx),
                         "W2's rows sized from one side squared", what="network")
    if failure is not None:
        raise failure
    return quantities


def _convnet_on(cfg, ctx: Context) -> Quantities:
    """classifiers/cnn.py's ``ThreeLayerConvNet(input_dim, num_filters, filter_size, hidden_dim, num_classes, ...)``
    (EECS 498's: ``input_dims``): a convolution of stride 1 padded by (filter_size - 1) // 2, ReLU, 2x2 max pooling
    of stride 2, affine, ReLU, affine; W1 (F, C, HH, WW), W2 (F H W / 4, hidden), W3 (hidden, classes)."""
    cls = ctx.find("class")
    (c, h, w), f, size = cfg["image"], cfg["filters"], cfg["size"]
    image = "input_dims" if "input_dims" in _accepted(cls) else "input_dim"
    made = {image: tuple(cfg["image"]), "num_filters": f, "filter_size": size, "hidden_dim": cfg["hidden"],
            "num_classes": cfg["classes"]}
    rng = ctx.rng
    flat = f * (h // 2) * (w // 2)
    params = {"W1": rng.standard_normal((f, c, size, size)) / np.sqrt(c * size * size),
              "b1": 0.1 * rng.standard_normal(f),
              "W2": rng.standard_normal((flat, cfg["hidden"])) / np.sqrt(flat),
              "b2": 0.1 * rng.standard_normal(cfg["hidden"]),
              "W3": rng.standard_normal((cfg["hidden"], cfg["classes"])) / np.sqrt(cfg["hidden"]),
              "b3": 0.1 * rng.standard_normal(cfg["classes"])}

    def forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.conv2d(x, p["W1"], p["b1"], stride=1, padding=(size - 1) // 2)
        z = torch.nn.functional.max_pool2d(torch.relu(z), 2, 2).reshape(len(x), -1)
        return torch.relu(z @ p["W2"] + p["b2"]) @ p["W3"] + p["b3"]

    x = rng.standard_normal((cfg["n"], c, h, w))
    return graded(ctx, cls, made, params, forward, x, rng.integers(0, cfg["classes"], cfg["n"]))


def _accepted(cls) -> dict:
    """The names ``cls``'s constructor takes (none known where it cannot be read)."""
    try:
        return dict(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return {}


def graded(ctx: Context, cls, made: dict, params: dict[str, np.ndarray], forward: Forward, x: np.ndarray,
           y: np.ndarray) -> Quantities:
    """The student's network ``cls`` made in float64 with ``made``, its ``params`` set to the grader's, against
    torch's autograd through ``forward``: ``loss(X)``, the scores, and ``loss(X, y)``, the mean softmax loss and
    the gradient of every parameter, without and with an L2 penalty on the weights (the latter on labels that lack
    the last class; the parameters named W..., biases and the rest not penalised; ``reg`` given to the constructor,
    or to ``loss`` where that takes it). The penalty's factor is the student's of the two the course has used (0.5
    reg sum(W^2) since 2017, reg sum(W^2) in assignment 1's TwoLayerNet before), the gradients graded with it."""
    name = ctx.entry["class"]
    accepted = _accepted(cls)
    tensors = ctx.convention.get("arrays") == "torch"  # EECS 498's networks: params and arrays torch tensors
    if "dtype" in accepted:
        made = made | {"dtype": torch.float64 if tensors else np.float64}
    for scale in ("weight_scale", "std"):  # the initial weights' scale where it has no default: they are replaced
        if scale in accepted and accepted[scale].default is inspect.Parameter.empty:
            made = made | {scale: 1e-2}
    result: Quantities = {}
    # the penalised loss on labels that lack the last class, as a small batch's may (a count of each class by
    # np.bincount(y) is then short)
    classes = params[[k for k in params if k.startswith("W")][-1]].shape[-1]
    lacking = ctx.rng.integers(0, max(1, classes - 1), len(y))
    for reg, y in ((0.0, y), (round(float(ctx.rng.uniform(0.1, 2.0)), 2), lacking)):
        at = f" (reg = {reg:g})" if reg else ""
        arguments = made | ({"reg": reg} if "reg" in accepted else {})
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items()).replace("<class 'numpy.float64'>", "np.float64")
        # each network made with its own copies (a constructor may append the sizes to its hidden_dims)
        model = ctx.call(partial(cls, **copy.deepcopy(arguments)), what=f"{name}({shown})")
        own = _set_params(model, name, params, tensors)
        loss_fn = getattr(model, "loss", None)
        if not callable(loss_fn):
            raise Wrong(f"{name} has no loss method: the course's networks give the scores from loss(X) and the "
                        "loss and gradients from loss(X, y)")
        if "reg" not in accepted and "reg" in _accepted(loss_fn):
            loss_fn = partial(loss_fn, reg=reg)
        elif reg and "reg" not in accepted:
            continue  # a network with no penalty to set
        given = x.copy()
        # torch's scores, loss and gradients under each of the course's penalty factors (one where there is none)
        references = {f: _reference(forward, x, y, params, reg, f) for f in (_PENALTIES if reg else _PENALTIES[:1])}
        if not reg:
            scores = ctx.call(loss_fn, given, what=f"{name}.loss(X)")
            if isinstance(scores, (tuple, list, dict)):
                raise Wrong(f"{name}.loss(X) returned a {type(scores).__name__}: given no y, it returns the scores, "
                            "(N, C)")
            expected = references[_PENALTIES[0]][0]
            if not _close(scores, expected) and _close(scores, _reference(forward, x, y, own, 0.0, 0.0)[0]):
                raise Wrong(f"{name}.loss(X) gives the scores of the network's own first weights, not of those "
                            "written into its params afterwards: loss reads its weights from self.params, where the "
                            "course's Solver updates them")
            result["scores, loss(X)"] = (scores, [expected])
        got = ctx.call(loss_fn, given, y.copy(), what=f"{name}.loss(X, y)")
        unchanged("X", x, given)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            what = f"{len(got)} values" if isinstance(got, (tuple, list)) else f"a {type(got).__name__}"
            raise Wrong(f"{name}.loss(X, y) returned {what}, not (loss, grads): the loss and a dict of each "
                        "parameter's gradient, by the names of params")
        if not isinstance(got[1], dict):
            raise Wrong(f"{name}.loss(X, y)'s grads is a {type(got[1]).__name__}, not a dict of each parameter's "
                        "gradient by the names of params (grads['W1'], ...)")
        loss, grads = got
        factor = _PENALTIES[0]
        if reg:  # the student's factor, where its loss is one of the course's
            fits = [f for f in _PENALTIES if _close(loss, references[f][1])]
            factor = fits[0] if fits else factor
            if not fits:
                _unpenalised_told(name, forward, x, y, params, reg, loss)
        _, expected, gradients = references[factor]
        result[f"loss{at}"] = (loss, [expected])
        if missing := [k for k in gradients if k not in grads]:
            raise Wrong(f"{name}.loss(X, y)'s grads has no {', '.join(missing)}: it holds the gradient of each "
                        "parameter in params, by its name")
        result.update({f"grads['{k}']{at}": (grads[k], [g]) for k, g in gradients.items()})
        if reg and _close(loss, expected) and not all(_close(grads[k], g) for k, g in gradients.items()):
            _penalty_told(name, forward, x, y, params, reg, factor, grads)
    return result


def _unpenalised_told(name: str, forward: Forward, x, y, params, reg: float, loss) -> None:
    """Where a network's penalised loss is the course's but for one weight it leaves out of the penalty (a loop over
    the layers that stops one short), ``Wrong`` naming that weight."""
    for factor in _PENALTIES:
        for key in (k for k in params if k.startswith("W")):
            if _close(loss, _reference(forward, x, y, params, reg, factor, unpenalised=key)[1]):
                raise Wrong(f"{name}.loss(X, y)'s penalty leaves out {key}: the L2 penalty takes every weight, "
                            f"W1 to {[k for k in params if k.startswith('W')][-1]}, in the loss and in their "
                            "gradients")


def _penalty_told(name: str, forward: Forward, x, y, params, reg: float, factor: float, grads: dict) -> None:
    """Where a network's penalised loss is right and its gradients are those of no penalty, or of the penalty with
    the course's other factor, ``Wrong`` saying which."""
    for other in (0.0, *_PENALTIES):
        if other != factor and all(_close(grads[k], g) for k, g in _reference(forward, x, y, params, reg,
                                                                              other)[2].items()):
            def term(c: float, what: str) -> str:
                return f"{'' if c == 1 else f'{c:g} '}reg {what}"
            told = f"{name}.loss(X, y)'s loss has the penalty {term(factor, 'sum(W^2)')}, but its weights' gradients"
            if not other:
                raise Wrong(f"{told} lack the penalty's term: add {term(2 * factor, 'W')} to each")
            raise Wrong(f"{told} are those of {term(other, 'sum(W^2)')} ({term(2 * other, 'W')}): the loss's own "
                        f"penalty gives {term(2 * factor, 'W')}")


def _set_params(model, name: str, params: dict[str, np.ndarray], tensors: bool) -> dict[str, np.ndarray]:
    """The grader's ``params`` in the student's ``params`` dict (as torch tensors where ``tensors``), each where and
    of the shape the network keeps it; the values the network had made itself."""
    kept = getattr(model, "params", None)
    if not isinstance(kept, dict):
        raise Wrong(f"{name} keeps no params dict: the course's networks keep every parameter in self.params, "
                    "by name (W1, b1, W2, ...)")
    own = {}
    for key, value in params.items():
        if key not in kept:
            raise Wrong(f"{name}.params has no {key}: this network keeps {', '.join(params)}")
        if np.shape(kept[key]) != value.shape:
            raise Wrong(f"{name}.params['{key}'] has shape {np.shape(kept[key])}, expected {value.shape}"
                        + (" (the weights (in, out))" if key[0] == "W" and value.ndim == 2 else ""))
        own[key] = _plain(kept[key])
        kept[key] = torch.from_numpy(value.copy()) if tensors else value.copy()
    if not all(np.array_equal(_plain(getattr(model, "params", {}).get(key)), value) for key, value in params.items()):
        raise Wrong(f"what is written into {name}.params does not stay there (a property that gives a copy?): the "
                    "course's Solver updates the weights in self.params, so loss must read them there")
    return own


def _plain(value) -> np.ndarray:
    """A parameter as a float64 array (a torch tensor's values, wherever it lies)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.array(value, dtype=np.float64)


def _reference(forward: Forward, x: np.ndarray, y: np.ndarray, params: dict[str, np.ndarray], reg: float,
               factor: float, unpenalised: str = ""):
    """torch's scores, loss and gradients: ``forward``, the mean softmax loss, plus ``factor * reg`` times the
    weights' (W...) sum of squares (but ``unpenalised``'s)."""
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    scores = forward(tensors, torch.from_numpy(x))
    loss = torch.nn.functional.cross_entropy(scores, torch.from_numpy(y))
    loss = loss + factor * reg * sum((t ** 2).sum() for k, t in tensors.items() if k.startswith("W") and
                                     k != unpenalised)
    loss.backward()
    return scores.detach().numpy(), loss.item(), {k: t.grad.numpy() for k, t in tensors.items()}


def functional_configs(cfg: dict, entry: dict) -> dict:
    """An ``mlp`` configuration as the functional style grades it: with no SGD steps, and a hidden layer of 7 where
    the module style's has none (the course's networks have one at least, and a two-layer net exactly one)."""
    if "linear" in entry:  # the module style's table (it names the linear layer's class)
        return cfg
    return {k: v for k, v in cfg.items() if k != "steps"} | ({"hidden": [7]} if not cfg["hidden"] else {})


# this module's kinds (the MLP's functional check is the ``mlp`` kind's, in ``mlp``)
KINDS = (
    Kind("convnet", "whole ConvNet, loss and gradients", ("class",), (), _convnet_configs, _convnet),
)
