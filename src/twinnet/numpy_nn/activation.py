"""Elementwise activations; each caches what its derivative needs."""

from __future__ import annotations

import math

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module


class ReLU(Module):
    """max(x, 0); the gradient at exactly 0 is 0, as in torch. Split over the engine's threads."""

    def forward(self, x):
        xp = backend.xp(x)
        out = xp.empty_like(x)  # keeps x's memory layout (channels-last stays channels-last)
        backend.parallel(lambda s: xp.maximum(x[s], 0, out=out[s]), x.shape[0] if x.ndim else 1, x.size, like=x)
        self._push_cache(out)
        return out

    def backward(self, dout):
        out = self._pop_cache()
        xp = backend.xp(out)
        dx = xp.empty_like(out)
        backend.parallel(lambda s: xp.multiply(dout[s], out[s] > 0, out=dx[s]), out.shape[0] if out.ndim else 1,
                         out.size, like=out)
        return dx


class Tanh(Module):
    """tanh(x); d/dx = 1 - tanh(x)^2."""

    def forward(self, x):
        out = backend.xp(x).tanh(x)
        self._push_cache(out)
        return out

    def backward(self, dout):
        out = self._pop_cache()
        return dout * (1 - out * out)


class Sigmoid(Module):
    """1 / (1 + exp(-x)); d/dx = s (1 - s)."""

    def forward(self, x):
        xp = backend.xp(x)
        # tanh form never overflows, unlike 1/(1+exp(-x)) for large negative x
        out = 0.5 * (1 + xp.tanh(0.5 * x))
        self._push_cache(out)
        return out

    def backward(self, dout):
        out = self._pop_cache()
        return dout * out * (1 - out)


class GELU(Module):
    """``torch.nn.GELU(approximate="none" | "tanh")``: x * Phi(x)."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        xp = backend.xp(x)
        if self.approximate == "tanh":
            k = x.dtype.type(math.sqrt(2 / math.pi))
            t = xp.tanh(k * (x + 0.044715 * x**3))
            self._push_cache((x, t))
            return 0.5 * x * (1 + t)
        cdf = 0.5 * (1 + backend.erf(x / x.dtype.type(math.sqrt(2))))
        self._push_cache((x, cdf))
        return x * cdf

    def backward(self, dout):
        x, t_or_cdf = self._pop_cache()
        xp = backend.xp(x)
        if self.approximate == "tanh":
            k = x.dtype.type(math.sqrt(2 / math.pi))
            t = t_or_cdf
            return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
        pdf = xp.exp(-0.5 * x * x) / x.dtype.type(math.sqrt(2 * math.pi))
        return dout * (t_or_cdf + x * pdf)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"
