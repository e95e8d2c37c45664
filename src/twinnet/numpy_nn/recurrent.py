"""Recurrent classifiers in NumPy with hand-written backpropagation through time.

Twins of ``twinnet.torch_nn.recurrent``: the same equations, parameter names and layouts, so
state_dicts copy across. Vectorised over the batch; the only Python loop is over time. The
forward stores every step's states (arrays indexed [t] along a leading time axis); the
backward walks them in reverse, collecting each step's pre-activation gradient, and forms the
weight gradients with one matmul over all steps at the end instead of L small ones.

Inside, a step's arrays are feature-major, (features, B), as the course writes its equations with column
vectors: h(t) = tanh(W_hx x(t) + W_hh h(t-1) + b_h) is ``W_hh @ h`` with h (H, B), and a gated model's
pre-activations (G*H, B) hold each gate in a contiguous block of rows. Batch-major (B, G*H) would put each
gate in a strided slice of every row, and NumPy runs an elementwise operation on such a (B, H) slice 3 to 4
times slower than on a contiguous block. Inputs, outputs and gradients keep the batch-major shapes below.

Conventions: x (B, L, D) -> logits of the last step (B, C); h(0) = 0 (and c(0) = 0) unless given;
``backward(dlogits) -> dx`` (B, L, D) (None with ``input_grad = False``). With ``record_hidden = True`` the backward keeps
dLoss/dh(t), returned by ``hidden_grads()`` as (B, L, H).

As torch.nn.RNN/LSTM/GRU(batch_first=True) allow: ``forward(x, h0)`` starts from a given h(0) (B, H) (the LSTM
also takes c0), and backward then returns ``(dx, dh0)`` (``(dx, dh0, dc0)``), one gradient per input given. With
``return_sequences = True`` forward returns every h(t), t = 1..L, as (B, L, H) (torch's ``output``; the readout is
unused) and backward takes dLoss/dh(t) for each of them.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from twinnet.numpy_nn import backend, init
from twinnet.numpy_nn.module import Module, Parameter, is_grad_enabled

# time steps a forward inside ``no_grad`` runs at once: it keeps the states of one such chunk, not of
# every step, so evaluating at T = 10,000 needs the memory of T = 16 (an LSTM's states at batch 1,024
# and H = 128 are 57 GB at T = 10,000 kept whole), and every chunk reuses the first one's arrays: where
# the allocator hands freed memory back to the system (not in twinnet's runs on glibc, which keep it:
# backend.tune_allocator), a fresh large array costs a page fault at the first write to each of its
# pages, about half of such an evaluation's time when each chunk had arrays of its own
INFERENCE_CHUNK = 16
# per thread, id(model) -> the arrays that model's ``_last_state`` in progress hands out by name: two threads
# may evaluate one model at once, each in arrays of its own
_WORKSPACES = threading.local()


def _sigmoid(a, out=None):
    """1 / (1 + exp(-a)) in the tanh form that never overflows."""
    xp = backend.xp(a)
    out = xp.multiply(a, 0.5, out=out)
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


class _Recurrent(Module):
    """Readout o = W_ph h(L) + b_o, the shared bookkeeping of forward/backward, recording of dLoss/dh(t)."""

    gates = 1  # rows of the input weight per hidden unit: 1 (RNN), 4 (LSTM), 3 (GRU)
    states = ("h",)  # the state carried from step to step, each (H, B) inside
    kept_per_step = 1  # (H, B) arrays forward keeps for backward at each step: h(t); initial states kept too

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10, *, dtype=np.float32) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.n_classes = input_size, hidden_size, n_classes
        self.record_hidden = False
        self._hidden_grads = None
        self.return_sequences = False  # True: forward returns h(1..L) (B, L, H) instead of the readout's logits
        self.input_grad = True  # False spares backward dLoss/dx, which no one reads when x is data
        self._bound = 1.0 / math.sqrt(hidden_size)  # PyTorch's U(-1/sqrt(H), 1/sqrt(H)) for every weight

    def _param(self, shape: tuple[int, ...], dtype) -> Parameter:
        return Parameter(init.uniform(shape, self._bound, dtype))

    def _readout_parameters(self, dtype) -> None:
        self.W_ph = self._param((self.n_classes, self.hidden_size), dtype)  # (C, H)
        self.b_o = self._param((self.n_classes,), dtype)  # (C,)

    def forward(self, x, h0=None):
        """x (B, L, D), h0 (B, H) or None for zeros -> logits (B, C), or h(1..L) (B, L, H) with ``return_sequences``."""
        return self._forward(x, {"h0": h0})

    def _forward(self, x, initial: dict):
        """``initial``: each initial state by name (h0, and the LSTM's c0), None where it starts at zero."""
        if getattr(x, "ndim", 0) != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"{type(self).__name__} takes x of shape (batch, steps, input_size = {self.input_size}), "
                             f"got {tuple(getattr(x, 'shape', ()))}; a single sequence is x[None], one feature per "
                             "step x[..., None]")
        B, H = x.shape[0], self.hidden_size
        for name, s in initial.items():
            if s is not None and tuple(s.shape) != (B, H):
                raise ValueError(f"{name} must have shape (batch, hidden_size) = {(B, H)}, got {tuple(s.shape)}")
        xs = x.transpose(1, 0, 2)  # (L, B, D): step t's batch contiguous
        start = tuple(None if s is None else s.T for s in initial.values())  # each (H, B)
        if not is_grad_enabled() and not self.return_sequences:  # nothing to keep for a backward
            return self._last_state(xs, start) @ self.W_ph.data.T + self.b_o.data
        states = self._run(xs, *start)  # h (L+1, H, B) with h[0] = h(0), plus each model's extras
        given = tuple(s is not None for s in initial.values())
        self._push_cache((xs, states, given, self.return_sequences))
        if self.return_sequences:
            return states[0][1:].transpose(2, 0, 1)  # (B, L, H)
        return states[0][-1].T @ self.W_ph.data.T + self.b_o.data

    def _last_state(self, xs, initial: tuple):
        """h(L) (B, H) from the same steps as ``_run``, run INFERENCE_CHUNK steps at a time in the same arrays,
        each chunk starting from the last one's final states (h, and the LSTM's c, each (H, B))."""
        if not len(xs):
            return self._hidden_buffer(xs, initial[0])[0].T.copy()
        spaces = _WORKSPACES.__dict__.setdefault("by_model", {})
        spaces[id(self)] = {}
        try:
            for start in range(0, len(xs), INFERENCE_CHUNK):
                states = self._run(xs[start : start + INFERENCE_CHUNK], *initial)
                initial = tuple(s[-1] for s in states[: len(initial)])  # h(t) (and c(t)) lead each model's states
            return initial[0].T.copy()
        finally:
            del spaces[id(self)]

    @property
    def _workspace(self) -> dict | None:
        """The arrays of this thread's ``_last_state`` of this model in progress, by name; None outside one."""
        return getattr(_WORKSPACES, "by_model", {}).get(id(self))

    def _buffer(self, name: str, shape: tuple[int, ...], like, dtype=None):
        """An uninitialised array of ``shape`` in ``like``'s array module and dtype (or ``dtype``): a new one,
        or within ``_last_state`` the one of this name the first chunk had (its first ``shape[0]`` rows)."""
        xp = backend.xp(like)
        dtype = like.dtype if dtype is None else np.dtype(dtype)  # CuPy arrays take NumPy dtypes too
        work = self._workspace
        if work is None:
            return xp.empty(shape, dtype=dtype)
        a = work.get(name)
        if a is None or a.shape[0] < shape[0] or a.shape[1:] != tuple(shape[1:]) or a.dtype != dtype:
            a = work[name] = xp.empty(shape, dtype=dtype)
        return a[: shape[0]]

    def _input_terms(self, xs):
        """W_ih x(t) for every step (L, G*H, B) in one batched matmul, into a ``_buffer``, plus ``_input_bias``
        (and an LSTM's bias_hh)."""
        w, xp = self._input_weight.data, backend.xp(xs)
        L, B, _ = xs.shape
        out = self._buffer("xw", (L, w.shape[0], B), xs, xp.result_type(xs, w))
        xp.matmul(w, xs.transpose(0, 2, 1), out=out)
        out += self._input_bias_total()[:, None]
        return out

    def _input_bias_total(self):
        return self._input_bias.data

    _recurrent_bias = None  # a bias of its own inside the recurrent term (the gated models' bias_hh)

    def _scratch(self, like, *names: str) -> list:
        """A ``_buffer`` shaped and typed as ``like`` (one step's (H, B)) per name, for intermediate results."""
        return [self._buffer(n, like.shape, like) for n in names]

    def backward(self, dout):
        """dlogits (B, C), or dLoss/dh(1..L) (B, L, H) with ``return_sequences`` -> dx (B, L, D), followed by
        the gradient of each initial state forward was given; accumulates every parameter's gradient."""
        xs, states, given, sequences = self._pop_cache()
        hs = states[0]
        xp = backend.xp(hs)
        if sequences:  # step t's upstream gradient (L, H, B), added as the walk reaches it
            dseq = xp.ascontiguousarray(dout.transpose(1, 2, 0))
            dh_last = dseq[-1].copy()
        else:
            dseq = None
            self.W_ph.accumulate(dout.T @ hs[-1].T)
            self.b_o.accumulate(dout.sum(axis=0))
            dh_last = self.W_ph.data.T @ dout.T  # (H, B): only the last step feeds the loss
        record = xp.empty_like(hs[1:]) if self.record_hidden else None
        # dxw (L, G*H, B): d loss / d (input term) per step; dhh: d loss / d (W_hh h(t-1) + bias_hh) per step,
        # dxw itself where the two are equal (RNN, LSTM); d_initial: d loss / d each initial state, (H, B)
        dxw, dhh, d_initial = self._bptt(dh_last, xs, states, record, dseq, given)
        self._hidden_grads = record
        first = 0 if given[0] else 1  # step 1 meets W_hh only through a given h(0)
        self._input_weight.accumulate(_sum_of_products(dxw, xs))
        self._recurrent_weight.accumulate(_sum_of_products(dhh[first:], hs[first : len(xs)].transpose(0, 2, 1)))
        db = dxw.sum(axis=(0, 2))
        self._input_bias.accumulate(db)
        if self._recurrent_bias is not None:  # used at every step, step 1 too
            self._recurrent_bias.accumulate(db if dhh is dxw else dhh.sum(axis=(0, 2)))
        dx = xp.matmul(dxw.transpose(0, 2, 1), self._input_weight.data).transpose(1, 0, 2) if self.input_grad else None
        if not any(given):
            return dx  # (B, L, D)
        return (dx, *(g.T.copy() for g, k in zip(d_initial, given, strict=True) if k))

    def hidden_grads(self) -> np.ndarray:
        """dLoss/dh(t) for t = 1..L as (B, L, H), after a backward with ``record_hidden`` set."""
        if self._hidden_grads is None:
            raise RuntimeError("set record_hidden = True, run forward and backward first")
        return backend.to_numpy(self._hidden_grads).transpose(2, 0, 1)

    def _hidden_buffer(self, xs, start=None, name: str = "h"):
        """(L+1, H, B) for a state at t = 0..L, with [0] = ``start`` (H, B) (zeros if None)."""
        L, B, _ = xs.shape
        xp = backend.xp(xs)
        hs = self._buffer(name, (L + 1, self.hidden_size, B), self.W_ph.data)
        hs[0] = 0 if start is None else xp.asarray(start)
        return hs

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, n_classes={self.n_classes}"


