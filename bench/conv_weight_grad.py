"""A convolution's weight gradient on small maps: oneDNN's against nine matmuls, alone and inside cifar-fast's step.

    python bench/conv_weight_grad.py [--threads 2] [--repeats 8] [--batch 1000] [--no-step]

On a CPU with AMX (Intel Xeon 4th generation on), oneDNN's weight gradient of a 3x3 convolution on the 7x7 and 3x3
maps of airbench94's network takes about 4x its forward under bf16 autocast (docs/RESULTS.md, "Session 39"). The
same gradient is nine matmuls, one per kernel offset: the output gradient laid out (N*H*W, C_out), transposed,
times the padded input shifted by that offset, laid out (N*H*W, C_in). This bench times both on random bf16
tensors, channels-last, for each map size, and prints how far they differ (bf16's rounding: about 1e-3 of the
largest entry). Then, unless ``--no-step``, it builds cifar-fast twice as ``bench/preset_steps.py`` does, routes
one copy's convolutions on maps of 8x8 or less through the matmul path, and times training steps of the two in
alternating turns in the first phase and in the last (the first layers frozen), printing the median of each and
their ratio. A measurement for a decision, not a path of the product: twinnet's training uses oneDNN throughout.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import twinnet  # noqa: F401,I001 - before NumPy, so that OpenBLAS loads with twinnet's thread setting
import torch
import torch.nn.functional as F

from twinnet import hardware
from twinnet.numpy_nn import backend

SMALL = 8  # maps of at most this side take the matmul path in the step comparison


class MatmulWeightGrad(torch.autograd.Function):
    """A 3x3 convolution (stride 1, padding 1, no bias) whose backward computes the input gradient with
    oneDNN and the weight gradient as nine matmuls."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return F.conv2d(x, w, padding=1)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                     [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            gw = weight_grad(g, x, w.shape).to(w.dtype)
        return gx, gw


def weight_grad(g, x, shape):
    """Nine matmuls: for each offset (kh, kw), g's (C_out, N*H*W) times the shifted input's (N*H*W, C_in)."""
    h, w = x.shape[-2:]
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # NHWC, one pixel of zeros around
    g_t = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1]).t()
    out = torch.empty(shape, dtype=torch.float32)
    for kh in range(3):
        for kw in range(3):
            out[:, :, kh, kw] = g_t @ padded[:, kh:kh + h, kw:kw + w, :].reshape(-1, x.shape[1])
    return out


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def alone(batch, repeats):
    for side, c_in, c_out in ((3, 256, 256), (7, 256, 256), (15, 64, 256)):
        def cl(*shape):
            return torch.randn(*shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)

        x, g, w = cl(batch, c_in, side, side), cl(batch, c_out, side, side), cl(c_out, c_in, 3, 3)

        def onednn():
            return torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                       [False, True, False])[1]

        reference = onednn().float()
        diff = (weight_grad(g, x, w.shape) - reference).abs().max() / reference.abs().max()
        t_onednn, t_matmul = best_of(onednn, repeats), best_of(lambda: weight_grad(g, x, w.shape), repeats)
        print(f"{c_in}->{c_out} on {side}x{side} maps, batch {batch}: oneDNN {1e3 * t_onednn:.0f} ms, nine matmuls "
              f"{1e3 * t_matmul:.0f} ms ({t_matmul / t_onednn:.2f}x); largest difference {diff:.1e} of the largest "
              "entry", flush=True)


def route_small_maps(model):
    """Send the 3x3 stride-1 convolutions that see maps of at most SMALL pixels a side through the matmul path
    (found by one forward of a zero image); returns those convolutions."""
    sides = {}
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_pre_hook(lambda m, a: sides.__setitem__(m, a[0].shape[-1])) for m in convs]
    with torch.no_grad():
        model.eval()
        model(torch.zeros(2, 3, 32, 32).to(memory_format=torch.channels_last))
        model.train()
    for h in hooks:
        h.remove()

    def forward(self, x):
        w = self.weight
        if torch.is_autocast_enabled("cpu"):
            x, w = x.to(torch.bfloat16), w.to(torch.bfloat16)
        return MatmulWeightGrad.apply(x, w)

    routed = [m for m in convs if sides[m] <= SMALL and m.kernel_size == (3, 3) and m.stride == (1, 1)
              and m.padding == (1, 1) and m.bias is None and m.groups == 1]
    for m in routed:
        m.forward = types.MethodType(forward, m)
    return routed


def steps(repeats):
    from preset_steps import Preset

    plain, routed = Preset("cifar-fast"), Preset("cifar-fast")
    print(f"cifar-fast: {len(route_small_maps(routed.learner.model))} convolutions on maps of {SMALL}x{SMALL} or less routed "
          "through the matmul path", flush=True)
    for phase in (0, len(plain.phases) - 1):
        plain.enter(phase)
        routed.enter(phase)
        a, b = [], []
        for _ in range(repeats):  # alternating turns of 2 steps: the machine's drift touches both alike
            a.append(plain.time_steps(2) / 2)
            b.append(routed.time_steps(2) / 2)
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"phase from epoch {plain.phases[phase][0]}: oneDNN {ma:.3f} s/step, nine matmuls {mb:.3f} s/step "
              f"({mb / ma:.2f}x)", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--no-step", action="store_true", help="only the gradients alone, not cifar-fast's step")
    args = p.parse_args()
    if min(args.threads, args.repeats, args.batch) < 1:
        raise SystemExit("--threads, --repeats and --batch must be >= 1")
    torch.set_num_threads(args.threads)
    backend.tune_allocator()  # as `twinnet run` does
    print(f"CPU: {hardware.cpu_name()} ({hardware.cpu_capability()}), {args.threads} threads, native bf16: "
          f"{hardware.cpu_bf16()}", flush=True)
    if not hardware.cpu_bf16():
        print("this CPU has no native bf16: the comparison would time emulated bf16", flush=True)
    alone(args.batch, args.repeats)
    if not args.no_step:
        steps(args.repeats)


if __name__ == "__main__":
    main()
