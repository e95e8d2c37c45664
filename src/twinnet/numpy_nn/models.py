"""NumPy builds of the shared architectures, the twins of ``twinnet.torch_nn``."""

from __future__ import annotations

from collections.abc import Sequence

from twinnet import numpy_nn
from twinnet.architectures import mlp_layers
from twinnet.numpy_nn.module import Sequential


class MLP(Sequential):
    """``MLP(n_inputs, hidden=[20], n_classes)``, the twin of ``twinnet.torch_nn.MLP``."""

    def __init__(self, n_inputs: int, hidden: Sequence[int] = (20,), n_classes: int = 2) -> None:
        super().__init__(*mlp_layers(numpy_nn, n_inputs, list(hidden), n_classes))