def _sum_of_products(a, b):
    """sum_t a[t] @ b[t] (M, N) for a (L, M, K) and b (L, K, N), zeros where L = 0: a weight's gradient summed over
    the time steps, one step's product at a time (one matmul over all steps would first copy both into (M, L*K)
    and (L*K, N), which costs more than it saves: measured in docs/RESULTS.md, session 34)."""
    xp = backend.xp(a)
    if not len(a):
        return xp.zeros((a.shape[1], b.shape[2]), dtype=xp.result_type(a, b))
    total = xp.matmul(a[0], b[0])
    step = xp.empty_like(total)
    for t in range(1, len(a)):
        total += xp.matmul(a[t], b[t], out=step)
    return total


class VanillaRNN(_Recurrent):
    """h(t) = tanh(W_hx x(t) + W_hh h(t-1) + b_h), h(0) = 0, o = W_ph h(L) + b_o; W_hh init as torch's twin."""

    nonlinearity = "tanh"

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10, hh_init: str = "uniform",
                 hh_gain: float = 1.0, *, dtype=np.float32) -> None:
        super().__init__(input_size, hidden_size, n_classes, dtype=dtype)
        self.W_hx = self._param((hidden_size, input_size), dtype)  # (H, D)
        self.W_hh = self._param((hidden_size, hidden_size), dtype)  # (H, H)
        self.b_h = self._param((hidden_size,), dtype)  # (H,)
        self._readout_parameters(dtype)
        self.hh_init, self.hh_gain = hh_init, hh_gain
        if hh_init == "orthogonal":
            init.orthogonal_(self.W_hh, gain=hh_gain)
        elif hh_init == "identity":
            self.W_hh.data[...] = hh_gain * np.eye(hidden_size)  # fresh weights are NumPy arrays
        elif hh_init != "uniform":
            raise ValueError(f"hh_init must be uniform, orthogonal or identity, got {hh_init!r}")

    @property
    def _input_weight(self):
        return self.W_hx

    @property
    def _input_bias(self):
        return self.b_h

    @property
    def _recurrent_weight(self):
        return self.W_hh

    def _run(self, xs, h0=None):
        xp = backend.xp(xs)
        xw = self._input_terms(xs)  # (L, H, B), b_h added
        hs = self._hidden_buffer(xs, h0)
        w = self.W_hh.data
        for t in range(len(xs)):
            pre = xp.matmul(w, hs[t], out=hs[t + 1])
            pre += xw[t]
            if self.nonlinearity == "relu":
                xp.maximum(pre, 0, out=pre)
            else:
                xp.tanh(pre, out=pre)
        return (hs,)

    def _bptt(self, dh, xs, states, record, dseq, given):
        (hs,) = states
        xp = backend.xp(hs)
        L = len(xs)
        dpre = xp.empty_like(hs[1:])  # (L, H, B)
        (s,) = self._scratch(hs[0], "s")
        w_t = self.W_hh.data.T
        for t in range(L - 1, -1, -1):  # step t makes h(t+1) = hs[t+1]
            if dseq is not None and t < L - 1:
                dh += dseq[t]
            if record is not None:
                record[t] = dh
            h = hs[t + 1]
            if self.nonlinearity == "relu":
                xp.greater(h, 0, out=s)
            else:
                xp.multiply(h, h, out=s)
                xp.subtract(1, s, out=s)  # tanh' = 1 - h^2
            xp.multiply(dh, s, out=dpre[t])
            if t or given[0]:
                xp.matmul(w_t, dpre[t], out=dh)  # through W_hh h(t-1)
        return dpre, dpre, (dh,)


