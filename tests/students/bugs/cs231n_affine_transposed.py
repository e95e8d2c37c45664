# BUG: uses x @ w.T instead of x @ w (and a backward consistent with that); shapes only line up when w is square, and the values are wrong then.
import numpy as np


def affine_forward(x, w, b):
    N = x.shape[0]
    x_row = x.reshape(N, -1)
    out = x_row.dot(w.T) + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    x, w, b = cache
    N = x.shape[0]
    x_row = x.reshape(N, -1)
    dx = dout.dot(w).reshape(x.shape)
    dw = dout.T.dot(x_row)
    db = np.sum(dout, axis=0)
    return dx, dw, db
