"""Images held once as uint8 and turned into training batches by index: augment, then normalise, per batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from twinnet.data.arrays import ArrayDataset
from twinnet.data.augment import BatchAugment, normalize, standardize


@dataclass(frozen=True)
class ImageSource:
    """A training set of uint8 images (N, C, H, W) whose batches are augmented and normalised as they are drawn.

    The stored images are never changed; each batch is cut by index, augmented with the loop's generator
    (so the batch order and the augmentations together depend on one seed) and normalised per channel.
    """

    x: np.ndarray  # uint8 (N, C, H, W)
    y: np.ndarray  # int (N,)
    mean: tuple[float, ...]  # per channel, on [0, 1]
    std: tuple[float, ...]
    augment: BatchAugment = BatchAugment()
    dtype: type = np.float32

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise TypeError(f"ImageSource holds uint8 images (N, C, H, W), got {self.x.dtype} {self.x.shape}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} images but y has {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def augmented(self) -> bool:
        return self.augment != BatchAugment()

    def view(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``idx`` as the model sees them at test time: normalised, not augmented."""
        return normalize(self.x[idx], self.mean, self.std, self.dtype), self.y[idx]

    def transform(self, x_uint8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One training batch: augmented (when any augmentation is on), then normalised."""
        if not self.augmented:
            return normalize(x_uint8, self.mean, self.std, self.dtype)
        x = x_uint8.astype(self.dtype)
        x /= 255
        return standardize(self.augment(x, rng), self.mean, self.std)

    def batches(self, batch_len: int, shuffle: bool, rng: np.random.Generator) -> Iterator[tuple]:
        """Endless (x, y) batches: a fresh permutation each epoch, each batch transformed as it is drawn."""
        for x, y in ArrayDataset(self.x, self.y).batches(batch_len, shuffle, rng):
            yield self.transform(x, rng), y