class IRNN(VanillaRNN):
    """Not the course's RNN: ReLU instead of tanh, W_hh = I and b_h = 0 (Le, Jaitly & Hinton, 2015)."""

    nonlinearity = "relu"

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10, *, dtype=np.float32) -> None:
        super().__init__(input_size, hidden_size, n_classes, hh_init="identity", dtype=dtype)
        self.b_h.data[...] = 0


class _Gated(_Recurrent):
    """Parameters of torch.nn.LSTM/GRU's layout: weight_ih (G*H, D), weight_hh (G*H, H), bias_ih, bias_hh."""

    def __init__(self, input_size: int, hidden_size: int, n_classes: int = 10, *, dtype=np.float32) -> None:
        super().__init__(input_size, hidden_size, n_classes, dtype=dtype)
        g = self.gates * hidden_size
        self.weight_ih = self._param((g, input_size), dtype)
        self.weight_hh = self._param((g, hidden_size), dtype)
        self.bias_ih = self._param((g,), dtype)
        self.bias_hh = self._param((g,), dtype)
        self._readout_parameters(dtype)

    @property
    def _input_weight(self):
        return self.weight_ih

    @property
    def _input_bias(self):
        return self.bias_ih

    @property
    def _recurrent_weight(self):
        return self.weight_hh

    @property
    def _recurrent_bias(self):
        return self.bias_hh


