"""An ``ImageSource`` whose training batches are cut, augmented and normalised where the model is (a GPU).

Its uint8 images are copied to the device once. Each batch's random choices (the shuffle, the crop offsets,
the flips, the small-crop windows) are still drawn on the host from the loop's generator, in the order
``ImageSource.batches`` draws them, and go to the device as one small integer array; the pixels never leave
it. So a run gets the batches the host path gives (the same arithmetic in the same precision) without a
per-step copy of images, and without waiting for the device: with CUDA that array is copied from pinned
memory without blocking.

Only the augmentations airbench's recipes use run there: reflect-padded random crops, flips (per batch or
alternating per epoch) and small-crop windows. ``on_device`` keeps a source with any other augmentation on
the host.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from twinnet.data.arrays import ArrayDataset
from twinnet.data.augment import BatchAugment
from twinnet.data.images import ImageSource


def supported(source: ImageSource) -> bool:
    """Whether every augmentation of ``source`` runs on the device (crops and flips only)."""
    a = source.augment
    return a == BatchAugment(crop_pad=a.crop_pad, flip=a.flip, clip=a.clip)


def on_device(source: ImageSource, device) -> ImageSource | DeviceImageSource:
    """``source`` with its batches made on ``device`` where its augmentations allow, else ``source`` itself."""
    return DeviceImageSource(source, device) if supported(source) else source


class DeviceImageSource:
    """``source``'s training batches, made on ``device`` (a torch device): the same (x, y) batches as
    ``source.batches`` gives for the same generator, as tensors there (y as int64)."""

    def __init__(self, source: ImageSource, device) -> None:
        import torch

        if not supported(source):
            raise ValueError(f"only crops and flips run on the device; this source also has {source.augment}")
        self.source, self.device = source, torch.device(device)
        self.x = torch.as_tensor(source.x).to(self.device)  # uint8, held there for the whole run
        # each pixel value's float, x / 255 as the host computes it: CUDA divides by a number as a product with its
        # reciprocal, which moves some values by one unit in the last place; a table read gives the host's exactly
        scale = np.arange(256).astype(source.dtype)
        scale /= 255
        self.scale = torch.from_numpy(scale).to(self.device)
        self.mean, self.std = (torch.as_tensor(np.asarray(v, source.dtype)).reshape(-1, 1, 1).to(self.device)
                               for v in (source.mean, source.std))

    def __len__(self) -> int:
        return len(self.source)

    def view(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As ``ImageSource.view``: samples ``idx`` normalised, on the host."""
        return self.source.view(idx)

    def batches(self, batch_len: int, shuffle: bool, rng: np.random.Generator, epoch: int = 0) -> Iterator[tuple]:
        """Endless (x, y) batches, drawn as ``ImageSource.batches`` draws them (see there)."""
        src = self.source
        per_epoch = -(-len(src) // batch_len)
        first = src.first_flips() if src.alternate_flips is not None else None
        for k, (idx, y) in enumerate(ArrayDataset(np.arange(len(src)), src.y).batches(batch_len, shuffle, rng)):
            e = epoch + k // per_epoch
            rows = [idx, y]  # what the device needs to know, drawn as the host path draws it
            if first is not None:  # alternating flips: which images this epoch mirrors
                rows.append(first[idx] != (e % 2 == 1))
            pad, side = src.augment.crop_pad, src.small_crop if src.small_crop and e < src.small_epochs else 0
            if pad:
                rows += list(rng.integers(0, 2 * pad + 1, size=(2, len(idx))))
            if src.augment.flip:
                rows.append(rng.random(len(idx)) < 0.5)
            if side:
                rows += [rng.integers(0, src.x.shape[2] - side + 1, size=len(idx)),
                         rng.integers(0, src.x.shape[3] - side + 1, size=len(idx))]
            yield self._batch(np.stack(rows).astype(np.int64), pad, side)

    def _send(self, a: np.ndarray):
        import torch

        t = torch.from_numpy(a)
        if self.device.type == "cuda":  # pinned, so the copy neither blocks the host nor waits for the device
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _batch(self, rows: np.ndarray, pad: int, side: int) -> tuple:
        """The batch of ``rows``: indices, labels, then alternating mirrors, crop offsets, flips and windows
        as the source's settings call for them."""
        import torch

        r = iter(self._send(rows))
        idx, y = next(r), next(r)
        x = self.x[idx]
        if self.source.alternate_flips is not None:  # they come first, as on the host
            x = torch.where(next(r).bool()[:, None, None, None], x.flip(-1), x)
        x = self.scale[x.long()]  # x / 255, as on the host
        if not (self.source.augmented or side):
            return (x - self.mean) / self.std, y
        if pad:
            x = _windows(torch.nn.functional.pad(x, (pad,) * 4, mode="reflect"), next(r), next(r), x.shape[-2:])
        if self.source.augment.flip:
            x = torch.where(next(r).bool()[:, None, None, None], x.flip(-1), x)
        if side:
            x = _windows(x, next(r), next(r), (side, side))
        return (x - self.mean) / self.std, y


def _windows(x, top, left, size):
    """Each sample's window of ``size`` (h, w) at (top[b], left[b]) of ``x`` (B, C, H, W), as a new tensor."""
    import torch

    h, w = size
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, h, 1)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, w)
    b = torch.arange(len(x), device=x.device)[:, None, None, None]
    c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[b, c, rows, cols]
