"""Conv2d as one matrix product over im2col patches, channels-last inside.

Inputs and outputs are NCHW at the API, as in torch, but the arrays handed
between layers are NCHW *views* of channels-last (NHWC) memory: a transpose
back to NHWC is then free, patches gather contiguous channel vectors, and the
product's (N*Ho*Wo, C_out) result already is the next layer's NHWC input.
"""

from __future__ import annotations

import numbers

import numpy as np

from twinnet.numpy_nn import backend, init
from twinnet.numpy_nn.module import Module, Parameter, factory_dtype


# A conv with at most _FUSED_MAX_OUT output channels works block by block, each thread making a block's
# columns and its product with them while they are in cache: forward, im2col then the product (when a
# column has at least _FUSED_MIN_K entries); backward, the column gradients then col2im. Measured
# (bench and /tmp A/B runs, 2 threads): faster for 64 and 128 output channels on 14x14 and 16x16 maps,
# even on 8x8 with 256, slower with 512 (the products dominate, and one product on every core does
# them best) and forward with 1 or 3 input channels. Blocks of about _FUSED_ROWS rows of columns.
_FUSED_MAX_OUT = 128
_FUSED_MIN_K = 128
_FUSED_ROWS = 1024


def pair(v) -> tuple[int, int]:
    """An int or a pair of ints, as (h, w); anything else (2.5, a triple) is a TypeError, as in torch."""
    whole = lambda u: isinstance(u, numbers.Integral) and not isinstance(u, bool)  # noqa: E731
    if whole(v):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(whole(u) for u in v):
        return int(v[0]), int(v[1])
    raise TypeError(f"expected an int or a pair of ints (height, width), got {v!r}")


def as_batch(x, layer: str):
    """``x`` as (N, C, H, W), and whether it came unbatched as (C, H, W), which torch's 2-d layers also take."""
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return x[None], True
    raise ValueError(f"{layer} expects a (N, C, H, W) input or an unbatched (C, H, W) one, got shape {tuple(x.shape)}")


def out_size(n: int, k: int, s: int, p: int) -> int:
    """Output positions of a window ``k`` moved by ``s`` over ``n`` inputs padded by ``p`` on each side; an
    input too small for even one window is a ValueError, as in torch."""
    size = (n + 2 * p - k) // s + 1
    if size < 1:
        raise ValueError(f"an input of size {n} padded by {p} on each side is smaller than the kernel's {k}: "
                         "the output would be empty; give a larger input or a smaller kernel")
    return size


def nhwc(x):
    """The NHWC view of an NCHW array; copied (by batch chunks, on every thread) only if its memory is not channels-last."""
    xp = backend.xp(x)
    xh = x.transpose(0, 2, 3, 1)
    if xh.flags.c_contiguous:
        return xh
    out = xp.empty(xh.shape, dtype=xh.dtype)

    def copy(s):
        out[s] = xh[s]

    backend.parallel(copy, xh.shape[0], xh.size, like=xh)
    return out


def pad_nhwc(xh, ph: int, pw: int, value=0.0):
    """Pad H and W of an NHWC array (a fresh contiguous array; the input itself if no padding)."""
    if ph == 0 and pw == 0:
        return xh
    xp = backend.xp(xh)
    n, h, w, c = xh.shape
    out = xp.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=xh.dtype)
    fill_padded(out, xh, ph, pw, value)
    return out


def fill_padded(out, xh, ph: int, pw: int, value=0.0) -> None:
    """Write ``xh`` into the middle of ``out`` and ``value`` into its border (no pass over the middle twice)."""
    h, w = xh.shape[1], xh.shape[2]
    if ph:
        out[:, :ph] = value
        out[:, ph + h :] = value
    if pw:
        out[:, ph : ph + h, :pw] = value
        out[:, ph : ph + h, pw + w :] = value
    out[:, ph : ph + h, pw : pw + w] = xh


def windows(xp_, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int):
    """A (N, Ho, Wo, kh, kw, C) strided view of the patches of a padded NHWC array (no copy)."""
    n, _, _, c = xp_.shape
    s0, s1, s2, s3 = xp_.strides
    return backend.xp(xp_).lib.stride_tricks.as_strided(
        xp_, shape=(n, ho, wo, kh, kw, c), strides=(s0, s1 * sh, s2 * sw, s1, s2, s3), writeable=False
    )


