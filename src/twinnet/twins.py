"""Twins: one architecture built in both engines from the same weights, and how closely they agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def seed_everything(seed: int) -> None:
    """Seed NumPy's engine initialiser and torch alike."""
    import torch

    from twinnet.numpy_nn import init

    init.manual_seed(seed)
    torch.manual_seed(seed)


def build_twins(build: Callable, dtype: Literal["float32", "float64"] = "float32", seed: int | None = None,
                same_init: bool = True) -> dict:
    """The one twin builder: ``build(nn)`` in both engines, ``{"numpy": ..., "torch": ...}``.

    ``build`` takes an ``nn`` namespace (``twinnet.architectures.nn_namespace``). ``seed`` seeds
    both initialisers first, and the NumPy twin's own random generator (its dropout masks); with
    ``same_init`` the NumPy twin takes the torch twin's weights, so the two start as one network."""
    import torch

    from twinnet.architectures import nn_namespace

    if seed is not None:
        seed_everything(seed)
    torch_model = build(nn_namespace("torch")).to(getattr(torch, dtype))
    numpy_model = build(nn_namespace("numpy")).to(DTYPES[dtype])
    if same_init:
        numpy_model.load_state_dict(torch_model.state_dict())
    if seed is not None:  # its own generator (dropout masks), as torch's model draws from torch's
        numpy_model.manual_seed(seed)
    return {"numpy": numpy_model, "torch": torch_model}


def twin_models(build: Callable, dtype: Literal["float32", "float64"], same_init: bool = True):
    """``(numpy_model, torch_model)`` of ``build_twins`` (as the notebooks and tests unpack them)."""
    twins = build_twins(build, dtype, same_init=same_init)
    return twins["numpy"], twins["torch"]


def relative_differences(a, b, floor: float = np.finfo(np.float64).tiny) -> np.ndarray:
    """|a_i - b_i| / max(|b_i|, floor), step by step, of two curves of equal length (b the reference)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf at a non-finite step: NaN, which callers draw as non-finite
        return np.abs(a - b) / np.maximum(np.abs(b), floor)


def max_relative_difference(a, b) -> float:
    """Largest |a_i - b_i| / |b_i| over two curves of equal length."""
    return float(np.max(relative_differences(a, b)))


def relative_error(a, b, floor: float = np.finfo(np.float64).tiny) -> float:
    """max|a - b| / max(max|b|, floor) (b the reference): one number per array. Arrays of different
    shapes are an error, not broadcast."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: got {a.shape}, reference {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), floor))


def gradient_agreement(numpy_model, torch_model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """One cross-entropy forward and backward of (x, y) through both twins: the relative difference
    (``relative_error``: max |numpy - torch| / max |torch|) of the loss and of every parameter's gradient, by name.
    Both models must be in training mode and hold the same weights; their gradients are left set."""
    import torch

    from twinnet.numpy_nn import CrossEntropyLoss

    dtype = next(torch_model.parameters()).dtype
    loss_fn = CrossEntropyLoss()
    numpy_model.zero_grad()
    numpy_loss = loss_fn.forward(numpy_model.forward(np.asarray(x, dtype=numpy_model.dtype)), y)
    numpy_model.backward(loss_fn.backward())
    torch_model.zero_grad(set_to_none=True)
    torch_loss = torch.nn.functional.cross_entropy(torch_model(torch.as_tensor(x, dtype=dtype)),
                                                   torch.as_tensor(y, dtype=torch.long))
    torch_loss.backward()

    theirs = dict(torch_model.named_parameters())
    return {"loss": relative_error(numpy_loss, torch_loss.item()),
            **{name: relative_error(p.grad, theirs[name].grad.numpy()) for name, p in numpy_model.named_parameters()
               if theirs[name].requires_grad}}  # a layer frozen in torch (no gradient) is not compared
