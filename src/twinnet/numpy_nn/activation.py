"""Elementwise activations; each caches what its derivative needs."""

from __future__ import annotations

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module


class ReLU(Module):
    """max(x, 0); the gradient at exactly 0 is 0, as in torch."""

    def forward(self, x):
        mask = x > 0
        self._push_cache(mask)
        return x * mask

    def backward(self, dout):
        return dout * self._pop_cache()


class Tanh(Module):
    """tanh(x); d/dx = 1 - tanh(x)^2."""

    def forward(self, x):
        out = backend.xp().tanh(x)
        self._push_cache(out)
        return out

    def backward(self, dout):
        out = self._pop_cache()
        return dout * (1 - out * out)


class Sigmoid(Module):
    """1 / (1 + exp(-x)); d/dx = s (1 - s)."""

    def forward(self, x):
        xp = backend.xp()
        # tanh form never overflows, unlike 1/(1+exp(-x)) for large negative x
        out = 0.5 * (1 + xp.tanh(0.5 * x))
        self._push_cache(out)
        return out

    def backward(self, dout):
        out = self._pop_cache()
        return dout * out * (1 - out)
