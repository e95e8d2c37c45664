"""scikit-learn's two-dimensional toy sets with a fixed-seed 80/20 train/test split."""

from __future__ import annotations

import math

import numpy as np
from sklearn.datasets import make_blobs, make_circles, make_moons
from sklearn.model_selection import train_test_split

from twinnet import TwinnetError
from twinnet.data.arrays import ArrayDataset, Split

TOY_DATASETS = ("moons", "circles", "blobs")


MAX_NOISE = 1e6  # the sets span a few units: far beyond, they are noise alone, and blobs' 10x std overflows


def noise_refusal(noise: float) -> str:
    """Why a toy set's ``noise`` is refused."""
    return (f"noise must be between 0 and 1e6 (the toy sets span a few units; far larger noise leaves "
            f"nothing to learn), got {noise}")


def make_toy(
    name: str, n: int = 1000, noise: float = 0.1, seed: int = 0, test_fraction: float = 0.2, n_blobs: int = 3
) -> Split:
    """Draw ``n`` points of ``name`` (moons, circles or blobs) and split them, stratified by class.

    ``noise`` is the Gaussian noise of moons and circles and the cluster std of blobs.
    """
    if n < 10:
        raise TwinnetError(f"toy dataset needs at least 10 points, got n={n}")
    if not 0 < test_fraction < 1:
        raise TwinnetError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if not 0 <= noise <= MAX_NOISE:
        raise TwinnetError(noise_refusal(noise))
    if name == "moons":
        x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
        classes = ("upper moon", "lower moon")
    elif name == "circles":
        x, y = make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)
        classes = ("outer", "inner")
    elif name == "blobs":
        # blobs are far apart by default; the std plays the role of noise (10x so noise=0.1 -> std 1.0)
        x, y = make_blobs(n_samples=n, centers=n_blobs, cluster_std=10 * noise, random_state=seed)
        classes = tuple(f"blob {i}" for i in range(n_blobs))
    else:
        raise TwinnetError(f"unknown toy dataset {name!r}; choose one of {', '.join(TOY_DATASETS)}")
    n_test = math.ceil(test_fraction * len(y))
    n_classes = len(np.unique(y))
    if min(n_test, len(y) - n_test) < n_classes:  # a stratified split needs every class on both sides
        raise TwinnetError(f"{name}: {len(y)} samples with test_fraction={test_fraction} give {n_test} test and "
                           f"{len(y) - n_test} training samples, fewer than its {n_classes} classes on one side; "
                           "raise n_samples or choose a test_fraction nearer 0.5")
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    as_set = lambda a, b: ArrayDataset(a.astype(np.float64), b.astype(np.int64))  # noqa: E731
    return Split(as_set(x_tr, y_tr), as_set(x_te, y_te), classes)
