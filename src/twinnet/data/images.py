"""Images held once as uint8 and turned into training batches by index: augment, then normalise, per batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from twinnet.data.arrays import ArrayDataset
from twinnet.data.augment import BatchAugment, flip, normalize, random_window, standardize


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
    # progressive resizing: the first ``small_epochs`` epochs train on a random ``small_crop`` x ``small_crop``
    # window of each (augmented) image, which costs a convolution about (small_crop / side)^2 of a full image;
    # the later epochs and every evaluation see whole images. 0: off
    small_crop: int = 0
    small_epochs: int = 0

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise TypeError(f"ImageSource holds uint8 images (N, C, H, W), got {self.x.dtype} {self.x.shape}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} images but y has {len(self.y)} labels")
        if self.alternate_flips is not None and self.augment.flip:
            raise ValueError("flips either alternate per epoch or are drawn per batch, not both")
        if self.small_crop < 0 or self.small_epochs < 0 or self.small_crop > min(self.x.shape[2:]):
            raise ValueError(f"small_crop must be in [0, {min(self.x.shape[2:])}] and small_epochs >= 0, got "
                             f"{self.small_crop} and {self.small_epochs}")

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

    def transform(self, x_uint8: np.ndarray, rng: np.random.Generator, small: bool = False) -> np.ndarray:
        """One training batch: augmented (when any augmentation is on), cut to a random ``small_crop`` window
        when ``small``, then normalised."""
        if not self.augmented and not small:
            return normalize(x_uint8, self.mean, self.std, self.dtype)
        x = x_uint8.astype(self.dtype)
        x /= 255
        if self.augmented:
            x = self.augment(x, rng)
        if small:
            x = random_window(x, self.small_crop, rng)
        return standardize(x, self.mean, self.std)

    def batches(self, batch_len: int, shuffle: bool, rng: np.random.Generator, epoch: int = 0) -> Iterator[tuple]:
        """Endless (x, y) batches: a fresh permutation each epoch, each batch transformed as it is drawn.
        ``epoch``: the epoch (from 0) the first batch belongs to, which alternating flips and small crops
        depend on."""
        per_epoch = -(-len(self) // batch_len)
        small = lambda k: bool(self.small_crop) and epoch + k // per_epoch < self.small_epochs  # noqa: E731
        if self.alternate_flips is None:
            for k, (x, y) in enumerate(ArrayDataset(self.x, self.y).batches(batch_len, shuffle, rng)):
                yield self.transform(x, rng, small(k)), y
            return
        first = self.first_flips()
        for k, (idx, y) in enumerate(ArrayDataset(np.arange(len(self)), self.y).batches(batch_len, shuffle, rng)):
            odd = (epoch + k // per_epoch) % 2 == 1
            yield self.transform(flip(self.x[idx], first[idx] != odd), rng, small(k)), y
