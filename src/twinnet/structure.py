"""The structure table of a model of either engine: every layer's shapes and parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (tuple, list)):
        return "x".join(str(int(a)) for a in v) if len(set(v)) > 1 else str(int(v[0]))
    return str(v)


def _row(name, module, in_shape, out_shape, n_params) -> LayerRow:
    return LayerRow(
        name=name,
        kind=type(module).__name__,
        kernel=_fmt(getattr(module, "kernel_size", None)),
        stride=_fmt(getattr(module, "stride", None)) if hasattr(module, "kernel_size") else "",
        padding=_fmt(getattr(module, "padding", None)) if hasattr(module, "kernel_size") else "",
        input_shape=tuple(int(d) for d in in_shape),
        output_shape=tuple(int(d) for d in out_shape),
        params=int(n_params),
    )


def count_parameters(model) -> int:
    """Trainable parameters of a model of either engine, each shared parameter counted once."""
    return int(sum(int(np.prod(p.shape)) for p in {id(p): p for p in model.parameters()}.values()))


def structure(model, input_shape: tuple[int, ...]) -> tuple[list[LayerRow], int]:
    """Run one sample of ``input_shape`` (no batch dimension) through ``model`` in eval mode.

    Returns one row per call of a leaf layer (shapes without the batch dimension)
    and the total number of parameters (each shared parameter counted once).
    """
    rows: list[LayerRow] = []
    if is_torch(model):
        import torch

        was_training = model.training
        hooks = []
        for name, m in model.named_modules():
            if next(m.children(), None) is None:  # leaves only
                n_own = sum(p.numel() for p in m.parameters(recurse=False))
                hooks.append(
                    m.register_forward_hook(
                        lambda mod, inp, out, name=name, n=n_own: rows.append(
                            _row(name or type(mod).__name__, mod, inp[0].shape[1:], out.shape[1:], n)
                        )
                    )
                )
        p = next(model.parameters())
        try:
            model.eval()
            with torch.no_grad():
                model(torch.zeros((1, *input_shape), dtype=p.dtype, device=p.device))
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
                original = m.forward

                def forward(x, m=m, name=name, n=n_own, original=original):
                    out = original(x)
                    rows.append(_row(name or type(m).__name__, m, x.shape[1:], out.shape[1:], n))
                    return out

                object.__setattr__(m, "forward", forward)
                wrapped.append(m)
        try:
            model.eval()
            model.forward(np.zeros((1, *input_shape), dtype=model.dtype))
        finally:
            for m in wrapped:
                object.__delattr__(m, "forward")
            model.train(was_training)
    return rows, count_parameters(model)


def rows_as_dicts(rows: list[LayerRow]) -> list[dict]:
    return [asdict(r) for r in rows]


_HEADERS = ("layer", "kind", "kernel", "stride", "padding", "input", "output", "params")


def _cells(r: dict) -> list[str]:
    shape = lambda s: "(" + ", ".join(str(d) for d in s) + ")"  # noqa: E731
    return [
        r["name"], r["kind"], r["kernel"], r["stride"], r["padding"],
        shape(r["input_shape"]), shape(r["output_shape"]), f"{r['params']:,}",
    ]


def format_text(rows: list[dict], total: int) -> str:
    """An aligned plain-text table with a totals line, for the terminal."""
    body = [list(_HEADERS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in body) for i in range(len(_HEADERS))]
    lines = ["  ".join(c.rjust(w) if i == 7 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in body]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    lines.append(f"total parameters: {total:,}")
    return "\n".join(line.rstrip() for line in lines)


def table_blocks(rows: list[dict], total: int) -> list:
    """The table as report blocks: the table, then the totals line."""
    return [Table(list(_HEADERS), [_cells(r) for r in rows], {len(_HEADERS) - 1}),
            Text(f"Total parameters: **{total:,}**")]


def format_markdown(rows: list[dict], total: int) -> str:
    """The same table in Markdown, for reports (through the one table renderer, ``markdown_table``)."""
    return render_markdown(table_blocks(rows, total))


def save_structures(run, label: str, models: dict, input_shape: tuple[int, ...]) -> None:
    """Add the layer tables of each engine's model (``{"numpy": ..., "torch": ...}``) under ``label``
    to the run directory's structure.json."""
    from twinnet.runs import STRUCTURE

    table = run.read_json(STRUCTURE) if run.file(STRUCTURE).exists() else {}
    table[label] = {}
    for engine, model in models.items():
        rows, total = structure(model, input_shape)
        table[label][engine] = {"rows": rows_as_dicts(rows), "total": total}
    run.write_json(STRUCTURE, table)
