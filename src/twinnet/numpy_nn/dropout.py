"""Inverted dropout: zero each input with probability p in training, scale the rest by 1/(1-p)."""

from __future__ import annotations

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module


class Dropout(Module):
    """``torch.nn.Dropout(p)``; identity in eval mode. Masks come from the module's ``generator``."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._push_cache(None)
            return x
        keep = self.generator.random(x.shape, dtype="float32") >= self.p
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        mask = backend.xp(x).asarray(keep, dtype=x.dtype) * x.dtype.type(scale)
        self._push_cache(mask)
        return x * mask

    def backward(self, dout):
        mask = self._pop_cache()
        return dout if mask is None else dout * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
