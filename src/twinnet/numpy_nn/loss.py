"""Losses on raw logits with mean reduction: ``torch.nn.CrossEntropyLoss`` (class or probability targets)
and ``torch.nn.MultiMarginLoss`` (the multiclass hinge)."""

from __future__ import annotations

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module


def _log_softmax(logits):
    xp = backend.xp(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)  # exp never overflows
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def _logits_2d(logits, loss: str) -> None:
    if logits.ndim != 2:
        raise ValueError(f"{loss} expects logits (N, C), got shape {tuple(logits.shape)}")


def _class_targets(logits, target, loss: str):
    """``target`` as class indices for ``logits`` (N, C): integers, shape (N,), each in [0, C). torch refuses
    anything else too, except -100, which its CrossEntropyLoss skips by default (ignore_index) and this one
    does not."""
    xp = backend.xp(logits)
    n, c = logits.shape
    if target.dtype.kind not in "iu":
        raise ValueError(f"{loss}: class targets must be integers, got dtype {target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"{loss}: class targets must have shape ({n},), one per row of the logits, got "
                         f"{tuple(target.shape)}")
    low, high = (int(xp.min(target)), int(xp.max(target))) if n else (0, 0)
    if low < 0 or high >= c:
        bad = low if low < 0 else high
        skip = (" (torch's CrossEntropyLoss skips -100 by default, ignore_index; this one takes no ignore_index: "
                "leave those rows out)") if bad == -100 and loss == "CrossEntropyLoss" else ""
        raise ValueError(f"{loss}: class target {bad} is outside [0, {c}) for {c} classes{skip}")
    return target


def _cross_entropy_forward(logits, target, label_smoothing):
    """logits (N, C), target int (N,) -> mean loss, cache (softmax probabilities, target)."""
    xp = backend.xp(logits)
    n, c = logits.shape
    logp = _log_softmax(logits)
    nll = -logp[xp.arange(n), target]
    if label_smoothing:
        # torch: (1 - eps) * nll + eps * mean over classes of -log p
        nll = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
    return nll.mean(), (xp.exp(logp), target, label_smoothing)


def _cross_entropy_backward(dout, cache):
    """d(mean loss)/d logits = (softmax - smoothed one-hot) / N."""
    probs, target, eps = cache
    xp = backend.xp(probs)
    n, c = probs.shape
    grad = probs.copy()
    if eps:
        grad -= eps / c
    grad[xp.arange(n), target] -= 1 - eps
    return grad * (dout / n)


def _soft_cross_entropy_forward(logits, target, label_smoothing):
    """logits (N, C), target probabilities (N, C) -> mean loss, cache (softmax probabilities, smoothed target).

    torch mixes the target with the uniform distribution, t' = (1 - eps) t + eps / C, and takes
    -sum_c t'_c log p_c per row; rows need not sum to 1 (nor does torch ask them to).
    """
    xp = backend.xp(logits)
    c = logits.shape[1]
    t = xp.asarray(target, dtype=logits.dtype)
    if label_smoothing:
        t = (1 - label_smoothing) * t + label_smoothing / c
    logp = _log_softmax(logits)
    return -(t * logp).sum(axis=1).mean(), (xp.exp(logp), t)


def _soft_cross_entropy_backward(dout, cache):
    """d(mean loss)/d logits = (softmax * sum_c t'_c - t') / N: softmax - t' for rows that sum to 1."""
    probs, t = cache
    return (probs * t.sum(axis=1, keepdims=True) - t) * (dout / len(t))


class CrossEntropyLoss(Module):
    """``forward(logits, target) -> loss``; ``backward(dout=1.0) -> dlogits``. ``target`` is either class
    indices, ints (N,), or class probabilities, floats shaped like the logits (N, C), as torch tells them apart."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits, target):
        _logits_2d(logits, "CrossEntropyLoss")
        target = backend.xp(logits).asarray(target)
        if target.dtype.kind != "f":
            target = _class_targets(logits, target, "CrossEntropyLoss")
            loss, cache = _cross_entropy_forward(logits, target, self.label_smoothing)
            self._cache = (False, cache)
            return loss
        if target.shape != logits.shape:  # broadcasting (N,) or (C,) probabilities would be silently wrong
            raise ValueError(f"probability targets must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(target.shape)}")
        loss, cache = _soft_cross_entropy_forward(logits, target, self.label_smoothing)
        self._cache = (True, cache)
        return loss

    def __call__(self, logits, target):
        return self.forward(logits, target)

    def backward(self, dout=1.0):
        soft, cache = self._cache
        return _soft_cross_entropy_backward(dout, cache) if soft else _cross_entropy_backward(dout, cache)


def _multi_margin_forward(logits, target, margin):
    """logits (N, C), target int (N,) -> mean over rows of sum_{j != y} max(0, margin - x_y + x_j) / C, cache."""
    xp = backend.xp(logits)
    n, c = logits.shape
    rows = xp.arange(n)
    z = margin - logits[rows, target][:, None] + logits  # (N, C)
    active = z > 0  # torch's hinge: only strictly positive terms count, in the loss and in the gradient
    active[rows, target] = False  # j = y is left out of the sum
    return (z * active).sum() / (n * c), (active, target, logits.dtype)


def _multi_margin_backward(dout, cache):
    """Each active term (j, y) adds +1 to dlogits[j] and -1 to dlogits[y], all divided by N C."""
    active, target, dtype = cache
    n, c = active.shape
    grad = active.astype(dtype)
    grad[backend.xp(active).arange(n), target] = -active.sum(axis=1)
    return grad * (dout / (n * c))


class MultiMarginLoss(Module):
    """``torch.nn.MultiMarginLoss(p=1, margin)``, the multiclass SVM hinge: ``forward(logits, target) -> loss``
    with target int (N,); ``backward(dout=1.0) -> dlogits``."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, logits, target):
        _logits_2d(logits, "MultiMarginLoss")
        target = _class_targets(logits, backend.xp(logits).asarray(target), "MultiMarginLoss")
        loss, cache = _multi_margin_forward(logits, target, self.margin)
        self._push_cache(cache)
        return loss

    def backward(self, dout=1.0):
        return _multi_margin_backward(dout, self._pop_cache())

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
