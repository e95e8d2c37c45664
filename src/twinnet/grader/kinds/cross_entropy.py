"""Softmax + cross-entropy in the module style: a loss class or function, with a convention's reduction,
layout (logits or probabilities) and targets (labels or one-hot).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from twinnet.grader.compare import Wrong, unchanged
from twinnet.grader.kinds.base import (
    Context, Kind, NotApplicable, Quantities, _attempt, _close, _g, _passing, _shown, _t)
from twinnet.grader.kinds.losses import (
    _BATCH_MAX, _batch_max_rows, _cross_entropy_with, _eps_shown, _labels_cause, _log_epsilon, _logits,
    _loss_configs, _not_finite, _overflow, _underflow)
from twinnet.grader.kinds.modules import _backward, _build, _positional
from twinnet.grader.loader import StudentError


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
    if (guard := ctx.entry.get("log_epsilon")) is not None:
        # the course's own loss guards its log (Deep Learning from Scratch's -log(p + 1e-7)): a loss that does so
        # is graded against that, one exact without it against the exact one
        guarded = _cross_entropy_with(x, y, reduction, guard)[0]
        if not _passing({"loss": (loss, [loss_ref])}) and _passing({"loss": (loss, [guarded])}):
            loss_ref = guarded
    # a loss of logits that overflowed, or one whose softmax was stable and its log was not (inf, or nan; each
    # sample's loss kept, only nan: its inf is told by the comparison, as the overflow's advice would not fit)
    if not shown and (_not_finite(loss, nan_only=reduction == "none") or _not_finite(dx)):
        try:
            if reduction != "none":
                _underflow(loss, loss_ref, dx, dx_ref)
            _overflow(x, loss, dx)  # (an inf loss beside a finite dx, where not told here: told below)
        except Wrong as e:
            if guard is None:
                raise
            raise Wrong(f"{e}; or, as this course's own loss does, -log(p + {_eps_shown(guard)})") from None
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
    except Exception:  # noqa: BLE001 - a ragged list, a list of tensors that need grad: the comparison tells it
        return None


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("softmax_cross_entropy", "softmax + cross-entropy", (), ("loss",), _loss_configs, _softmax_ce),
)
