"""Losses, as torch.nn has them: ``CrossEntropyLoss`` (class or probability targets, class weights,
``ignore_index``, label smoothing), ``NLLLoss`` (on log-probabilities), ``MultiMarginLoss`` (the multiclass
hinge), the pointwise ``MSELoss`` and ``L1Loss``, and ``BCELoss`` and ``BCEWithLogitsLoss`` (binary targets);
each with torch's ``reduction`` ("mean", "sum" or "none"), and torch's constructor arguments in torch's order,
its deprecated ``size_average`` and ``reduce`` included."""

from __future__ import annotations

import warnings

import numpy as np

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.activation import _sigmoid
from twinnet.numpy_nn.module import Module

REDUCTIONS = ("mean", "sum", "none")


def _log_softmax(logits):
    xp = backend.xp(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)  # exp never overflows
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def _logits_2d(logits, loss: str) -> None:
    if logits.ndim != 2:
        raise ValueError(f"{loss} expects logits (N, C), got shape {tuple(logits.shape)}")


def _reduction(reduction: str, size_average=None, reduce=None, caller_level: int = 4) -> str:
    """The reduction asked for: ``reduction``, unless torch's deprecated ``size_average`` or ``reduce`` is given,
    which decide it as torch's do (both default to True: mean if both hold, sum if reduce alone, else none)."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
        warnings.warn(f"size_average and reduce are deprecated in torch; they give reduction={reduction!r} here, as "
                      "there: pass reduction instead", UserWarning, stacklevel=caller_level)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    return reduction


def _class_weight(weight, loss: str):
    """torch's ``weight``: a rescaling of each class's loss, a 1-d array of C values (or None)."""
    if weight is None:
        return None
    w = backend.xp(weight).asarray(weight)
    if w.ndim != 1 or w.dtype.kind not in "fiu":
        raise ValueError(f"{loss}: weight must be a 1-d array of one number per class, got shape "
                         f"{tuple(w.shape)} of dtype {w.dtype}")
    return w


def _class_targets(logits, target, loss: str, ignore_index: int | None = None):
    """``target`` as class indices for ``logits`` (N, C): integers, shape (N,), each in [0, C) or equal to
    ``ignore_index`` (a row left out). torch refuses anything else too."""
    xp = backend.xp(logits)
    n, c = logits.shape
    if target.dtype.kind not in "iu":
        raise ValueError(f"{loss}: class targets must be integers, got dtype {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"{loss}: class targets must have shape ({n},), one per row of the logits, got "
                         f"{tuple(target.shape)}")
    counted = target if ignore_index is None else target[target != ignore_index]
    low, high = (int(xp.min(counted)), int(xp.max(counted))) if counted.size else (0, 0)
    if low < 0 or high >= c:
        bad = low if low < 0 else high
        raise ValueError(f"{loss}: class target {bad} is outside [0, {c}) for {c} classes"
                         + (f" (and is not ignore_index, {ignore_index})" if ignore_index is not None else ""))
    return target


def _reduce(per_sample, reduction: str, denominator):
    """Each sample's loss (N,) as ``reduction`` asks: their sum over ``denominator``, their sum, or themselves."""
    if reduction == "none":
        return per_sample
    with np.errstate(invalid="ignore", divide="ignore"):  # every row ignored: nan, as torch's
        total = per_sample.sum()
        return total / denominator if reduction == "mean" else total


def _times_dout(grad, dout, reduction: str, denominator):
    """``grad`` (each sample's loss's gradient, one row per sample) times d(reduced loss) / d(that loss)."""
    if reduction == "none":
        dout = backend.xp(grad).asarray(dout, dtype=grad.dtype)
        return grad * dout.reshape(-1, *(1,) * (grad.ndim - 1)) if dout.ndim else grad * dout
    if reduction == "mean" and not denominator:  # every row ignored: no gradient (the loss is nan), as torch's
        return grad * 0
    return grad * (dout / denominator if reduction == "mean" else dout)


class _WeightedLoss(Module):
    def __init__(self, weight, reduction: str, loss: str, size_average=None, reduce=None) -> None:
        super().__init__()
        self.weight = _class_weight(weight, loss)
        self.reduction = _reduction(reduction, size_average, reduce)

    def _weights_for(self, logits):
        if self.weight is None:
            return None
        if self.weight.shape != (logits.shape[1],):
            raise ValueError(f"{type(self).__name__}: weight has {self.weight.shape[0]} values for "
                             f"{logits.shape[1]} classes")
        return self.weight.astype(logits.dtype)


