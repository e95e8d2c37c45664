"""One training step of a NumPy-engine model traced: the shapes a real batch takes through every layer,
forward and backward, and the matrix products inside (the course's requirement 2).

``trace(model, x, y)`` runs one forward pass, the cross-entropy loss and one backward pass of the
model on the batch (no optimiser step: the weights are left as they were), and returns a row per
layer call in the order they ran: forward from the input to the loss, then backward from the loss to
the input. Each row gives what came in and went out (backward: the gradient of the layer's output,
then of its input) and, where the layer computes by a matrix product, that product's shapes as the
engine forms them: a convolution's im2col matrix (one row per output pixel of every image, one column
per kernel entry of every input channel) times the kernel matrix, and in backward the products that
give the kernel's gradient and the columns' (folded back onto the input by col2im); a linear layer's
X W^T; a recurrent layer's products at every time step, whose states the NumPy engine holds as (H, N), a
column per sample, as the course writes h(t) = tanh(W_hx x(t) + W_hh h(t-1) + b_h).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from twinnet.structure import READOUT as HEAD  # a recurrent classifier's output layer: once, on the last state
from twinnet.structure import shape_text as _s


@dataclass(frozen=True)
class TraceRow:
    phase: str  # "forward" or "backward"
    layer: str  # dotted path, as in state_dict keys
    kind: str  # class name
    inputs: tuple | None  # forward: the input's shape; backward: the output gradient's (None: steps elided)
    output: tuple | None  # forward: the output's shape; backward: the input gradient's (None: not computed)
    products: str = ""  # the matrix products inside, shapes multiplied (x as the multiplication sign)
    grads: str = ""  # backward: each parameter gradient's shape


STEPS_SHOWN = 3  # a recurrent layer's time steps listed one by one: this many first and last, the rest elided


def _time_steps(module, name: str, x, phase: str) -> list[TraceRow]:
    """A recurrent layer's time steps as rows of their own (the layer's row gives the products): forward,
    x(t) and the carried state in, the state out; backward, from the last step to the first, the state's
    gradient in, the input's and the previous state's out. Long sequences show their first and last
    steps and one row for those between, whose shapes are the same."""
    weights = {k: v.data.shape for k, v in module._parameters.items() if v is not None and v.data.ndim == 2}
    if not weights or getattr(x, "ndim", 0) != 3 or not hasattr(module, "hidden_size"):
        return []
    n, length, d = x.shape
    h, gh = module.hidden_size, getattr(module, "gates", 1) * module.hidden_size
    states = getattr(module, "states", ("h",))

    def carried(t, grad: str = "") -> str:
        return ", ".join(f"{grad}{s}({t}) {_s((h, n))}" for s in states)

    def label(steps: str) -> str:
        return f"{name} t={steps}".strip()

    shown = list(range(1, length + 1))
    if length > 2 * STEPS_SHOWN + 1:
        shown = shown[:STEPS_SHOWN] + [0] + shown[-STEPS_SHOWN:]  # 0: the steps between
    if phase == "backward":
        shown.reverse()
    rows = []
    for t in shown:
        if t == 0:
            first, last = (STEPS_SHOWN + 1, length - STEPS_SHOWN)
            rows.append(TraceRow(phase, label(f"{first}..{last}" if phase == "forward" else f"{last}..{first}"),
                                 "time steps", None, None,
                                 f"{last - first + 1} more steps, each with the shapes of the rows around them"))
        elif phase == "forward":
            rows.append(TraceRow(phase, label(t), "time step", (n, d), (h, n),
                                 f"x({t}) {_s((n, d))} and {carried(t - 1)} -> pre-activations {_s((gh, n))} "
                                 f"-> {carried(t)}"))
        else:
            rows.append(TraceRow(phase, label(t), "time step", (h, n), (n, d),
                                 f"{carried(t, 'd')} -> dA({t}) {_s((gh, n))} -> dx({t}) {_s((n, d))}, "
                                 f"{carried(t - 1, 'd')}"))
    return rows


def _forward_products(module, x, out) -> str:
    kind = type(module).__name__
    if kind == "Conv2d" and module._caches:
        cols, wmat = module._caches[-1][0], module._caches[-1][1]
        n, o, ho, wo = out.shape
        kh, kw = module.kernel_size
        return (f"im2col X {_s(cols.shape)} [N*Ho*Wo = {n}*{ho}*{wo}, kh*kw*C = {kh}*{kw}*{module.in_channels}] "
                f"@ W {_s(wmat.shape)} -> {_s((cols.shape[0], wmat.shape[1]))}, reshaped to {_s(out.shape)}")
    if kind == "Linear":
        w = module.weight.data
        rows = int(np.prod(x.shape[:-1]))
        return f"X {_s((rows, x.shape[-1]))} @ W^T {_s(w.T.shape)} -> {_s((rows, w.shape[0]))}" + (
            " + b" if module.bias is not None else "")
    steps = _recurrent_products(module, x)
    return steps




def _recurrent_products(module, x) -> str:
    """A recurrent layer's products at each of its T steps: every 2-d weight (out, in) times its operand as
    (in, N), a column per sample (x(t)^T, h(t-1)); then its output layer's, once, on h(T)^T (N, H)."""
    weights = {k: v for k, v in module._parameters.items() if v is not None and v.data.ndim == 2}
    if not weights or x.ndim != 3:
        return ""
    n, t = x.shape[0], x.shape[1]

    def product(name, w) -> str:  # as the output layer computes it: (N, in) @ W^T
        return f"{_s((n, w.data.shape[1]))} @ {name}^T {_s(w.data.shape[::-1])} -> {_s((n, w.data.shape[0]))}"

    each = "; ".join(f"{k} {_s(w.data.shape)} @ {_s((w.data.shape[1], n))} -> {_s((w.data.shape[0], n))}"
                     for k, w in weights.items() if k != HEAD)
    head = f"; then once, on the last state: {product(HEAD, weights[HEAD])}" if HEAD in weights else ""
    return (f"at each of the {t} time steps (a palindrome of length T = {t + 1} gives T - 1 = {t} input digits; "
            f"its last digit is the label): {each}{head}")


