# BUG: dW[x] += dout: NumPy buffers an indexed +=, so a word that occurs more than once gets one occurrence's gradient (np.add.at adds them all).
import numpy as np


def word_embedding_forward(x, W):
    out = W[x]
    cache = (x, W)
    return out, cache


def word_embedding_backward(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    dW[x] += dout
    return dW
