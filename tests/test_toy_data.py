import numpy as np
import pytest

from twinnet import TwinnetError
from twinnet.data import TOY_DATASETS, make_toy


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_split_is_80_20_stratified_and_seeded(name):
    s = make_toy(name, n=500, seed=3)
    assert s.train.x.shape == (400, 2) and s.test.x.shape == (100, 2)
    assert s.train.y.dtype == np.int64
    n_classes = len(s.classes)
    assert set(np.unique(s.train.y)) == set(range(n_classes))
    # stratified: each class's share of the test set equals its share overall (to one sample)
    overall = np.bincount(np.r_[s.train.y, s.test.y]) / 500
    assert np.allclose(np.bincount(s.test.y) / 100, overall, atol=0.011)
    again = make_toy(name, n=500, seed=3)
    assert np.array_equal(s.train.x, again.train.x) and np.array_equal(s.test.y, again.test.y)
    other = make_toy(name, n=500, seed=4)
    assert not np.array_equal(s.train.x, other.train.x)


def test_noise_is_settable():
    clean, noisy = make_toy("circles", noise=0.0), make_toy("circles", noise=0.3)
    radius = lambda s: np.linalg.norm(s.train.x, axis=1)  # noqa: E731
    # without noise every point lies exactly on a circle of radius 1 or 0.5
    assert np.allclose(np.sort(np.unique(np.round(radius(clean), 9))), [0.5, 1.0])
    assert np.std(radius(noisy)) > np.std(radius(clean))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TwinnetError, match="unknown toy dataset 'spirals'"):
        make_toy("spirals")
    with pytest.raises(TwinnetError, match="noise"):
        make_toy("moons", noise=-1)
