# A submission in the torch convention: layers with named_parameters() holding .data and .grad, gradients
# summed until zero_grad. twinnet's own NumPy layers follow it, so a student extending them starts from these.
from twinnet.numpy_nn import (  # noqa: F401
    BCELoss, BatchNorm1d, Conv2d, CrossEntropyLoss, L1Loss, Linear, MaxPool2d, MSELoss, ReLU)
