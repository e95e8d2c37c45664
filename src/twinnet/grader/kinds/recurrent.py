"""The RNN and the LSTM, one step and over time, and the word embedding."""

from __future__ import annotations

import numpy as np
import torch

from twinnet.grader.compare import Wrong, all_unchanged
from twinnet.grader.kinds.base import Context, Kind, Quantities, _follows, _forward, _g, _pair, _single, _t
from twinnet.grader.kinds.modules import (
    _build, _caches_apart, _grads, _params_kept, _second_pass, _set_params)
from twinnet.grader.loader import StudentError


def _rnn_configs(rng, k):
    fixed = [dict(n=1, t=1, d=3, h=4), dict(n=2, t=4, d=3, h=5), dict(n=3, t=6, d=2, h=2)]
    return fixed + [dict(n=int(rng.integers(1, 4)), t=int(rng.integers(1, 7)), d=int(rng.integers(1, 5)),
                         h=int(rng.integers(1, 6))) for _ in range(k)]


def _cell_shaped(cfg: dict, entry: dict) -> dict:
    """A configuration of one sample where a cell class takes unbatched vectors (``batched = false``)."""
    return {**cfg, "n": 1} if entry.get("batched", True) is False else cfg


def _rnn_tensors(cfg, rng, steps: int | None):
    shape = (cfg["n"], cfg["d"]) if steps is None else (cfg["n"], steps, cfg["d"])
    return (rng.standard_normal(shape), rng.standard_normal((cfg["n"], cfg["h"])),
            rng.standard_normal((cfg["d"], cfg["h"])) / 2, rng.standard_normal((cfg["h"], cfg["h"])) / 2,
            rng.standard_normal(cfg["h"]))


def _rnn_step(cfg, ctx: Context) -> Quantities:
    arrays = _rnn_tensors(cfg, ctx.rng, None)
    ts = [_t(a) for a in arrays]
    out_t = torch.tanh(ts[0] @ ts[2] + ts[1] @ ts[3] + ts[4])
    dout = ctx.rng.standard_normal(tuple(out_t.shape))
    if ctx.convention["style"] == "module":  # its reference made by the cell's grading, for each upstream gradient
        return _rnn_cell(cfg, ctx, arrays, dout)
    (out_t * torch.from_numpy(dout)).sum().backward()
    return _rnn_call(ctx, arrays, dout, out_t.detach().numpy(), [_g(t) for t in ts],
                     ("dx", "dprev_h", "dWx", "dWh", "db"))


def _rnn_cell(cfg, ctx: Context, arrays, dout) -> Quantities:
    """One step of a module's RNN cell, made with its sizes (CMU 11-785's ``RNNCell(input_size, hidden_size)``) or
    its parameters (``args``: Deep Learning from Scratch 2's ``RNN(Wx, Wh, b)``): ``forward(x, h_prev) -> h``, and
    ``backward(dh) -> (dx, dh_prev)`` from what it kept, or, with ``backward = "states"``, ``backward(dh, h, x,
    h_prev)`` given the states again (CMU's)."""
    x, h_prev, wx, wh, b = arrays
    # a square weight read the other way round: named, as the linear layer's is
    other = [(which, w) for which, w in (("weight_hh", (wx, wh.T, b)), ("weight_ih", (wx.T, wh, b)))
             if w[0].shape == wx.shape and w[1].shape == wh.shape]
    return _cell(cfg, ctx, x, (h_prev,), (wx, wh, b), _ih_hh(ctx, b.shape),
                 lambda xt, ht, *w: (torch.tanh(xt @ w[0] + ht @ w[1] + w[2]),), dout, ("out",), ("dx", "dh_prev"),
                 transposed=other)


