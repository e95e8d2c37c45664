"""``Scale``: the twin of ``twinnet.numpy_nn.Scale``, a fixed factor on its input."""

import torch


class Scale(torch.nn.Module):
    """Multiply by a fixed ``factor`` (airbench's output scaling): no parameters."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"