class LSTM(_Gated):
    """torch.nn.LSTM's equations, gates (i, f, g, o): c(t) = f c(t-1) + i g, h(t) = o tanh(c(t))."""

    gates = 4
    states = ("h", "c")
    kept_per_step = 7  # h(t), c(t), the four gates' activations, tanh(c(t))

    def forward(self, x, h0=None, c0=None):
        """As ``_Recurrent.forward``, with torch.nn.LSTM's initial cell state c0 (B, H) too (zeros if None)."""
        return self._forward(x, {"h0": h0, "c0": c0})

    def _input_bias_total(self):
        return self.bias_ih.data + self.bias_hh.data  # both enter only as a sum

    def _run(self, xs, h0=None, c0=None):
        xp, H = backend.xp(xs), self.hidden_size
        xw = self._input_terms(xs)  # (L, 4H, B), both biases added
        hs, cs = self._hidden_buffer(xs, h0), self._hidden_buffer(xs, c0, "c")  # h(t), c(t) for t = 0..L
        acts = self._buffer("acts", xw.shape, xw)  # (L, 4H, B): sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
        tcs = self._buffer("tcs", hs[1:].shape, hs)  # (L, H, B): tanh(c(t))
        pre = self._buffer("pre", xw.shape[1:], hs)  # (4H, B): one step's pre-activations, h's dtype
        (ig,) = self._scratch(hs[0], "ig")  # i * g, in the chunks' arrays when evaluating
        w = self.weight_hh.data
        for t in range(len(xs)):
            xp.matmul(w, hs[t], out=pre)
            pre += xw[t]
            a = acts[t]
            _sigmoid(pre[: 2 * H], out=a[: 2 * H])
            xp.tanh(pre[2 * H : 3 * H], out=a[2 * H : 3 * H])
            _sigmoid(pre[3 * H :], out=a[3 * H :])
            i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
            c = cs[t + 1]
            xp.multiply(f, cs[t], out=c)
            c += xp.multiply(i, g, out=ig)
            xp.tanh(c, out=tcs[t])
            xp.multiply(o, tcs[t], out=hs[t + 1])
        return hs, cs, acts, tcs

    def _bptt(self, dh, xs, states, record, dseq, given):
        hs, cs, acts, tcs = states
        xp, H, L = backend.xp(acts), self.hidden_size, len(xs)
        dpre = xp.empty_like(acts)  # (L, 4H, B): gradient of the gate pre-activations
        dc = xp.zeros_like(dh)  # dLoss/dc(t) arriving from step t+1
        s, u = self._scratch(dh, "s", "u")
        w_t = self.weight_hh.data.T
        for t in range(L - 1, -1, -1):
            if dseq is not None and t < L - 1:
                dh += dseq[t]
            if record is not None:
                record[t] = dh
            a, tc, d = acts[t], tcs[t], dpre[t]
            i, f, g, o = a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :]
            di, df, dg, do = d[:H], d[H : 2 * H], d[2 * H : 3 * H], d[3 * H :]
            xp.multiply(dh, o, out=s)  # h = o tanh(c): dc += dh o (1 - tanh(c)^2)
            xp.multiply(tc, tc, out=u)
            xp.subtract(1, u, out=u)
            s *= u
            dc += s
            xp.multiply(dc, g, out=di)  # c = f c(t-1) + i g, i = sigmoid: di = dc g i (1 - i)
            di *= i
            di *= xp.subtract(1, i, out=u)
            xp.multiply(dc, cs[t], out=df)
            df *= f
            df *= xp.subtract(1, f, out=u)
            xp.multiply(dc, i, out=dg)  # g = tanh
            xp.multiply(g, g, out=u)
            dg *= xp.subtract(1, u, out=u)
            xp.multiply(dh, tc, out=do)
            do *= o
            do *= xp.subtract(1, o, out=u)
            dc *= f  # at t = 0: dLoss/dc(0)
            if t or any(given):
                xp.matmul(w_t, d, out=dh)
        return dpre, dpre, (dh, dc)