def _ih_hh(ctx: Context, bias_shape):
    """How an RNN's or an LSTM's weights Wx (D, kH), Wh (H, kH) and bias b (kH,) are stored in a cell class:
    ``weight_ih``, ``weight_hh`` (in, out) by ``weight = "in_out"``, else torch's (out, in), and ``bias``, or two
    biases ``bias_ih`` and ``bias_hh`` that add up to it (the grader splits it; each has its gradient): the
    stored values, and their gradients, from the reference's."""
    in_out = ctx.entry.get("weight", "out_in") == "in_out"
    table = ctx.entry.get("params")
    split = ("bias_ih" in table) if isinstance(table, dict) else True  # torch's names: two biases
    share = ctx.rng.standard_normal(bias_shape) / 2

    def layout(w, grads: bool) -> dict:
        wx, wh, b = w
        stored = {"weight_ih": wx if in_out else wx.T, "weight_hh": wh if in_out else wh.T}
        if not split:
            return {**stored, "bias": b}
        return {**stored, "bias_ih": b if grads else share, "bias_hh": b if grads else b - share}

    return layout


def _gru_layout(ctx: Context, h: int):
    """How a GRU's weights Wx (D, 3H), Wh (H, 3H) and biases b_ih, b_hh (3H,), their blocks of H columns the gates
    r, z and n, are stored in a cell class: stacked, ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, their
    blocks in the order ``gates`` gives (torch's "rzn"), or a weight and a bias for each gate, ``weight_ir`` ...
    ``bias_hn`` (CMU 11-785's Wrx ... bnh); (in, out) by ``weight = "in_out"``, else torch's (out, in)."""
    in_out = ctx.entry.get("weight", "out_in") == "in_out"
    table = ctx.entry.get("params")
    per_gate = isinstance(table, dict) and "weight_ir" in table
    order = ctx.entry.get("gates", "rzn")

    def layout(w, grads: bool) -> dict:
        wx, wh, b_ih, b_hh = w
        block = {g: slice(i * h, (i + 1) * h) for i, g in enumerate("rzn")}
        turn = (lambda m: m) if in_out else (lambda m: m.T)  # noqa: E731
        if per_gate:
            return {**{f"weight_i{g}": turn(wx[:, block[g]]) for g in "rzn"},
                    **{f"weight_h{g}": turn(wh[:, block[g]]) for g in "rzn"},
                    **{f"bias_i{g}": b_ih[block[g]] for g in "rzn"}, **{f"bias_h{g}": b_hh[block[g]] for g in "rzn"}}
        columns = np.concatenate([np.arange(h * "rzn".index(g), h * ("rzn".index(g) + 1)) for g in order])
        return {"weight_ih": turn(wx[:, columns]), "weight_hh": turn(wh[:, columns]), "bias_ih": b_ih[columns],
                "bias_hh": b_hh[columns]}

    return layout


def _gru_step(cfg, ctx: Context) -> Quantities:
    """One step of a GRU cell class (torch's equations: r and z gates, n = tanh(x Wx_n + b_in + r * (h Wh_n +
    b_hn)), h' = (1 - z) n + z h): ``forward(x, h_prev) -> h``, ``backward(dh) -> (dx, dh_prev)``; CMU 11-785's
    ``GRUCell`` on unbatched vectors with ``batched = false``."""
    n, d, h = cfg["n"], cfg["d"], cfg["h"]
    rng = ctx.rng
    x, h_prev = rng.standard_normal((n, d)), rng.standard_normal((n, h))
    wx, wh = rng.standard_normal((d, 3 * h)) / 2, rng.standard_normal((h, 3 * h)) / 2
    b_ih, b_hh = rng.standard_normal(3 * h) / 2, rng.standard_normal(3 * h) / 2
    dout = rng.standard_normal((n, h))

    def compute(xt, ht, wxt, wht, bi, bh):
        gi, gh = xt @ wxt + bi, ht @ wht + bh
        r = torch.sigmoid(gi[:, :h] + gh[:, :h])
        z = torch.sigmoid(gi[:, h:2 * h] + gh[:, h:2 * h])
        new = torch.tanh(gi[:, 2 * h:] + r * gh[:, 2 * h:])
        return ((1 - z) * new + z * ht,)

    return _cell(cfg, ctx, x, (h_prev,), (wx, wh, b_ih, b_hh), _gru_layout(ctx, h), compute, dout, ("out",),
                 ("dx", "dh_prev"))


