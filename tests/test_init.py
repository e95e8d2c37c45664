"""Initialisers against torch.nn.init in law: same bounds and moments, and a two-sample KS test
against torch's own draws on the same shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from twinnet.numpy_nn import init
from twinnet.numpy_nn.module import Parameter

SHAPE = (400, 100, 3, 3)  # (out, in, kh, kw): fan_in 900, fan_out 3600, 360k draws


def _ours(fn, shape=SHAPE, seed=0, **kwargs) -> np.ndarray:
    a = np.zeros(shape)
    fn(a, generator=np.random.default_rng(seed), **kwargs)
    return a


def _torch(fn, shape=SHAPE, seed=0, **kwargs) -> np.ndarray:
    t = torch.empty(shape, dtype=torch.float64)
    fn(t, generator=torch.Generator().manual_seed(seed), **kwargs)
    return t.numpy()


def _same_law(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Equal in law: the two-sample KS test does not reject (subsamples keep it fast)."""
    res = stats.ks_2samp(ours.ravel()[:50_000], theirs.ravel()[:50_000])
    assert res.pvalue > 1e-3, f"KS statistic {res.statistic:.4f}, p = {res.pvalue:.2e}"


UNIFORM = [
    (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, {}, math.sqrt(2) * math.sqrt(3 / 900)),
    (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, dict(a=math.sqrt(5)), math.sqrt(1 / 900)),
    (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, dict(mode="fan_out", nonlinearity="relu"), math.sqrt(6 / 3600)),
    (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, dict(nonlinearity="tanh"), 5 / 3 * math.sqrt(3 / 900)),
    (init.kaiming_uniform_, torch.nn.init.kaiming_uniform_, dict(nonlinearity="linear"), math.sqrt(3 / 900)),
    (init.xavier_uniform_, torch.nn.init.xavier_uniform_, {}, math.sqrt(6 / 4500)),
    (init.xavier_uniform_, torch.nn.init.xavier_uniform_, dict(gain=2.5), 2.5 * math.sqrt(6 / 4500)),
]


@pytest.mark.parametrize("ours, theirs, kwargs, bound", UNIFORM, ids=[f"{o.__name__}-{k}" for o, _, k, _ in UNIFORM])
def test_uniform_initialisers_match_torch(ours, theirs, kwargs, bound):
    a, t = _ours(ours, **kwargs), _torch(theirs, **kwargs)
    # the bound: nothing beyond it, and draws reach within 0.1% of it
    assert np.abs(a).max() <= bound
    assert np.abs(a).max() > 0.999 * bound
    assert np.abs(t).max() <= bound * (1 + 1e-12)
    # the moments of U(-b, b): mean 0 (std error b/sqrt(3n) ~ 1e-3 b), variance b^2/3
    assert abs(a.mean()) < 5e-3 * bound
    assert a.var() == pytest.approx(bound**2 / 3, rel=1e-2)
    _same_law(a, t)


NORMAL = [
    (init.kaiming_normal_, torch.nn.init.kaiming_normal_, {}, math.sqrt(2 / 900)),
    (init.kaiming_normal_, torch.nn.init.kaiming_normal_, dict(a=0.2, nonlinearity="leaky_relu"), math.sqrt(2 / 1.04 / 900)),
    (init.kaiming_normal_, torch.nn.init.kaiming_normal_, dict(mode="fan_out"), math.sqrt(2 / 3600)),
    (init.xavier_normal_, torch.nn.init.xavier_normal_, {}, math.sqrt(2 / 4500)),
    (init.xavier_normal_, torch.nn.init.xavier_normal_, dict(gain=init.calculate_gain("tanh")), 5 / 3 * math.sqrt(2 / 4500)),
]


@pytest.mark.parametrize("ours, theirs, kwargs, std", NORMAL, ids=[f"{o.__name__}-{k}" for o, _, k, _ in NORMAL])
def test_normal_initialisers_match_torch(ours, theirs, kwargs, std):
    a, t = _ours(ours, **kwargs), _torch(theirs, **kwargs)
    assert abs(a.mean()) < 5e-3 * std
    assert a.std() == pytest.approx(std, rel=5e-3)
    assert t.std() == pytest.approx(std, rel=5e-3)
    assert stats.kurtosis(a.ravel()) == pytest.approx(0.0, abs=0.05)  # Gaussian, not uniform (-1.2)
    _same_law(a, t)


