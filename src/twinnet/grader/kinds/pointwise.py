"""Losses of a prediction against a target of its own shape, element by element: MSE, L1 and binary
cross-entropy (TUM I2DL's regression and binary losses, CMU 11-785's ``MSELoss``, torch's). Each is a function
``loss(x, y) -> (loss, dx)`` in the functional style, or a class with ``forward(x, y)`` and ``backward`` in the
module style, with a convention's ``reduction``, ``grad`` and ``loss_item`` as for the cross-entropy; ``dims``
says whether the course's inputs are (N,) vectors (1) or (N, C) arrays (2, the default); a binary
cross-entropy's ``input`` is probabilities (the default) or scores (logits, torch's ``BCEWithLogitsLoss``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from twinnet import numpy_nn as nn
from twinnet.grader.compare import Wrong, unchanged
from twinnet.grader.kinds.base import Context, Kind, Quantities, _attempt, _close, _g, _passing, _probe, _t
from twinnet.grader.kinds.cross_entropy import _loss_calls, _one_number, _shape, grad_scale
from twinnet.grader.kinds.losses import GUARD_MARGIN, LOG_EPSILONS, _loss_call
from twinnet.grader.kinds.modules import _build

# each kind's reference: torch's function and twinnet's own loss (a binary cross-entropy of logits: the second)
_REFERENCES = {"mse_loss": ((F.mse_loss, nn.MSELoss),), "l1_loss": ((F.l1_loss, nn.L1Loss),),
               "bce_loss": ((F.binary_cross_entropy, nn.BCELoss),
                            (F.binary_cross_entropy_with_logits, nn.BCEWithLogitsLoss))}


def _pointwise_configs(rng, k):
    """A column of six, a (4, 3) batch and one element, then drawn sizes (never two elements in all, where a
    gradient divided by N is also half the right one)."""
    fixed = [dict(n=6, c=1), dict(n=4, c=3), dict(n=1, c=1)]  # (one element last: each array is one number)
    return fixed + [dict(n=int(rng.integers(3, 9)), c=int(rng.integers(2, 5))) for _ in range(k)]


def _shaped(cfg: dict, entry: dict) -> dict:
    """A configuration's shape as the course's table reads it: (N,) vectors under ``dims = 1``, (N, C) arrays."""
    return {"n": cfg["n"]} if entry.get("dims", 2) == 1 else cfg


def _logits_in(ctx: Context) -> bool:
    return ctx.kind == "bce_loss" and ctx.entry.get("input", "probabilities") == "logits"


def _inputs(ctx: Context, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A prediction and its target: normal values (L1's at least 0.05 apart, so that no gradient is a tie), or
    probabilities in [0.05, 0.95] (scores, for logits) against targets of 0 and 1."""
    rng = ctx.rng
    if ctx.kind == "bce_loss":
        y = rng.integers(0, 2, shape).astype(np.float64)
        return (rng.standard_normal(shape) * 2 if _logits_in(ctx) else rng.uniform(0.05, 0.95, shape)), y
    x, y = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    if ctx.kind == "l1_loss":
        gap = x - y
        y = np.where(np.abs(gap) < 0.05, x - np.where(gap < 0, -0.05, 0.05), y)
    return x, y


def _pointwise(cfg, ctx: Context) -> Quantities:
    """The loss on the convention's shapes; where that fails and the same loss is right on the other shapes
    ((N,) for (N, C), or the reverse), ``Wrong`` says which the student's code takes."""
    dims = ctx.entry.get("dims", 2)
    shape = (cfg["n"], cfg["c"]) if dims == 2 else (cfg["n"],)
    x, y = _inputs(ctx, shape)
    quantities, failure, ok = _attempt(lambda: _pointwise_on(ctx, x, y))
    if ok:
        return quantities
    if dims == 2 and shape[1] > 1 and all(_probe(lambda j=j: _pointwise_on(ctx, x[:, j], y[:, j])) is not None
                                          for j in range(shape[1])):
        raise Wrong(f"right on (N,) vectors, wrong on this (N, C) array of shape {shape}, whose loss is over all "
                    f"its N * C = {x.size} elements (a mean divides by x.size, not len(x)); a course whose loss "
                    "takes (N,) vectors: dims = 1 in a spec")
    if dims == 1 and _probe(lambda: _pointwise_on(ctx, x[:, None], y[:, None])) is not None:
        raise Wrong(f"right on (N, 1) arrays, wrong on this (N,) vector of shape {shape}; a course whose loss takes "
                    "(N, C) arrays: dims = 2 in a spec")
    if failure is not None:
        raise failure
    return quantities  # (told by the comparison: a relative error)


