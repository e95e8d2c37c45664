"""Training images per second: twinnet's batched tensor pipeline against a per-sample PIL pipeline.

    python bench/cifar_throughput.py [--data-dir ../shared/data] [--model vgg-reduced] [--steps 20]

Every pipeline applies the CIFAR recipe's augmentation (random crop after 4 pixels of reflect padding,
horizontal flip) and per-channel normalisation to batches of --batch images:
- ``batched``: twinnet's ``ImageSource``, the dataset held once as uint8 and each batch augmented as
  whole-array operations;
- ``per-sample``: one image at a time as a typical DataLoader with PIL transforms does it
  (``Image.fromarray``, pad and crop, flip, to float, normalise), then stacked into a batch;
- ``per-sample-jpeg``: the same, but decoding each image from JPEG bytes first, as an image-folder
  dataset does every epoch.
Each pipeline is timed alone (data only) and feeding the same model's training steps (torch engine),
in the same run. Prints one line per pipeline, then the ratios against ``per-sample``.
"""

from __future__ import annotations

import argparse
import io
import time

import twinnet  # noqa: F401,I001 - before NumPy, so that OpenBLAS loads with twinnet's thread setting
import numpy as np
import torch
from PIL import Image

from twinnet.architectures import build_model
from twinnet.data.augment import BatchAugment
from twinnet.data.images import ImageSource
from twinnet.learner import TorchLearner

PAD = 4


def per_sample_batches(x: np.ndarray, y: np.ndarray, batch: int, mean, std, rng, jpeg: list[bytes] | None = None):
    """Endless batches built one image at a time with PIL, as torchvision-style transforms would."""
    mean, std = np.asarray(mean, np.float32)[:, None, None], np.asarray(std, np.float32)[:, None, None]
    while True:
        order = rng.permutation(len(y))
        for start in range(0, len(order) - batch + 1, batch):
            images = []
            for i in order[start : start + batch]:
                img = Image.open(io.BytesIO(jpeg[i])) if jpeg is not None else Image.fromarray(x[i].transpose(1, 2, 0))
                a = np.pad(np.asarray(img.convert("RGB")), ((PAD, PAD), (PAD, PAD), (0, 0)), mode="reflect")
                top, left = rng.integers(0, 2 * PAD + 1, 2)
                img = Image.fromarray(a[top : top + 32, left : left + 32])
                if rng.random() < 0.5:
                    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                t = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255
                images.append((t - mean) / std)
            yield np.stack(images), y[order[start : start + batch]]


def load(data_dir: str | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    if data_dir:
        from twinnet.data.cifar import load_cifar10

        split = load_cifar10(data_dir)
        return split.train.x[:n], split.train.y[:n], split.source
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n), "random images"


def rate(batches, steps: int, batch: int, step=None) -> float:
    """Images per second over ``steps`` batches (after one warm-up batch), optionally training on each."""
    x, y = next(batches)
    if step is not None:
        step(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = next(batches)
        if step is not None:
            step(x, y)
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="real CIFAR-10 (default: random images of the same shape)")
    p.add_argument("--model", default="vgg-reduced", help="model trained on the batches (default vgg-reduced)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed batches per measurement")
    p.add_argument("--images", type=int, default=10_000, help="images held in memory")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, source = load(args.data_dir, args.images)
    mean = tuple(x.mean(axis=(0, 2, 3)) / 255)
    std = tuple(x.std(axis=(0, 2, 3)) / 255)
    jpeg = []
    for img in x:
        buf = io.BytesIO()
        Image.fromarray(img.transpose(1, 2, 0)).save(buf, format="JPEG", quality=75)
        jpeg.append(buf.getvalue())
    source_ = ImageSource(x, y, mean, std, BatchAugment(crop_pad=PAD, flip=True))
    pipelines = {
        "batched": lambda rng: source_.batches(args.batch, True, rng),
        "per-sample": lambda rng: per_sample_batches(x, y, args.batch, mean, std, rng),
        "per-sample-jpeg": lambda rng: per_sample_batches(x, y, args.batch, mean, std, rng, jpeg),
    }
    torch.manual_seed(0)
    model = build_model(args.model, "torch")
    learner = TorchLearner(model, torch.optim.Adam(model.parameters(), 1e-3), torch.nn.CrossEntropyLoss())
    print(f"data: {source}; model {args.model}; batch {args.batch}; {torch.get_num_threads()} torch threads")
    data, train = {}, {}
    for name, make in pipelines.items():
        data[name] = rate(make(np.random.default_rng(0)), args.steps, args.batch)
        train[name] = rate(make(np.random.default_rng(0)), args.steps, args.batch, learner.train_step)
        print(f"{name} data_img_s={data[name]:.0f} train_img_s={train[name]:.1f}", flush=True)
    for name in ("batched", "per-sample-jpeg"):
        print(f"{name}/per-sample data_ratio={data[name] / data['per-sample']:.2f} "
              f"train_ratio={train[name] / train['per-sample']:.2f}")


if __name__ == "__main__":
    main()
