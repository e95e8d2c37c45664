# A stand-in for CMU 11-785's GRUCell (HW3P1), written for twinnet's tests in its API, not copied from it: one
# sample's vectors, x (D,) and h (H,); a weight and a bias for each gate and each input, in torch's layout (out, in);
# torch's equations, the reset gate applied to the hidden state's term with its bias.
import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


class GRUCell:
    def __init__(self, input_size, hidden_size):
        self.d, self.h = input_size, hidden_size
        h, d = hidden_size, input_size
        self.Wrx, self.Wzx, self.Wnx = (np.random.randn(h, d) for _ in range(3))
        self.Wrh, self.Wzh, self.Wnh = (np.random.randn(h, h) for _ in range(3))
        self.brx, self.bzx, self.bnx, self.brh, self.bzh, self.bnh = (np.random.randn(h) for _ in range(6))
        self.dWrx, self.dWzx, self.dWnx = (np.zeros((h, d)) for _ in range(3))
        self.dWrh, self.dWzh, self.dWnh = (np.zeros((h, h)) for _ in range(3))
        self.dbrx, self.dbzx, self.dbnx, self.dbrh, self.dbzh, self.dbnh = (np.zeros(h) for _ in range(6))

    def forward(self, x, h_prev_t):
        self.x, self.hidden = x, h_prev_t
        self.r = sigmoid(self.Wrx @ x + self.brx + self.Wrh @ h_prev_t + self.brh)
        self.z = sigmoid(self.Wzx @ x + self.bzx + self.Wzh @ h_prev_t + self.bzh)
        self.hn = self.Wnh @ h_prev_t + self.bnh
        self.n = np.tanh(self.Wnx @ x + self.bnx + self.r * self.hn)
        return (1 - self.z) * self.n + self.z * h_prev_t

    def backward(self, delta):
        dn = delta * (1 - self.z) * (1 - self.n ** 2)
        dz = delta * (self.hidden - self.n) * self.z * (1 - self.z)
        dr = dn * self.hn * self.r * (1 - self.r)
        self.dWnx, self.dbnx = np.outer(dn, self.x), dn
        self.dWnh, self.dbnh = np.outer(dn * self.r, self.hidden), dn * self.r
        self.dWzx, self.dbzx = np.outer(dz, self.x), dz
        self.dWzh, self.dbzh = np.outer(dz, self.hidden), dz
        self.dWrx, self.dbrx = np.outer(dr, self.x), dr
        self.dWrh, self.dbrh = np.outer(dr, self.hidden), dr
        dx = dn @ self.Wnx + dz @ self.Wzx + dr @ self.Wrx
        dh = delta * self.z + (dn * self.r) @ self.Wnh + dz @ self.Wzh + dr @ self.Wrh
        return dx, dh
