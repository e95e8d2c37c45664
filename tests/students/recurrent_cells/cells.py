# Stand-ins for two courses' recurrent cells, written for twinnet's tests in their APIs, not copied from them:
# CMU 11-785's RNNCell (HW3P1: weights as attributes in torch's layout, gradients averaged over the batch and added
# up across calls, a backward given the states again) and Deep Learning from Scratch 2's RNN(Wx, Wh, b) (params
# and grads as lists, the gradients written into the arrays in place).
import numpy as np


class Tanh:
    def forward(self, z):
        self.state = np.tanh(z)
        return self.state

    def backward(self, delta, state=None):
        s = self.state if state is None else state
        return delta * (1 - s * s)


class RNNCell:
    def __init__(self, input_size, hidden_size):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.activation = Tanh()
        h, d = hidden_size, input_size
        self.W_ih, self.W_hh = np.random.randn(h, d), np.random.randn(h, h)
        self.b_ih, self.b_hh = np.random.randn(h), np.random.randn(h)
        self.zero_grad()

    def zero_grad(self):
        h, d = self.hidden_size, self.input_size
        self.dW_ih, self.dW_hh = np.zeros((h, d)), np.zeros((h, h))
        self.db_ih, self.db_hh = np.zeros(h), np.zeros(h)

    def forward(self, x, h_prev_t):
        return self.activation.forward(x @ self.W_ih.T + self.b_ih + h_prev_t @ self.W_hh.T + self.b_hh)

    def backward(self, delta, h_t, h_prev_l, h_prev_t):
        n = delta.shape[0]
        dz = self.activation.backward(delta, state=h_t)
        self.dW_ih += dz.T @ h_prev_l / n
        self.dW_hh += dz.T @ h_prev_t / n
        self.db_ih += dz.sum(axis=0) / n
        self.db_hh += dz.sum(axis=0) / n
        return dz @ self.W_ih, dz @ self.W_hh



class RNN:
    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        h_next = np.tanh(h_prev @ Wh + x @ Wx + b)
        self.cache = (x, h_prev, h_next)
        return h_next

    def backward(self, dh_next):
        Wx, Wh, b = self.params
        x, h_prev, h_next = self.cache
        dt = dh_next * (1 - h_next ** 2)
        self.grads[0][...] = x.T @ dt
        self.grads[1][...] = h_prev.T @ dt
        self.grads[2][...] = dt.sum(axis=0)
        return dt @ Wx.T, dt @ Wh.T


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class LSTM:
    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        H = h_prev.shape[1]
        A = x @ Wx + h_prev @ Wh + b
        f, g, i, o = A[:, :H], A[:, H:2 * H], A[:, 2 * H:3 * H], A[:, 3 * H:]  # the book's order of the gates
        f, g, i, o = sigmoid(f), np.tanh(g), sigmoid(i), sigmoid(o)
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        Wx, Wh, b = self.params
        x, h_prev, c_prev, i, f, g, o, c_next = self.cache
        tanh_c = np.tanh(c_next)
        ds = dc_next + (dh_next * o) * (1 - tanh_c ** 2)
        dc_prev = ds * f
        di, df, do, dg = ds * g, ds * c_prev, dh_next * tanh_c, ds * i
        dA = np.hstack((df * f * (1 - f), dg * (1 - g ** 2), di * i * (1 - i), do * o * (1 - o)))
        self.grads[0][...] = x.T @ dA
        self.grads[1][...] = h_prev.T @ dA
        self.grads[2][...] = dA.sum(axis=0)
        return dA @ Wx.T, dA @ Wh.T, dc_prev