def _cell(cfg, ctx: Context, x, states: tuple, weights: tuple, layout, compute, dout, outs: tuple,
          grads_out: tuple, check_out=None, transposed=()) -> Quantities:
    """A module's recurrent cell, one step: ``forward(x, *states)`` gives ``outs`` (``compute``'s, on torch tensors
    of x, the states and the ``weights``), and ``backward(*douts)`` the gradients ``grads_out`` of x and the states;
    ``dout`` holds the outputs' upstream gradients side by side, (N, H) each. ``layout(weights, grads)`` gives the
    parameters as the class stores them, by the convention's names, and their gradients (``grads``) from the
    reference's; ``grad = "mean"`` averages those over the batch; ``batched = false`` gives the class one sample's
    vectors, (D,) and (H,) (CMU's GRUCell), and ``upstream = "row"`` then its backward the gradient as a (1, H)
    row. ``check_out(out)`` may name what the first output follows (an LSTM's gate order), as may ``transposed``,
    (name, weights) of a square weight read the other way round."""
    values = {k: np.array(v, copy=True) for k, v in layout(weights, False).items()}
    layer = _build(ctx, "class", cfg["d"], cfg["h"])
    _set_params(ctx, layer, {k: v.copy() for k, v in values.items()})
    name, h = ctx.entry["class"], cfg["h"]
    names = ("x", *(g[1:] for g in grads_out[1:]))  # x, h_prev (, c_prev)
    scale = 1 / cfg["n"] if ctx.entry.get("grad", "sum") == "mean" else 1.0  # CMU's, averaged over the batch
    one = (lambda a: a[0]) if ctx.entry.get("batched", True) is False else (lambda a: a)  # noqa: E731
    row = ctx.entry.get("upstream", "vector") == "row"

    def reference(d: np.ndarray) -> tuple[list, list, dict]:
        """The outputs, the gradients of x and the states, and the parameters' (as stored) for upstream ``d``."""
        ts = [_t(a) for a in (x, *states, *weights)]
        results = compute(*ts)
        sum(r * torch.from_numpy(d[:, i * h:(i + 1) * h]) for i, r in enumerate(results)).sum().backward()
        k = len(weights)
        return ([one(r.detach().numpy()) for r in results], [one(_g(t)) for t in ts[:-k]],
                {key: np.array(v) * scale for key, v in layout([_g(t) for t in ts[-k:]], True).items()})

    out_ref, inputs_ref, first = reference(dout)

    def run(d: np.ndarray, what: str = ""):
        given = [one(x).copy(), *(one(s).copy() for s in states)]
        result = ctx.call(layer.forward, *given, what=f"{name}.forward{what}")
        all_unchanged(names, (one(x), *(one(s) for s in states)), given)
        douts = [one(d[:, i * h:(i + 1) * h]).copy() for i in range(len(outs))]
        if row:  # one sample's upstream gradient as a (1, H) row, as CMU's 2021-22 runner gives it
            douts = [g.reshape(1, -1) for g in douts]
        if ctx.entry.get("backward", "dout") == "states":  # backward(delta, h_t, h_prev_l, h_prev_t): CMU's order
            back = ctx.call(layer.backward, *douts, out_ref[0].copy(), one(x).copy(), *(one(s).copy() for s in states),
                            what=f"{name}.backward{what}")
        else:
            try:
                back = ctx.call(layer.backward, *douts, what=f"{name}.backward{what}")
            except StudentError as e:
                if e.timed_out or row or ctx.entry.get("batched", True) is not False:
                    raise
                raise Wrong(f"{e} (the upstream gradient is given as a vector, {douts[0].shape}; upstream = \"row\" "
                            "in the spec gives it as a (1, H) row, if that is how the course's runner passes it)") \
                    from None
        return result, back

    result, back = run(dout)
    got = list(_forward(result, f"{name}.forward", len(outs))) if len(outs) > 1 else [result]
    with torch.no_grad():
        for which, other in transposed:
            if _follows(got[0], one(compute(*(_t(v, False) for v in (x, *states, *other)))[0].numpy()), out_ref[0]):
                stored, product = ("(in, out)", "h @ W") if ctx.entry.get("weight") == "in_out" else \
                    ("(out, in)", "h @ W.T")
                raise Wrong(f"forward reads {which} transposed (the convention stores it {stored}: {product})")
    if check_out is not None:
        check_out(got[0])
    gradients = _pair(back, f"{name}.backward", len(grads_out))
    if ctx.entry.get("batched", True) is False:  # one sample's gradient given as a row, (1, D): the same values
        gradients = [np.reshape(g, r.shape) if isinstance(g, np.ndarray) and g.size == r.size else g
                     for g, r in zip(gradients, inputs_ref)]
    _params_kept(ctx, layer, values)
    grads = _grads(ctx, layer)
    quantities = {**{k: (v, [r]) for k, v, r in zip(outs, got, out_ref)},
                  **{k: (v, [r]) for k, v, r in zip(grads_out, gradients, inputs_ref)},
                  **{f"d{k}": (grads.get(k), [r]) for k, r in first.items()}}
    # a cell's backward runs once a time step: where the convention sums the gradients over calls, it is told
    return {**quantities, **_second_pass(ctx, layer, x, first, lambda d: reference(d)[2], dout.shape,
                                         run=lambda d: run(d, " (a second pass)"))}


