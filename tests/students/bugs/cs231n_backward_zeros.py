# BUG: relu_backward left unfinished: returns np.zeros_like(dout).
import numpy as np


def relu_backward(dout, cache):
    x = cache
    dx = np.zeros_like(dout)
    # TODO: implement the ReLU backward pass
    return dx
