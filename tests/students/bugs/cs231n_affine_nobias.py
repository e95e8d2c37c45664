# BUG: affine_backward returns db as zeros (bias gradient never computed); dx and dw are correct.
import numpy as np


def affine_backward(dout, cache):
    x, w, b = cache
    N = x.shape[0]
    x_row = x.reshape(N, -1)
    dx = dout.dot(w.T).reshape(x.shape)
    dw = x_row.T.dot(dout)
    db = np.zeros_like(b)
    return dx, dw, db
