"""Augmentation of whole batches (B, C, H, W) as array operations, each switchable and seeded by a Generator.

Each operation is a pure function of the batch and explicit per-sample parameters (``crop``, ``flip``,
``affine``, ``colour_jitter``, ``erase``), beside a ``random_*`` twin that draws those parameters from
the generator: the first is what tests check on known images, the second what training calls.
Images are floats, normally on [0, 1] (``x_uint8 / 255``); ``normalize`` comes last, once augmented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# ITU-R 601 luma weights, as Pillow and torchvision use for grey
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class BatchAugment:
    """Which operations run and how strongly; every one is off by default, so ``BatchAugment()`` is the identity."""

    crop_pad: int = 0  # pixels of reflect padding before a random crop back to H x W (CIFAR recipe: 4)
    flip: bool = False  # mirror left-right, each sample with probability 0.5
    rotate: float = 0.0  # largest rotation, degrees either way
    translate: float = 0.0  # largest shift, as a fraction of the height and width
    scale: float = 0.0  # zoom drawn from [1 - scale, 1 + scale]
    brightness: float = 0.0  # pixels times a factor from [max(0, 1 - b), 1 + b]; likewise contrast and saturation
    contrast: float = 0.0  # distance from the sample's mean grey times a factor from [1 - c, 1 + c]
    saturation: float = 0.0  # distance from each pixel's grey times a factor from [1 - s, 1 + s]
    erase_p: float = 0.0  # probability that a sample gets one rectangle erased (random erasing / cutout)
    erase_area: tuple[float, float] = (0.02, 0.33)  # the rectangle's area, as a fraction of the image
    erase_ratio: tuple[float, float] = (0.3, 3.3)  # its height / width, drawn log-uniformly
    erase_fill: Literal["zero", "mean"] = "zero"  # zero, or the sample's per-channel mean
    clip: tuple[float, float] | None = (0.0, 1.0)  # the pixel range colour jitter keeps to; None: unclipped

    def __post_init__(self) -> None:
        for name in ("crop_pad", "rotate", "translate", "scale", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.rotate > 180:
            raise ValueError(f"rotate is the largest rotation in degrees either way, so at most 180, got {self.rotate} "
                             "(15 is usual)")
        if self.translate >= 1:
            raise ValueError(f"translate is the largest shift as a fraction of the side, so below 1, got "
                             f"{self.translate} (0.1 is usual)")
        if self.scale >= 1:
            raise ValueError(f"scale must be < 1 (zoom from 1 - scale to 1 + scale), got {self.scale}")
        if not 0 <= self.erase_p <= 1:
            raise ValueError(f"erase_p is a probability, got {self.erase_p}")
        if not 0 < self.erase_area[0] <= self.erase_area[1] <= 1 or not 0 < self.erase_ratio[0] <= self.erase_ratio[1]:
            raise ValueError(f"bad erase_area {self.erase_area} or erase_ratio {self.erase_ratio}")
        if self.erase_fill not in ("zero", "mean"):
            raise ValueError(f"erase_fill must be 'zero' or 'mean', got {self.erase_fill!r}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new augmented batch of the same shape and dtype; ``x`` is left as it was."""
        _check(x)
        if self.crop_pad:
            x = random_crop(x, self.crop_pad, rng)
        if self.flip:
            x = random_flip(x, rng)
        if self.rotate or self.translate or self.scale:
            x = random_affine(x, rng, self.rotate, self.translate, self.scale)
        if self.brightness or self.contrast or self.saturation:
            x = random_colour_jitter(x, rng, self.brightness, self.contrast, self.saturation, self.clip)
        if self.erase_p:
            x = random_erase(x, rng, self.erase_p, self.erase_area, self.erase_ratio, self.erase_fill)
        return x


def _check(x: np.ndarray) -> None:
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"augmentation works on float batches (B, C, H, W), got {x.dtype} {x.shape}")


# ---- crop ---------------------------------------------------------------------------------------------


def crop(x: np.ndarray, pad: int, top: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Reflect-pad by ``pad`` and cut each sample's H x W window at (top[b], left[b]), both in [0, 2 * pad]."""
    B, C, H, W = x.shape
    if not 0 <= pad < min(H, W):
        raise ValueError(f"crop padding must be in [0, {min(H, W)}) for {H}x{W} images, got {pad}")
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")  # edge not repeated
    windows = sliding_window_view(padded, (H, W), axis=(2, 3))  # (B, C, 2p+1, 2p+1, H, W), a view
    return windows[np.arange(B), :, top, left]  # (B, C, H, W): the indexed axes come first


def random_crop(x: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    top, left = rng.integers(0, 2 * pad + 1, size=(2, len(x)))
    return crop(x, pad, top, left)


def window(x: np.ndarray, side: int, top: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Each sample's ``side`` x ``side`` window at (top[b], left[b]): a smaller image, no padding."""
    B, C, H, W = x.shape
    if not 0 < side <= min(H, W):
        raise ValueError(f"a window's side must be in [1, {min(H, W)}] for {H}x{W} images, got {side}")
    windows = sliding_window_view(x, (side, side), axis=(2, 3))  # (B, C, H-s+1, W-s+1, s, s), a view
    return np.ascontiguousarray(windows[np.arange(B), :, top, left])


def random_window(x: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``side`` x ``side`` window of each sample at a uniformly drawn place."""
    top = rng.integers(0, x.shape[2] - side + 1, size=len(x))
    left = rng.integers(0, x.shape[3] - side + 1, size=len(x))
    return window(x, side, top, left)


# ---- flip ---------------------------------------------------------------------------------------------


def flip(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Samples where ``mask`` (B,) is True mirrored left-right."""
    return np.where(np.asarray(mask, bool)[:, None, None, None], x[..., ::-1], x)


def random_flip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    return flip(x, rng.random(len(x)) < p)


# ---- rotation, shift, zoom ----------------------------------------------------------------------------


def affine(
    x: np.ndarray, angle: np.ndarray, shift: np.ndarray, scale: np.ndarray, fill: float = 0.0
) -> np.ndarray:
    """Rotate by ``angle`` (B,) degrees anticlockwise as displayed, zoom by ``scale`` (B,) about the centre,
    then move by ``shift`` (B, 2) pixels (down, right); bilinear, with ``fill`` outside the source.

    Each output pixel is mapped back into the source (the inverse transform), so no holes appear.
    """
    B, C, H, W = x.shape
    theta = np.deg2rad(np.asarray(angle, np.float64))[:, None, None]
    shift, s = np.asarray(shift, np.float64), np.asarray(scale, np.float64)[:, None, None]
    cy, cx = (H - 1) / 2, (W - 1) / 2
    v = np.arange(H)[None, :, None] - cy - shift[:, 0, None, None]  # (B, H, 1) rows from the centre
    u = np.arange(W)[None, None, :] - cx - shift[:, 1, None, None]  # (B, 1, W) columns from the centre
    cos, sin = np.cos(theta), np.sin(theta)
    src_x = (cos * u - sin * v) / s + cx  # (B, H, W): undoes an anticlockwise turn with y pointing down
    src_y = (sin * u + cos * v) / s + cy
    return _bilinear(x, src_y, src_x, fill)


def _bilinear(x: np.ndarray, sy: np.ndarray, sx: np.ndarray, fill: float) -> np.ndarray:
    """x sampled at fractional rows ``sy`` and columns ``sx`` (B, H', W'); neighbours outside read ``fill``."""
    B, C, H, W = x.shape
    y0, x0 = np.floor(sy), np.floor(sx)
    fy, fx = (sy - y0).astype(x.dtype), (sx - x0).astype(x.dtype)
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
    flat, n = x.reshape(B, C, H * W), sy[0].size
    out = np.zeros((B, C, n), x.dtype)
    outside = np.zeros((B, n), x.dtype)  # the weight that falls outside the source, given to ``fill``
    for dy, wy in ((0, 1 - fy), (1, fy)):  # the four neighbours
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi, xi = y0 + dy, x0 + dx
            inside = ((yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)).reshape(B, n)
            w = (wy * wx).reshape(B, n)
            at = (yi.clip(0, H - 1) * W + xi.clip(0, W - 1)).reshape(B, 1, n)  # flat pixel index
            out += np.take_along_axis(flat, np.broadcast_to(at, (B, C, n)), axis=2) * np.where(inside, w, 0)[:, None]
            outside += np.where(inside, 0, w)
    if fill:
        out += fill * outside[:, None]
    return out.reshape((B, C) + sy.shape[1:])


def random_affine(
    x: np.ndarray, rng: np.random.Generator, rotate: float, translate: float, scale: float, fill: float = 0.0
) -> np.ndarray:
    B, _, H, W = x.shape
    angle = rng.uniform(-rotate, rotate, B)
    shift = rng.uniform(-translate, translate, (B, 2)) * np.array([H, W])
    zoom = rng.uniform(1 - scale, 1 + scale, B)
    return affine(x, angle, shift, zoom, fill)


# ---- colour -------------------------------------------------------------------------------------------


def _grey(x: np.ndarray) -> np.ndarray:
    """(B, 1, H, W) luma of RGB, or the single channel itself."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"colour jitter needs 1 or 3 channels, got {x.shape[1]}")
    return np.einsum("bchw,c->bhw", x, _LUMA.astype(x.dtype))[:, None]


def colour_jitter(
    x: np.ndarray,
    brightness: np.ndarray | None = None,
    contrast: np.ndarray | None = None,
    saturation: np.ndarray | None = None,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> np.ndarray:
    """Brightness, contrast, then saturation by per-sample factors (B,): 1 keeps, None skips; clipped after each."""
    factor = lambda f: np.asarray(f, x.dtype)[:, None, None, None]  # noqa: E731  (B,) -> (B, 1, 1, 1)
    keep = (lambda a: np.clip(a, *clip, out=a)) if clip is not None else (lambda a: a)  # noqa: E731
    if brightness is not None:
        x = keep(x * factor(brightness))
    if contrast is not None:
        mean = _grey(x).mean(axis=(1, 2, 3), keepdims=True)  # (B, 1, 1, 1)
        x = keep((x - mean) * factor(contrast) + mean)
    if saturation is not None:
        grey = _grey(x)  # (B, 1, H, W): a grey image is left as it is
        x = keep((x - grey) * factor(saturation) + grey)
    return x


def random_colour_jitter(
    x: np.ndarray,
    rng: np.random.Generator,
    brightness: float,
    contrast: float,
    saturation: float,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> np.ndarray:
    draw = lambda s: rng.uniform(max(0.0, 1 - s), 1 + s, len(x)) if s else None  # noqa: E731  (no negative factor)
    return colour_jitter(x, draw(brightness), draw(contrast), draw(saturation), clip)


# ---- erasing ------------------------------------------------------------------------------------------


def erase(
    x: np.ndarray, top: np.ndarray, left: np.ndarray, height: np.ndarray, width: np.ndarray, fill: str = "zero"
) -> np.ndarray:
    """Each sample's rectangle [top, top + height) x [left, left + width) set to zero or its per-channel mean."""
    B, C, H, W = x.shape
    rows = (np.arange(H) >= top[:, None]) & (np.arange(H) < (top + height)[:, None])  # (B, H)
    cols = (np.arange(W) >= left[:, None]) & (np.arange(W) < (left + width)[:, None])  # (B, W)
    mask = (rows[:, :, None] & cols[:, None, :])[:, None]  # (B, 1, H, W)
    value = x.mean(axis=(2, 3), keepdims=True) if fill == "mean" else 0  # (B, C, 1, 1)
    return np.where(mask, value, x).astype(x.dtype, copy=False)


def random_erase(
    x: np.ndarray,
    rng: np.random.Generator,
    p: float,
    area: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    fill: str = "zero",
) -> np.ndarray:
    """One rectangle, wholly inside the image, erased from each sample with probability ``p``."""
    B, _, H, W = x.shape
    target = rng.uniform(*area, B) * H * W
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), B))  # height / width
    height = np.clip(np.rint(np.sqrt(target * aspect)), 1, H).astype(np.intp)
    width = np.clip(np.rint(np.sqrt(target / aspect)), 1, W).astype(np.intp)
    top = (rng.random(B) * (H - height + 1)).astype(np.intp)  # so that top + height <= H
    left = (rng.random(B) * (W - width + 1)).astype(np.intp)
    height = np.where(rng.random(B) < p, height, 0)  # an empty rectangle: the sample is kept
    return erase(x, top, left, height, width, fill)


# ---- normalisation ------------------------------------------------------------------------------------


def normalize(
    x_uint8: np.ndarray, mean: float | tuple[float, ...], std: float | tuple[float, ...], dtype: type = np.float32
) -> np.ndarray:
    """``(x / 255 - mean) / std`` per channel (axis -3) as a new float array of ``dtype``; mean, std scalars or (C,)."""
    x = np.asarray(x_uint8)
    if x.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {x.dtype}; use standardize for floats on [0, 1]")
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"normalize needs a floating dtype, got {np.dtype(dtype)}")
    out = x.astype(dtype)  # in place from here: one array of the output's size, in its precision
    out /= 255
    return _standardize(out, mean, std)


def standardize(x: np.ndarray, mean: float | tuple[float, ...], std: float | tuple[float, ...]) -> np.ndarray:
    """``(x - mean) / std`` per channel for float pixels already on [0, 1] (e.g. after augmentation), as a new array."""
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"standardize expects float pixels on [0, 1], got {x.dtype}; use normalize for uint8")
    return _standardize(x.copy(), mean, std)


def _standardize(out: np.ndarray, mean, std) -> np.ndarray:
    mean, std = (np.asarray(v, out.dtype) for v in (mean, std))
    if mean.ndim or std.ndim:  # (C,) -> (C, 1, 1): broadcast over the channel axis of (..., C, H, W)
        if out.ndim < 3 or mean.size not in (1, out.shape[-3]) or std.size not in (1, out.shape[-3]):
            raise ValueError(f"per-channel mean {mean.shape} and std {std.shape} do not fit images {out.shape}")
        mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
    out -= mean
    out /= std
    return out
