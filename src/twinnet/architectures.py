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


def mlp_layers(nn: ModuleType, n_inputs: int, hidden: Sequence[int], n_classes: int, batch_norm: bool = False,
               dropout: float = 0.0) -> list:
    """Linear [-> BatchNorm1d] -> ReLU [-> Dropout] for each hidden size, then a Linear to raw logits."""
    layers, width = [], n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), *([nn.BatchNorm1d(h)] if batch_norm else []), nn.ReLU(),
                   *([nn.Dropout(dropout)] if dropout else [])]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return layers


# The reduced VGG of the course (docs/COURSE.md): numbers are conv widths, "M" a max-pool.
VGG_REDUCED = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def vgg_layers(
    nn: ModuleType,
    in_channels: int = 3,
    n_classes: int = 10,
    plan: Sequence[int | str] = VGG_REDUCED,
    batch_norm: bool = True,
    width: float = 1.0,
    dropout: float = 0.0,
) -> list:
    """Conv(3x3, stride 1, pad 1) [-> BatchNorm2d] -> ReLU per number; MaxPool(3, 2, 1) per "M"; then Linear.

    The final feature map must be 1x1 (32x32 and 28x28 inputs both reach it after five pools).
    """
    layers, channels = [], in_channels
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            continue
        out = max(1, round(int(item) * width))
        layers.append(nn.Conv2d(channels, out, kernel_size=3, stride=1, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU())
        channels = out
    layers.append(nn.Flatten())
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(channels, n_classes))
    return layers


