"""Conv2d as one matrix product over im2col patches, channels-last inside.

Inputs and outputs are NCHW at the API, as in torch, but the arrays handed
between layers are NCHW *views* of channels-last (NHWC) memory: a transpose
back to NHWC is then free, patches gather contiguous channel vectors, and the
product's (N*Ho*Wo, C_out) result already is the next layer's NHWC input.
"""

from __future__ import annotations

import numpy as np

from twinnet.numpy_nn import backend, init
from twinnet.numpy_nn.module import Module, Parameter


def pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def out_size(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def nhwc(x):
    """The NHWC view of an NCHW array (a copy only if its memory is not channels-last)."""
    return backend.xp().ascontiguousarray(x.transpose(0, 2, 3, 1))


def pad_nhwc(xh, ph: int, pw: int, value=0.0):
    """Pad H and W of an NHWC array (a fresh contiguous array)."""
    xp = backend.xp()
    if ph == 0 and pw == 0:
        return xh
    n, h, w, c = xh.shape
    out = xp.full((n, h + 2 * ph, w + 2 * pw, c), value, dtype=xh.dtype)
    out[:, ph : ph + h, pw : pw + w] = xh
    return out


def windows(xp_, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int):
    """A (N, Ho, Wo, kh, kw, C) strided view of the patches of a padded NHWC array (no copy)."""
    n, _, _, c = xp_.shape
    s0, s1, s2, s3 = xp_.strides
    return backend.xp().lib.stride_tricks.as_strided(
        xp_, shape=(n, ho, wo, kh, kw, c), strides=(s0, s1 * sh, s2 * sw, s1, s2, s3), writeable=False
    )


def window_slice(i: int, j: int, sh: int, sw: int, ho: int, wo: int):
    """The (N, Ho, Wo, C) slice of a padded NHWC array seen at offset (i, j) of every window."""
    return (slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))


def _conv_forward(x, weight, bias, stride, padding):
    """x (N, C, H, W), weight (O, C, kh, kw) -> out (N, O, Ho, Wo) [NHWC memory], cache."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    xpad = pad_nhwc(nhwc(x), ph, pw)
    if kh == kw == 1 and sh == sw == 1:
        cols = xpad.reshape(n * ho * wo, c)  # a 1x1 conv is a plain matrix product
    else:
        cols = windows(xpad, kh, kw, sh, sw, ho, wo).reshape(n * ho * wo, kh * kw * c)
    wmat = weight.transpose(2, 3, 1, 0).reshape(kh * kw * c, o)  # rows ordered (i, j, c) like cols
    out = cols @ wmat
    if bias is not None:
        out += bias
    return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), (cols, wmat, x.shape, xpad.shape, stride, padding, weight.shape)


def _conv_backward(dout, cache, need_dx: bool = True):
    """dout (N, O, Ho, Wo) -> dx (N, C, H, W) (None unless ``need_dx``), dweight (O, C, kh, kw), dbias (O,)."""
    xp = backend.xp()
    cols, wmat, (n, c, h, w), padded_shape, (sh, sw), (ph, pw), (o, _, kh, kw) = cache
    ho, wo = dout.shape[2], dout.shape[3]
    d = nhwc(dout).reshape(n * ho * wo, o)
    dweight = (cols.T @ d).reshape(kh, kw, c, o).transpose(3, 2, 0, 1).copy()
    dbias = d.sum(axis=0)
    if not need_dx:
        return None, dweight, dbias
    dcols = (d @ wmat.T).reshape(n, ho, wo, kh, kw, c)
    if kh == kw == 1 and sh == sw == 1:
        dxpad = dcols.reshape(n, ho, wo, c)
    else:
        dxpad = xp.zeros(padded_shape, dtype=d.dtype)
        for i in range(kh):  # col2im: one strided add per kernel offset, never per pixel
            for j in range(kw):
                dxpad[window_slice(i, j, sh, sw, ho, wo)] += dcols[:, :, :, i, j, :]
    dx = dxpad[:, ph : ph + h, pw : pw + w, :]
    return dx.transpose(0, 3, 1, 2), dweight, dbias


class Conv2d(Module):
    """``torch.nn.Conv2d`` (groups=1, dilation=1, zero padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias: bool = True, *, dtype=np.float32) -> None:
        super().__init__()
        if pair(dilation) != (1, 1) or groups != 1:
            raise ValueError(f"Conv2d supports dilation=1 and groups=1 only, got dilation={dilation}, groups={groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = pair(kernel_size), pair(stride), pair(padding)
        if min(self.stride) < 1 or min(self.padding) < 0 or min(self.kernel_size) < 1:
            raise ValueError(f"invalid Conv2d geometry: kernel {kernel_size}, stride {stride}, padding {padding}")
        shape = (out_channels, in_channels, *self.kernel_size)
        self.weight = Parameter(init.default_weight(shape, dtype))
        self.bias = Parameter(init.default_bias(shape, out_channels, dtype)) if bias else None
        # False on a network's first layer: the gradient of the data is never used, and it is
        # the costliest part of that layer's backward (3 input channels make col2im slow)
        self.input_grad = True

    def forward(self, x):
        out, cache = _conv_forward(x, self.weight.data, None if self.bias is None else self.bias.data,
                                   self.stride, self.padding)
        self._push_cache(cache)
        return out

    def backward(self, dout):
        dx, dweight, dbias = _conv_backward(dout, self._pop_cache(), self.input_grad)
        self.weight.accumulate(dweight)
        if self.bias is not None:
            self.bias.accumulate(dbias)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")
