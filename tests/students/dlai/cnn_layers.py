"""A stand-in submission in the style of deeplearning.ai's fourth course, "convolution model step by step"
(written for twinnet's tests, not a student's): images are (m, n_H, n_W, n_C), filters (f, f, n_C_prev, n_C), the
bias (1, 1, 1, n_C); the hyperparameters come as dicts, {"stride", "pad"} and {"f", "stride"}."""

import numpy as np


def zero_pad(X, pad):
    return np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def conv_forward(A_prev, W, b, hparameters):
    stride, pad = hparameters["stride"], hparameters["pad"]
    m, n_H_prev, n_W_prev, _ = A_prev.shape
    f, _, _, n_C = W.shape
    n_H, n_W = (n_H_prev + 2 * pad - f) // stride + 1, (n_W_prev + 2 * pad - f) // stride + 1
    padded = zero_pad(A_prev, pad)
    Z = np.zeros((m, n_H, n_W, n_C))
    for h in range(n_H):
        for w in range(n_W):
            window = padded[:, h * stride:h * stride + f, w * stride:w * stride + f, :]
            Z[:, h, w, :] = np.tensordot(window, W, axes=([1, 2, 3], [0, 1, 2])) + b[0, 0, 0]
    return Z, (A_prev, W, b, hparameters)


def conv_backward(dZ, cache):
    A_prev, W, b, hparameters = cache
    stride, pad = hparameters["stride"], hparameters["pad"]
    f = W.shape[0]
    padded = zero_pad(A_prev, pad)
    dpadded = np.zeros_like(padded)
    dW = np.zeros_like(W)
    for h in range(dZ.shape[1]):
        for w in range(dZ.shape[2]):
            rows, cols = slice(h * stride, h * stride + f), slice(w * stride, w * stride + f)
            dpadded[:, rows, cols, :] += np.tensordot(dZ[:, h, w, :], W, axes=([1], [3]))
            dW += np.tensordot(padded[:, rows, cols, :], dZ[:, h, w, :], axes=([0], [0]))
    dA_prev = dpadded[:, pad:pad + A_prev.shape[1], pad:pad + A_prev.shape[2], :]
    db = dZ.sum(axis=(0, 1, 2)).reshape(1, 1, 1, -1)
    return dA_prev, dW, db


def pool_forward(A_prev, hparameters, mode="max"):
    f, stride = hparameters["f"], hparameters["stride"]
    m, n_H_prev, n_W_prev, n_C = A_prev.shape
    n_H, n_W = (n_H_prev - f) // stride + 1, (n_W_prev - f) // stride + 1
    A = np.zeros((m, n_H, n_W, n_C))
    for h in range(n_H):
        for w in range(n_W):
            window = A_prev[:, h * stride:h * stride + f, w * stride:w * stride + f, :]
            A[:, h, w, :] = window.max(axis=(1, 2)) if mode == "max" else window.mean(axis=(1, 2))
    return A, (A_prev, hparameters)


def pool_backward(dA, cache, mode="max"):
    A_prev, hparameters = cache
    f, stride = hparameters["f"], hparameters["stride"]
    dA_prev = np.zeros_like(A_prev)
    for h in range(dA.shape[1]):
        for w in range(dA.shape[2]):
            rows, cols = slice(h * stride, h * stride + f), slice(w * stride, w * stride + f)
            window = A_prev[:, rows, cols, :]
            if mode == "max":
                mask = window == window.max(axis=(1, 2), keepdims=True)
                dA_prev[:, rows, cols, :] += mask * dA[:, h:h + 1, w:w + 1, :]
            else:
                dA_prev[:, rows, cols, :] += dA[:, h:h + 1, w:w + 1, :] / (f * f)
    return dA_prev
