"""Weight initialisation with PyTorch's default distributions, from one seeded generator."""

from __future__ import annotations

import math

import numpy as np

from twinnet.numpy_nn import backend

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator every NumPy layer draws its initial weights from."""
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The shared generator (NumPy's, whatever the array backend)."""
    return _rng


def _asarray(a: np.ndarray, dtype):
    return backend.xp().asarray(a, dtype=dtype)


def uniform(shape: tuple[int, ...], bound: float, dtype=np.float32):
    """U(-bound, bound), the law of PyTorch's default Linear and Conv init."""
    return _asarray(_rng.uniform(-bound, bound, size=shape), dtype)


def fan_in(shape: tuple[int, ...]) -> int:
    """Fan-in of a weight of layout (out, in, *kernel), as PyTorch computes it."""
    return int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])


def default_weight(shape: tuple[int, ...], dtype=np.float32):
    """PyTorch's default: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform(shape, 1.0 / math.sqrt(fan_in(shape)), dtype)


def default_bias(weight_shape: tuple[int, ...], n: int, dtype=np.float32):
    """PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform((n,), 1.0 / math.sqrt(fan_in(weight_shape)), dtype)