GAINS = [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None), ("leaky_relu", None)]


@pytest.mark.parametrize("nonlinearity, param", [*GAINS, ("leaky_relu", 0.2), ("selu", None)])
def test_calculate_gain_is_torchs(nonlinearity, param):
    expected = torch.nn.init.calculate_gain(nonlinearity, param)
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (8, 2, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_gives_orthonormal_rows_or_columns(shape, gain):
    w = _ours(init.orthogonal_, shape, gain=gain)
    flat = w.reshape(shape[0], -1)
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(gram, gain**2 * np.eye(len(gram)), atol=1e-12)
    t = _torch(torch.nn.init.orthogonal_, shape, gain=gain).reshape(shape[0], -1)
    t_gram = t @ t.T if t.shape[0] <= t.shape[1] else t.T @ t
    np.testing.assert_allclose(t_gram, gram, atol=1e-6)  # torch's satisfies the same identity


def test_orthogonal_is_haar_thanks_to_the_sign_correction():
    """Without multiplying Q by sign(diag R), LAPACK's Householder QR makes Q[0, 0] always negative."""
    rng = np.random.default_rng(3)
    corner = [init.orthogonal_(np.zeros((4, 4)), generator=rng)[0, 0] for _ in range(400)]
    t_gen = torch.Generator().manual_seed(3)
    t_corner = [
        torch.nn.init.orthogonal_(torch.empty(4, 4, dtype=torch.float64), generator=t_gen)[0, 0].item() for _ in range(400)
    ]
    assert 0.4 < np.mean(np.array(corner) > 0) < 0.6
    # For Haar 4x4, an entry is the coordinate of a uniform point on the sphere: E[x^2] = 1/4.
    assert np.mean(np.square(corner)) == pytest.approx(0.25, abs=0.03)
    _same_law(np.array(corner), np.array(t_corner))


@pytest.fixture
def own_generator(monkeypatch):
    """Leave the shared generator as other tests expect it: these tests draw from a private one."""
    monkeypatch.setattr(init, "_rng", np.random.default_rng(123))


def test_init_fills_parameters_in_place_keeping_dtype(own_generator):
    p = Parameter(np.full((5, 7), 3.0, dtype=np.float32))
    array_before = p.data
    assert init.kaiming_uniform_(p) is p
    assert p.data is array_before and p.data.dtype == np.float32
    assert np.abs(p.data).max() <= math.sqrt(6 / 7) and np.all(p.data != 3.0)
    init.zeros_(p)
    assert np.all(p.data == 0.0)
    init.ones_(p)
    assert np.all(p.data == 1.0)
    a = np.zeros((3, 4))
    init.xavier_normal_(a)
    assert np.all(a != 0.0)


def test_default_generator_follows_manual_seed(own_generator):
    init.manual_seed(11)
    first = init.kaiming_normal_(np.zeros((20, 10)))
    init.manual_seed(11)
    second = init.kaiming_normal_(np.zeros((20, 10)))
    third = init.kaiming_normal_(np.zeros((20, 10)))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(second, third)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: init.kaiming_uniform_(np.zeros(5)), "2 dimensions"),
        (lambda: init.xavier_normal_(np.zeros(5)), "2 dimensions"),
        (lambda: init.orthogonal_(np.zeros(5)), "2 dimensions"),
        (lambda: init.kaiming_normal_(np.zeros((3, 3)), mode="fan_avg"), "fan_avg"),
        (lambda: init.kaiming_normal_(np.zeros((3, 3)), nonlinearity="swish"), "swish"),
    ],
    ids=["kaiming-1d", "xavier-1d", "orthogonal-1d", "bad-mode", "bad-nonlinearity"],
)
def test_bad_arguments_are_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()