def _rnn(cfg, ctx: Context) -> Quantities:
    arrays = _rnn_tensors(cfg, ctx.rng, cfg["t"])
    ts = [_t(a) for a in arrays]
    h, states = ts[1], []
    for step in range(cfg["t"]):
        h = torch.tanh(ts[0][:, step] @ ts[2] + h @ ts[3] + ts[4])
        states.append(h)
    out_t = torch.stack(states, dim=1)  # (N, T, H)
    dout = ctx.rng.standard_normal(tuple(out_t.shape))  # every step's hidden state feeds the loss
    (out_t * torch.from_numpy(dout)).sum().backward()
    return _rnn_call(ctx, arrays, dout, out_t.detach().numpy(), [_g(t) for t in ts], ("dx", "dh0", "dWx", "dWh", "db"))


def _rnn_call(ctx: Context, arrays, dout, out_ref, grads_ref, names, check_out=None) -> Quantities:
    """Call the student's forward and backward; ``check_out(out)``, where given, may raise ``Wrong`` naming
    what the forward's output follows before its backward runs."""
    copies = [a.copy() for a in arrays]
    out, cache = _forward(ctx.call(ctx.find("forward"), *copies, what=ctx.entry["forward"]), ctx.entry["forward"], 2)
    all_unchanged(("x", "h0", "Wx", "Wh", "b"), arrays, copies)
    if check_out is not None:
        check_out(out)
    grads = _pair(ctx.call(ctx.find("backward"), dout.copy(), cache, what=ctx.entry["backward"]),
                  ctx.entry["backward"], 5)
    return {"out": (out, [out_ref]), **{n: (g, [r]) for n, g, r in zip(names, grads, grads_ref)}}


def _lstm_tensors(cfg, rng, steps: int | None):
    """x, h0 (or prev_h), Wx (D, 4H), Wh (H, 4H), b (4H,), and for one step prev_c."""
    n, d, h = cfg["n"], cfg["d"], cfg["h"]
    x = rng.standard_normal((n, d) if steps is None else (n, steps, d))
    return (x, rng.standard_normal((n, h)), rng.standard_normal((d, 4 * h)) / 2,
            rng.standard_normal((h, 4 * h)) / 2, rng.standard_normal(4 * h) / 2, rng.standard_normal((n, h)))


def _lstm_cell(x, h, c, wx, wh, b, order: str):
    """One LSTM step with the gates' blocks of the 4H columns in ``order`` (CS231n's "ifog", torch's "ifgo")."""
    a = x @ wx + h @ wh + b
    gates = dict(zip(order, a.chunk(4, dim=1)))
    c = torch.sigmoid(gates["f"]) * c + torch.sigmoid(gates["i"]) * torch.tanh(gates["g"])
    return torch.sigmoid(gates["o"]) * torch.tanh(c), c


