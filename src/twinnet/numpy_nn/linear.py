"""Linear layer: y = x W^T + b, with W of layout (out_features, in_features) as in torch."""

from __future__ import annotations

import math

from twinnet.numpy_nn import init
from twinnet.numpy_nn.module import Module, Parameter, factory_dtype


def _linear_forward(x, weight, bias):
    """x (N, in), weight (out, in), bias (out,) or None -> out (N, out), cache."""
    out = x @ weight.T
    if bias is not None:
        out += bias
    return out, (x, weight)


def _linear_backward(dout, cache):
    """dout (N, out) -> dx (N, in), dweight (out, in), dbias (out,)."""
    x, weight = cache
    dx = dout @ weight
    dweight = dout.T @ x
    dbias = dout.sum(axis=0)
    return dx, dweight, dbias


class Linear(Module):
    """``torch.nn.Linear``: any leading dimensions, features last."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        dtype = factory_dtype(dtype)
        self.weight = Parameter(init.default_weight((out_features, in_features), dtype))
        self.bias = Parameter(init.default_bias(self.weight.shape, out_features, dtype)) if bias else None
        if device is not None:
            self.to(device=device)

    def forward(self, x):
        if not x.ndim or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) takes inputs whose last dimension is "
                             f"{self.in_features} features, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        rows = math.prod(lead)  # not -1, which a layer of 0 features could not resolve
        out, cache = _linear_forward(
            x.reshape(rows, self.in_features), self.weight.data, None if self.bias is None else self.bias.data
        )
        self._push_cache((cache, lead))
        return out.reshape(*lead, self.out_features)

    def backward(self, dout):
        cache, lead = self._pop_cache()
        dx, dweight, dbias = _linear_backward(dout.reshape(math.prod(lead), self.out_features), cache)
        self.weight.accumulate(dweight)
        if self.bias is not None:
            self.bias.accumulate(dbias)
        return dx.reshape(*lead, self.in_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
