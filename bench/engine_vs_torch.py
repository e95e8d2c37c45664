"""Time one full training step (forward, backward, optimiser) in both engines, side by side.

    python bench/engine_vs_torch.py [--threads 2] [--repeats 5] [--networks vgg-reduced,mnist-cnn,mlp-cifar]
    python bench/engine_vs_torch.py --networks airbench94 --optimizer SGD --repeats 2 --rounds 1 --channels-last

Prints one line per network: ``<network> batch=<n> numpy_s=<s> torch_s=<s> ratio=<numpy/torch>
numpy_epoch_s=<s> torch_epoch_s=<s>`` (median seconds per step; each engine timed in --rounds blocks
of --repeats steps, the blocks alternating between the engines, each after two warm-up steps; an
epoch's time is the step's times the steps of one epoch of --epoch-images images, a projection).
airbench94 is the network of the airbench94 and cifar-fast presets, timed at cifar-fast's batch of
1,000 (Muon, cifar-fast's optimiser for its filters, is the torch engine's alone: compare with SGD).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import twinnet  # noqa: I001 - before NumPy, so that OpenBLAS loads with twinnet's thread setting
import numpy as np
import torch

from twinnet import hardware, numpy_nn
from twinnet.architectures import MODELS, nn_namespace
from twinnet.learner import skip_input_grad

BATCH = {"vgg-reduced": 128, "mnist-cnn": 128, "mlp-cifar": 128, "airbench94": 1000}


def _optimizers(numpy_model, torch_model, name: str):
    make = getattr(numpy_nn, name, None)
    if make is None:  # fall back to SGD with momentum if the engine lacks the optimiser
        return numpy_nn.SGD(numpy_model.parameters(), lr=1e-3, momentum=0.9), torch.optim.SGD(
            torch_model.parameters(), lr=1e-3, momentum=0.9)
    return make(numpy_model.parameters(), lr=1e-4), getattr(torch.optim, name)(torch_model.parameters(), lr=1e-4)


def time_pair(step_a, step_b, repeats: int, rounds: int = 2) -> tuple[float, float]:
    """Median seconds of each step, timed in blocks of ``repeats`` steps, A B A B ... for ``rounds``.

    Blocks rather than single steps: each engine's idle threads spin for a while after its
    work (OpenMP in torch, OpenBLAS in NumPy) and would tax the other engine's next step;
    interleaved blocks still spread any drift in the machine's load over both.
    """
    a, b = [], []
    for _ in range(rounds):
        for step, times in ((step_a, a), (step_b, b)):
            for _ in range(2):  # warm-up: caches, allocator, thread pools
                step()
            for _ in range(repeats):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def bench(name: str, repeats: int, rounds: int, optimizer: str, batch: int, channels_last: bool
          ) -> tuple[float, float]:
    spec = MODELS[name]
    torch.manual_seed(0)
    torch_model = spec.build(nn_namespace("torch"))
    numpy_model = spec.build(nn_namespace("numpy"))
    numpy_model.load_state_dict(torch_model.state_dict())
    skip_input_grad(numpy_model)  # as the training loop does; torch skips it for data without requires_grad
    np_opt, t_opt = _optimizers(numpy_model, torch_model, optimizer)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    loss_np, loss_t = numpy_nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if channels_last and xt.dim() == 4:  # as the torch engine trains images by default (ImageConfig.channels_last)
        torch_model = torch_model.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)

    def numpy_step():
        np_opt.zero_grad()
        loss_np.forward(numpy_model.forward(x), y)
        numpy_model.backward(loss_np.backward())
        np_opt.step()

    def torch_step():
        t_opt.zero_grad(set_to_none=True)
        loss_t(torch_model(xt), yt).backward()
        t_opt.step()

    numpy_model.train()
    torch_model.train()
    return time_pair(numpy_step, torch_step, repeats, rounds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for both engines (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="steps in each timed block (default 5)")
    p.add_argument("--rounds", type=int, default=5, help="timed blocks per engine, alternating (default 5)")
    p.add_argument("--networks", default="vgg-reduced,mnist-cnn,mlp-cifar")
    p.add_argument("--optimizer", default="Adam", help="Adam, AdamW, SGD, ... (same in both engines)")
    p.add_argument("--batch", type=int, default=0, help="batch size (default: 128; airbench94 1,000)")
    p.add_argument("--channels-last", action="store_true", help="torch in channels-last layout, as twinnet trains "
                                                                 "images (default: NCHW, as the earlier figures)")
    p.add_argument("--epoch-images", type=int, default=50_000, help="images in one epoch (default: CIFAR-10's 50,000)")
    args = p.parse_args()
    hardware.set_threads(args.threads)  # torch, the BLAS and the engine's elementwise threads alike
    numpy_nn.backend.tune_allocator()  # as `twinnet run` does; the torch runs in this process share it
    print(f"# threads={args.threads} float32 optimizer={args.optimizer} torch layout="
          f"{'channels-last' if args.channels_last else 'NCHW'} cpu={hardware.cpu_name()} "
          f"numpy={np.__version__} torch={torch.__version__} "
          f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}"
          f"{'' if twinnet.BLAS_SPIN_LIMITED else ' (NumPy loaded first: not applied)'}")
    for name in args.networks.split(","):
        batch = args.batch or BATCH[name]
        np_s, t_s = bench(name, args.repeats, args.rounds, args.optimizer, batch, args.channels_last)
        steps = -(-args.epoch_images // batch)
        print(f"{name} batch={batch} numpy_s={np_s:.4f} torch_s={t_s:.4f} ratio={np_s / t_s:.2f} "
              f"numpy_epoch_s={steps * np_s:.0f} torch_epoch_s={steps * t_s:.0f}", flush=True)


if __name__ == "__main__":
    main()
