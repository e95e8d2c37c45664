"""Elementwise activations; each caches what its derivative needs."""

from __future__ import annotations

import math

import numpy as np

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module


def _sigmoid(x):
    """1 / (1 + exp(-x)) to full relative precision on both sides, as torch's: from exp(-|x|), which never
    overflows. (The tanh form 0.5 (1 + tanh(x / 2)) cancels below x = -20 and gives 0 below about -37.)"""
    xp = backend.xp(x)
    e = xp.asarray(xp.abs(x), dtype=xp.result_type(x.dtype, xp.float16))  # a new array, floating, also at 0-d
    with np.errstate(under="ignore"):  # exp(-|x|) of 0 below x = -745 is the right answer, not an error
        xp.negative(e, out=e)
        xp.exp(e, out=e)
        d = e + 1
        xp.maximum(e, x >= 0, out=e)  # the numerator: 1 where x >= 0, e below (faster than a where)
        e /= d
    return e


class _MaybeInplace(Module):
    """An activation taking torch's ``inplace`` flag. Its output is a new array either way, with torch's values
    and gradients: writing into the input could corrupt what an earlier layer cached for its backward (a
    pooling layer's output, say), which torch's autograd would detect and this engine cannot."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_MaybeInplace):
    """max(x, 0); the gradient at exactly 0 is 0, as in torch. Split over the engine's threads."""

    def forward(self, x):
        xp = backend.xp(x)
        out = xp.empty_like(x)  # keeps x's memory layout (channels-last stays channels-last)
        rows, into = xp.atleast_1d(x, out)  # a 0-d input as one row of one (views: out is written)
        backend.parallel(lambda s: xp.maximum(rows[s], 0, out=into[s]), rows.shape[0], x.size, like=x)
        self._push_cache(out)
        return out

    def backward(self, dout):
        out = self._pop_cache()
        xp = backend.xp(out)
        dx = xp.empty_like(out)
        rows, grads, into = xp.atleast_1d(out, xp.asarray(dout), dx)
        # torch passes the gradient wherever the output is not <= 0: a NaN output passes it too
        backend.parallel(lambda s: xp.multiply(grads[s], ~(rows[s] <= 0), out=into[s]), rows.shape[0], out.size,
                         like=out)
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
        out = _sigmoid(x)
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


class SiLU(_MaybeInplace):
    """``torch.nn.SiLU``: x * sigmoid(x); d/dx = s (1 + x (1 - s)) with s = sigmoid(x)."""

    def forward(self, x):
        s = _sigmoid(x)
        self._push_cache((x, s))
        return x * s

    def backward(self, dout):
        x, s = self._pop_cache()
        return dout * (s * (1 + x * (1 - s)))


class ELU(_MaybeInplace):
    """``torch.nn.ELU(alpha)``: x for x > 0, alpha (exp(x) - 1) otherwise; the gradient at 0 is alpha, as in torch."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.alpha = alpha

    def forward(self, x):
        xp = backend.xp(x)
        neg = xp.minimum(x, 0)  # exp of the positive side, unused, would overflow for large x
        positive = ~(x <= 0)  # as torch's: a NaN takes the positive side (its gradient is 1)
        out = xp.where(positive, x, self.alpha * xp.expm1(neg))
        self._push_cache((positive, neg))
        return out

    def backward(self, dout):
        positive, neg = self._pop_cache()
        xp = backend.xp(neg)
        return dout * xp.where(positive, 1, self.alpha * xp.exp(neg))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class LeakyReLU(_MaybeInplace):
    """``torch.nn.LeakyReLU(negative_slope)``: x for x > 0, negative_slope * x otherwise (also the gradient at 0)."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def forward(self, x):
        positive = x > 0
        self._push_cache(positive)
        return backend.xp(x).where(positive, x, self.negative_slope * x)

    def backward(self, dout):
        positive = self._pop_cache()
        return backend.xp(dout).where(positive, dout, self.negative_slope * dout)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Softmax(Module):
    """``torch.nn.Softmax(dim)``: exp(x) / sum(exp(x)) along ``dim``, shifted by the maximum so exp never overflows.
    ``dim=None`` (torch's default) takes torch's implicit choice: dim 0 for 0-, 1- and 3-d inputs, else dim 1."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def _axis(self, x) -> int:
        return self.dim if self.dim is not None else (0 if x.ndim in (0, 1, 3) else 1)

    def forward(self, x):
        xp = backend.xp(x)
        axis = self._axis(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)
        self._push_cache(out)
        return out

    def backward(self, dout):
        s = self._pop_cache()
        # Jacobian diag(s) - s s^T applied to dout, along dim: s * (dout - <dout, s>)
        return s * (dout - (dout * s).sum(axis=self._axis(s), keepdims=True))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``torch.nn.LogSoftmax(dim)``: x - log(sum(exp(x))) along ``dim`` (shifted by the maximum), computed
    directly rather than as log(softmax), which underflows; ``dim=None`` as ``Softmax``'s."""

    def forward(self, x):
        xp = backend.xp(x)
        axis = self._axis(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self._push_cache(out)
        return out

    def backward(self, dout):
        out = self._pop_cache()
        # Jacobian I - 1 softmax^T applied to dout, along dim: dout - softmax * sum(dout)
        return dout - backend.xp(out).exp(out) * dout.sum(axis=self._axis(out), keepdims=True)


class Scale(Module):
    """Multiply by a fixed ``factor`` (airbench's output scaling): no parameters."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x):
        return x * self.factor

    def backward(self, dout):
        return dout * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"
