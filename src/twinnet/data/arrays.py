"""A dataset held whole in memory as arrays, and a train/test pair of them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArrayDataset:
    """Inputs ``x`` (N, ...) and integer labels ``y`` (N,), batched by index."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_classes(self) -> int:
        return int(self.y.max()) + 1

    def view(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``idx`` as stored."""
        return self.x[idx], self.y[idx]

    def batches(self, batch_len: int, shuffle: bool, rng: np.random.Generator, epoch: int = 0):
        """Endless (x, y) batches: a fresh permutation each epoch, cut into batches (the last may be short).
        ``epoch`` (where the batches start) changes nothing here."""
        n = len(self)
        while True:
            order = rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, batch_len):
                idx = order[start : start + batch_len]
                yield self.x[idx], self.y[idx]


@dataclass(frozen=True)
class Split:
    """Train and test sets of one task."""

    train: ArrayDataset
    test: ArrayDataset
    classes: tuple[str, ...]
    source: str = ""  # where the data came from, quoted in reports beside the figures