# VGG-16's convolutions at the reduced VGG's five pools: the "deeper" rung of the ablation ladder
VGG_DEEP = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg_residual_layers(nn: ModuleType, in_channels: int = 3, n_classes: int = 10) -> list:
    """The reduced VGG with each conv pair (stages 3-5) made a residual block: same widths, same pools."""
    pool = lambda: nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # noqa: E731
    return [
        nn.Conv2d(in_channels, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(), pool(),
        nn.Conv2d(64, 128, 3, 1, 1), nn.BatchNorm2d(128), nn.ReLU(), pool(),
        nn.ResidualBlock(128, 256), pool(),
        nn.ResidualBlock(256, 512), pool(),
        nn.ResidualBlock(512, 512), pool(),
        nn.Flatten(), nn.Linear(512, n_classes),
    ]


def mnist_cnn_layers(nn: ModuleType, channels: tuple[int, int] = (32, 64), hidden: int = 128,
                     dropout: float = 0.0) -> list:
    """A small MNIST CNN: two conv-BN-ReLU-pool stages (28 -> 14 -> 7), then a hidden Linear layer."""
    c1, c2 = channels
    return [
        nn.Conv2d(1, c1, 3, 1, 1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, 1, 1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        *([nn.Dropout(dropout)] if dropout else []),
        nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    ]


def airbench_layers(nn: ModuleType, widths: tuple[int, int, int] = (64, 256, 256), bn_momentum: float = 0.6,
                    activation: str = "GELU") -> list:
    """airbench94's network (KellerJordan/cifar10-airbench, legacy/airbench94.py; 1.97M parameters):
    a 2x2 whitening convolution (24 filters, set from the training images by ``whiten``) and GELU,
    three groups conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU (bias-free convolutions,
    batch norm with eps 1e-12 and momentum 0.6 in airbench's sense: the old statistics' weight, torch's
    momentum 0.4), a global max pool (airbench's 3x3 max pool over its 3x3 maps, global so that smaller
    training crops fit: any side from 9), and a bias-free
    linear layer whose output is scaled by 1/9. 32 -> 31 -> 15 -> 7 -> 3 -> 1. ``activation`` names the
    nn class used where airbench94 has GELU (``"SiLU"``: the 2025 record's, hiverge/cifar10-speedrun)."""
    act = getattr(nn, activation)

    def group(c_in: int, c_out: int) -> list:
        return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.MaxPool2d(2),
                nn.BatchNorm2d(c_out, eps=1e-12, momentum=1 - bn_momentum), act(),
                nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                nn.BatchNorm2d(c_out, eps=1e-12, momentum=1 - bn_momentum), act()]

    a, b, c = widths
    return [nn.Conv2d(3, 24, 2, 1, 0), act(), *group(24, a), *group(a, b), *group(b, c), nn.AdaptiveMaxPool2d(1),
            nn.Flatten(), nn.Linear(c, 10, bias=False), nn.Scale(1 / 9)]


def _airbench(nn: ModuleType, activation: str = "GELU"):
    """airbench94's network with its initialisation: every convolution's first C_in filters the identity
    (dirac), biases zero; the whitening weights and the batch norms' scales frozen (torch: no gradient)."""
    model = nn.Sequential(*airbench_layers(nn, activation=activation))
    if nn.__name__.startswith("twinnet.torch_nn"):  # the NumPy twin takes these weights from torch's
        import torch

        with torch.no_grad():
            for m in model:
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.dirac_(m.weight[: m.weight.shape[1]])
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.requires_grad_(False)
        model[0].weight.requires_grad_(False)
    return model


def _whiten(model, images, eps: float):
    """Set airbench's whitening layer from the training images (imported here: it needs no import at start)."""
    from twinnet.whitening import prepare

    return prepare(model, images, eps)


@dataclass(frozen=True)
class ModelSpec:
    """A named architecture for ``twinnet summary``: how to build it and what it eats."""

    build: Callable[[ModuleType], object]  # nn namespace -> model
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    description: str
    # set up from the training images before training (a whitening layer, given its eps); returns an epoch hook or None
    prepare: Callable | None = None


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(
        lambda nn: nn.Sequential(*mlp_layers(nn, 2, [20], 2)),
        (2,),
        "the toy MLP of mlp-compare: 2 -> 20 -> 2",
    ),
    "vgg-reduced": ModelSpec(
        lambda nn: nn.Sequential(*vgg_layers(nn)),
        (3, 32, 32),
        "the course's reduced VGG for CIFAR-10 (docs/COURSE.md), with batch norm",
    ),
    "vgg-reduced-nobn": ModelSpec(
        lambda nn: nn.Sequential(*vgg_layers(nn, batch_norm=False)),
        (3, 32, 32),
        "the reduced VGG without batch norm",
    ),
    "vgg-reduced-dropout": ModelSpec(
        lambda nn: nn.Sequential(*vgg_layers(nn, dropout=0.3)),
        (3, 32, 32),
        "the reduced VGG with dropout 0.3 before its Linear layer",
    ),
    "vgg-wide": ModelSpec(
        lambda nn: nn.Sequential(*vgg_layers(nn, width=1.5)),
        (3, 32, 32),
        "the reduced VGG with 1.5x the channels in every conv (96 ... 768)",
    ),
    "vgg-deep": ModelSpec(
        lambda nn: nn.Sequential(*vgg_layers(nn, plan=VGG_DEEP)),
        (3, 32, 32),
        "VGG-16's 13 convolutions (with batch norm) at the reduced VGG's five pools",
    ),
    "vgg-residual": ModelSpec(
        lambda nn: nn.Sequential(*vgg_residual_layers(nn)),
        (3, 32, 32),
        "the reduced VGG with its three conv pairs made residual blocks",
    ),
    "vgg-reduced-mnist": ModelSpec(
        lambda nn: nn.Sequential(*vgg_layers(nn, in_channels=1)),
        (1, 28, 28),
        "the reduced VGG for one-channel 28x28 images (MNIST): 28 -> 14 -> 7 -> 4 -> 2 -> 1",
    ),
    "mnist-cnn": ModelSpec(
        lambda nn: nn.Sequential(*mnist_cnn_layers(nn)),
        (1, 28, 28),
        "the small MNIST CNN: conv32-pool-conv64-pool-fc128-fc10, with batch norm",
    ),
    "mlp-cifar": ModelSpec(
        lambda nn: nn.Sequential(nn.Flatten(), *mlp_layers(nn, 3072, [512, 256, 128], 10)),
        (3, 32, 32),
        "the CIFAR-10 MLP 3072-512-256-128-10",
    ),
    "mlp-cifar-wide": ModelSpec(
        lambda nn: nn.Sequential(nn.Flatten(), *mlp_layers(nn, 3072, [2048, 1024, 512], 10, batch_norm=True,
                                                             dropout=0.2)),
        (3, 32, 32),
        "a wider CIFAR-10 MLP 3072-2048-1024-512-10 with batch norm and dropout 0.2",
    ),
    "airbench94": ModelSpec(
        _airbench,
        (3, 32, 32),
        "airbench94's network: a whitening conv, three conv-pool-BN-GELU-conv-BN-GELU groups (64, 256, 256), "
        "global max pool, linear x 1/9",
        prepare=_whiten,
    ),
    "airbench94-silu": ModelSpec(
        lambda nn: _airbench(nn, "SiLU"),
        (3, 32, 32),
        "airbench94's network with SiLU in place of every GELU (the 2025 record's activation)",
        prepare=_whiten,
    ),
    # palindromes (docs/COURSE.md): 10 one-hot digits in, 128 hidden units, 10 classes; shown at T = 20
    "palindrome-rnn": ModelSpec(
        lambda nn: nn.VanillaRNN(10, 128, 10),
        (19, 10),
        "the course's vanilla RNN, h(t) = tanh(W_hx x(t) + W_hh h(t-1) + b_h), read out at the last step",
    ),
    "palindrome-lstm": ModelSpec(lambda nn: nn.LSTM(10, 128, 10), (19, 10), "an LSTM with torch.nn.LSTM's equations"),
    "palindrome-gru": ModelSpec(lambda nn: nn.GRU(10, 128, 10), (19, 10), "a GRU with torch.nn.GRU's equations"),
}


def build_model(name: str, engine: str):
    """Build a registered architecture in one engine."""
    if name not in MODELS:
        raise TwinnetError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name].build(nn_namespace(engine))