def _counted(target, ignore_index, weight, xp):
    """For class targets: which rows count, the target with ignored rows sent to class 0, each row's class
    weight (None without ``weight``) and the mean's denominator: the counted rows' weights summed, or their
    number (torch's)."""
    keep = target != ignore_index
    safe = xp.where(keep, target, 0)
    if weight is None:
        return keep, safe, None, int(keep.sum())
    w = weight[safe] * keep
    return keep, safe, w, w.sum()


class CrossEntropyLoss(_WeightedLoss):
    """``torch.nn.CrossEntropyLoss(weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
    label_smoothing=0)``:
    ``forward(logits, target) -> loss``; ``backward(dout=1.0) -> dlogits``. ``target`` is either class indices,
    ints (N,), or class probabilities, floats shaped like the logits (N, C), as torch tells them apart. With
    class indices the mean divides by the counted rows' weights (their number without ``weight``), as torch's;
    with probabilities by N."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, reduction, "CrossEntropyLoss", size_average, reduce)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits, target):
        _logits_2d(logits, "CrossEntropyLoss")
        xp = backend.xp(logits)
        target = xp.asarray(target)
        n, c = logits.shape
        weight, eps = self._weights_for(logits), self.label_smoothing
        logp = _log_softmax(logits)
        if target.dtype.kind != "f":
            target = _class_targets(logits, target, "CrossEntropyLoss", self.ignore_index)
            keep, safe, w, denominator = _counted(target, self.ignore_index, weight, xp)
            nll = -logp[xp.arange(n), safe]
            if weight is None:
                # torch: (1 - eps) * nll + eps * mean over classes of -log p
                per = (1 - eps) * nll - eps * logp.mean(axis=1) if eps else nll
            else:  # ... each class's term weighted: the nll by w_y, the mean over classes by each class's w
                per = w * nll
                if eps:
                    per = (1 - eps) * per - (eps / c) * (logp * weight).sum(axis=1)
            if not keep.all():
                per = per * keep
            self._cache = ("classes", xp.exp(logp), safe, w, keep, weight, denominator)
        else:
            if target.shape != logits.shape:  # broadcasting (N,) or (C,) probabilities would be silently wrong
                raise ValueError(f"probability targets must have the logits' shape {tuple(logits.shape)}, "
                                 f"got {tuple(target.shape)}")
            if self.ignore_index >= 0:  # torch's refusal: no class of a probability target can be left out
                raise ValueError(f"ignore_index={self.ignore_index} is not supported for probability targets (torch "
                                 "refuses it too); leave it at its default")
            t = xp.asarray(target, dtype=logits.dtype)
            if eps:  # torch mixes the target with the uniform distribution; rows need not sum to 1
                t = (1 - eps) * t + eps / c
            if weight is not None:
                t = t * weight
            per, denominator = -(t * logp).sum(axis=1), n
            self._cache = ("probabilities", xp.exp(logp), t, denominator)
        return _reduce(per, self.reduction, denominator)

    def __call__(self, logits, target):
        return self.forward(logits, target)

    def backward(self, dout=1.0):
        kind, probs, *rest = self._cache
        xp = backend.xp(probs)
        n, c = probs.shape
        eps = self.label_smoothing
        if kind == "probabilities":
            t, denominator = rest  # d/dz of -sum_c t_c log p_c = p sum(t) - t: softmax - t for rows that sum to 1
            return _times_dout(probs * t.sum(axis=1, keepdims=True) - t, dout, self.reduction, denominator)
        safe, w, keep, weight, denominator = rest
        if weight is None:  # d/dz = softmax - smoothed one-hot
            grad = probs.copy()
            if eps:
                grad -= eps / c
            grad[xp.arange(n), safe] -= 1 - eps
        else:
            grad = probs * w[:, None]
            grad[xp.arange(n), safe] -= w
            if eps:  # d/dz of -(eps / C) sum_c w_c log p_c = (eps / C) (sum(w) p - w)
                grad = (1 - eps) * grad + (eps / c) * (weight.sum() * probs - weight)
        if not keep.all():
            grad *= keep[:, None]
        return _times_dout(grad, dout, self.reduction, denominator)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class NLLLoss(_WeightedLoss):
    """``torch.nn.NLLLoss(weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean")`` on
    log-probabilities (N, C) (a
    ``LogSoftmax``'s output): ``forward(logp, target) -> loss``, -w_y logp_y per row; ``backward(dout=1.0)``."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean") -> None:
        super().__init__(weight, reduction, "NLLLoss", size_average, reduce)
        self.ignore_index = ignore_index

    def forward(self, logp, target):
        _logits_2d(logp, "NLLLoss")
        xp = backend.xp(logp)
        target = _class_targets(logp, xp.asarray(target), "NLLLoss", self.ignore_index)
        keep, safe, w, denominator = _counted(target, self.ignore_index, self._weights_for(logp), xp)
        w = keep.astype(logp.dtype) if w is None else w
        self._push_cache((logp.shape, logp.dtype, safe, w, denominator))
        return _reduce(-w * logp[xp.arange(logp.shape[0]), safe], self.reduction, denominator)

    def backward(self, dout=1.0):
        shape, dtype, safe, w, denominator = self._pop_cache()
        xp = backend.xp(w)
        grad = xp.zeros(shape, dtype=dtype)
        grad[xp.arange(shape[0]), safe] = -w
        return _times_dout(grad, dout, self.reduction, denominator)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


class _Pointwise(Module):
    """A loss of each element of ``input`` against the same element of ``target`` (the same shape: torch would
    broadcast them, and warns that the result is likely wrong; this refuses), averaged, summed or kept per
    element; ``forward(input, target)``, ``backward(dout=1.0) -> dinput``."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", weight=None) -> None:
        super().__init__()
        self.reduction = _reduction(reduction, size_average, reduce, caller_level=4)
        self.weight = None if weight is None else backend.xp(weight).asarray(weight)

    def _terms(self, input, target):
        """Each element's loss and its derivative in the input."""
        raise NotImplementedError

    def forward(self, input, target):
        xp = backend.xp(input)
        target = xp.asarray(target)
        if target.shape != input.shape:
            raise ValueError(f"{type(self).__name__}: the target's shape {tuple(target.shape)} differs from the "
                             f"input's {tuple(input.shape)}; give them the same shape (torch would broadcast them, "
                             "and warns)")
        for name in ("weight", "pos_weight"):  # broadcast to the input, never beyond it (torch refuses that too)
            value = getattr(self, name, None)
            if value is not None and not _broadcasts_to(value.shape, input.shape):
                raise ValueError(f"{type(self).__name__}: {name} of shape {tuple(value.shape)} does not broadcast to "
                                 f"the input's {tuple(input.shape)}")
        loss, grad = self._terms(input, target.astype(input.dtype))
        if self.weight is not None:  # torch's weight: each element's loss rescaled, broadcast to the input
            w = self.weight.astype(input.dtype)
            loss, grad = loss * w, grad * w
        self._push_cache(grad)
        with np.errstate(invalid="ignore"):  # the mean of no elements: nan, as torch's, without a warning
            return loss if self.reduction == "none" else loss.sum() / loss.size if self.reduction == "mean" \
                else loss.sum()

    def backward(self, dout=1.0):
        grad = self._pop_cache()
        dout = backend.xp(grad).asarray(dout, dtype=grad.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):  # (no elements: an empty gradient)
            return grad * (dout / grad.size if self.reduction == "mean" else dout)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(_Pointwise):
    """``torch.nn.MSELoss(size_average=None, reduce=None, reduction="mean")``: (input - target)^2."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)

    def _terms(self, input, target):
        diff = input - target
        return diff * diff, 2 * diff


class L1Loss(_Pointwise):
    """``torch.nn.L1Loss(size_average=None, reduce=None, reduction="mean")``: |input - target|, whose gradient
    is torch's sign(input - target): 0 where they are equal."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)

    def _terms(self, input, target):
        diff = input - target
        return backend.xp(diff).abs(diff), backend.xp(diff).sign(diff)


_BCE_EPSILON = float(np.float32(1e-12))  # torch's floor of p (1 - p) in BCE's gradient: 1e-12 as a float32 constant


class BCELoss(_Pointwise):
    """``torch.nn.BCELoss(weight=None, size_average=None, reduce=None, reduction="mean")``: -(t log p + (1 - t)
    log(1 - p)) of probabilities p in [0, 1], each log clamped at -100 and the gradient's denominator p (1 - p)
    at 1e-12, as torch's (a finite loss and gradient at p = 0 or 1)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction, weight)

    def _terms(self, input, target):
        xp = backend.xp(input)
        if input.size and not (xp.min(input) >= 0 and xp.max(input) <= 1):  # (nan fails both)
            raise ValueError("BCELoss: every input must be a probability, in [0, 1] (as torch requires); for "
                             "scores (logits) use BCEWithLogitsLoss")
        with np.errstate(divide="ignore"):  # log(0) = -inf, clamped
            log_p, log_q = xp.maximum(xp.log(input), -100.0), xp.maximum(xp.log1p(-input), -100.0)
        loss = -(target * log_p + (1 - target) * log_q)
        return loss, (input - target) / xp.maximum(input * (1 - input), _BCE_EPSILON)


class BCEWithLogitsLoss(_Pointwise):
    """``torch.nn.BCEWithLogitsLoss(weight=None, size_average=None, reduce=None, reduction="mean",
    pos_weight=None)``: BCELoss of sigmoid(input), computed stably from the scores; ``pos_weight`` scales the
    positive targets' term, broadcast along the last dimension (one value per class)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight=None) -> None:
        super().__init__(size_average, reduce, reduction, weight)
        self.pos_weight = None if pos_weight is None else backend.xp(pos_weight).asarray(pos_weight)

    def _terms(self, input, target):
        xp = backend.xp(input)
        # log(1 + exp(-|x|)) + max(-x, 0) = -log sigmoid(x), with no exp that overflows
        softplus = xp.log1p(xp.exp(-xp.abs(input))) + xp.maximum(-input, 0)
        weight = 1.0 if self.pos_weight is None else 1 + (self.pos_weight.astype(input.dtype) - 1) * target
        loss = (1 - target) * input + weight * softplus
        positive = target if self.pos_weight is None else self.pos_weight.astype(input.dtype) * target
        return loss, _sigmoid(input) * weight - positive


class MultiMarginLoss(_WeightedLoss):
    """``torch.nn.MultiMarginLoss(p=1, margin=1, weight=None, size_average=None, reduce=None, reduction="mean")``,
    the multiclass SVM hinge:
    each row's sum over j != y of w_y max(0, margin - x_y + x_j)^p / C; ``forward(logits, target) -> loss``
    with target int (N,); ``backward(dout=1.0) -> dlogits``."""

    def __init__(self, p: int = 1, margin: float = 1.0, weight=None, size_average=None, reduce=None,
                 reduction: str = "mean") -> None:
        super().__init__(weight, reduction, "MultiMarginLoss", size_average, reduce)
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"MultiMarginLoss: only p = 1 and p = 2 are supported (as torch's), got {p!r}")
        self.p, self.margin = p, margin

    def forward(self, logits, target):
        _logits_2d(logits, "MultiMarginLoss")
        xp = backend.xp(logits)
        target = _class_targets(logits, xp.asarray(target), "MultiMarginLoss")
        n, c = logits.shape
        rows = xp.arange(n)
        z = self.margin - logits[rows, target][:, None] + logits  # (N, C)
        active = z > 0  # torch's hinge: only strictly positive terms count, in the loss and in the gradient
        active[rows, target] = False  # j = y is left out of the sum
        hinge = z * active
        terms = hinge * hinge if self.p == 2 else hinge
        # d term / d z: 1 (p = 1) or 2 z (p = 2), for the active terms; d z / d x: 1 at j, -1 at y
        dz = (2 * hinge if self.p == 2 else active.astype(logits.dtype)) / c
        weight = self._weights_for(logits)
        if weight is not None:  # torch scales each term by w_y after the power (its docs put w_y inside)
            terms, dz = terms * weight[target][:, None], dz * weight[target][:, None]
        per = terms.sum(axis=1) / c
        self._push_cache((dz, target, n))
        return _reduce(per, self.reduction, n)

    def backward(self, dout=1.0):
        dz, target, n = self._pop_cache()
        grad = dz.copy()
        grad[backend.xp(dz).arange(n), target] = -dz.sum(axis=1)
        return _times_dout(grad, dout, self.reduction, n)

    def extra_repr(self) -> str:
        return f"p={self.p}, margin={self.margin}, reduction={self.reduction!r}"
