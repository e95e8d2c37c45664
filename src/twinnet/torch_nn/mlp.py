"""The PyTorch MLP: hidden sizes as a list, ReLU after each hidden layer, raw logits out."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from twinnet.architectures import mlp_layers


class MLP(nn.Sequential):
    """``MLP(n_inputs, hidden=[20], n_classes)``; keys "0.weight", "0.bias", "2.weight", ..."""

    def __init__(self, n_inputs: int, hidden: Sequence[int] = (20,), n_classes: int = 2) -> None:
        super().__init__(*mlp_layers(nn, n_inputs, list(hidden), n_classes))
