"""Softmax cross-entropy on raw logits, as ``torch.nn.CrossEntropyLoss`` (mean reduction)."""

from __future__ import annotations

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module


def _log_softmax(logits):
    xp = backend.xp(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)  # exp never overflows
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


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


class CrossEntropyLoss(Module):
    """``forward(logits, target) -> loss``; ``backward(dout=1.0) -> dlogits``."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits, target):
        loss, self._cache = _cross_entropy_forward(logits, target, self.label_smoothing)
        return loss

    def __call__(self, logits, target):
        return self.forward(logits, target)

    def backward(self, dout=1.0):
        return _cross_entropy_backward(dout, self._cache)
