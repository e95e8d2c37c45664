# BUG: CrossEntropy.backward returns (x - y) without dividing by the batch size N (gradient of the summed, not mean, loss).
import numpy as np


class CrossEntropy(object):
    def forward(self, x, y):
        N = x.shape[0]
        return -np.sum(y * np.log(x)) / N

    def backward(self, x, y):
        return x - y
