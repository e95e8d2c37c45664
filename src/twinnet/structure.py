"""The structure table of a model of either engine: every layer's shapes, weights, parameters,
buffers, multiply-adds and activation memory, for a batch of a given size (torchinfo's columns)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from twinnet.learner import is_torch
from twinnet.report.blocks import Table, Text, render_markdown


@dataclass(frozen=True)
class LayerRow:
    name: str  # dotted path, as in state_dict keys
    kind: str  # class name
    kernel: str  # kernel/stride/padding where the layer has them, else ""
    stride: str
    padding: str
    input_shape: tuple[int, ...]  # with the batch dimension
    output_shape: tuple[int, ...]
    params: int
    weight: tuple[int, ...] | None = None  # the shape of its weight, where it has one
    bias: tuple[int, ...] | None = None
    buffers: int = 0  # elements of its buffers (batch norm's running statistics)
    macs: int = 0  # multiply-adds of this call (Linear, Conv2d; a recurrent layer: its whole sequence; a
    # recurrent weight's own row: its product at one time step)
    activation_bytes: int = 0  # the size of its output; a recurrent layer's adds what its forward keeps for
    # backpropagation through time (each step's states and gate activations, as the NumPy engine keeps them)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (tuple, list)):
        return "x".join(str(int(a)) for a in v) if len(set(v)) > 1 else str(int(v[0]))
    return str(v)


def _shape(a) -> tuple[int, ...] | None:
    return None if a is None else tuple(int(d) for d in a.shape)


def _macs(module, in_shape, out_shape, weight) -> int:
    """Multiply-adds of one call: a product's output elements times the inputs each sums."""
    kind = type(module).__name__
    if kind == "Linear" and weight is not None:
        return int(np.prod(out_shape)) * weight[1]
    if kind == "Conv2d" and weight is not None:
        return int(np.prod(out_shape)) * int(np.prod(weight[1:]))
    return 0


READOUT = "W_ph"  # twinnet's recurrent classifiers' output layer: applied once, to the last state


def _rows(name, module, in_shape, out_shape, n_params, n_buffers, itemsize) -> list[LayerRow]:
    """A layer's row, then, for a layer with more weights than ``weight`` and ``bias`` (a recurrent
    one), a row for each of them with the per-time-step product it takes part in."""
    params = {k: v for k, v in module._parameters.items() if v is not None}  # its own, in either engine
    weight, bias = _shape(params.get("weight")), _shape(params.get("bias"))
    in_shape, out_shape = tuple(int(d) for d in in_shape), tuple(int(d) for d in out_shape)
    rows = [LayerRow(
        name=name,
        kind=type(module).__name__,
        kernel=_fmt(getattr(module, "kernel_size", None)),
        stride=_fmt(getattr(module, "stride", None)) if hasattr(module, "kernel_size") else "",
        padding=_fmt(getattr(module, "padding", None)) if hasattr(module, "kernel_size") else "",
        input_shape=in_shape, output_shape=out_shape, params=int(n_params), weight=weight, bias=bias,
        buffers=int(n_buffers), macs=_macs(module, in_shape, out_shape, weight),
        activation_bytes=int(np.prod(out_shape)) * itemsize)]
    if set(params) - {"weight", "bias"}:
        batch = in_shape[0]
        steps = in_shape[1] if len(in_shape) == 3 else 1
        for pname, p in params.items():
            shape = _shape(p)
            step_in, step_out = ((batch, shape[1]), (batch, shape[0])) if len(shape) == 2 else ((), ())
            rows.append(LayerRow(name=f"{name}.{pname}", kind="weight" if len(shape) == 2 else "bias", kernel="",
                                 stride="", padding="", input_shape=step_in, output_shape=step_out, params=0,
                                 weight=shape if len(shape) == 2 else None, bias=shape if len(shape) == 1 else None,
                                 macs=batch * shape[0] * shape[1] if len(shape) == 2 else 0))
        # the layer's own row: every step's products over the sequence, the output layer's once; its
        # activations: what the NumPy engine's forward keeps for backpropagation through time, its output too
        rows[0] = replace(rows[0], macs=sum(r.macs * (1 if r.name.endswith(f".{READOUT}") else steps) for r in rows[1:]),
                          activation_bytes=rows[0].activation_bytes + _kept_for_bptt(module, batch, steps) * itemsize)
    return rows


