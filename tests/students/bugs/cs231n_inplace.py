# BUG: subtracts the row max from x IN PLACE (x -= ...), so the caller's logits are modified; the returned values are correct.
import numpy as np


def softmax_loss(x, y):
    x -= np.max(x, axis=1, keepdims=True)
    Z = np.sum(np.exp(x), axis=1, keepdims=True)
    log_probs = x - np.log(Z)
    probs = np.exp(log_probs)
    N = x.shape[0]
    loss = -np.sum(log_probs[np.arange(N), y]) / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx
