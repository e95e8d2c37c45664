"""Max and average pooling over NHWC memory, one strided pass per window offset; global max and average."""

from __future__ import annotations

import numpy as np

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.conv import as_batch, fill_padded, nhwc, out_size, pad_nhwc, pair, valid_range, window_slice
from twinnet.numpy_nn.module import Module


def _check(kernel, stride, padding) -> None:
    """torch's limits on a pooling window: kernel and stride at least 1, padding from 0 to half the kernel."""
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError(f"kernel size and stride must be at least 1, got kernel {kernel} and stride {stride}")
    if min(padding) < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"pad should be at most half of the kernel size, got kernel {kernel} and padding {padding}")


def _maxpool_forward(x, kernel, stride, padding):
    """x (N, C, H, W) -> out (N, C, Ho, Wo), cache (padded input and output, to find the winners later).

    Tracking the argmax while scanning costs masked writes, several times the price of
    the maxima alone; the backward finds each window's first maximum by equality instead.
    """
    xp = backend.xp(x)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    xh = nhwc(x)
    # without padding the input itself is what backward compares against; with it, a padded copy
    xpad = xh if ph == pw == 0 else xp.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    best = xp.empty((n, ho, wo, c), dtype=x.dtype)

    def pool(s):
        if xpad is not xh:
            fill_padded(xpad[s], xh[s], ph, pw, -np.inf)  # padding never wins, as in torch
        part = xpad[s]
        best[s] = part[window_slice(0, 0, sh, sw, ho, wo)]
        for k in range(1, kh * kw):
            xp.maximum(best[s], part[window_slice(k // kw, k % kw, sh, sw, ho, wo)], out=best[s])

    backend.parallel(pool, n, xpad.size, like=xpad)
    return best.transpose(0, 3, 1, 2), (xpad, best, x.shape, kernel, stride, padding)


def _maxpool_backward(dout, cache):
    """Route each output's gradient as torch does: to the first real (not padding) input in scan order
    that equals the window's maximum, or, in a window holding NaN, to its last NaN."""
    xpad, best, (n, c, h, w), (kh, kw), (sh, sw), (ph, pw) = cache
    xp = backend.xp(xpad)
    d = nhwc(dout)
    ho, wo = d.shape[1], d.shape[2]
    dx = xp.empty((n, h, w, c), dtype=d.dtype)
    # per offset: the outputs whose input at that offset is real (not padding), and those inputs
    ranges = [(valid_range(k // kw, sh, ph, h, ho), valid_range(k % kw, sw, pw, w, wo)) for k in range(kh * kw)]
    windows = [window_slice(k // kw, k % kw, sh, sw, ho, wo) for k in range(kh * kw)]
    tiled = (kh, kw) == (sh, sw) and ph == pw == 0  # windows tile the input: each input has one window
    padded = ph > 0 or pw > 0

    def route(s):
        m = d[s].shape[0]
        part, src = dx[s], xpad[s]
        # a NaN anywhere makes the sum NaN (so may inf - inf: a needless but harmless slower path); the
        # sum is the cheap test, a mask per window only when it fails
        has_nan = bool(xp.isnan(best[s].sum()))
        nan = xp.isnan(best[s]) if has_nan else None  # windows whose maximum is NaN: they hold a NaN
        free = ~nan if has_nan else xp.ones((m, ho, wo, c), dtype=bool)  # windows whose maximum is unclaimed
        hit = xp.empty((m, ho, wo, c), dtype=bool)
        if tiled:  # each input's gradient written in place: only rows and columns no window reaches are zeroed
            part[:, ho * kh :] = 0
            part[:, :, wo * kw :] = 0
        else:
            part[...] = 0
            grad = xp.empty((m, ho, wo, c), dtype=d.dtype)

        def claim(k, unclaimed):
            """The unclaimed windows whose input at offset k is a real hit: theirs the gradient, and claimed."""
            (out_r, _), (out_c, _) = ranges[k]
            if padded:  # padding holds -inf: it can equal an all -inf window's maximum, but never wins
                hit[:, : out_r.start] = hit[:, out_r.stop :] = False
                hit[:, :, : out_c.start] = hit[:, :, out_c.stop :] = False
            xp.logical_and(hit, unclaimed, out=hit)
            xp.logical_xor(unclaimed, hit, out=unclaimed)

        def write(k, where_hit=False):
            (out_r, in_r), (out_c, in_c) = ranges[k]
            if tiled and where_hit:
                xp.copyto(part[windows[k]], d[s], where=hit)
            elif tiled:
                xp.multiply(d[s], hit, out=part[windows[k]])
            else:
                xp.multiply(d[s], hit, out=grad)
                part[:, in_r, in_c] += grad[:, out_r, out_c]

        for k in range(kh * kw):  # ties: the first wins, as in torch
            xp.equal(src[windows[k]], best[s], out=hit)
            claim(k, free)
            write(k)
        if has_nan:  # torch's scan takes every NaN it meets, so the last one keeps the gradient
            for k in reversed(range(kh * kw)):
                xp.isnan(src[windows[k]], out=hit)
                claim(k, nan)
                write(k, where_hit=True)

    backend.parallel(route, n, xpad.size, like=xpad)
    return dx.transpose(0, 3, 1, 2)


class MaxPool2d(Module):
    """``torch.nn.MaxPool2d(kernel_size, stride=None, padding=0)`` (dilation 1, floor mode); a (C, H, W) input is
    one unbatched image, as in torch."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False) -> None:
        super().__init__()
        if pair(dilation) != (1, 1) or return_indices or ceil_mode:
            raise ValueError("MaxPool2d supports dilation=1, return_indices=False and ceil_mode=False only")
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride if stride is not None else kernel_size)
        self.padding = pair(padding)
        _check(self.kernel_size, self.stride, self.padding)

    def forward(self, x):
        x, unbatched = as_batch(x, "MaxPool2d")
        out, cache = _maxpool_forward(x, self.kernel_size, self.stride, self.padding)
        self._push_cache((cache, unbatched))
        return out[0] if unbatched else out

    def backward(self, dout):
        cache, unbatched = self._pop_cache()
        dx = _maxpool_backward(dout[None] if unbatched else dout, cache)
        return dx[0] if unbatched else dx

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _window_counts(h, w, kernel, stride, padding, ho, wo, like):
    """How many real (non-padding) inputs each window covers: (Ho, Wo, 1), an array like ``like``."""
    xp = backend.xp(like)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    rows = xp.clip(xp.arange(ho) * sh - ph + kh, None, h) - xp.clip(xp.arange(ho) * sh - ph, 0, None)
    cols = xp.clip(xp.arange(wo) * sw - pw + kw, None, w) - xp.clip(xp.arange(wo) * sw - pw, 0, None)
    return (rows[:, None] * cols[None, :]).astype(like.dtype)[:, :, None]


class AvgPool2d(Module):
    """``torch.nn.AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    divisor_override=None)`` (floor mode); a (C, H, W) input is one unbatched image, as in torch."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__()
        if ceil_mode:
            raise ValueError("AvgPool2d supports ceil_mode=False only")
        if divisor_override is not None and (isinstance(divisor_override, bool) or
                                             not isinstance(divisor_override, (int, np.integer))):
            raise TypeError(f"divisor_override must be an int, got {divisor_override!r}")
        if divisor_override is not None and divisor_override == 0:
            raise ValueError("divisor_override must not be zero")
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride if stride is not None else kernel_size)
        self.padding = pair(padding)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override
        _check(self.kernel_size, self.stride, self.padding)

    def _divisor(self, h, w, ho, wo, total):
        if self.divisor_override is not None:  # torch divides every window's sum by it, padding or not
            return total.dtype.type(self.divisor_override)
        if self.count_include_pad:
            return total.dtype.type(self.kernel_size[0] * self.kernel_size[1])
        return _window_counts(h, w, self.kernel_size, self.stride, self.padding, ho, wo, total)

    def forward(self, x):
        x, unbatched = as_batch(x, "AvgPool2d")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        n, c, h, w = x.shape
        ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
        xpad = pad_nhwc(nhwc(x), ph, pw)
        total = xpad[window_slice(0, 0, sh, sw, ho, wo)].copy()
        for k in range(1, kh * kw):
            total += xpad[window_slice(k // kw, k % kw, sh, sw, ho, wo)]
        divisor = self._divisor(h, w, ho, wo, total)
        self._push_cache((xpad.shape, x.shape, divisor, unbatched))
        out = (total / divisor).transpose(0, 3, 1, 2)
        return out[0] if unbatched else out

    def backward(self, dout):
        padded_shape, (n, c, h, w), divisor, unbatched = self._pop_cache()
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        d = nhwc(dout[None] if unbatched else dout) / divisor
        xp = backend.xp(d)
        ho, wo = d.shape[1], d.shape[2]
        dxpad = xp.zeros(padded_shape, dtype=d.dtype)
        for k in range(kh * kw):
            dxpad[window_slice(k // kw, k % kw, sh, sw, ho, wo)] += d
        dx = dxpad[:, ph : ph + h, pw : pw + w, :].transpose(0, 3, 1, 2)
        return dx[0] if unbatched else dx

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _global_only(output_size, kind: str):
    """The adaptive pools' one supported output size, 1 (global pooling), or a ValueError naming it."""
    if output_size not in (1, (1, 1), [1, 1]) or isinstance(output_size, bool):
        raise ValueError(f"only output_size=1 (global {kind} pooling) is supported, got {output_size}")
    return output_size


class AdaptiveAvgPool2d(Module):
    """Global average pooling: ``torch.nn.AdaptiveAvgPool2d(1)`` (output size 1 only) over the last two
    dimensions, of a (N, C, H, W), a (C, H, W) or, as torch also takes, any input of two or more dimensions."""

    def __init__(self, output_size=1) -> None:
        super().__init__()
        self.output_size = _global_only(output_size, "average")

    def forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"AdaptiveAvgPool2d expects an input of (C, H, W) or more dimensions, got shape {x.shape}")
        self._push_cache(x.shape)
        return x.mean(axis=(-2, -1), keepdims=True)

    def backward(self, dout):
        shape = self._pop_cache()
        return backend.xp(dout).broadcast_to(dout / (shape[-2] * shape[-1]), shape).copy()  # writable, like every dx

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Global max pooling: ``torch.nn.AdaptiveMaxPool2d(1)`` (output size 1 only): one window over the whole
    map, so any input side works; the gradient goes to each map's first maximum, as in torch. (C, H, W) input too."""

    def __init__(self, output_size=1, return_indices: bool = False) -> None:
        super().__init__()
        if return_indices:
            raise ValueError("AdaptiveMaxPool2d supports return_indices=False only")
        self.output_size = _global_only(output_size, "max")

    def forward(self, x):
        x, unbatched = as_batch(x, "AdaptiveMaxPool2d")
        out, cache = _maxpool_forward(x, tuple(x.shape[2:]), tuple(x.shape[2:]), (0, 0))
        self._push_cache((cache, unbatched))
        return out[0] if unbatched else out

    def backward(self, dout):
        cache, unbatched = self._pop_cache()
        dx = _maxpool_backward(dout[None] if unbatched else dout, cache)
        return dx[0] if unbatched else dx

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