def _backward_products(module, dout, dx) -> str:
    kind = type(module).__name__
    if kind == "Conv2d":
        n, o, ho, wo = dout.shape
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
        rows = n * ho * wo
        text = f"dW = X^T {_s((k, rows))} @ dOut {_s((rows, o))} -> {_s((k, o))}, reshaped to {_s(module.weight.shape)}"
        if dx is not None:
            text += f"; dX columns = dOut {_s((rows, o))} @ W^T {_s((o, k))} -> {_s((rows, k))}, col2im -> {_s(dx.shape)}"
        return text
    if kind == "Linear":
        w = module.weight.data
        rows = int(np.prod(dout.shape[:-1]))
        return (f"dW = dOut^T {_s((w.shape[0], rows))} @ X {_s((rows, w.shape[1]))} -> {_s(w.shape)}; "
                f"dX = dOut {_s((rows, w.shape[0]))} @ W {_s(w.shape)} -> {_s((rows, w.shape[1]))}")
    weights = {k: v for k, v in module._parameters.items() if v is not None and v.data.ndim == 2}
    if weights and dout is not None and dx is not None and getattr(dx, "ndim", 0) == 3:
        n, t = dx.shape[0], dx.shape[1]
        each = "; ".join(f"d{name} += dA(t) {_s((w.data.shape[0], n))} @ {_s((n, w.data.shape[1]))}"
                         for name, w in weights.items() if name != HEAD)
        head = (f"d{HEAD} = dOut^T {_s((weights[HEAD].data.shape[0], n))} @ h_last {_s((n, weights[HEAD].data.shape[1]))}"
                "; then " if HEAD in weights else "")
        return f"{head}back through each of the {t} time steps (BPTT): {each}"
    return ""