def _other_gate_order(theirs, order: str, compute, *, c0=None) -> None:
    """Raise ``Wrong`` naming the gate order ``theirs`` (a forward's output) follows, where it is not ``order``
    and another order of the 4H columns' blocks gives it; ``compute(order)`` is the reference in that order
    (``compute(order, c0)`` with ``c0``, a sequence's: also named where it starts the cell state there, not at 0)."""
    from itertools import permutations

    try:
        theirs = np.asarray(theirs, dtype=np.float64)
    except (TypeError, ValueError):
        return
    def close(a, b):
        return a.shape == b.shape and bool(np.all(np.abs(a - b) <= 1e-7 * max(float(np.abs(b).max()), 1e-3)))
    if close(theirs, compute(order)):
        return
    for other in ("".join(p) for p in permutations("ifgo")):
        if other != order and close(theirs, compute(other)):
            raise Wrong(f"the gates' blocks of the 4H columns are in the order {other}, where this convention's is "
                        f"{order} (gates = \"{other}\" in a spec, if that is the course's)")
    if c0 is not None and close(theirs, compute(order, c0)):
        raise Wrong("the cell state starts as h0; the course's lstm_forward starts it at zero (c0 = 0, only the "
                    "hidden state starts as h0)")


def _lstm_step(cfg, ctx: Context) -> Quantities:
    x, h, wx, wh, b, c = _lstm_tensors(cfg, ctx.rng, None)
    if ctx.convention["style"] == "module":  # Deep Learning from Scratch 2's LSTM(Wx, Wh, b): its gates f, g, i, o
        order = ctx.entry.get("gates", "ifgo")
        dout = ctx.rng.standard_normal((cfg["n"], 2 * cfg["h"]))  # the next h's upstream gradient, then the next c's

        def named(out):
            with torch.no_grad():
                ts = [_t(a) for a in (x, h, c, wx, wh, b)]
                _other_gate_order(out, order, lambda other: _lstm_cell(*ts, other)[0].numpy())

        return _cell(cfg, ctx, x, (h, c), (wx, wh, b), _ih_hh(ctx, b.shape), lambda *ts: _lstm_cell(*ts, order),
                     dout, ("next_h", "next_c"), ("dx", "dh_prev", "dc_prev"), check_out=named)
    arrays = (x, h, c, wx, wh, b)  # the call's order: x, prev_h, prev_c, Wx, Wh, b
    ts = [_t(a) for a in arrays]
    next_h, next_c = _lstm_cell(ts[0], ts[1], ts[2], ts[3], ts[4], ts[5], ctx.entry.get("gates", "ifog"))
    dh, dc = ctx.rng.standard_normal(tuple(next_h.shape)), ctx.rng.standard_normal(tuple(next_c.shape))
    ((next_h * torch.from_numpy(dh)).sum() + (next_c * torch.from_numpy(dc)).sum()).backward()
    copies = [a.copy() for a in arrays]
    out = _forward(ctx.call(ctx.find("forward"), *copies, what=ctx.entry["forward"]), ctx.entry["forward"], 3)
    all_unchanged(("x", "prev_h", "prev_c", "Wx", "Wh", "b"), arrays, copies)
    with torch.no_grad():
        _other_gate_order(out[0], ctx.entry.get("gates", "ifog"),
                          lambda order: _lstm_cell(*ts, order)[0].numpy())
    grads = _pair(ctx.call(ctx.find("backward"), dh.copy(), dc.copy(), out[2], what=ctx.entry["backward"]),
                  ctx.entry["backward"], 6)
    names = ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db")
    return {"next_h": (out[0], [next_h.detach().numpy()]), "next_c": (out[1], [next_c.detach().numpy()]),
            **{n: (g, [_g(t)]) for n, g, t in zip(names, grads, ts)}}


def _lstm_states(ts, order: str, c0=None):
    """Every step's hidden state (N, T, H) of an LSTM over x (N, T, D) from h0, with c(0) = 0 as the course's
    lstm_forward starts (or ``c0``)."""
    h, c, states = ts[1], torch.zeros_like(ts[1]) if c0 is None else c0, []
    for step in range(ts[0].shape[1]):
        h, c = _lstm_cell(ts[0][:, step], h, c, ts[2], ts[3], ts[4], order)
        states.append(h)
    return torch.stack(states, dim=1)


