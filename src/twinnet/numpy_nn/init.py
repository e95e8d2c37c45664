"""Weight initialisation with PyTorch's default distributions, from one seeded generator."""

from __future__ import annotations

import math

import numpy as np

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Parameter

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator every NumPy layer draws its initial weights from."""
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The shared generator (NumPy's, whatever the array backend)."""
    return _rng


def uniform(shape: tuple[int, ...], bound: float, dtype=np.float32):
    """U(-bound, bound), the law of PyTorch's default Linear and Conv init; a NumPy array, as every
    fresh weight is (``Module.to(device=...)`` moves a model to the GPU)."""
    return np.asarray(_rng.uniform(-bound, bound, size=shape), dtype=dtype)


def fan_in(shape: tuple[int, ...]) -> int:
    """Fan-in of a weight of layout (out, in, *kernel), as PyTorch computes it."""
    return int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0])


def _default_bound(shape: tuple[int, ...]) -> float:
    """1/sqrt(fan_in), or 0 for a layer of no inputs (torch's Linear(0, n): an empty weight, a bias of zeros)."""
    fan = fan_in(shape)
    return 1.0 / math.sqrt(fan) if fan > 0 else 0.0


def default_weight(shape: tuple[int, ...], dtype=np.float32):
    """PyTorch's default: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform(shape, _default_bound(shape), dtype)


def default_bias(weight_shape: tuple[int, ...], n: int, dtype=np.float32):
    """PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform((n,), _default_bound(weight_shape), dtype)


# --- torch.nn.init: fill a Parameter or array in place ----------------------------------------------


_LINEAR_LIKE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain: the factor that keeps activations' variance through ``nonlinearity``."""
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _target(tensor):
    """The array behind a Parameter, or the array itself."""
    return tensor.data if isinstance(tensor, Parameter) else tensor


def _floating(tensor):
    """The array a random fill draws for, refused before any draw (the generator left as it was) unless it is of a
    floating type: torch's random fills refuse integer tensors too, where draws would be truncated."""
    arr = _target(tensor)
    if arr.dtype.kind != "f":
        raise TypeError(f"a random initialisation fills floating-point arrays, got one of dtype {arr.dtype}")
    return arr


def _fill(tensor, values):
    """Copy host ``values`` into the target in place (its dtype and array module kept); returns ``tensor``."""
    arr = _target(tensor)
    arr[...] = backend.xp(arr).asarray(values, dtype=arr.dtype)
    return tensor


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel), as torch computes them."""
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need at least 2 dimensions, got shape {tuple(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def _fan(shape: tuple[int, ...], mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in_, fan_out_ = _fans(shape)
    return fan_in_ if mode == "fan_in" else fan_out_


def zeros_(tensor):
    """Fill with 0."""
    _target(tensor)[...] = 0
    return tensor


def ones_(tensor):
    """Fill with 1."""
    _target(tensor)[...] = 1
    return tensor


def constant_(tensor, val: float):
    """Fill with ``val``."""
    _target(tensor)[...] = val
    return tensor


def eye_(tensor):
    """The identity matrix, in a 2-d array (ones on the diagonal of a rectangular one)."""
    arr = _target(tensor)
    if arr.ndim != 2:
        raise ValueError(f"eye_ needs a 2-d array, got shape {tuple(arr.shape)}")
    arr[...] = 0
    backend.xp(arr).fill_diagonal(arr, 1)
    return tensor


def dirac_(tensor, groups: int = 1):
    """The identity convolution, in a filter bank (out, in, *kernel) of 3 to 5 dimensions: filter d of each group
    passes input channel d through at the kernel's centre (torch's); the filters past the channels are zeros."""
    arr = _target(tensor)
    if arr.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_ needs a filter bank of 3, 4 or 5 dimensions, got shape {tuple(arr.shape)}")
    if groups < 1 or arr.shape[0] % groups:
        raise ValueError(f"dirac_: the {arr.shape[0]} filters do not divide into {groups} groups")
    per_group = arr.shape[0] // groups
    centre = tuple(k // 2 for k in arr.shape[2:])
    arr[...] = 0
    for g in range(groups):
        for d in range(min(per_group, arr.shape[1])):
            arr[(g * per_group + d, d, *centre)] = 1
    return tensor


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: np.random.Generator | None = None):
    """Fill with draws from N(mean, std^2) cut to [a, b] (absolute bounds, as torch's), by the inverse of the normal
    distribution's CDF over the interval's share of it."""
    from scipy.special import ndtr, ndtri

    if not a < b:
        raise ValueError(f"trunc_normal_ needs a < b, got a={a}, b={b}")
    shape = _floating(tensor).shape
    rng = _rng if generator is None else generator
    # drawn on the side of the mean where the interval's probabilities are small, so precise: far above the mean,
    # 1 - ndtr would round to 0, so the interval is mirrored below it
    side = -1.0 if a > mean else 1.0
    lo, hi = sorted((ndtr(side * (a - mean) / std), ndtr(side * (b - mean) / std)))
    draws = mean + side * std * ndtri(rng.uniform(lo, hi, size=shape))
    return _fill(tensor, np.clip(draws, a, b))


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator: np.random.Generator | None = None):
    """Fill with draws from U(a, b)."""
    shape = _floating(tensor).shape
    rng = _rng if generator is None else generator
    return _fill(tensor, rng.uniform(a, b, size=shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator: np.random.Generator | None = None):
    """Fill with draws from N(mean, std^2)."""
    shape = _floating(tensor).shape
    rng = _rng if generator is None else generator
    return _fill(tensor, rng.normal(mean, std, size=shape))


def kaiming_uniform_(
    tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: np.random.Generator | None = None,
):
    """He init: U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(_target(tensor).shape, mode))
    return uniform_(tensor, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator)


def kaiming_normal_(
    tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: np.random.Generator | None = None,
):
    """He init: N(0, std^2) with std = gain / sqrt(fan)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(_target(tensor).shape, mode))
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(tensor, gain: float = 1.0, generator: np.random.Generator | None = None):
    """Glorot init: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in_, fan_out_ = _fans(_target(tensor).shape)
    bound = gain * math.sqrt(6.0 / (fan_in_ + fan_out_))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator: np.random.Generator | None = None):
    """Glorot init: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in_, fan_out_ = _fans(_target(tensor).shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in_ + fan_out_)), generator)


def orthogonal_(tensor, gain: float = 1.0, generator: np.random.Generator | None = None):
    """A (semi-)orthogonal matrix over the flattened trailing dimensions, times ``gain``.

    As torch: QR of a Gaussian matrix with the columns of Q multiplied by the signs of
    diag(R), which makes Q Haar-distributed rather than biased by the QR routine.
    """
    shape = _floating(tensor).shape
    if len(shape) < 2:
        raise ValueError(f"orthogonal_ needs at least 2 dimensions, got shape {tuple(shape)}")
    rows = int(shape[0])
    cols = int(np.prod(shape[1:])) if rows else 0
    if rows * cols == 0:
        return tensor
    rng = _rng if generator is None else generator
    flat = rng.standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T  # QR of the tall matrix gives orthonormal columns; transpose back to rows
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(shape))
