"""Time one training step of the palindrome models (forward, backward, clip, RMSprop) in both engines,
or with ``--eval N`` one evaluation: the forward of N samples under no_grad, as palindrome runs evaluate.

    python bench/rnn_step.py [--threads 1] [--lengths 20,60] [--models rnn,lstm,gru] [--repeats 20]
    python bench/rnn_step.py --eval 2000 --lengths 1000,3000 --repeats 3

The course's setting: batch 128, one-hot inputs (10), 128 hidden units, float32, gradient norm
clipped at 10, RMSprop lr 1e-3. Both engines start from the same weights and get the same
batch and the same thread count (default 1: what each worker of palindrome-sweep uses).
Prints one line per model and length: ``<model> T=<T> numpy_s=<s> torch_s=<s> ratio=<numpy/torch>``
(median seconds per step over --repeats timed steps, after three warm-up steps). An evaluation adds
``numpy_fresh_s``: the NumPy engine's forward as it ran before its chunks of time steps shared one set of
arrays: chunks of 64 steps, each with new arrays (a fresh array costs a page fault at the first write to
each of its pages). The evaluation runs as a library user's script does, without the allocator setting
of twinnet's runs; ``--tune-allocator`` applies it (glibc: freed memory stays in the heap), as runs see it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import twinnet  # noqa: F401,I001 - before NumPy, so that OpenBLAS loads with twinnet's thread setting
import numpy as np
import torch

from twinnet import hardware, numpy_nn
from twinnet.data.palindrome import samples
from twinnet.learner import NumpyLearner, TorchLearner
from twinnet.numpy_nn import recurrent as np_rec
from twinnet.torch_nn import recurrent as torch_rec

BATCH, HIDDEN, CLIP, LR = 128, 128, 10.0, 1e-3


def time_steps(step, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(model: str, length: int, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    torch_model = torch_rec.RECURRENT[model](10, HIDDEN)
    numpy_model = np_rec.RECURRENT[model](10, HIDDEN)
    numpy_model.load_state_dict(torch_model.state_dict())
    numpy_model.input_grad = False  # as the palindrome experiments set it; torch skips it for data too
    learners = [
        NumpyLearner(numpy_model, numpy_nn.RMSprop(numpy_model.parameters(), lr=LR), numpy_nn.CrossEntropyLoss(),
                     clip_norm=CLIP),
        TorchLearner(torch_model, torch.optim.RMSprop(torch_model.parameters(), lr=LR), torch.nn.CrossEntropyLoss(),
                     clip_norm=CLIP),
    ]
    x, y = samples(length, BATCH, np.random.default_rng(0))
    return tuple(time_steps(lambda lr=learner: lr.train_step(x, y), repeats) for learner in learners)


class _FreshArrays:
    """A NumPy model's evaluation as before its chunks shared arrays: 64 steps a chunk, each with new ones."""

    chunk = 64

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, x):
        xs, h = x.transpose(1, 0, 2), ()
        with numpy_nn.no_grad():
            for start in range(0, len(xs), self.chunk):
                states = self.model._run(xs[start : start + self.chunk], *h)
                h = tuple(s[-1] for s in states[: len(self.model.states)])
        return h[0].T @ self.model.W_ph.data.T + self.model.b_o.data  # h (H, B)


def bench_eval(model: str, length: int, n: int, repeats: int) -> tuple[float, float, float]:
    """Seconds for one evaluation of n samples: NumPy as it runs, NumPy with fresh arrays, torch."""
    torch.manual_seed(0)
    torch_model = torch_rec.RECURRENT[model](10, HIDDEN).eval()
    numpy_model = np_rec.RECURRENT[model](10, HIDDEN)
    numpy_model.load_state_dict(torch_model.state_dict())
    x, _ = samples(length, n, np.random.default_rng(0))
    xt = torch.from_numpy(x)
    fresh = _FreshArrays(numpy_model)
    with numpy_nn.no_grad():
        ours = numpy_model(x)
    assert np.array_equal(ours, fresh(x)), "the shared arrays changed the logits"

    def run_numpy():
        with numpy_nn.no_grad():
            numpy_model(x)

    def run_torch():
        with torch.no_grad():
            torch_model(xt)

    return tuple(time_steps(f, repeats, warmup=1) for f in (run_numpy, lambda: fresh(x), run_torch))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="threads for both engines (default 1, as a sweep worker)")
    p.add_argument("--lengths", default="20,60", help="palindrome lengths T (the input has T-1 steps)")
    p.add_argument("--models", default="rnn,lstm,gru")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--eval", type=int, default=0, metavar="N",
                   help="time an evaluation of N samples (palindrome-best's: 2000) instead of a training step")
    p.add_argument("--tune-allocator", action="store_true",
                   help="keep freed memory in the heap, as every `twinnet run` does (glibc)")
    args = p.parse_args()
    if args.tune_allocator:
        numpy_nn.backend.tune_allocator()
    hardware.set_threads(args.threads)  # torch, the BLAS and the engine's elementwise threads alike
    batch = f"eval of {args.eval}{' allocator tuned' if args.tune_allocator else ''}" if args.eval else f"batch={BATCH}"
    print(f"# threads={args.threads} {batch} hidden={HIDDEN} one-hot float32 clip={CLIP} RMSprop "
          f"numpy={np.__version__} torch={torch.__version__}")
    for model in args.models.split(","):
        for length in (int(t) for t in args.lengths.split(",")):
            if args.eval:
                np_s, fresh_s, t_s = bench_eval(model, length, args.eval, args.repeats)
                print(f"{model} T={length} eval_n={args.eval} numpy_s={np_s:.3f} numpy_fresh_s={fresh_s:.3f} "
                      f"torch_s={t_s:.3f} ratio={np_s / t_s:.2f} fresh/shared={fresh_s / np_s:.2f}", flush=True)
                continue
            np_s, t_s = bench(model, length, args.repeats)
            print(f"{model} T={length} numpy_s={np_s:.4f} torch_s={t_s:.4f} ratio={np_s / t_s:.2f}", flush=True)


if __name__ == "__main__":
    main()
