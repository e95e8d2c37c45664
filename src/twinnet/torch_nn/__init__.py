"""The PyTorch twins of twinnet's networks."""

from twinnet.torch_nn.mlp import MLP

__all__ = ["MLP"]
