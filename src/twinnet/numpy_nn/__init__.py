"""The from-scratch engine: layers with explicit forward and backward, named and laid out like torch.nn."""

from twinnet.numpy_nn import backend, init
from twinnet.numpy_nn.activation import ReLU, Sigmoid, Tanh
from twinnet.numpy_nn.linear import Linear
from twinnet.numpy_nn.loss import CrossEntropyLoss
from twinnet.numpy_nn.module import Module, Parameter, Sequential
from twinnet.numpy_nn.reshape import Flatten
from twinnet.numpy_nn.optim import SGD, Optimizer

__all__ = [
    "backend",
    "init",
    "Module",
    "Parameter",
    "Sequential",
    "Linear",
    "Flatten",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "CrossEntropyLoss",
    "Optimizer",
    "SGD",
    "MLP",
]
from twinnet.numpy_nn.models import MLP  # noqa: E402