def window_slice(i: int, j: int, sh: int, sw: int, ho: int, wo: int):
    """The (N, Ho, Wo, C) slice of a padded NHWC array seen at offset (i, j) of every window."""
    return (slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))


def valid_range(k: int, s: int, p: int, size: int, n_out: int) -> tuple[slice, slice]:
    """For kernel offset ``k``: the outputs whose input ``o*s + k - p`` lies inside [0, size), and those inputs."""
    lo = max(0, -(-(p - k) // s))  # ceil((p - k) / s)
    hi = min(n_out, (size - 1 + p - k) // s + 1)
    if hi <= lo:
        return slice(0, 0), slice(0, 0)
    first = lo * s + k - p
    return slice(lo, hi), slice(first, first + s * (hi - lo - 1) + 1, s)


def kernel_last(weight):
    """The (O, C, kh, kw) weight as a view of (kh, kw, C, O) memory, the layout of the products'
    weight matrix: the matrix is then a free view, and so is its gradient's way back (with a
    contiguous weight each was a transposing copy, about 5 and 9 ms a step for a 512x512 layer)."""
    if weight.transpose(2, 3, 1, 0).flags.c_contiguous:
        return weight
    return backend.xp(weight).ascontiguousarray(weight.transpose(2, 3, 1, 0)).transpose(3, 2, 0, 1)


def _conv_forward(x, weight, bias, stride, padding):
    """x (N, C, H, W), weight (O, C, kh, kw) -> out (N, O, Ho, Wo) [NHWC memory], cache."""
    xp = backend.xp(x)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    # rows ordered (i, j, c) like cols; a view of a kernel-last weight, so backward must come before the
    # optimiser changes the weight in place (as torch's autograd also requires)
    wmat = weight.transpose(2, 3, 1, 0).reshape(kh * kw * c, o)
    if kh == kw == 1 and sh == sw == 1 and ph == pw == 0:
        cols = nhwc(x).reshape(n * ho * wo, c)  # a 1x1 conv is a plain matrix product
        out = cols @ wmat
    else:
        xh = x.transpose(0, 2, 3, 1)
        patches = xp.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
        cols = patches.reshape(n * ho * wo, kh * kw * c)

        def gather(s):  # im2col of one batch chunk
            padded = pad_nhwc(xh[s], ph, pw)
            if c > 1:
                patches[s] = windows(padded, kh, kw, sh, sw, ho, wo)
                return
            for k in range(kh * kw):  # one channel: a copy per kernel offset runs 4x faster here
                patches[s, :, :, k // kw, k % kw] = padded[window_slice(k // kw, k % kw, sh, sw, ho, wo)]

        if o <= _FUSED_MAX_OUT and kh * kw * c >= _FUSED_MIN_K:  # each block's product while its columns are in cache
            out = xp.empty((n * ho * wo, o), dtype=x.dtype)

            def gather_multiply(s):
                gather(s)
                rows = slice(s.start * ho * wo, s.stop * ho * wo)
                xp.matmul(cols[rows], wmat, out=out[rows])

            backend.parallel(gather_multiply, n, patches.size, blas=True, blocks=n * ho * wo // _FUSED_ROWS,
                             like=x)
        else:
            backend.parallel(gather, n, patches.size, like=x)
            out = cols @ wmat  # one large product: BLAS runs it on every core at full speed
    if bias is not None:
        out += bias
    return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), (cols, wmat, x.shape, stride, padding, weight.shape)


def _conv_backward(dout, cache, need_dx: bool = True):
    """dout (N, O, Ho, Wo) -> dx (N, C, H, W) (None unless ``need_dx``), dweight (O, C, kh, kw), dbias (O,)."""
    xp = backend.xp(dout)
    cols, wmat, (n, c, h, w), (sh, sw), (ph, pw), (o, _, kh, kw) = cache
    ho, wo = dout.shape[2], dout.shape[3]
    d = nhwc(dout).reshape(n * ho * wo, o)
    dweight = (cols.T @ d).reshape(kh, kw, c, o).transpose(3, 2, 0, 1)  # a view: the weight's own layout
    dbias = backend.colsum(d)
    if not need_dx:
        return None, dweight, dbias
    if kh == kw == 1 and sh == sw == 1 and ph == pw == 0:
        return (d @ wmat.T).reshape(n, ho, wo, c).transpose(0, 3, 1, 2), dweight, dbias
    dx = xp.empty((n, h, w, c), dtype=d.dtype)
    ranges = [(valid_range(i, sh, ph, h, ho), valid_range(j, sw, pw, w, wo)) for i in range(kh) for j in range(kw)]

    def scatter(s, dcols):  # col2im of a block of images: one strided add per kernel offset, never per pixel
        part = dx[s]
        part[...] = 0
        for k, ((out_r, in_r), (out_c, in_c)) in enumerate(ranges):
            part[:, in_r, in_c] += dcols[:, out_r, out_c, k // kw, k % kw]

    if o > _FUSED_MAX_OUT:  # one large product on every core, then col2im
        dcols = (d @ wmat.T).reshape(n, ho, wo, kh, kw, c)
        backend.parallel(lambda s: scatter(s, dcols[s]), n, dcols.size, like=dcols)
    else:  # few output channels: col2im dominates, so each thread makes its block's columns and adds them
        d_images, w_t = d.reshape(n, ho * wo, o), xp.ascontiguousarray(wmat.T)
        backend.parallel(lambda s: scatter(s, (d_images[s].reshape(-1, o) @ w_t).reshape(-1, ho, wo, kh, kw, c)),
                         n, n * ho * wo * kh * kw * c, blas=True, blocks=n * ho * wo // _FUSED_ROWS, like=d)
    return dx.transpose(0, 3, 1, 2), dweight, dbias


class Conv2d(Module):
    """``torch.nn.Conv2d`` (groups=1, dilation=1, zero padding; ``padding`` may be "valid", or "same" for an odd
    kernel and stride 1); a (C, H, W) input is one unbatched image, as in torch."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None) -> None:
        super().__init__()
        if pair(dilation) != (1, 1) or groups != 1:
            raise ValueError(f"Conv2d supports dilation=1 and groups=1 only, got dilation={dilation}, groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d supports padding_mode='zeros' only, got {padding_mode!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = pair(kernel_size), pair(stride)
        self.padding = _padding(padding, self.kernel_size, self.stride)
        self.dilation, self.groups, self.padding_mode = (1, 1), 1, padding_mode
        if min(self.stride) < 1 or min(self.padding) < 0 or min(self.kernel_size) < 1:
            raise ValueError(f"invalid Conv2d geometry: kernel {kernel_size}, stride {stride}, padding {padding}")
        shape = (out_channels, in_channels, *self.kernel_size)
        dtype = factory_dtype(dtype)
        self.weight = Parameter(kernel_last(init.default_weight(shape, dtype)))
        self.bias = Parameter(init.default_bias(shape, out_channels, dtype)) if bias else None
        # False on a network's first layer: the gradient of the data is never used, and it is
        # the costliest part of that layer's backward (3 input channels make col2im slow)
        self.input_grad = True
        if device is not None:
            self.to(device=device)

    def forward(self, x):
        x, unbatched = as_batch(x, "Conv2d")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d({self.in_channels}, ...) got an input of {x.shape[1]} channels, shape {x.shape}")
        out, cache = _conv_forward(x, self.weight.data, None if self.bias is None else self.bias.data,
                                   self.stride, self.padding)
        self._push_cache((*cache, unbatched))  # cache first: trace reads its columns and weight matrix
        return out[0] if unbatched else out

    def _arrange(self) -> None:
        self.weight.data = kernel_last(self.weight.data)

    def backward(self, dout):
        *cache, unbatched = self._pop_cache()
        dx, dweight, dbias = _conv_backward(dout[None] if unbatched else dout, cache, self.input_grad)
        self.weight.accumulate(dweight, owned=True)
        if self.bias is not None:
            self.bias.accumulate(dbias)
        return dx[0] if unbatched and dx is not None else dx

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


def _padding(padding, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """Conv2d's padding as (h, w): an int or a pair, or torch's "valid" (none) or "same" (the output keeps the
    input's size: stride 1, and an odd kernel, as the padding here is the same on both sides)."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"padding='same' is not supported for strided convolutions, got stride {stride}")
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ValueError(f"padding='same' is supported for odd kernel sizes only (equal padding on both "
                             f"sides), got kernel {kernel}")
        return kernel[0] // 2, kernel[1] // 2
    if isinstance(padding, str):
        raise ValueError(f"invalid padding string {padding!r}: it must be 'valid' or 'same'")
    return pair(padding)
