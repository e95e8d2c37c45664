"""The functional losses (softmax and SVM), and what a loss's failure is told by: labels read another way,
underflow and overflow, an epsilon inside its log, the whole batch's largest score subtracted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from twinnet import numpy_nn as nn
from twinnet.grader.compare import Wrong, unchanged
from twinnet.grader.kinds.base import (
    Context, Kind, Quantities, _attempt, _close, _g, _pair, _passing, _probe, _shown, _t)


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


# what courses add inside a loss's log (-log(p + 1e-7)) so that it never reads log(0); float64's machine epsilon
LOG_EPSILONS = tuple(10.0 ** -k for k in range(4, 17)) + (float(np.finfo(np.float64).eps), 1e-20)


def _eps_shown(eps: float) -> str:
    """An epsilon as a course writes it: 1e-7 and 1e-4, not 1e-07 or 0.0001."""
    mantissa, exponent = f"{eps:.3e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


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
            shown = _eps_shown(eps)
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


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("softmax_loss", "softmax loss", ("function",), (), _loss_configs, _softmax_loss),
    Kind("svm_loss", "SVM (hinge) loss", ("function",), (), _loss_configs, _svm_loss),
)
