# BUG: truncated BPTT: each step only gets dh[:, t], the gradient from step t+1 is not carried into step t (right only for T == 1).
import numpy as np


def rnn_backward(dh, cache):
    N, T, H = dh.shape
    x0, _, Wx, Wh, _ = cache[0]
    D = x0.shape[1]
    dx = np.zeros((N, T, D))
    dWx = np.zeros_like(Wx)
    dWh = np.zeros_like(Wh)
    db = np.zeros(H)
    dprev_h = np.zeros((N, H))
    for t in reversed(range(T)):
        x, prev_h, Wx, Wh, next_h = cache[t]
        da = dh[:, t, :] * (1 - next_h ** 2)
        dx[:, t, :] = da.dot(Wx.T)
        dprev_h = da.dot(Wh.T)
        dWx += x.T.dot(da)
        dWh += prev_h.T.dot(da)
        db += np.sum(da, axis=0)
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db