class GRU(_Gated):
    """torch.nn.GRU's equations, gates (r, z, n): n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h = (1-z) n + z h."""

    gates = 3
    kept_per_step = 5  # h(t), r(t) and z(t), n(t), W_hn h(t-1) + b_hn

    def _run(self, xs, h0=None):
        xp, H = backend.xp(xs), self.hidden_size
        xw = self._input_terms(xs)  # (L, 3H, B), bias_ih added; bias_hh stays apart: r multiplies W_hn h + b_hn
        hs = self._hidden_buffer(xs, h0)
        L, _, B = xw.shape
        rz = self._buffer("rz", (L, 2 * H, B), xw)  # (L, 2H, B): r, z
        ns, hn = self._buffer("n", hs[1:].shape, hs), self._buffer("hn", hs[1:].shape, hs)  # n(t), W_hn h(t-1) + b_hn
        hw = self._buffer("hw", xw.shape[1:], hs)  # (3H, B): W_hh h(t-1) + b_hh of one step, h's dtype
        w, b = self.weight_hh.data, self.bias_hh.data[:, None]
        for t in range(len(xs)):
            xp.matmul(w, hs[t], out=hw)
            hw += b
            pre = hw[: 2 * H]
            pre += xw[t][: 2 * H]
            _sigmoid(pre, out=rz[t])
            hn[t] = hw[2 * H :]
            n = ns[t]
            xp.multiply(rz[t][:H], hn[t], out=n)
            n += xw[t][2 * H :]
            xp.tanh(n, out=n)
            xp.subtract(hs[t], n, out=hs[t + 1])
            hs[t + 1] *= rz[t][H:]
            hs[t + 1] += n  # n + z (h(t-1) - n)
        return hs, rz, ns, hn

    def _bptt(self, dh, xs, states, record, dseq, given):
        hs, rz, ns, hn = states
        xp, H = backend.xp(hs), self.hidden_size
        L = len(xs)
        dx_pre = xp.empty((L, 3 * H, rz.shape[2]), dtype=hs.dtype)  # d/d(input terms): r, z, n
        dh_pre = xp.empty_like(dx_pre)  # d/d(W_hh h(t-1) + b_hh): r, z, r * dn
        s, u = self._scratch(dh, "s", "u")
        w_t = self.weight_hh.data.T
        for t in range(L - 1, -1, -1):
            if dseq is not None and t < L - 1:
                dh += dseq[t]
            if record is not None:
                record[t] = dh
            r, z, n = rz[t][:H], rz[t][H:], ns[t]
            d = dx_pre[t]
            dr, dz, dn = d[:H], d[H : 2 * H], d[2 * H :]
            xp.multiply(dh, xp.subtract(1, z, out=s), out=dn)  # through tanh: dn = dh (1 - z) (1 - n^2)
            xp.multiply(n, n, out=s)
            dn *= xp.subtract(1, s, out=s)
            xp.multiply(dh, xp.subtract(hs[t], n, out=s), out=dz)  # dz = dh (h(t-1) - n) z (1 - z)
            dz *= z
            dz *= xp.subtract(1, z, out=s)
            xp.multiply(dn, hn[t], out=dr)  # dr = dn (W_hn h(t-1) + b_hn) r (1 - r)
            dr *= r
            dr *= xp.subtract(1, r, out=s)
            dh_pre[t, : 2 * H] = d[: 2 * H]
            xp.multiply(dn, r, out=dh_pre[t, 2 * H :])
            if t or given[0]:
                xp.multiply(dh, z, out=s)
                xp.add(s, xp.matmul(w_t, dh_pre[t], out=u), out=dh)
        return dx_pre, dh_pre, (dh,)


RECURRENT = {"rnn": VanillaRNN, "lstm": LSTM, "gru": GRU, "irnn": IRNN}
