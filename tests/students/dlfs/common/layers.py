# A stand-in for a reader's common/layers.py of "Deep Learning from Scratch" (Koki Saito, O'Reilly Japan): written
# for twinnet's tests in that book's API (classes made with their parameters, gradients kept in dW and db), not
# copied from it. The dlfs convention grades it.
import numpy as np

from common.functions import cross_entropy_error, sigmoid, softmax
from common.util import col2im, im2col


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0  # in place, as the book's
        return dout


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout):
        return dout * self.out * (1 - self.out)


class Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b
        self.x = self.shape = self.dW = self.db = None

    def forward(self, x):
        self.shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return self.x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return (dout @ self.W.T).reshape(self.shape)


class Dropout:
    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        if train_flg:  # not inverted, as the book's: test mode scales instead
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


class SoftmaxWithLoss:
    def __init__(self):
        self.y = self.t = None

    def forward(self, x, t):
        self.t, self.y = t, softmax(x)
        return cross_entropy_error(self.y, t)

    def backward(self, dout=1):
        n = self.t.shape[0]
        if self.t.size == self.y.size:
            return dout * (self.y - self.t) / n
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dout * dx / n


class BatchNormalization:
    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.running_mean, self.running_var = running_mean, running_var
        self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        if self.running_mean is None:
            self.running_mean, self.running_var = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        if train_flg:
            mu = x.mean(axis=0)
            self.xc = x - mu
            var = (self.xc ** 2).mean(axis=0)
            self.std = np.sqrt(var + 10e-7)
            self.xn = self.xc / self.std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            self.xn = (x - self.running_mean) / np.sqrt(self.running_var + 10e-7)
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        n = dout.shape[0]
        self.dbeta = dout.sum(axis=0)
        self.dgamma = (self.xn * dout).sum(axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -((dxn * self.xc) / (self.std * self.std)).sum(axis=0)
        dxc += (2.0 / n) * self.xc * (0.5 * dstd / self.std)
        return dxc - dxc.sum(axis=0) / n


class Convolution:
    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad
        self.dW = self.db = None

    def forward(self, x):
        fn, _, fh, fw = self.W.shape
        n, _, h, w = x.shape
        out_h, out_w = (h + 2 * self.pad - fh) // self.stride + 1, (w + 2 * self.pad - fw) // self.stride + 1
        self.x, self.col = x, im2col(x, fh, fw, self.stride, self.pad)
        self.col_W = self.W.reshape(fn, -1).T
        out = self.col @ self.col_W + self.b
        return out.reshape(n, out_h, out_w, -1).transpose(0, 3, 1, 2)

    def backward(self, dout):
        fn, c, fh, fw = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = dout.sum(axis=0)
        self.dW = (self.col.T @ dout).T.reshape(fn, c, fh, fw)
        return col2im(dout @ self.col_W.T, self.x.shape, fh, fw, self.stride, self.pad)


class Pooling:
    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad

    def forward(self, x):
        n, c, h, w = x.shape
        out_h, out_w = (h - self.pool_h) // self.stride + 1, (w - self.pool_w) // self.stride + 1
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad).reshape(-1, self.pool_h * self.pool_w)
        self.x, self.arg_max = x, col.argmax(axis=1)
        return col.max(axis=1).reshape(n, out_h, out_w, c).transpose(0, 3, 1, 2)

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, size))
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dcol = dmax.reshape(dout.shape + (size,)).reshape(dout.shape[0] * dout.shape[1] * dout.shape[2], -1)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)