def trace(model, x: np.ndarray, y: np.ndarray) -> list[TraceRow]:
    """Forward, cross-entropy and backward of ``model`` (a ``twinnet.numpy_nn`` model) on ``(x, y)``,
    each leaf layer's shapes recorded; the parameters' gradients are cleared again afterwards."""
    from twinnet import numpy_nn

    rows: list[TraceRow] = []
    patched = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue  # containers: their layers report themselves
        forward, backward = module.forward, module.backward

        def fwd(*args, _m=module, _name=name, _f=forward, **kwargs):
            out = _f(*args, **kwargs)
            first = args[0]
            rows.append(TraceRow("forward", _name, type(_m).__name__, tuple(first.shape),
                                 tuple(np.shape(out)), _forward_products(_m, first, np.asarray(out))))
            rows.extend(_time_steps(_m, _name, first, "forward"))
            return out

        def bwd(dout, _m=module, _name=name, _b=backward):
            dx = _b(dout)
            grads = ", ".join(f"d{k} {_s(p.grad.shape)}" for k, p in _m._parameters.items()
                              if p is not None and p.grad is not None)
            rows.append(TraceRow("backward", _name, type(_m).__name__, tuple(np.shape(dout)),
                                 None if dx is None else tuple(np.shape(dx)),
                                 _backward_products(_m, dout, dx), grads))
            if dx is not None:  # (a recurrent layer that spares its input's gradient has no dx(t) to list)
                rows.extend(_time_steps(_m, _name, dx, "backward"))
            return dx

        module.forward, module.backward = fwd, bwd
        patched.append(module)
    try:
        model.train(True)
        model.zero_grad()
        loss_fn = numpy_nn.CrossEntropyLoss()
        logits = model(x)
        loss_fn(logits, y)
        dlogits = loss_fn.backward()
        rows.append(TraceRow("forward", "loss", "CrossEntropyLoss", tuple(logits.shape), (), "mean over the batch"))
        rows.append(TraceRow("backward", "loss", "CrossEntropyLoss", (), tuple(dlogits.shape),
                             "dLogits = (softmax - one-hot) / N"))
        model.backward(dlogits)
    finally:
        for module in patched:
            del module.forward, module.backward  # back to the class's methods
        model.zero_grad()
    forward = [r for r in rows if r.phase == "forward"]
    return forward + [r for r in rows if r.phase == "backward"]


def rows_as_dicts(rows: list[TraceRow]) -> list[dict]:
    return [asdict(r) for r in rows]


TRACE = "trace.json"
MAX_BATCH = 16  # the batch traced: the run's, up to this (the shapes scale with N; the cost too)


def save_trace(run, label: str, build, x: np.ndarray, y: np.ndarray) -> None:
    """Trace one step of a fresh NumPy-engine ``build(nn)`` on the real batch ``(x, y)`` and add it
    under ``label`` to the run directory's trace.json (the model that trains is never touched). A
    resumed run keeps the trace its start wrote: nothing is written before its checkpoint is checked."""
    from twinnet.architectures import nn_namespace

    table = run.read_json(TRACE) if run.file(TRACE).exists() else {}
    if label in table:
        return
    model = build(nn_namespace("numpy")).to(x.dtype)
    table[label] = {"batch": int(len(x)), "rows": rows_as_dicts(trace(model, x, y))}
    run.write_json(TRACE, table)


def section(run) -> list:
    """The report's section on the traced step, where the run has one."""
    from twinnet.report.blocks import Section, Text

    if not run.file(TRACE).exists():
        return []
    return [Section("Training procedure: one step traced", [
        Section(f"{label} (NumPy engine, a real batch of N = {t['batch']})", [
            Text("One forward pass, the loss and one backward pass of the NumPy engine on a batch of the run's "
                 "training data, layer by layer in the order they ran. Shapes are (N, C, H, W) for images, "
                 "(N, T, D) for sequences; a convolution multiplies its im2col matrix (a row per output pixel "
                 "of every image, a column per kernel entry of every input channel) by the kernel matrix, and "
                 "backward folds the columns' gradient back onto the input (col2im); a recurrent layer's row "
                 "gives its products, and a row per time step follows it (a long sequence's first and last "
                 "steps): what each step takes in and carries on, and backward, from the last step to the first. "
                 "Inside a recurrent layer the states are (H, N), a column per sample, as the course writes "
                 "h(t) = tanh(W_hx x(t) + W_hh h(t-1) + b_h)."),
            table(t["rows"])]) for label, t in run.read_json(TRACE).items()])]


def table(rows: list[dict]):
    """The trace as a report table."""
    from twinnet.report.blocks import Table

    def shape(v):
        return "" if v is None else "x".join(str(d) for d in v) or "scalar"

    return Table(["phase", "layer", "kind", "in (backward: dOut)", "out (backward: dIn)", "products", "gradients"],
                 [[r["phase"], r["layer"] or "(model)", r["kind"], shape(r["inputs"]), shape(r["output"]), r["products"],
                   r["grads"]] for r in rows])
