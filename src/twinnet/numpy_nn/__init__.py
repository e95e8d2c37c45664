"""The from-scratch engine: layers with explicit forward and backward, named and laid out like torch.nn."""

from twinnet.numpy_nn import backend, init, serialize
from twinnet.numpy_nn.activation import ELU, GELU, LeakyReLU, LogSoftmax, ReLU, Scale, Sigmoid, SiLU, Softmax, Tanh
from twinnet.numpy_nn.conv import Conv2d
from twinnet.numpy_nn.dropout import Dropout
from twinnet.numpy_nn.linear import Linear
from twinnet.numpy_nn.loss import (
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, MultiMarginLoss, NLLLoss)
from twinnet.numpy_nn.module import Module, Parameter, Sequential, no_grad
from twinnet.numpy_nn.norm import BatchNorm1d, BatchNorm2d, LayerNorm
from twinnet.numpy_nn.clip import clip_grad_norm_
from twinnet.numpy_nn.optim import SGD, Adam, AdamW, Optimizer, RMSprop
from twinnet.numpy_nn.pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
from twinnet.numpy_nn.reshape import Flatten
from twinnet.numpy_nn.residual import ResidualBlock
from twinnet.numpy_nn.models import MLP  # noqa: I001 - needs the layers above
from twinnet.numpy_nn.recurrent import GRU, IRNN, LSTM, VanillaRNN

__all__ = [
    "backend", "init", "serialize",
    "Module", "Parameter", "Sequential", "no_grad",
    "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "BatchNorm1d", "BatchNorm2d",
    "LayerNorm", "Dropout", "Flatten", "ReLU", "Tanh", "Sigmoid", "GELU", "SiLU", "ELU", "LeakyReLU", "Softmax",
    "LogSoftmax", "Scale",
    "ResidualBlock",
    "CrossEntropyLoss", "NLLLoss", "MultiMarginLoss", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss",
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "clip_grad_norm_", "MLP",
    "VanillaRNN", "IRNN", "LSTM", "GRU",
]