def _kept_for_bptt(module, batch: int, steps: int) -> int:
    """Elements a recurrent layer's forward keeps for its backward, as the NumPy engine's twin of its class
    keeps them: each step's states and gate activations, and the initial states; 0 for a class it lacks."""
    from twinnet.numpy_nn import recurrent

    twin = getattr(recurrent, type(module).__name__, None)
    hidden = getattr(module, "hidden_size", None)
    if twin is None or not hasattr(twin, "kept_per_step") or hidden is None:
        return 0
    return (twin.kept_per_step * steps + len(twin.states)) * batch * hidden


def count_parameters(model) -> int:
    """Trainable parameters of a model of either engine, each shared parameter counted once."""
    return int(sum(int(np.prod(p.shape)) for p in {id(p): p for p in model.parameters()}.values()))


PROBES = (2, 3)  # the batches actually run: the table of a larger one is scaled from them


def structure(model, input_shape: tuple[int, ...], batch: int = 1) -> tuple[list[LayerRow], int]:
    """The layer table of ``model`` for a batch of ``batch`` samples of ``input_shape``.

    Returns one row per call of a leaf layer (shapes with the batch dimension; a recurrent layer's
    weights each get a row of their own with the shapes of their product at one time step, counted
    in no total) and the total number of parameters (each shared parameter counted once). Batches of
    ``PROBES`` zeros run through the model in eval mode and, where every row's batch dimension comes
    first and its mult-adds and activations grow in proportion to the batch, the rows are scaled to
    ``batch``, so that a large batch costs no memory; otherwise the batch itself runs.
    """
    if batch <= max(PROBES):
        return _traced(model, input_shape, batch)
    (small, total), (large, _) = (_traced(model, input_shape, probe) for probe in PROBES)
    if len(small) != len(large) or not all(_linear(a, b) for a, b in zip(small, large)):
        return _traced(model, input_shape, batch)  # a layer that moves or reduces the batch dimension
    return [_scaled(r, PROBES[0], batch) for r in small], total


def _linear(a: LayerRow, b: LayerRow) -> bool:
    """Whether rows ``a`` and ``b``, of batches ``PROBES``, differ only as the batch: its dimension first in
    every shape (a recurrent bias row has none), mult-adds and activations in proportion."""
    (p, q), shapes = PROBES, ((a.input_shape, b.input_shape), (a.output_shape, b.output_shape))
    return (replace(a, input_shape=(), output_shape=(), macs=0, activation_bytes=0)
            == replace(b, input_shape=(), output_shape=(), macs=0, activation_bytes=0)
            and all((s, t) == ((), ()) and a.kind == "bias" or (s[:1], t[:1], s[1:]) == ((p,), (q,), t[1:])
                    for s, t in shapes)
            and a.macs * q == b.macs * p and a.activation_bytes * q == b.activation_bytes * p)


