"""UvA DL1 assignment 1 NumPy modules (correct reference submission)."""
import numpy as np


class LinearModule(object):
    def __init__(self, in_features, out_features, input_layer=False):
        if input_layer:
            std = np.sqrt(1.0 / in_features)
        else:
            std = np.sqrt(2.0 / in_features)
        self.params = {
            'weight': np.random.normal(0.0, std, size=(out_features, in_features)),
            'bias': np.zeros((1, out_features)),
        }
        self.grads = {
            'weight': np.zeros((out_features, in_features)),
            'bias': np.zeros((1, out_features)),
        }
        self.x = None

    def forward(self, x):
        self.x = x
        out = x @ self.params['weight'].T + self.params['bias']
        return out

    def backward(self, dout):
        self.grads['weight'] = dout.T @ self.x
        self.grads['bias'] = np.sum(dout, axis=0, keepdims=True)
        dx = dout @ self.params['weight']
        return dx

    def clear_cache(self):
        self.x = None


class ReLUModule(object):
    def __init__(self):
        self.x = None

    def forward(self, x):
        self.x = x
        out = np.maximum(x, 0)
        return out

    def backward(self, dout):
        dx = dout * (self.x > 0)
        return dx

    def clear_cache(self):
        self.x = None


class SoftMaxModule(object):
    def __init__(self):
        self.out = None

    def forward(self, x):
        b = x.max(axis=1, keepdims=True)
        y = np.exp(x - b)
        out = y / y.sum(axis=1, keepdims=True)
        self.out = out
        return out

    def backward(self, dout):
        y = self.out
        dx = y * (dout - np.sum(dout * y, axis=1, keepdims=True))
        return dx

    def clear_cache(self):
        self.out = None


class CrossEntropyModule(object):
    def forward(self, x, y):
        N = x.shape[0]
        out = -np.mean(np.log(x[np.arange(N), y]))
        return out

    def backward(self, x, y):
        N = x.shape[0]
        dx = np.zeros_like(x)
        dx[np.arange(N), y] = -1.0 / (N * x[np.arange(N), y])
        return dx
