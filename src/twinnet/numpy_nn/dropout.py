"""Inverted dropout: zero each input with probability p in training, scale the rest by 1/(1-p)."""

from __future__ import annotations

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module


class Dropout(Module):
    """``torch.nn.Dropout(p)``; identity in eval mode. Masks come from the module's ``generator``, or from
    ``forward``'s ``mask``. ``inplace`` as the activations': the output is a new array, with torch's values."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, bool(inplace)

    def forward(self, x, mask=None):
        """In training, x * keep / (1 - p) with ``keep`` drawn, or ``mask`` (0/1, x's shape) when given: a
        mask known outside lets another dropout be compared with this one. Identity in eval mode."""
        if not self.training or (self.p == 0.0 and mask is None):
            self._push_cache(None)
            return x
        xp = backend.xp(x)
        if mask is None:
            keep = self.generator.random(x.shape, dtype="float32") >= self.p
        else:
            keep = xp.asarray(mask)
            if keep.shape != x.shape:
                raise ValueError(f"dropout mask must have the input's shape {tuple(x.shape)}, got {tuple(keep.shape)}")
            if not ((keep == 0) | (keep == 1)).all():  # a mask already scaled by 1/(1-p) would be scaled twice
                raise ValueError("dropout mask must hold only 0 (dropped) and 1 (kept)")
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        scaled = xp.asarray(keep, dtype=x.dtype) * x.dtype.type(scale)
        self._push_cache(scaled)
        return x * scaled

    def backward(self, dout):
        scaled = self._pop_cache()
        return dout if scaled is None else dout * scaled

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