def _scaled(row: LayerRow, probe: int, batch: int) -> LayerRow:
    """``row`` of a batch of ``probe`` as a batch of ``batch`` shows it: each shape's batch dimension, its
    mult-adds and its activations (both in proportion to the batch)."""

    def shape(s: tuple[int, ...]) -> tuple[int, ...]:
        return (batch, *s[1:]) if s else s

    return replace(row, input_shape=shape(row.input_shape), output_shape=shape(row.output_shape),
                   macs=row.macs // probe * batch, activation_bytes=row.activation_bytes // probe * batch)


def _traced(model, input_shape: tuple[int, ...], batch: int) -> tuple[list[LayerRow], int]:
    """Run a batch of ``batch`` samples of ``input_shape`` (zeros) through ``model`` in eval mode: a row
    for each call of a leaf layer, and the total number of parameters."""
    rows: list[LayerRow] = []
    if is_torch(model):
        import torch

        was_training = model.training
        hooks = []
        for name, m in model.named_modules():
            if next(m.children(), None) is None:  # leaves only
                n_own = sum(p.numel() for p in m.parameters(recurse=False))
                n_buf = sum(b.numel() for b in m.buffers(recurse=False))
                hooks.append(
                    m.register_forward_hook(
                        lambda mod, inp, out, name=name, n=n_own, b=n_buf: rows.extend(
                            _rows(name or type(mod).__name__, mod, inp[0].shape, out.shape, n, b,
                                  out.element_size())
                        )
                    )
                )
        p = next(model.parameters())
        try:
            model.eval()
            with torch.no_grad():
                model(torch.zeros((batch, *input_shape), dtype=p.dtype, device=p.device))
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
    else:
        was_training = model.training
        wrapped = []
        for name, m in model.named_modules():
            if not m._modules and all(m is not w for w in wrapped):  # a shared leaf is wrapped once
                n_own = sum(int(np.prod(p.shape)) for p in m._parameters.values() if p is not None)
                n_buf = sum(int(np.prod(np.shape(b))) for b in m._buffers.values() if b is not None)
                original = m.forward

                def forward(x, m=m, name=name, n=n_own, b=n_buf, original=original):
                    out = original(x)
                    rows.extend(_rows(name or type(m).__name__, m, x.shape, out.shape, n, b, out.dtype.itemsize))
                    return out

                object.__setattr__(m, "forward", forward)
                wrapped.append(m)
        try:
            model.eval()
            model.forward(np.zeros((batch, *input_shape), dtype=model.dtype))
        finally:
            for m in wrapped:
                object.__delattr__(m, "forward")
            model.train(was_training)
    return rows, count_parameters(model)


def rows_as_dicts(rows: list[LayerRow]) -> list[dict]:
    return [asdict(r) for r in rows]


_HEADERS = ("layer", "kind", "kernel", "stride", "padding", "input", "output", "weight", "bias", "params",
            "buffers", "mult-adds", "activation")
_NUMERIC = frozenset(range(9, 13))


def shape_text(shape) -> str:
    """A shape as Python writes it: (16, 10), and (16,) for one dimension."""
    dims = [str(int(d)) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 2**10 else f"{n} B"


def _cells(r: dict) -> list[str]:
    """A row's cells; a structure.json written before a column existed shows it blank."""
    shape = lambda s: shape_text(s) if s else ""  # noqa: E731
    sub = r["kind"] in ("weight", "bias") and not r["params"]  # a recurrent layer's weight: shapes per time step
    return [
        r["name"], r["kind"], r["kernel"], r["stride"], r["padding"],
        shape(r["input_shape"]), shape(r["output_shape"]), shape(r.get("weight")), shape(r.get("bias")),
        "" if sub else f"{r['params']:,}", f"{r['buffers']:,}" if r.get("buffers") else "",
        f"{r['macs']:,}" if r.get("macs") else "", _size(r["activation_bytes"]) if r.get("activation_bytes") else "",
    ]


def format_text(rows: list[dict], total: int) -> str:
    """An aligned plain-text table with a totals line, for the terminal."""
    body = [list(_HEADERS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(_HEADERS))]
    lines = ["  ".join(c.rjust(w) if i in _NUMERIC else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in body]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    lines.append(_totals(rows, total))
    return "\n".join(line.rstrip() for line in lines)


def _totals(rows: list[dict], total: int) -> str:
    macs = sum(r.get("macs", 0) for r in rows if r.get("params") or r["kind"] not in ("weight", "bias"))
    batch = rows[0]["input_shape"][0] if rows and rows[0]["input_shape"] else 1
    stepped = any(r["kind"] == "weight" and not r.get("params") for r in rows)  # a recurrent layer's weight rows
    return (f"total parameters: {total:,}" + (f"; mult-adds for a batch of {batch}: {macs:,}" if macs else "")
            + ("; a recurrent weight's row gives its product at one time step, the layer's row the whole "
               "sequence's (its activations: the states and gate activations of every step, kept for "
               "backpropagation through time)"
               if stepped else "")
            + (f"; activations: {_size(sum(r.get('activation_bytes', 0) for r in rows))}"
               if any(r.get("activation_bytes") for r in rows) else ""))


def table_blocks(rows: list[dict], total: int) -> list:
    """The table as report blocks: the table, then the totals line."""
    rest = _totals(rows, total).partition(";")[2]
    return [Table(list(_HEADERS), [_cells(r) for r in rows], _NUMERIC),
            Text(f"Total parameters: **{total:,}**" + (f";{rest}" if rest else ""))]


def format_markdown(rows: list[dict], total: int) -> str:
    """The same table in Markdown, for reports (through the one table renderer, ``markdown_table``)."""
    return render_markdown(table_blocks(rows, total))


def save_structures(run, label: str, models: dict, input_shape: tuple[int, ...], batch: int = 1) -> None:
    """Add the layer tables of each engine's model (``{"numpy": ..., "torch": ...}``), for a batch of
    ``batch``, under ``label`` to the run directory's structure.json."""
    from twinnet.runs import STRUCTURE

    table = run.read_json(STRUCTURE) if run.file(STRUCTURE).exists() else {}
    table[label] = {}
    for engine, model in models.items():
        rows, total = structure(model, input_shape, batch)
        table[label][engine] = {"rows": rows_as_dicts(rows), "total": total}
    run.write_json(STRUCTURE, table)
