"""A stand-in submission in the style of deeplearning.ai's first course (written for twinnet's tests, not a
student's): samples are columns (A of shape (features, m)), W is (out, in), b a column (out, 1), and the
linear backward averages the weights' gradients over the m samples, where that course's cost puts its 1/m."""

import numpy as np


def linear_forward(A, W, b):
    return W @ A + b, (A, W, b)


def linear_backward(dZ, cache):
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    return W.T @ dZ, dZ @ A_prev.T / m, dZ.sum(axis=1, keepdims=True) / m


def relu(Z):
    return np.maximum(0, Z), Z


def relu_backward(dA, cache):
    return dA * (cache > 0)
