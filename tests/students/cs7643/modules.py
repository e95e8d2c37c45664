"""A stand-in for a Georgia Tech CS 7643 submission (part 1, the convnet's modules): each layer a class whose
backward returns nothing and keeps the gradients as attributes (self.dx, self.dw, self.db), and a loss whose
forward returns (probabilities, loss) and whose backward takes nothing. Written for twinnet's tests."""

import numpy as np


class Linear:
    def __init__(self, in_dim, out_dim):
        rng = np.random.default_rng(1024)
        self.weight = 1e-3 * rng.standard_normal((in_dim, out_dim))
        self.bias = np.zeros(out_dim)
        self.cache = None
        self.dx = self.dw = self.db = None

    def forward(self, x):
        self.cache = x
        return x.reshape(len(x), -1) @ self.weight + self.bias

    def backward(self, dout):
        x = self.cache
        self.dx = (dout @ self.weight.T).reshape(x.shape)
        self.dw = x.reshape(len(x), -1).T @ dout
        self.db = dout.sum(axis=0)


class ReLU:
    def __init__(self):
        self.cache = None
        self.dx = None

    def forward(self, x):
        self.cache = x
        return np.maximum(x, 0)

    def backward(self, dout):
        self.dx = dout * (self.cache > 0)


def _windows(x, k, s):
    """(N, C, H_out, W_out, k, k) views of x's k-by-k windows at stride s."""
    n, c, h, w = x.shape
    shape = (n, c, (h - k) // s + 1, (w - k) // s + 1, k, k)
    st = x.strides
    return np.lib.stride_tricks.as_strided(x, shape, (st[0], st[1], st[2] * s, st[3] * s, st[2], st[3]))


class Conv2D:
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        rng = np.random.default_rng(1024)
        self.weight = 1e-3 * rng.standard_normal((out_channels, in_channels, kernel_size, kernel_size))
        self.bias = np.zeros(out_channels)
        self.cache = None
        self.dx = self.dw = self.db = None

    def forward(self, x):
        p = self.padding
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        self.cache = x
        win = _windows(padded, self.kernel_size, self.stride)
        return np.einsum("nchwij,fcij->nfhw", win, self.weight) + self.bias[None, :, None, None]

    def backward(self, dout):
        x, p, k, s = self.cache, self.padding, self.kernel_size, self.stride
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        win = _windows(padded, k, s)
        self.dw = np.einsum("nchwij,nfhw->fcij", win, dout)
        self.db = dout.sum(axis=(0, 2, 3))
        dpad = np.zeros_like(padded)
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                dpad[:, :, i * s:i * s + k, j * s:j * s + k] += np.einsum("nf,fcij->ncij", dout[:, :, i, j],
                                                                          self.weight)
        self.dx = dpad[:, :, p:p + x.shape[2], p:p + x.shape[3]]


class MaxPooling:
    def __init__(self, kernel_size, stride):
        self.kernel_size, self.stride = kernel_size, stride
        self.cache = None
        self.dx = None

    def forward(self, x):
        self.cache = x
        return _windows(x, self.kernel_size, self.stride).max(axis=(4, 5))

    def backward(self, dout):
        x, k, s = self.cache, self.kernel_size, self.stride
        self.dx = np.zeros_like(x)
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                window = x[:, :, i * s:i * s + k, j * s:j * s + k]
                top = window.reshape(*window.shape[:2], -1).argmax(axis=2)
                mask = np.zeros(window.shape[:2] + (k * k,))
                np.put_along_axis(mask, top[..., None], 1.0, axis=2)
                self.dx[:, :, i * s:i * s + k, j * s:j * s + k] += mask.reshape(window.shape) * dout[:, :, i, j,
                                                                                                    None, None]


class SoftmaxCrossEntropy:
    def __init__(self):
        self.cache = None
        self.dx = None

    def forward(self, x, y):
        shifted = x - x.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        n = len(x)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -log_probs[np.arange(n), y].sum() / n
        self.cache = (probs, y)
        return probs, loss

    def backward(self):
        probs, y = self.cache
        dx = probs.copy()
        dx[np.arange(len(y)), y] -= 1
        self.dx = dx / len(y)
