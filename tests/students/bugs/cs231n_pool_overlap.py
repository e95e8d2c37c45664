# BUG: assigns (=) instead of accumulating (+=) into dx; wrong only when pooling windows overlap (stride < pool size) and share an argmax.
import numpy as np


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph = pool_param['pool_height']
    pw = pool_param['pool_width']
    stride = pool_param['stride']
    N, C, H, W = x.shape
    _, _, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs = i * stride
                    ws = j * stride
                    window = x[n, c, hs:hs + ph, ws:ws + pw]
                    a, bb = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, hs + a, ws + bb] = dout[n, c, i, j]
    return dx
