"""A convolution's weight gradient on small maps: oneDNN's against nine matmuls, alone and inside cifar-fast's step.

    python bench/conv_weight_grad.py [--threads 2] [--repeats 8] [--batch 1000] [--no-step]

On a CPU with AMX (Intel Xeon 4th generation on), oneDNN's weight gradient of a 3x3 convolution on the 7x7 and 3x3
maps of airbench94's network takes about 4x its forward under bf16 autocast (docs/RESULTS.md, "Session 39"). The
same gradient is nine matmuls, one per kernel offset: the output gradient laid out (N*H*W, C_out), transposed,
times the padded input shifted by that offset, laid out (N*H*W, C_in). This bench times both on random bf16
tensors, channels-last, for each map size, and prints how far they differ (bf16's rounding: about 1e-3 of the
largest entry). Then, unless ``--no-step``, it builds airbench94 and cifar-fast twice each as
``bench/preset_steps.py`` does, one with ``conv_weight_grad=library`` (oneDNN throughout) and one with
``conv_weight_grad=matmul`` (the product's ``twinnet.torch_nn.conv_grad``: 3x3 convolutions on maps of 8x8 or less
take the nine matmuls), and times training steps of the two in alternating turns of 2 steps in each preset's first
phase and its last (the first layers frozen), printing the median turn of each, the fastest, and their ratios (on a
VM whose other tenants slow some turns by 2x, the fastest turns are the steadier figure). This is the measurement
behind ``conv_weight_grad=auto``, which takes the matmul path only on CPUs with AMX under bf16 autocast.
"""

from __future__ import annotations

import argparse
import statistics
import time

import twinnet  # noqa: F401,I001 - before NumPy, so that OpenBLAS loads with twinnet's thread setting
import torch

from twinnet import hardware
from twinnet.numpy_nn import backend
from twinnet.torch_nn.conv_grad import SMALL, weight_grad


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


def steps(repeats):
    """Each preset built twice, torch's own weight gradients against the matmul path, its training steps timed in
    alternating turns of 2 steps in its first phase and its last; the median and the fastest turn of each."""
    from preset_steps import Preset

    print(f"3x3 convolutions' weight gradients on maps of {SMALL}x{SMALL} or less as nine matmuls "
          "(conv_weight_grad=matmul) against torch's own (library), training steps in alternating turns", flush=True)
    for name in ("airbench94", "cifar-fast"):
        plain, routed = (Preset(name, overrides=(f"conv_weight_grad={path}",)) for path in ("library", "matmul"))
        for phase in (0, len(plain.phases) - 1):
            plain.enter(phase)
            routed.enter(phase)
            a, b = [], []
            for _ in range(repeats):  # the machine's drift and its other tenants touch both alike
                a.append(plain.time_steps(2))
                b.append(routed.time_steps(2))
            (ma, mb), (fa, fb) = (statistics.median(a), statistics.median(b)), (min(a), min(b))
            print(f"{name}, phase from epoch {plain.phases[phase][0]}: median {ma:.3f} s/step library, {mb:.3f} "
                  f"matmul ({mb / ma:.2f}x); fastest turn {fa:.3f} against {fb:.3f} ({fb / fa:.2f}x)", flush=True)


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
