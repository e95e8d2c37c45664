"""Training steps of the image models in NCHW against channels-last layout, and airbench94's images
per second against the batch size, side by side on this CPU.

    python bench/layout_and_batch.py [--threads 2] [--repeats 2] [--batches 500,1000,2000]

Each measurement builds the model in the torch engine and times full training steps (forward, cross-
entropy, backward, Nesterov SGD) on random images, after one warm-up step, the layouts interleaved and
the best of ``--repeats`` kept. Prints the CPU, one line per model with both times and their ratio
(above 1: channels-last faster), then airbench94's images per second at each batch size.
"""

from __future__ import annotations

import argparse
import time

import twinnet  # noqa: F401,I001 - before NumPy, so that OpenBLAS loads with twinnet's thread setting
import torch

from twinnet import hardware
from twinnet.architectures import MODELS, build_model

LAYOUT_MODELS = (("vgg-reduced", 128), ("mnist-cnn", 64), ("airbench94", 256))


def step_seconds(name: str, batch: int, channels_last: bool, steps: int) -> float:
    model = build_model(name, "torch")
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, *MODELS[name].input_shape).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch,))
    for i in range(steps + 1):
        if i == 1:  # the first step warms the allocator and the kernels up
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--batches", default="500,1000,2000", help="airbench94 batch sizes to compare")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {hardware.cpu_name()} ({hardware.cpu_capability()}), {args.threads} threads")
    for name, batch in LAYOUT_MODELS:
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.repeats):
            for cl in (False, True):
                best[cl] = min(best[cl], step_seconds(name, batch, cl, args.steps))
        print(f"{name} batch {batch}: NCHW {1e3 * best[False]:.0f} ms/step, channels-last {1e3 * best[True]:.0f} "
              f"ms/step, NCHW / channels-last {best[False] / best[True]:.2f}", flush=True)
    sizes = [int(b) for b in args.batches.split(",")]
    best = {b: float("inf") for b in sizes}
    for _ in range(args.repeats):
        for b in sizes:
            best[b] = min(best[b], step_seconds("airbench94", b, True, max(1, args.steps - 1)))
    for b in sizes:
        print(f"airbench94 batch {b}: {best[b]:.2f} s/step, {b / best[b]:.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
