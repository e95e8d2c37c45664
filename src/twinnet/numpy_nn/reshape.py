"""Flatten: dimensions start_dim..end_dim merged into one, as ``torch.nn.Flatten(start_dim=1, end_dim=-1)``."""

from __future__ import annotations

import math

from twinnet.numpy_nn.module import Module


class Flatten(Module):
    """``torch.nn.Flatten``: (N, d1, d2, ...) -> (N, d1*d2*...) by default; dimensions may count from the end."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        shape = tuple(x.shape)
        ndim = max(len(shape), 1)  # torch flattens a 0-d input to one entry with start and end 0 (or -1)
        start, end = (d + ndim if d < 0 else d for d in (self.start_dim, self.end_dim))
        if not (0 <= start < ndim and 0 <= end < ndim):
            raise IndexError(f"Flatten({self.start_dim}, {self.end_dim}) is out of range for an input of shape {shape}")
        if start > end:
            raise ValueError(f"Flatten's start_dim ({self.start_dim}) must not come after end_dim ({self.end_dim}) "
                             f"for an input of shape {shape}")
        self._push_cache(shape)
        return x.reshape(*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])

    def backward(self, dout):
        return dout.reshape(self._pop_cache())

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
