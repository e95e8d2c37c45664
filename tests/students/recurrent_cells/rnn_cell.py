# A stand-in for CMU 11-785's RNNCell (HW3P1), written for twinnet's tests in its API, not copied from it: weights as
# attributes in torch's layout, gradients averaged over the batch and added up across calls, a backward given the
# states again.
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
