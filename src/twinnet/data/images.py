"""Images held once as uint8 and turned into training batches by index: augment, then normalise, per batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from twinnet.data.arrays import ArrayDataset
from twinnet.data.augment import BatchAugment, flip, normalize, standardize


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
    # alternating flips (airbench's): each image mirrored in the first epoch by a coin drawn once from this seed,
    # then the other way round every next epoch, so that every two epochs see both sides of every image.
    # None: off (``augment.flip`` draws a fresh coin per image and batch instead)
    alternate_flips: int | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise TypeError(f"ImageSource holds uint8 images (N, C, H, W), got {self.x.dtype} {self.x.shape}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} images but y has {len(self.y)} labels")
        if self.alternate_flips is not None and self.augment.flip:
            raise ValueError("flips either alternate per epoch or are drawn per batch, not both")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def augmented(self) -> bool:
        return self.augment != BatchAugment()

    def view(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``idx`` as the model sees them at test time: normalised, not augmented."""
        return normalize(self.x[idx], self.mean, self.std, self.dtype), self.y[idx]

    def first_flips(self) -> np.ndarray:
        """Which images the first epoch mirrors under alternating flips (a coin each, from their seed)."""
        return np.random.default_rng([self.alternate_flips, 0xF11B]).random(len(self)) < 0.5

    def transform(self, x_uint8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One training batch: augmented (when any augmentation is on), then normalised."""
        if not self.augmented:
            return normalize(x_uint8, self.mean, self.std, self.dtype)
        x = x_uint8.astype(self.dtype)
        x /= 255
        return standardize(self.augment(x, rng), self.mean, self.std)

    def batches(self, batch_len: int, shuffle: bool, rng: np.random.Generator, epoch: int = 0) -> Iterator[tuple]:
        """Endless (x, y) batches: a fresh permutation each epoch, each batch transformed as it is drawn.
        ``epoch``: the epoch (from 0) the first batch belongs to, which alternating flips depend on."""
        if self.alternate_flips is None:
            for x, y in ArrayDataset(self.x, self.y).batches(batch_len, shuffle, rng):
                yield self.transform(x, rng), y
            return
        first, per_epoch = self.first_flips(), -(-len(self) // batch_len)
        for k, (idx, y) in enumerate(ArrayDataset(np.arange(len(self)), self.y).batches(batch_len, shuffle, rng)):
            odd = (epoch + k // per_epoch) % 2 == 1
            yield self.transform(flip(self.x[idx], first[idx] != odd), rng), y
