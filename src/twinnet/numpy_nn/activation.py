"""Elementwise activations; each caches what its derivative needs."""

from __future__ import annotations

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module


class ReLU(Module):
    """max(x, 0); the gradient at exactly 0 is 0, as in torch."""

    def forward(self, x):
        self._mask = x > 0
        return x * self._mask

    def backward(self, dout):
        return dout * self._mask


class Tanh(Module):
    """tanh(x); d/dx = 1 - tanh(x)^2."""

    def forward(self, x):
        self._out = backend.xp().tanh(x)
        return self._out

    def backward(self, dout):
        return dout * (1 - self._out * self._out)


class Sigmoid(Module):
    """1 / (1 + exp(-x)); d/dx = s (1 - s)."""

    def forward(self, x):
        xp = backend.xp()
        # tanh form never overflows, unlike 1/(1+exp(-x)) for large negative x
        self._out = 0.5 * (1 + xp.tanh(0.5 * x))
        return self._out

    def backward(self, dout):
        return dout * self._out * (1 - self._out)
