"""Batch normalisation over channels-last rows, with torch's running statistics and buffers; layer normalisation
over each sample's trailing dimensions."""

from __future__ import annotations

import math

import numpy as np

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.conv import nhwc
from twinnet.numpy_nn.module import Module, Parameter, factory_dtype


def _chunked_sums(fn, rows):
    """The sum of ``fn(s)`` over slices ``s`` covering the rows of the 2-D array ``rows``, computed on every thread."""
    results: dict[int, object] = {}

    def run(s):
        results[s.start] = fn(s)

    backend.parallel(run, rows.shape[0], rows.size, like=rows)
    return sum(results[k] for k in sorted(results))  # a fixed order: the result does not depend on timing


def _bn_forward(x2, gamma, beta, eps, mean=None, var=None):
    """x2 (M, C) -> out (M, C), cache. Batch statistics unless ``mean``/``var`` are given (eval).

    Two passes for the variance (mean first), as a one-pass sum of squares loses float32 digits.
    """
    xp = backend.xp(x2)
    m, c = x2.shape
    xhat = xp.empty_like(x2)
    out = xp.empty_like(x2)
    if mean is None:
        mean = _chunked_sums(lambda s: backend.colsum(x2[s]), x2) / m

        def centre(s):
            xp.subtract(x2[s], mean, out=xhat[s])
            return xp.einsum("ij,ij->j", xhat[s], xhat[s])

        var = _chunked_sums(centre, x2) / m  # biased, as torch normalises with
        centred = True
    else:
        centred = False
    invstd = 1.0 / xp.sqrt(var + eps)

    def normalise(s):
        if not centred:
            xp.subtract(x2[s], mean, out=xhat[s])
        xhat[s] *= invstd
        xp.multiply(xhat[s], gamma, out=out[s])
        out[s] += beta

    backend.parallel(normalise, m, x2.size, like=x2)
    return out, (xhat, gamma, invstd, mean, var)


