"""Flatten: (N, d1, d2, ...) -> (N, d1*d2*...), as ``torch.nn.Flatten()``."""

from __future__ import annotations

from twinnet.numpy_nn.module import Module


class Flatten(Module):
    def forward(self, x):
        self._push_cache(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._pop_cache())
