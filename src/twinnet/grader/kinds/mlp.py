"""A whole MLP: in the module style, the student's model built, its layers found in the order it calls them, a few
SGD steps compared with the reference; in the functional style, CS231n's network of a ``params`` dict and a
``loss(X, y)`` that returns the loss and every parameter's gradient.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from twinnet.grader.compare import Wrong
from twinnet.grader.kinds import dense
from twinnet.grader.kinds.base import Context, Kind, Quantities, _attempt, _close, _probe
from twinnet.grader.kinds.cross_entropy import _loss_calls, grad_scale
from twinnet.grader.kinds.networks import fully_connected, functional_configs
from twinnet.grader.kinds.modules import (
    _assign, _bias_as, _bias_layout, _build, _grads, _params, _row_from_flat, _set_params, _weight_in_out,
    accumulates)
from twinnet.grader.loader import StudentError


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
    if ctx.convention.get("style") == "functional":
        return fully_connected(cfg, ctx)
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
    # linear layers that add their gradients up over calls (accumulate): the grader's loop zeroes no gradient
    # between steps, so neither does the reference's; each step's update then takes the sums in both
    accumulate = accumulates(lin_ctx.entry, ctx.convention)
    for step in range(1, cfg["steps"] + 1):
        x = rng.standard_normal((cfg["n"], cfg["inputs"]))
        y = rng.integers(0, cfg["classes"], cfg["n"])
        if not accumulate:
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

    title = next(k.title for k in dense.KINDS if k.name == activation)
    linear = ctx.entry["linear"]
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


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("mlp", "whole MLP, a few SGD steps", ("class",), ("class", "linear"), _mlp_configs, _mlp,
         shaped=functional_configs,
         functional_title="whole fully connected net, loss and gradients"),
)