def _pointwise_on(ctx: Context, x: np.ndarray, y: np.ndarray) -> Quantities:
    reduction = ctx.entry.get("reduction", "mean")
    torch_fn, twin_cls = _REFERENCES[ctx.kind][1 if _logits_in(ctx) else 0]
    xt = _t(x)
    loss_t = torch_fn(xt, torch.from_numpy(y), reduction=reduction)
    (loss_t.sum() if reduction == "none" else loss_t).backward()  # "none": each element's loss, d(their sum)/dx
    scale = grad_scale(ctx.entry, x.size)  # (a mean's is over every element)
    twin = twin_cls(reduction=reduction)
    twin_loss = twin.forward(x.copy(), y.copy())
    twin_dx = twin.backward(np.ones_like(x) if reduction == "none" else 1.0)
    loss_refs = [loss_t.detach().numpy() if reduction == "none" else float(loss_t.detach()), twin_loss]
    dx_refs = [_g(xt) * scale, twin_dx * scale]
    if ctx.convention["style"] == "functional":
        quantities = _loss_call(ctx, x, y, loss_refs, dx_refs)
    else:
        xs, ys = x.copy(), y.copy()
        loss, dx, _ = _loss_calls(ctx, ctx.entry, _build(ctx, "loss"), xs, ys)
        unchanged("x", x, xs)
        unchanged("y", y, ys)
        quantities = {"loss": (loss, loss_refs), "dx": (dx, dx_refs)}
    loss, dx = quantities["loss"][0], quantities["dx"][0]
    if reduction != "none" and _shape(loss) == x.shape and x.size > 1 and \
            _close(loss, torch_fn(_t(x, grad=False), torch.from_numpy(y), reduction="none").numpy()):
        raise Wrong(f"loss is each element's, shape {x.shape}, where this convention's is their {reduction}; a course "
                    "whose loss returns each element's: reduction = \"none\" in a spec")
    if ctx.kind == "mse_loss" and _close(_as_shaped(loss, loss_refs[0]), np.asarray(loss_refs[0]) / 2) and \
            _close(dx, dx_refs[0] / 2):
        raise Wrong("loss and dx are half the MSE's and its gradient: a 1/2 in front of the squares (SSE / 2N, "
                    "whose gradient has no 2), which the MSE of torch and of this convention does not have")
    if ctx.kind == "mse_loss" and x.size != 2 and _passing({"loss": quantities["loss"]}) and \
            _close(dx, dx_refs[0] / 2):
        raise Wrong("dx is half the reference's: the derivative of (x - y)^2 is 2 (x - y), and the 2 is missing")
    if reduction == "none" and x.size > 1 and _one_number(loss):
        mean = float(torch_fn(_t(x, grad=False), torch.from_numpy(y)))
        if _close(np.ravel(np.asarray(loss, dtype=np.float64)), [mean]):
            raise Wrong(f"loss is the elements' mean, one number, where this convention's is each element's, shape "
                        f"{x.shape}; a course whose loss returns their mean: leave reduction out (or \"mean\")")
    if x.size > 1 and _passing({"loss": quantities["loss"]}):
        if reduction == "mean" and scale == 1 and _close(dx, dx_refs[0] * x.size):
            raise Wrong(f"dx is the gradient of the elements' summed loss, {x.size} times the mean's, where the loss "
                        f"is their mean: divide it by the number of elements, {x.size}; a course whose loss's "
                        "backward gives the sum's gradient by design: grad = \"sum\" in a spec")
        if reduction == "none" and scale == 1 and _close(dx, dx_refs[0] / x.size):
            raise Wrong(f"dx is the gradient of the elements' mean, 1/{x.size} of their summed loss's, where this "
                        "convention's loss keeps each element's (and its gradient is their sum's); a course whose "
                        "backward gives the mean's: grad = \"mean\" in a spec")
        if reduction == "mean" and scale == x.size and _close(dx, dx_refs[0] / x.size):
            raise Wrong(f"dx is the mean's gradient, 1/{x.size} of the sum's, where this convention's grad = \"sum\" "
                        "asks for the gradient of the elements' summed loss; a course whose backward gives the "
                        "mean's: leave grad out")
    if ctx.kind == "bce_loss" and not _logits_in(ctx):
        quantities = _guarded(quantities, x, y, reduction, scale)
    return quantities


def _as_shaped(value, like):
    """A student's value in the reference's shape where it has as many numbers (a loss as a (1, 1) array), else
    itself (the comparison tells it)."""
    try:
        return np.reshape(np.asarray(value, dtype=np.float64), np.shape(like))
    except Exception:  # noqa: BLE001 - not numbers, or another size
        return value


def _guarded(quantities: Quantities, x: np.ndarray, y: np.ndarray, reduction: str, scale: float) -> Quantities:
    """A binary cross-entropy that guards its logs with a small epsilon, log(p + eps) or log(1 - p + eps) or both,
    or its gradient's denominators, p + eps and 1 - p + eps, or p (1 - p) + eps: graded against the loss with that
    epsilon where it is a guard (``GUARD_MARGIN`` times below every p and 1 - p, as for the cross-entropy's), each
    quantity with its own (a forward and a backward may guard differently); a quantity is given the guarded
    reference only where it fails the exact one and matches that one, so nothing else changes."""
    of = (1 / x.size if reduction == "mean" else 1.0) * scale

    def reduced(losses: np.ndarray):
        return losses if reduction == "none" else losses.mean() if reduction == "mean" else losses.sum()

    guarded = {"loss": lambda e1, e2: reduced(-(y * np.log(x + e1) + (1 - y) * np.log(1 - x + e2))),
               "dx": lambda e1, e2: (-y / (x + e1) + (1 - y) / (1 - x + e2)) * of}
    for k in ("loss", "dx"):
        if _passing({k: quantities[k]}):
            continue
        for eps in (e for e in LOG_EPSILONS if GUARD_MARGIN * e <= min(x.min(), 1 - x.max())):
            refs = [guarded[k](eps, eps), guarded[k](eps, 0.0), guarded[k](0.0, eps)]
            if k == "dx":
                refs.append((x - y) / (x * (1 - x) + eps) * of)
            match = next((r for r in refs if _passing({k: (quantities[k][0], [r])})), None)
            if match is not None:
                quantities = {**quantities, k: (quantities[k][0], [match])}
                break
    return quantities


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("mse_loss", "MSE loss", ("function",), ("loss",), _pointwise_configs, _pointwise, _shaped),
    Kind("l1_loss", "L1 loss", ("function",), ("loss",), _pointwise_configs, _pointwise, _shaped),
    Kind("bce_loss", "binary cross-entropy", ("function",), ("loss",), _pointwise_configs, _pointwise, _shaped),
)
