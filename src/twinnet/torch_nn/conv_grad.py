"""A 3x3 convolution's weight gradient on small maps as nine matmuls, for CPUs where that is faster.

On a CPU with AMX, oneDNN's weight gradient of a 3x3 convolution on the 7x7 and 3x3 maps of airbench94's network
takes about 4x its forward under bf16 autocast, while nine matmuls, one per kernel offset, take 0.3-0.5x of
oneDNN's time (``bench/conv_weight_grad.py``; docs/RESULTS.md, sessions 39-40). On larger maps the matmuls lose.
``route_weight_grads`` sends a model's eligible convolutions through that path on maps of at most ``SMALL`` pixels
a side; their forward, their input gradient and every larger map stay oneDNN's. The gradient is the same sum
(equal in float32 to rounding; in bf16 each entry is rounded once, as oneDNN's is).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

SMALL = 8  # maps of at most this side take the matmul path (measured faster at 3x3 and 7x7, slower at 15x15)


class _MatmulWeightGrad(torch.autograd.Function):
    """conv2d(x, w, padding=1): the forward and input gradient by torch's convolution, the weight gradient as
    nine matmuls."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return F.conv2d(x, w, padding=1)

    @staticmethod
    @once_differentiable  # a second derivative through it is refused by torch rather than silently wrong
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g = g.to(x.dtype)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                     [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            gw = weight_grad(g, x, w.shape).to(w.dtype)
        return gx, gw


def weight_grad(g: torch.Tensor, x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The weight gradient (C_out, C_in, 3, 3) of a 3x3 convolution with stride 1 and padding 1, from its input
    ``x`` (N, C_in, H, W) and output gradient ``g`` (N, C_out, H, W): for each kernel offset (kh, kw), g laid out
    (C_out, N*H*W) times the zero-padded input shifted by that offset, laid out (N*H*W, C_in). In float32 (float64
    for float64 inputs)."""
    h, w = x.shape[-2:]
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # NHWC (a view when x is channels-last), zeros around
    g_t = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1]).t()
    out = torch.empty(tuple(shape), dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
    for kh in range(3):
        for kw in range(3):
            out[:, :, kh, kw] = g_t @ padded[:, kh:kh + h, kw:kw + w, :].reshape(-1, x.shape[1])
    return out


def eligible(conv: torch.nn.Module) -> bool:
    """Whether ``conv`` is a convolution the matmul path computes: a plain 3x3 Conv2d, stride 1, padding 1 with
    zeros, no dilation, no groups, no bias."""
    return (type(conv) is torch.nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and conv.bias is None
            and conv.padding_mode == "zeros")


def _forward(self, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if x.dim() != 4 or max(x.shape[-2:]) > SMALL or not torch.is_grad_enabled() or not (
            w.requires_grad or x.requires_grad):
        return torch.nn.Conv2d.forward(self, x)
    if torch.is_autocast_enabled(x.device.type):  # a Function's backward does not see autocast: cast here
        dtype = torch.get_autocast_dtype(x.device.type)
        x, w = x.to(dtype), w.to(dtype)
    return _MatmulWeightGrad.apply(x, w)


def route_weight_grads(model: torch.nn.Module) -> int:
    """Send every eligible convolution of ``model`` through the matmul weight gradient on maps of at most
    ``SMALL`` pixels a side (larger maps, and everything without a gradient to compute, keep torch's own path).
    The modules keep their class, parameters and state dict. Returns how many convolutions were routed."""
    routed = [m for m in model.modules() if eligible(m)]
    for m in routed:
        m.forward = types.MethodType(_forward, m)
    return len(routed)


def is_routed(conv: torch.nn.Module) -> bool:
    """Whether ``route_weight_grads`` routed this module."""
    return getattr(conv.__dict__.get("forward"), "__func__", None) is _forward
