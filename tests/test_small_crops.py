"""Progressive resizing: training batches cut to small random windows for the first epochs, a global max
pool that lets airbench94's network take them, and the settings' errors."""

import numpy as np
import pytest
import torch

from fake_data import write_cifar_tree
from twinnet.cli import main
from twinnet.data.augment import BatchAugment, random_window, window
from twinnet.data.images import ImageSource


def test_a_window_is_the_slice_at_its_place_and_random_windows_stay_inside():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 8, 7))
    top, left = np.array([0, 3, 1, 4, 2]), np.array([0, 3, 2, 1, 3])
    out = window(x, 4, top, left)
    assert out.shape == (5, 3, 4, 4) and out.flags.c_contiguous
    for b in range(5):
        np.testing.assert_array_equal(out[b], x[b, :, top[b] : top[b] + 4, left[b] : left[b] + 4])
    places = set()
    for _ in range(200):
        w = random_window(x[:1], 6, rng)[0]
        found = [(t, l) for t in range(3) for l in range(2) if np.array_equal(w, x[0, :, t : t + 6, l : l + 6])]
        assert len(found) == 1
        places.add(found[0])
    assert places == {(t, l) for t in range(3) for l in range(2)}  # every place, corners included
    with pytest.raises(ValueError, match="side"):
        window(x, 8, top, left)  # wider than the image's 7


def _source(n=12, side=8, **kw):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8)
    return ImageSource(x, np.arange(n) % 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), **kw)


@pytest.mark.parametrize("alternate", [None, 7])
def test_small_epochs_yield_windows_of_the_images_and_later_epochs_whole_images(alternate):
    src = _source(small_crop=5, small_epochs=2, alternate_flips=alternate)
    batches = src.batches(4, True, np.random.default_rng(2))  # 3 batches an epoch
    shapes = [next(batches)[0].shape for _ in range(12)]
    assert shapes == [(4, 3, 5, 5)] * 6 + [(4, 3, 8, 8)] * 6
    # each small image is a window of its (possibly mirrored) normalised image
    full = src.view(np.arange(len(src)))[0]
    xb, yb = next(src.batches(4, False, np.random.default_rng(3)))
    for b in range(4):
        views = (full[b], full[b][..., ::-1])
        assert any(np.allclose(xb[b], v[:, t : t + 5, l : l + 5], atol=1e-6)
                   for v in views for t in range(4) for l in range(4))
    # started at the third epoch (a resume), the small epochs are over
    assert next(src.batches(4, True, np.random.default_rng(2), epoch=2))[0].shape == (4, 3, 8, 8)
    assert next(src.batches(4, True, np.random.default_rng(2), epoch=1))[0].shape == (4, 3, 5, 5)


def test_small_crops_follow_the_other_augmentations():
    """With a crop after padding (a translation) on, the window is cut from the translated image."""
    src = _source(small_crop=6, small_epochs=1, augment=BatchAugment(crop_pad=1))
    x, _ = next(src.batches(12, False, np.random.default_rng(4)))
    assert x.shape == (12, 3, 6, 6)
    with pytest.raises(ValueError, match="small_crop"):
        _source(small_crop=9)


def test_airbench_twins_agree_on_small_crops_and_give_one_output_per_image():
    from twinnet.architectures import MODELS
    from twinnet.twins import build_twins, gradient_agreement

    spec = MODELS["airbench94"]
    twins = build_twins(spec.build, "float64", 0)
    rng = np.random.default_rng(0)
    setup = rng.standard_normal((4, 3, 32, 32))
    for model in twins.values():  # the whitening layer, from the same images in both
        spec.prepare(model, setup, 5e-4)
    twins["numpy"].train(), twins["torch"].train()
    for side in (24, 9):
        x = rng.standard_normal((3, 3, side, side))
        errors = gradient_agreement(twins["numpy"], twins["torch"], x, np.array([1, 2, 3]))
        trained = {n for n, p in twins["torch"].named_parameters() if p.requires_grad}
        assert max(errors[k] for k in ["loss", *trained]) < 1e-10, side
    with torch.no_grad():  # on whole images the global pool is airbench's 3x3 pool over 3x3 maps
        model = twins["torch"].eval()
        x = torch.from_numpy(rng.standard_normal((2, 3, 32, 32)))
        features = model[:-4](x)
        assert features.shape[2:] == (3, 3)
        np.testing.assert_array_equal(model[-4](features), torch.nn.functional.max_pool2d(features, 3))


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar_tree(root / "cifar10", (10, 2))
    return root


def _run(out, data, preset, *sets):
    args = ["run", preset, "--quick", "--data-dir", str(data), "--out", str(out), "--threads", "1"]
    return main(args + [a for s in sets for a in ("--set", s)])


def test_a_run_trains_its_first_epochs_on_small_crops(cifar_dir, tmp_path, monkeypatch):
    from twinnet.experiments import image

    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    seen = []
    batches = ImageSource.batches

    def spy(self, *a, **kw):
        for x, y in batches(self, *a, **kw):
            seen.append(x.shape[-1])
            yield x, y

    monkeypatch.setattr(ImageSource, "batches", spy)
    # 100 images in batches of 25, 10 steps: 2.5 epochs, 0.8 of them small -> 2 epochs = 8 steps
    sets = ("steps=10", "batch_size=25", "eval_every=10", "train_subset=0", "test_subset=0", "small_crop_until=0.8")
    assert _run(tmp_path / "run", cifar_dir, "cifar-fast-small", *sets) == 0
    assert seen[:10] == [24] * 8 + [32] * 2
    cfg = image.ImageConfig(model="airbench94", dataset="cifar10", small_crop=20, small_crop_until=0.5, steps=10,
                            batch_size=25)
    assert image.load_images(cfg, cifar_dir).train.small_epochs == 1  # 0.5 of 2.5 epochs, rounded


@pytest.mark.parametrize("sets, message", [
    (("model=mlp-cifar", "small_crop=24"), "cannot train on 24x24 crops"),
    (("small_crop=32",), "small_crop=32 must be 0"),
    (("small_crop=-1",), "small_crop=-1 must be 0"),
    (("small_crop_until=1.5",), "small_crop_until=1.5"),
    (("small_crop=8",), "cannot train on 8x8 crops"),
])
def test_small_crops_a_model_cannot_take_are_refused_in_one_line(sets, message, cifar_dir, tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    assert _run(tmp_path / "run", cifar_dir, "cifar-fast-small", *sets) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "None" not in err
    if "cannot train" in message:  # the whole images' output named, beside the crops' error or shape
        assert "where whole images give outputs of shape (1, 10)" in err
    assert not (tmp_path / "run" / "summary.json").exists()
