"""Recurrent classifiers in PyTorch, stepping through time with an explicit Python loop.

Never ``torch.nn.RNN``/``LSTM``/``GRU`` or their cells: the equations are written out so they
can be read beside their NumPy twins (``twinnet.numpy_nn.recurrent``), which hold the same
parameters under the same names and layouts. Each model reads a sequence x (B, L, D) and
returns the logits of its last step, o = W_ph h(L) + b_o (B, C); the loss is taken there only.

With ``record_hidden = True`` the forward keeps every h(t) with ``retain_grad``, so after
``loss.backward()`` ``hidden_grads()`` returns dLoss/dh(t) (B, L, H): the vanishing gradient,
measured.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

HHInit = Literal["uniform", "orthogonal", "identity"]


def _uniform(shape: tuple[int, ...], bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class _Recurrent(nn.Module):
    """The loop over time, the readout o = W_ph h(L) + b_o, and the recording of h(t)."""

    gates = 1  # rows of W_ih per hidden unit: 1 (RNN), 4 (LSTM), 3 (GRU)

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.n_classes = input_size, hidden_size, n_classes
        self.record_hidden = False
        self._hidden: list[torch.Tensor] = []
        # torch.nn.RNN/LSTM/GRU draw every weight and bias from U(-1/sqrt(H), 1/sqrt(H));
        # nn.Linear(H, C)'s default for the readout is the same law.
        self._bound = 1.0 / math.sqrt(hidden_size)

    def _readout_parameters(self) -> None:
        self.W_ph = _uniform((self.n_classes, self.hidden_size), self._bound)  # (C, H)
        self.b_o = _uniform((self.n_classes,), self._bound)  # (C,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> logits of the last step (B, C)."""
        batch, steps, _ = x.shape
        xw = self._project_inputs(x.transpose(0, 1))  # (L, B, G*H): the input terms of all steps at once
        # unbind, not xw[t]: the backward of L separate indexings would build L zero-filled
        # (L, B, G*H) gradients (quadratic in L); unbind's backward stacks them once
        xw_steps = xw.unbind(0)
        h = x.new_zeros(batch, self.hidden_size)  # h(0) = 0
        state = self._initial_state(h)
        self._hidden = []
        for t in range(steps):
            h, state = self._step(xw_steps[t], h, state)
            if self.record_hidden and h.requires_grad:
                h.retain_grad()
                self._hidden.append(h)
        return h @ self.W_ph.T + self.b_o

    def hidden_grads(self) -> np.ndarray:
        """dLoss/dh(t) for t = 1..L as (B, L, H), after a backward with ``record_hidden`` set."""
        if not self._hidden or self._hidden[0].grad is None:
            raise RuntimeError("set record_hidden = True, run forward and loss.backward() first")
        return torch.stack([h.grad for h in self._hidden], dim=1).detach().cpu().numpy()

    def _initial_state(self, h0: torch.Tensor):
        return None

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, n_classes={self.n_classes}"


class VanillaRNN(_Recurrent):
    """The course's RNN: h(t) = tanh(W_hx x(t) + W_hh h(t-1) + b_h), h(0) = 0, o = W_ph h(L) + b_o.

    ``hh_init`` sets W_hh only (the equations stay the course's): "uniform" (PyTorch's default),
    "orthogonal" (times ``hh_gain``) or "identity" (``hh_gain`` * I).
    """

    nonlinearity = "tanh"

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10, hh_init: HHInit = "uniform",
                 hh_gain: float = 1.0) -> None:
        super().__init__(input_size, hidden_size, n_classes)
        k = self._bound
        self.W_hx = _uniform((hidden_size, input_size), k)  # (H, D)
        self.W_hh = _uniform((hidden_size, hidden_size), k)  # (H, H)
        self.b_h = _uniform((hidden_size,), k)  # (H,)
        self._readout_parameters()
        self.hh_init, self.hh_gain = hh_init, hh_gain
        with torch.no_grad():
            if hh_init == "orthogonal":
                nn.init.orthogonal_(self.W_hh, gain=hh_gain)
            elif hh_init == "identity":
                self.W_hh.copy_(hh_gain * torch.eye(hidden_size))
            elif hh_init != "uniform":
                raise ValueError(f"hh_init must be uniform, orthogonal or identity, got {hh_init!r}")

    def _project_inputs(self, xs):
        return xs @ self.W_hx.T + self.b_h  # (L, B, H)

    def _step(self, xw_t, h, state):
        pre = torch.addmm(xw_t, h, self.W_hh.T)  # W_hx x(t) + b_h + W_hh h(t-1)
        return (torch.relu(pre) if self.nonlinearity == "relu" else torch.tanh(pre)), None


