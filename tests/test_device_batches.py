"""Training batches made where the model is (twinnet.data.device): the host pipeline's batches exactly, from
the same generator, whatever the crops, flips and small-crop windows; on a CPU device here, as CI has no GPU."""

import numpy as np
import pytest
import torch

from twinnet.data.augment import BatchAugment
from twinnet.data.device import DeviceImageSource, on_device, supported
from twinnet.data.images import ImageSource


def _source(augment=BatchAugment(), n=13, dtype=np.float32, **kwargs):
    x = np.random.default_rng(0).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    return ImageSource(x, np.arange(n) % 3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), augment, dtype, **kwargs)


CASES = {
    "plain": {},
    "crop": {"augment": BatchAugment(crop_pad=2)},
    "flip": {"augment": BatchAugment(flip=True)},
    "crop and flip": {"augment": BatchAugment(crop_pad=3, flip=True)},
    "alternating flips and crop": {"augment": BatchAugment(crop_pad=2), "alternate_flips": 5},
    "small crops, then whole images": {"augment": BatchAugment(crop_pad=2, flip=True), "small_crop": 5,
                                       "small_epochs": 2},
    "alternating flips, small crops": {"alternate_flips": 1, "small_crop": 6, "small_epochs": 1},
    "float64": {"augment": BatchAugment(crop_pad=1, flip=True), "dtype": np.float64},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("epoch", [0, 1])
def test_device_batches_are_the_host_batches_to_the_bit(case, epoch):
    src = _source(**CASES[case])
    dev = DeviceImageSource(src, "cpu")
    host_rng, dev_rng = np.random.default_rng(3), np.random.default_rng(3)
    host, made = src.batches(5, True, host_rng, epoch=epoch), dev.batches(5, True, dev_rng, epoch=epoch)
    shapes = set()
    for _ in range(10):  # three epochs of 13 in batches of 5 (the last of each short), epoch boundaries between
        (hx, hy), (dx, dy) = next(host), next(made)
        assert isinstance(dx, torch.Tensor) and dx.dtype == torch.from_numpy(hx).dtype and dy.dtype == torch.int64
        np.testing.assert_array_equal(dx.numpy(), hx)
        np.testing.assert_array_equal(dy.numpy(), hy)
        shapes.add(hx.shape[2:])
    # the generator is left where the host path leaves it, so what it draws next is the same too
    assert host_rng.bit_generator.state == dev_rng.bit_generator.state
    if CASES[case].get("small_crop"):
        assert len(shapes) == (1 if epoch >= CASES[case]["small_epochs"] else 2)  # small windows, then whole images


def test_device_batches_follow_a_shuffle_off_and_a_whole_batch():
    src = _source(BatchAugment(crop_pad=2, flip=True))
    dev = DeviceImageSource(src, "cpu")
    for batch_len, shuffle in ((13, False), (4, False), (13, True)):
        h, d = src.batches(batch_len, shuffle, np.random.default_rng(9)), dev.batches(batch_len, shuffle,
                                                                                      np.random.default_rng(9))
        for _ in range(3):
            (hx, hy), (dx, dy) = next(h), next(d)
            np.testing.assert_array_equal(dx.numpy(), hx)
            np.testing.assert_array_equal(dy.numpy(), hy)


def test_other_augmentations_stay_on_the_host():
    for augment in (BatchAugment(crop_pad=2, brightness=0.2), BatchAugment(rotate=10), BatchAugment(erase_p=0.5)):
        src = _source(augment)
        assert not supported(src) and on_device(src, "cpu") is src
        with pytest.raises(ValueError, match="only crops and flips"):
            DeviceImageSource(src, "cpu")
    src = _source(BatchAugment(crop_pad=4, flip=True))
    made = on_device(src, "cpu")
    assert isinstance(made, DeviceImageSource) and len(made) == len(src)
    idx = np.array([3, 0, 7])
    for a, b in zip(made.view(idx), src.view(idx)):  # evaluations and set-up read the host's images
        np.testing.assert_array_equal(a, b)


def test_fit_on_device_batches_trains_the_weights_the_host_batches_train():
    from twinnet.learner import make_learner
    from twinnet.train import TrainConfig, fit

    src = _source(BatchAugment(crop_pad=2, flip=True), n=24, alternate_flips=None)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, optimizer="sgd", momentum=0.9, seed=0)
    weights = []
    for train in (src, DeviceImageSource(src, "cpu")):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.Linear(4 * 6 * 6, 3))
        history = fit(make_learner(model, cfg), train, None, cfg, progress=False)
        weights.append((history.step_losses, [p.detach().clone() for p in model.parameters()]))
    (losses_host, host), (losses_dev, dev) = weights
    assert len(losses_host) == 6 and losses_host == losses_dev
    assert all(torch.equal(a, b) for a, b in zip(host, dev))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_batches_stay_exact_where_a_division_by_a_number_is_a_product_with_its_reciprocal(dtype, monkeypatch):
    """CUDA divides a tensor by a Python number as a product with its reciprocal, one unit in the last place
    off for some pixel values (126 of 256 in float32): emulated here, the batches must still be the host's."""
    original = torch.Tensor.__truediv__

    def as_cuda_does(self, other):
        return self * (1 / other) if isinstance(other, (int, float)) else original(self, other)

    monkeypatch.setattr(torch.Tensor, "__truediv__", as_cuda_does)
    x = torch.arange(256, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
    assert not torch.equal(x / 255, torch.from_numpy(np.arange(256).astype(dtype) / dtype(255)))  # the emulation bites
    for augment in (BatchAugment(), BatchAugment(crop_pad=2, flip=True)):
        src = _source(augment, n=256, dtype=dtype)
        src.x[:, 0, 0, 0] = np.arange(256, dtype=np.uint8)  # every pixel value appears
        (hx, _), (dx, _) = (next(s.batches(256, False, np.random.default_rng(1)))
                            for s in (src, DeviceImageSource(src, "cpu")))
        np.testing.assert_array_equal(dx.numpy(), hx)