def _bn_backward(dout2, cache, batch_stats: bool):
    """dout2 (M, C) -> dx (M, C), dgamma (C,), dbeta (C,)."""
    xp = backend.xp(dout2)
    xhat, gamma, invstd, _, _ = cache
    m, c = dout2.shape
    # both sums in one pass over the rows, while each block is in cache
    both = _chunked_sums(lambda s: xp.stack([backend.colsum(dout2[s]), xp.einsum("ij,ij->j", dout2[s], xhat[s])]),
                         dout2)
    dbeta, dgamma = both[0], both[1]
    scale = gamma * invstd
    dx = xp.empty_like(dout2)
    if not batch_stats:  # eval mode: an affine map with constant statistics
        backend.parallel(lambda s: xp.multiply(dout2[s], scale, out=dx[s]), m, dout2.size, like=dout2)
        return dx, dgamma, dbeta

    def grad(s):  # dx = gamma*invstd * (dout - mean(dout) - xhat * mean(dout*xhat))
        xp.multiply(xhat[s], -dgamma / m, out=dx[s])
        dx[s] += dout2[s]
        dx[s] -= dbeta / m
        dx[s] *= scale

    backend.parallel(grad, m, dout2.size, like=dout2)
    return dx, dgamma, dbeta


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d: parameters and buffers named as torch names them."""

    _ndims: tuple[int, ...] = ()  # the input dimensions the subclass takes

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = factory_dtype(dtype)
        # as torch: weight and bias None without ``affine``, bias None with ``bias`` False
        self.weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype=dtype)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        if device is not None:
            self.to(device=device)

    # channels-last 2-D view of the input, and back
    def _rows(self, x):
        raise NotImplementedError

    def _unrows(self, x2, shape):
        raise NotImplementedError

    def forward(self, x):
        xp = backend.xp(x)
        if x.ndim not in self._ndims:
            raise ValueError(f"{type(self).__name__} expects {' or '.join(f'{d}D' for d in self._ndims)} input, "
                             f"got {x.ndim}D input of shape {tuple(x.shape)}")
        x2 = self._rows(x)
        if x2.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got {x2.shape[1]} channels")
        dtype = x2.dtype
        gamma = self.weight.data if self.weight is not None else xp.ones(self.num_features, dtype=dtype)
        beta = self.bias.data if self.bias is not None else xp.zeros(self.num_features, dtype=dtype)
        batch_stats = self.training or not self.track_running_stats
        if batch_stats:
            m = x2.shape[0]
            if m <= 1:  # torch passes an empty batch through; here, as one sample, it has no statistics
                raise ValueError(f"expected more than 1 value per channel when training, got input of shape {x.shape}"
                                 + (" (an empty batch)" if m == 0 else ""))
            out, cache = _bn_forward(x2, gamma, beta, self.eps)
            if self.training and self.track_running_stats:
                self.num_batches_tracked += 1
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                _, _, _, mean, var = cache
                self.running_mean *= 1 - f
                self.running_mean += f * mean
                self.running_var *= 1 - f
                self.running_var += (f * m / (m - 1)) * var  # running variance is unbiased, as in torch
        else:
            out, cache = _bn_forward(x2, gamma, beta, self.eps, self.running_mean, self.running_var)
        self._push_cache((cache, batch_stats, x.shape))
        return self._unrows(out, x.shape)

    def backward(self, dout):
        cache, batch_stats, shape = self._pop_cache()
        dx2, dgamma, dbeta = _bn_backward(self._rows(dout), cache, batch_stats)
        if self.weight is not None:
            self.weight.accumulate(dgamma)
        if self.bias is not None:
            self.bias.accumulate(dbeta)
        return self._unrows(dx2, shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d``: input (N, C) or (N, C, L)."""

    _ndims = (2, 3)

    def _rows(self, x):
        xp = backend.xp(x)
        return x if x.ndim == 2 else xp.ascontiguousarray(x.transpose(0, 2, 1)).reshape(-1, x.shape[1])

    def _unrows(self, x2, shape):
        return x2 if len(shape) == 2 else x2.reshape(shape[0], shape[2], shape[1]).transpose(0, 2, 1)


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d``: input (N, C, H, W); works on channels-last memory."""

    _ndims = (4,)

    def _rows(self, x):
        return nhwc(x).reshape(-1, x.shape[1])

    def _unrows(self, x2, shape):
        n, c, h, w = shape
        return x2.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _ln_forward(x2, weight, bias, eps):
    """x2 (M, D): each row normalised on its own -> out (M, D), cache. weight, bias (D,) or None."""
    mean = x2.mean(axis=1, keepdims=True)
    xc = x2 - mean
    invstd = 1.0 / backend.xp(x2).sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)  # biased variance, as torch
    xhat = xc * invstd
    out = xhat if weight is None else xhat * weight
    if bias is not None:
        out = out + bias
    return out, (xhat, invstd, weight)


def _ln_backward(dout2, cache):
    """dout2 (M, D) -> dx (M, D), dweight (D,), dbias (D,)."""
    xhat, invstd, weight = cache
    dweight = (dout2 * xhat).sum(axis=0)
    dbias = dout2.sum(axis=0)
    dxhat = dout2 if weight is None else dout2 * weight
    # dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), means over the row
    dx = invstd * (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))
    return dx, dweight, dbias


class LayerNorm(Module):
    """``torch.nn.LayerNorm``: each sample normalised over its trailing ``normalized_shape`` dimensions, then
    scaled by ``weight`` and shifted by ``bias``, both shaped ``normalized_shape``."""

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        dtype = factory_dtype(dtype)
        self.weight = Parameter(np.ones(shape, dtype=dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, dtype=dtype)) if elementwise_affine and bias else None
        if device is not None:
            self.to(device=device)

    def forward(self, x):
        k = len(self.normalized_shape)
        if tuple(x.shape[x.ndim - k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm({self.normalized_shape}) got input of shape {tuple(x.shape)}: "
                             f"its last {k} dimensions must be {self.normalized_shape}")
        weight = None if self.weight is None else self.weight.data.reshape(-1)
        bias = None if self.bias is None else self.bias.data.reshape(-1)
        out, cache = _ln_forward(x.reshape(-1, math.prod(self.normalized_shape)), weight, bias, self.eps)  # (M, D)
        self._push_cache((cache, x.shape))
        return out.reshape(x.shape)

    def backward(self, dout):
        cache, shape = self._pop_cache()
        dx2, dweight, dbias = _ln_backward(dout.reshape(cache[0].shape), cache)
        if self.weight is not None:
            self.weight.accumulate(dweight.reshape(self.normalized_shape), owned=True)
        if self.bias is not None:
            self.bias.accumulate(dbias.reshape(self.normalized_shape), owned=True)
        return dx2.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
