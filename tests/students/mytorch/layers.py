"""A stand-in submission in the style of CMU 11-785's "mytorch" (written for twinnet's tests, not a
student's): layers keep their parameters and gradients as plain attributes (W, b, dLdW, dLdb; the
bias a column), the strided convolution wraps a stride-1 one as a member, the stride-1 classes take no
stride or padding, and ReLU.backward() returns the activation's derivative (the 2022 handout)."""

import numpy as np


class Linear:
    def __init__(self, in_features, out_features):
        self.W = np.zeros((out_features, in_features))
        self.b = np.zeros((out_features, 1))

    def forward(self, A):
        self.A = A
        self.ones = np.ones((A.shape[0], 1))
        return A @ self.W.T + self.ones @ self.b.T

    def backward(self, dLdZ):
        self.dLdW = dLdZ.T @ self.A
        self.dLdb = dLdZ.T @ self.ones
        return dLdZ @ self.W


class ReLU:
    def forward(self, Z):
        self.A = np.maximum(Z, 0)
        return self.A

    def backward(self):
        return np.where(self.A > 0, 1.0, 0.0)


class Conv2d_stride1:
    def __init__(self, in_channels, out_channels, kernel_size):
        self.k = kernel_size
        self.W = np.zeros((out_channels, in_channels, kernel_size, kernel_size))
        self.b = np.zeros(out_channels)

    def forward(self, A):
        self.A = A
        n, _, h, w = A.shape
        out = np.empty((n, self.W.shape[0], h - self.k + 1, w - self.k + 1))
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                window = A[:, :, i:i + self.k, j:j + self.k]
                out[:, :, i, j] = np.tensordot(window, self.W, axes=([1, 2, 3], [1, 2, 3]))
        return out + self.b[None, :, None, None]

    def backward(self, dLdZ):
        self.dLdW = np.zeros_like(self.W)
        self.dLdb = dLdZ.sum(axis=(0, 2, 3))
        dLdA = np.zeros_like(self.A)
        for i in range(dLdZ.shape[2]):
            for j in range(dLdZ.shape[3]):
                window = self.A[:, :, i:i + self.k, j:j + self.k]
                self.dLdW += np.tensordot(dLdZ[:, :, i, j], window, axes=([0], [0]))
                dLdA[:, :, i:i + self.k, j:j + self.k] += np.tensordot(dLdZ[:, :, i, j], self.W, axes=([1], [0]))
        return dLdA


class Conv2d:
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding=0):
        self.stride, self.pad = stride, padding
        self.conv2d_stride1 = Conv2d_stride1(in_channels, out_channels, kernel_size)

    def forward(self, A):
        p = self.pad
        self.padded = np.pad(A, ((0, 0), (0, 0), (p, p), (p, p)))
        self.full = self.conv2d_stride1.forward(self.padded)
        return self.full[:, :, ::self.stride, ::self.stride]

    def backward(self, dLdZ):
        up = np.zeros_like(self.full)
        up[:, :, ::self.stride, ::self.stride] = dLdZ
        dLdA = self.conv2d_stride1.backward(up)
        p = self.pad
        return dLdA[:, :, p:dLdA.shape[2] - p, p:dLdA.shape[3] - p]


class MaxPool2d_stride1:
    def __init__(self, kernel):
        self.k = kernel

    def forward(self, A):
        self.A = A
        n, c, h, w = A.shape
        out = np.empty((n, c, h - self.k + 1, w - self.k + 1))
        self.where = {}
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                window = A[:, :, i:i + self.k, j:j + self.k].reshape(n, c, -1)
                out[:, :, i, j] = window.max(axis=2)
                self.where[i, j] = window.argmax(axis=2)
        return out

    def backward(self, dLdZ):
        dLdA = np.zeros_like(self.A)
        n, c = dLdZ.shape[:2]
        rows, cols = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
        for (i, j), flat in self.where.items():
            dLdA[rows, cols, i + flat // self.k, j + flat % self.k] += dLdZ[:, :, i, j]
        return dLdA


class BatchNorm1d:
    """CMU's batch norm: gamma and beta as (1, D) attributes BW and Bb, the running statistics as running_M and
    running_V (alpha: the old statistics' weight), eps 1e-8, evaluation mode by forward(Z, eval=True)."""

    def __init__(self, num_features, alpha=0.9):
        self.alpha, self.eps = alpha, 1e-8
        self.BW, self.Bb = np.ones((1, num_features)), np.zeros((1, num_features))
        self.dLdBW, self.dLdBb = np.zeros((1, num_features)), np.zeros((1, num_features))
        self.running_M, self.running_V = np.zeros((1, num_features)), np.ones((1, num_features))

    def forward(self, Z, eval=False):
        if eval:
            return self.BW * (Z - self.running_M) / np.sqrt(self.running_V + self.eps) + self.Bb
        self.M = Z.mean(axis=0, keepdims=True)
        self.V = ((Z - self.M) ** 2).mean(axis=0, keepdims=True)
        self.NZ = (Z - self.M) / np.sqrt(self.V + self.eps)
        self.running_M = self.alpha * self.running_M + (1 - self.alpha) * self.M
        self.running_V = self.alpha * self.running_V + (1 - self.alpha) * self.V
        return self.BW * self.NZ + self.Bb

    def backward(self, dLdBZ):
        self.dLdBW = (dLdBZ * self.NZ).sum(axis=0, keepdims=True)
        self.dLdBb = dLdBZ.sum(axis=0, keepdims=True)
        dLdNZ = dLdBZ * self.BW
        return (dLdNZ - dLdNZ.mean(axis=0) - self.NZ * (dLdNZ * self.NZ).mean(axis=0)) / np.sqrt(self.V + self.eps)
