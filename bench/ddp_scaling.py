"""Data-parallel scaling on this machine: one process with T threads against P processes with T/P
threads each (gloo, the same global batch split over them), side by side in one run.

    python bench/ddp_scaling.py [--procs 2] [--threads 2] [--batch 128] [--steps 8] [--rounds 2]
                                [--models vgg-reduced,mnist-cnn] [--engines torch,numpy]

Each layout trains in fresh processes (spawned, as torchrun would start them), through twinnet's
learners (DistributedDataParallel for torch, the all-reduced NumPy gradients for the NumPy engine),
on random data of the model's input shape: a step here is forward, backward, gradient all-reduce and
optimiser step of one global batch. The layouts alternate for --rounds rounds; each time is the
median seconds per step over --steps steps after two warm-up steps, taken on rank 0 with the loss
read back (every rank waits for the others in the all-reduce). Prints one line per model, engine
and layout, and the ratio of images/s against one process, measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _worker(rank: int, size: int, threads: int, model: str, engine: str, batch: int, steps: int, store: str,
            out: str) -> None:
    import numpy as np
    import torch

    from twinnet import distributed, hardware
    from twinnet.architectures import MODELS
    from twinnet.learner import make_learner
    from twinnet.train import TrainConfig
    from twinnet.twins import build_twins

    if size > 1:
        if os.path.exists("/sys/class/net/lo"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size,
                                             timeout=datetime.timedelta(seconds=600))
    hardware.set_threads(threads)
    spec = MODELS[model]
    cfg = TrainConfig(optimizer="sgd", lr=1e-3, momentum=0.9, batch_size=batch, steps=steps)
    learner = make_learner(build_twins(spec.build, "float32", 0)[engine], cfg)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    part = distributed.shard(batch, distributed.World(rank, size))
    times = []
    for k in range(steps + 2):
        t0 = time.perf_counter()
        loss, _ = learner.train_step(x[part], y[part], total=batch) if size > 1 else learner.train_step(x, y)
        float(loss)  # read back: the step is done
        if k >= 2:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        Path(out).write_text(json.dumps(statistics.median(times)))
    if size > 1:
        torch.distributed.destroy_process_group()


def measure(procs: int, threads: int, model: str, engine: str, batch: int, steps: int) -> float:
    """Median seconds per global step of ``procs`` fresh processes of ``threads`` threads each."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result")
        mp.spawn(_worker, args=(procs, threads, model, engine, batch, steps, os.path.join(tmp, "store"), out),
                 nprocs=procs, join=True)
        return json.loads(Path(out).read_text())


def main(argv: list[str] | None = None) -> None:
    from twinnet import hardware

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", type=int, default=2, help="processes of the data-parallel layout (default 2)")
    p.add_argument("--threads", type=int, default=hardware.cores(), help="threads in all (default: the cores)")
    p.add_argument("--batch", type=int, default=128, help="global batch (default 128)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per measurement (default 8)")
    p.add_argument("--rounds", type=int, default=2, help="alternations of the layouts (default 2)")
    p.add_argument("--models", default="vgg-reduced,mnist-cnn")
    p.add_argument("--engines", default="torch,numpy")
    args = p.parse_args(argv)
    if args.procs < 2 or args.threads < args.procs or args.threads % args.procs:
        sys.exit("bench/ddp_scaling.py: --procs must be >= 2 and divide --threads")
    per = args.threads // args.procs
    layouts = [(1, args.threads), (args.procs, per)]
    print(f"# {datetime.date.today()} {hardware.cpu_name()} ({hardware.cores()} cores, {hardware.cpu_capability()}); "
          f"global batch {args.batch}, float32, median of {args.steps} steps, {args.rounds} rounds", flush=True)
    print(f"{'model':<12} {'engine':<6} {'layout':<16} {'step_s':>8} {'images/s':>9} {'ratio':>6}", flush=True)
    for model in args.models.split(","):
        for engine in args.engines.split(","):
            times: dict[tuple[int, int], list[float]] = {lay: [] for lay in layouts}
            for _ in range(args.rounds):
                for lay in layouts:
                    times[lay].append(measure(*lay, model, engine, args.batch, args.steps))
            base = statistics.median(times[layouts[0]])
            for procs, threads in layouts:
                t = statistics.median(times[(procs, threads)])
                layout = f"{procs} x {threads} thread{'s' if threads > 1 else ''}"
                print(f"{model:<12} {engine:<6} {layout:<16} {t:8.4f} {args.batch / t:9.1f} {base / t:6.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