def _lstm(cfg, ctx: Context) -> Quantities:
    x, h0, wx, wh, b, _ = _lstm_tensors(cfg, ctx.rng, cfg["t"])
    arrays = (x, h0, wx, wh, b)
    ts = [_t(a) for a in arrays]
    order = ctx.entry.get("gates", "ifog")
    out_t = _lstm_states(ts, order)
    dout = ctx.rng.standard_normal(tuple(out_t.shape))
    (out_t * torch.from_numpy(dout)).sum().backward()

    def gate_order(out):
        with torch.no_grad():
            _other_gate_order(out, order, lambda other, c0=None: _lstm_states(ts, other, c0).numpy(), c0=ts[1])
    return _rnn_call(ctx, arrays, dout, out_t.detach().numpy(), [_g(t) for t in ts], ("dx", "dh0", "dWx", "dWh", "db"),
                     gate_order)


def _embedding_configs(rng, k):
    """Words that occur once first, then words that repeat (a word twice in a sentence: its gradients add up)."""
    fixed = [dict(n=2, t=3, v=8, d=3, repeats=False), dict(n=1, t=1, v=2, d=4, repeats=False),
             dict(n=2, t=4, v=3, d=2, repeats=True)]
    return fixed + [dict(n=int(rng.integers(1, 5)), t=int(rng.integers(2, 7)), v=int(rng.integers(2, 9)),
                         d=int(rng.integers(1, 6)), repeats=True) for _ in range(k)]


def _word_embedding(cfg, ctx: Context) -> Quantities:
    """out[n, t] = W[x[n, t]] for integer x (N, T) and W (V, D); backward -> dW, each word's gradients summed
    over every place it occurs. ``dW[x] += dout``, which counts a repeated word once, is told so."""
    rng, n, t = ctx.rng, cfg["n"], cfg["t"]

    def words() -> np.ndarray:
        if not cfg["repeats"]:
            return rng.permutation(cfg["v"])[: n * t].reshape(n, t)
        x = rng.integers(0, cfg["v"], (n, t))
        x.flat[-1] = x.flat[0]  # one word twice at least
        return x

    x, w = words(), rng.standard_normal((cfg["v"], cfg["d"]))
    dout = rng.standard_normal((n, t, cfg["d"]))
    wt = _t(w)
    out_t = torch.nn.functional.embedding(torch.from_numpy(x), wt)
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dW": _g(wt)}
    forward, backward = ctx.entry["forward"], ctx.entry["backward"]
    xs, ws = x.copy(), w.copy()
    out, cache = _forward(ctx.call(ctx.find("forward"), xs, ws, what=forward), forward, 2)
    all_unchanged(("x", "W"), (x, w), (xs, ws))
    dw = _single(ctx.call(ctx.find("backward"), dout.copy(), cache, what=backward))
    once = np.zeros_like(w)
    once[x] += dout  # NumPy buffers an indexed +=: each word's row is written once, whatever its count
    if _follows(dw, once, ref["dW"]):
        raise Wrong("dW counts a word that occurs more than once in x once: dW[x] += dout writes each index once "
                    "(NumPy buffers an indexed +=); np.add.at(dW, x, dout) adds every occurrence")
    more = _caches_apart(ctx, (x.copy(), w.copy()), (words(), w.copy()), dout, {"dW": ref["dW"]})
    return {"out": (out, [ref["out"]]), "dW": (dw, [ref["dW"]]), **more}


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("rnn_step", "RNN step", ("forward", "backward"), ("class",), _rnn_configs, _rnn_step, _cell_shaped),
    Kind("rnn", "RNN over time", ("forward", "backward"), (), _rnn_configs, _rnn),
    Kind("lstm_step", "LSTM step", ("forward", "backward"), ("class",), _rnn_configs, _lstm_step, _cell_shaped),
    Kind("gru_step", "GRU step", (), ("class",), _rnn_configs, _gru_step, _cell_shaped),
    Kind("lstm", "LSTM over time", ("forward", "backward"), (), _rnn_configs, _lstm),
    Kind("word_embedding", "word embedding", ("forward", "backward"), (), _embedding_configs, _word_embedding),
)
