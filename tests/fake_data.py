"""Fake MNIST files the tests train on (the real MNIST is never needed by them)."""

import gzip
from pathlib import Path

import numpy as np


def idx(array: np.ndarray) -> bytes:
    """``array`` (uint8 images (N, H, W) or labels (N,)) in the IDX format of the MNIST files."""
    magic = 2051 if array.ndim == 3 else 2049
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def write_mnist(d: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> None:
    """Fake MNIST IDX files in ``d``: class c is a bright 6x6 square at a place of its own over noise,
    easy to learn."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            r, q = divmod(int(c), 5)
            x[i, 4 + 12 * r : 10 + 12 * r, 2 + 5 * q : 8 + 5 * q] = 255
        (d / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(x)))
        (d / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(y)))


def write_cifar_tree(d: Path, per_class: tuple[int, int] = (12, 3), seed: int = 1) -> None:
    """A fake CIFAR-10 image-folder tree of PNGs: train/<class>/*.png and test/<class>/*.png, each
    class with a colour channel of its own."""
    from PIL import Image

    from twinnet.data.cifar import CIFAR10_CLASSES

    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(CIFAR10_CLASSES):
            folder = d / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                pixels[:, :, c % 3] = 25 * c
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")


def write_data_dir(root: Path) -> Path:
    """A --data-dir of both fake datasets, ``root/mnist`` and ``root/cifar10``, as the reproduce tests use it."""
    write_mnist(root / "mnist")
    write_cifar_tree(root / "cifar10", (10, 2))
    return root


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python tests/fake_data.py DIR  (writes DIR/mnist and DIR/cifar10: small fake data for "
                 "--data-dir)")
    print(write_data_dir(Path(sys.argv[1])))
