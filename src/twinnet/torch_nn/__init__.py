"""The PyTorch twins: ``torch.nn`` plus twinnet's own blocks, one namespace like ``twinnet.numpy_nn``.

Architectures in ``twinnet.architectures`` take either namespace and build the
same network in either engine.
"""

from torch.nn import *  # noqa: F401,F403 - this namespace extends torch.nn

from twinnet.torch_nn.mlp import MLP
from twinnet.torch_nn.residual import ResidualBlock
from twinnet.torch_nn.scale import Scale
# twinnet's explicit-loop classifiers (x (B, L, D) -> logits), twins of numpy_nn's; LSTM and GRU
# deliberately shadow torch.nn's sequence layers, which twinnet never uses
from twinnet.torch_nn.recurrent import GRU, IRNN, LSTM, VanillaRNN

__all__ = ["MLP", "ResidualBlock", "Scale", "VanillaRNN", "IRNN", "LSTM", "GRU"]
