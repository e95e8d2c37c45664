"""lstm_forward that starts the cell state as h0 (the course's starts it at zero); the step is right."""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x.dot(Wx) + prev_h.dot(Wh) + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    return o * np.tanh(next_c), next_c, None


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h, c = h0, h0.copy()
    hs = np.zeros((N, T, h0.shape[1]))
    for t in range(T):
        h, c, _ = lstm_step_forward(x[:, t, :], h, c, Wx, Wh, b)
        hs[:, t, :] = h
    return hs, None


def lstm_backward(dh, cache):
    raise NotImplementedError("not reached: the forward is wrong")
