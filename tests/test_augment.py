import numpy as np
import pytest

from twinnet.data import augment
from twinnet.data.augment import (
    BatchAugment,
    affine,
    colour_jitter,
    crop,
    erase,
    flip,
    normalize,
    random_crop,
    random_erase,
    random_flip,
    standardize,
)

ALL_ON = BatchAugment(
    crop_pad=4, flip=True, rotate=15, translate=0.1, scale=0.1,
    brightness=0.4, contrast=0.4, saturation=0.4, erase_p=0.5, erase_fill="mean",
)  # fmt: skip
ONE_AT_A_TIME = {
    "crop": BatchAugment(crop_pad=3),
    "flip": BatchAugment(flip=True),
    "rotate": BatchAugment(rotate=20),
    "translate": BatchAugment(translate=0.2),
    "scale": BatchAugment(scale=0.3),
    "brightness": BatchAugment(brightness=0.5),
    "contrast": BatchAugment(contrast=0.5),
    "saturation": BatchAugment(saturation=0.5),
    "erase": BatchAugment(erase_p=1.0),
}


def batch(b=16, c=3, h=12, w=10, dtype=np.float32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((b, c, h, w)).astype(dtype)


def arange_images(b=4, c=3, h=6, w=5) -> np.ndarray:
    return np.arange(b * c * h * w, dtype=np.float64).reshape(b, c, h, w)


def reflect(k: int, n: int) -> int:
    """Index k in [-(n-1), 2(n-1)] of a row of n reflected about its first and last pixel (not repeating them)."""
    return -k if k < 0 else 2 * (n - 1) - k if k >= n else k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shapes_dtypes_and_value_range_are_kept(dtype):
    x = batch(dtype=dtype)
    y = ALL_ON(x, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == dtype
    assert y.min() >= 0 and y.max() <= 1
    assert not np.array_equal(y, x)
    for name, aug in ONE_AT_A_TIME.items():
        y = aug(x, np.random.default_rng(2))
        assert y.shape == x.shape and y.dtype == dtype, name
        assert y.min() >= 0 and y.max() <= 1, name


def test_jitter_clips_to_the_range_and_only_when_asked():
    x = batch()
    strong = np.full(len(x), 1.9)
    assert colour_jitter(x, brightness=strong).max() == 1.0
    assert colour_jitter(x, brightness=strong, clip=None).max() > 1.5
    assert colour_jitter(x, contrast=np.full(len(x), 3.0)).min() == 0.0


def test_seeded_determinism_and_input_left_alone():
    x = batch()
    before = x.copy()
    a = ALL_ON(x, np.random.default_rng(7))
    b = ALL_ON(x, np.random.default_rng(7))
    c = ALL_ON(x, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(x, before)
    for name, aug in ONE_AT_A_TIME.items():
        assert np.array_equal(aug(x, np.random.default_rng(3)), aug(x, np.random.default_rng(3))), name
        assert not np.array_equal(aug(x, np.random.default_rng(3)), aug(x, np.random.default_rng(4))), name


@pytest.mark.parametrize("name", list(ONE_AT_A_TIME))
def test_each_op_changes_the_batch_on_and_is_the_identity_off(name):
    x = batch()
    assert not np.array_equal(ONE_AT_A_TIME[name](x, np.random.default_rng(0)), x)
    assert np.array_equal(BatchAugment()(x, np.random.default_rng(0)), x)


def test_flip_on_a_known_image():
    x = arange_images()
    mask = np.array([True, False, True, False])
    y = flip(x, mask)
    assert np.array_equal(y[mask], x[mask][..., ::-1]) and np.array_equal(y[~mask], x[~mask])
    assert y[0, 1, 2, 0] == x[0, 1, 2, -1]
    z = random_flip(arange_images(b=64), np.random.default_rng(0))
    x64 = arange_images(b=64)
    flipped = np.all(z == x64[..., ::-1], axis=(1, 2, 3))
    kept = np.all(z == x64, axis=(1, 2, 3))
    assert np.all(flipped ^ kept) and 10 < flipped.sum() < 54  # each sample one or the other; about half


def test_crop_at_the_padding_is_the_original_and_other_offsets_read_the_reflection():
    x = arange_images()
    p = 2
    same = np.full(len(x), p)
    assert np.array_equal(crop(x, p, same, same), x)
    top, left = np.array([0, 4, 1, 3]), np.array([0, 4, 4, 0])
    y = crop(x, p, top, left)
    b, c, h, w = x.shape
    for s in range(b):
        for i in range(h):
            for j in range(w):
                want = x[s, :, reflect(top[s] + i - p, h), reflect(left[s] + j - p, w)]
                assert np.array_equal(y[s, :, i, j], want), (s, i, j)


def test_reflect_padding_at_the_borders():
    row = np.arange(5.0).reshape(1, 1, 1, 5).repeat(5, axis=2)  # every row 0 1 2 3 4
    left_edge = crop(row, 2, np.array([2]), np.array([0]))
    right_edge = crop(row, 2, np.array([2]), np.array([4]))
    assert left_edge[0, 0, 0].tolist() == [2, 1, 0, 1, 2]  # the edge pixel is not repeated
    assert right_edge[0, 0, 0].tolist() == [2, 3, 4, 3, 2]
    col = row.transpose(0, 1, 3, 2)
    assert crop(col, 1, np.array([0]), np.array([1]))[0, 0, :, 0].tolist() == [1, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="padding"):
        crop(row, 5, np.array([0]), np.array([0]))


def test_random_crop_picks_windows_of_the_padded_image():
    x = arange_images(b=32)
    p = 2
    y = random_crop(x, p, np.random.default_rng(0))
    offsets = []
    for s in range(len(x)):
        hits = [
            (t, l) for t in range(2 * p + 1) for l in range(2 * p + 1)
            if np.array_equal(y[s], crop(x[s : s + 1], p, np.array([t]), np.array([l]))[0])
        ]  # fmt: skip
        assert len(hits) == 1
        offsets.append(hits[0])
    assert len(set(offsets)) > 5  # offsets vary per sample


def test_affine_identity_rotation_and_shift():
    x = arange_images(b=2, h=5, w=5)
    zeros, ones = np.zeros(2), np.ones(2)
    assert np.array_equal(affine(x, zeros, np.zeros((2, 2)), ones), x)
    turned = affine(x, np.array([90.0, -90.0]), np.zeros((2, 2)), ones)
    assert np.allclose(turned[0], np.rot90(x[0], 1, axes=(1, 2)), atol=1e-9)  # anticlockwise as displayed
    assert np.allclose(turned[1], np.rot90(x[1], -1, axes=(1, 2)), atol=1e-9)
    moved = affine(x, zeros, np.array([[1.0, 0.0], [0.0, -2.0]]), ones, fill=-1.0)
    assert np.array_equal(moved[0, :, 1:], x[0, :, :-1]) and np.all(moved[0, :, 0] == -1)  # down by one
    assert np.array_equal(moved[1, :, :, :-2], x[1, :, :, 2:]) and np.all(moved[1, :, :, -2:] == -1)  # left by two
    half = affine(x, zeros, np.array([[0.5, 0.0], [0.0, 0.0]]), ones)
    assert np.allclose(half[0, :, 1:], (x[0, :, 1:] + x[0, :, :-1]) / 2)  # bilinear between rows


def test_affine_zoom_keeps_the_centre_and_spreads_out():
    x = arange_images(b=1, c=1, h=5, w=5)
    big = affine(x, np.zeros(1), np.zeros((1, 2)), np.array([2.0]))
    assert big[0, 0, 2, 2] == x[0, 0, 2, 2]
    assert big[0, 0, 0, 2] == x[0, 0, 1, 2]  # two rows above the centre reads one row above
    assert big[0, 0, 1, 2] == (x[0, 0, 1, 2] + x[0, 0, 2, 2]) / 2  # one row above reads half a row above


def test_colour_jitter_on_known_images():
    x = batch(b=3)
    ones = np.ones(3)
    assert np.allclose(colour_jitter(x, brightness=ones, contrast=ones, saturation=ones), x, atol=1e-6)
    assert np.allclose(colour_jitter(x, brightness=np.full(3, 0.5)), x * 0.5)
    grey = colour_jitter(x, saturation=np.zeros(3))
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert np.allclose(grey, luma[:, None].repeat(3, axis=1), atol=1e-6)
    flat = colour_jitter(x, contrast=np.zeros(3))
    assert np.allclose(flat, luma.mean(axis=(1, 2))[:, None, None, None] * np.ones_like(x), atol=1e-6)
    assert np.allclose(colour_jitter(grey, saturation=np.full(3, 2.0)), grey, atol=1e-6)  # grey stays grey
    one_channel = batch(b=3, c=1)
    assert np.allclose(colour_jitter(one_channel, saturation=np.full(3, 0.2)), one_channel)


def test_erase_on_known_rectangles():
    x = batch(b=3, h=6, w=7) + 1  # no zero anywhere
    y = erase(x, np.array([0, 2, 5]), np.array([0, 3, 6]), np.array([2, 3, 0]), np.array([3, 4, 1]))
    assert np.all(y[0, :, :2, :3] == 0) and (y[0] == 0).sum() == 3 * 2 * 3
    assert np.all(y[1, :, 2:5, 3:7] == 0) and (y[1] == 0).sum() == 3 * 3 * 4
    assert np.array_equal(y[2], x[2])  # height 0: untouched
    m = erase(x, np.array([1, 1, 1]), np.array([1, 1, 1]), np.array([2, 2, 2]), np.array([2, 2, 2]), fill="mean")
    assert np.allclose(m[:, :, 1, 1], x.mean(axis=(2, 3)))
    assert m.dtype == x.dtype


def test_random_erase_rectangles_lie_within_bounds(monkeypatch):
    x = batch(b=200, h=9, w=11) + 1
    drawn = []
    real = augment.erase
    monkeypatch.setattr(augment, "erase", lambda x, *rect, **kw: drawn.append(rect) or real(x, *rect, **kw))
    y = random_erase(x, np.random.default_rng(0), p=1.0, area=(0.05, 0.4), ratio=(0.3, 3.3))
    top, left, height, width = drawn[0][:4]
    assert np.all(top >= 0) and np.all(left >= 0) and np.all(top + height <= 9) and np.all(left + width <= 11)
    assert np.all(height >= 1) and np.all(width >= 1) and len(set(zip(top, left))) > 20
    assert np.all(height * width >= 0.05 * 99 / 2) and np.all(height * width <= 0.4 * 99 * 1.5)  # rounding aside
    for s in range(len(x)):
        zero = np.all(y[s] == 0, axis=0)  # (H, W)
        rows, cols = np.flatnonzero(zero.any(axis=1)), np.flatnonzero(zero.any(axis=0))
        assert len(rows) and len(cols)
        # one solid rectangle, inside the image, the rest untouched
        assert rows[-1] - rows[0] + 1 == len(rows) and cols[-1] - cols[0] + 1 == len(cols)
        assert zero.sum() == len(rows) * len(cols)
        assert np.array_equal(y[s][:, ~zero], x[s][:, ~zero])
    half = random_erase(x, np.random.default_rng(1), p=0.5)
    erased = np.any(half == 0, axis=(1, 2, 3))
    assert 60 < erased.sum() < 140
    assert np.array_equal(random_erase(x, np.random.default_rng(1), p=0.0), x)


def test_bad_inputs_and_configs():
    with pytest.raises(TypeError, match="float batches"):
        BatchAugment(flip=True)(np.zeros((2, 3, 4, 4), np.uint8), np.random.default_rng(0))
    with pytest.raises(TypeError, match="float batches"):
        BatchAugment(flip=True)(np.zeros((3, 4, 4)), np.random.default_rng(0))
    bad_configs = (
        dict(erase_p=1.5), dict(crop_pad=-1), dict(scale=1.0), dict(erase_fill="noise"), dict(erase_area=(0.5, 0.1)),
        dict(rotate=181), dict(translate=1.0),
    )  # fmt: skip
    for bad in bad_configs:
        with pytest.raises(ValueError):
            BatchAugment(**bad)
    BatchAugment(rotate=180, translate=0.99)  # the largest that mean something


def test_normalize_and_standardize_per_channel():
    x = np.array([0, 51, 255, 102], np.uint8).reshape(1, 1, 2, 2).repeat(3, axis=1)  # (1, 3, 2, 2)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.1)
    out = normalize(x, mean, std)
    assert out.dtype == np.float32 and out.shape == x.shape
    for c in range(3):
        assert np.allclose(out[0, c], (x[0, c] / 255 - mean[c]) / std[c], rtol=1e-6)
    assert out[0, 1, 1, 0] == pytest.approx((1 - 0.2) / 0.25)
    out64 = normalize(x, 0.5, 0.5, np.float64)
    assert out64.dtype == np.float64 and out64[0, 2, 0, 0] == -1.0 and out64[0, 0, 1, 0] == 1.0
    f = x.astype(np.float32) / 255
    assert np.allclose(standardize(f, mean, std), out)
    assert np.array_equal(f, x.astype(np.float32) / 255)  # standardize copies
    with pytest.raises(TypeError, match="uint8"):
        normalize(f, mean, std)
    with pytest.raises(ValueError, match="do not fit"):
        normalize(x, (0.1, 0.2), (1, 1))