class IRNN(VanillaRNN):
    """Not the course's RNN: ReLU instead of tanh, W_hh = I and b_h = 0 (Le, Jaitly & Hinton, 2015)."""

    nonlinearity = "relu"

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10) -> None:
        super().__init__(input_size, hidden_size, n_classes, hh_init="identity", hh_gain=1.0)
        with torch.no_grad():
            self.b_h.zero_()


class LSTM(_Recurrent):
    """An LSTM with torch.nn.LSTM's equations, gate order (i, f, g, o) and parameter layout:

    i, f, o = sigmoid(W_i* x(t) + b_i* + W_h* h(t-1) + b_h*), g = tanh(...),
    c(t) = f * c(t-1) + i * g, h(t) = o * tanh(c(t)), h(0) = c(0) = 0; o = W_ph h(L) + b_o.
    """

    gates = 4

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10) -> None:
        super().__init__(input_size, hidden_size, n_classes)
        k, g = self._bound, self.gates * hidden_size
        self.weight_ih = _uniform((g, input_size), k)  # (4H, D), rows i, f, g, o
        self.weight_hh = _uniform((g, hidden_size), k)  # (4H, H)
        self.bias_ih = _uniform((g,), k)
        self.bias_hh = _uniform((g,), k)
        self._readout_parameters()

    def _project_inputs(self, xs):
        return xs @ self.weight_ih.T + (self.bias_ih + self.bias_hh)  # (L, B, 4H)

    def _initial_state(self, h0):
        return torch.zeros_like(h0)  # c(0) = 0

    def _step(self, xw_t, h, c):
        i, f, g, o = torch.addmm(xw_t, h, self.weight_hh.T).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class GRU(_Recurrent):
    """A GRU with torch.nn.GRU's equations, gate order (r, z, n) and parameter layout:

    r, z = sigmoid(W_i* x(t) + b_i* + W_h* h(t-1) + b_h*),
    n = tanh(W_in x(t) + b_in + r * (W_hn h(t-1) + b_hn)), h(t) = (1 - z) * n + z * h(t-1).
    """

    gates = 3

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10) -> None:
        super().__init__(input_size, hidden_size, n_classes)
        k, g = self._bound, self.gates * hidden_size
        self.weight_ih = _uniform((g, input_size), k)  # (3H, D), rows r, z, n
        self.weight_hh = _uniform((g, hidden_size), k)  # (3H, H)
        self.bias_ih = _uniform((g,), k)
        self.bias_hh = _uniform((g,), k)
        self._readout_parameters()

    def _project_inputs(self, xs):
        return xs @ self.weight_ih.T + self.bias_ih  # (L, B, 3H); b_hn must stay inside r * (...)

    def _step(self, xw_t, h, state):
        H = self.hidden_size
        hw = torch.addmm(self.bias_hh, h, self.weight_hh.T)  # (B, 3H)
        rz = torch.sigmoid(xw_t[:, : 2 * H] + hw[:, : 2 * H])
        r, z = rz[:, :H], rz[:, H:]
        n = torch.tanh(xw_t[:, 2 * H :] + r * hw[:, 2 * H :])
        return n + z * (h - n), None  # = (1 - z) * n + z * h(t-1)


RECURRENT = {"rnn": VanillaRNN, "lstm": LSTM, "gru": GRU, "irnn": IRNN}
