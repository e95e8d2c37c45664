"""Every network defined once, as layers drawn from an ``nn`` namespace.

``twinnet.numpy_nn`` mirrors the constructors of ``torch.nn``, so passing either
namespace builds the same architecture in either engine, with equal state_dict keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from twinnet import TwinnetError

ENGINES = ("numpy", "torch")


def nn_namespace(engine: str) -> ModuleType:
    """The layer namespace of an engine: ``twinnet.numpy_nn`` or ``twinnet.torch_nn`` (torch.nn and more)."""
    if engine == "numpy":
        from twinnet import numpy_nn

        return numpy_nn
    if engine == "torch":
        from twinnet import torch_nn

        return torch_nn
    raise TwinnetError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def mlp_layers(nn: ModuleType, n_inputs: int, hidden: Sequence[int], n_classes: int) -> list:
    """Linear -> ReLU for each hidden size, then a Linear to raw logits."""
    layers, width = [], n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return layers


@dataclass(frozen=True)
class ModelSpec:
    """A named architecture for ``twinnet summary``: how to build it and what it eats."""

    build: Callable[[ModuleType], object]  # nn namespace -> model
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    description: str


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(
        lambda nn: nn.Sequential(*mlp_layers(nn, 2, [20], 2)),
        (2,),
        "the toy MLP of mlp-compare: 2 -> 20 -> 2",
    ),
    "mlp-cifar": ModelSpec(
        lambda nn: nn.Sequential(nn.Flatten(), *mlp_layers(nn, 3072, [512, 256, 128], 10)),
        (3, 32, 32),
        "the CIFAR-10 MLP 3072-512-256-128-10",
    ),
}


def build_model(name: str, engine: str):
    """Build a registered architecture in one engine."""
    if name not in MODELS:
        raise TwinnetError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name].build(nn_namespace(engine))
