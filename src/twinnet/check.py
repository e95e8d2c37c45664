"""Checks of a NumPy layer against its PyTorch twin and against central finite differences, both
in float64: what twinnet's own layer tests use, and what ``twinnet check`` points at students' code.

Each check returns ``{name: relative error}`` with the names
``"out"`` and ``"dx"`` (``"out0"``, ``"dx1"``, ... when the module takes or returns
several arrays) and ``"grad[<param>]"`` for every parameter, keyed as
``named_parameters`` keys them. ``assert_close_rel`` then fails listing every
entry over the tolerance.

Conventions the modules under test follow (those of ``twinnet.numpy_nn``):
``forward(*inputs) -> out`` (an array or a tuple of arrays) and
``backward(dout) -> dx``, where ``dout`` is shaped like ``out`` and ``dx`` is
an array (the gradient of the first input) or a tuple aligned with the inputs.
Non-float inputs (class targets, indices) are passed through and not differentiated.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch

from twinnet.twins import relative_error

TINY = np.finfo(np.float64).tiny


def rel_error(a, b, floor: float = TINY) -> float:
    """max|a - b| / max(max|b|, floor): one number per array, scaled by the reference ``b``; a shape
    mismatch fails (broadcasting would hide a wrong-shaped gradient).

    ``floor``: below it the error is absolute (scaled by ``floor``), so a reference of exact zeros (a
    bias before batch norm gets no gradient) compares as zero against zeros and as small against
    round-off: with ``floor = atol / rtol``, ``rel_error <= rtol`` means |a - b| <= max(rtol max|b|, atol)."""
    try:
        return relative_error(a, b, floor)
    except ValueError as e:
        raise AssertionError(str(e)) from None


def assert_close_rel(errors: Mapping[str, float], tol: float) -> None:
    """Fail, naming every entry whose error exceeds ``tol`` (NaN counts as exceeding)."""
    if not errors:
        raise AssertionError("no errors to check: the comparison compared nothing")
    bad = {k: v for k, v in errors.items() if not v <= tol}
    if bad:
        listed = ", ".join(f"{k}={v:.3e}" for k, v in bad.items())
        raise AssertionError(f"relative error over {tol:g} in {len(bad)} of {len(errors)}: {listed}")


# --- helpers -----------------------------------------------------------------


def _is_float(a) -> bool:
    return np.issubdtype(np.asarray(a).dtype, np.floating)


def _as_tuple(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _name(prefix: str, i: int, single: bool) -> str:
    return prefix if single else f"{prefix}{i}"


def _copy_inputs(xs: tuple) -> tuple:
    """Private float64 copies, so a module that writes into its input cannot hide it."""
    return tuple(np.array(a, dtype=np.float64) if _is_float(a) else np.array(a) for a in xs)


def _draw_douts(outs: tuple, rng: np.random.Generator) -> tuple:
    return tuple(np.asarray(rng.standard_normal(np.shape(o)), dtype=np.float64) for o in outs)


def _backward(np_module, douts: tuple, single_out: bool) -> tuple:
    """Call backward and return the input gradients as a tuple (first input first)."""
    return _as_tuple(np_module.backward(douts[0] if single_out else douts))


def _input_grads(xs: tuple, dxs: tuple, single_in: bool) -> dict[str, np.ndarray]:
    """{"dx": ...} for each float input; a missing gradient for a float input is an error."""
    grads = {}
    for i, a in enumerate(xs):
        if not _is_float(a):
            continue
        if i >= len(dxs) or dxs[i] is None:
            raise AssertionError(f"backward returned no gradient for float input {i}")
        grads[_name("dx", i, single_in)] = dxs[i]
    return grads


def _grad_or_zeros(g, shape) -> np.ndarray:
    """A gradient never written (None) means zero, as torch leaves .grad None for unused weights."""
    if g is None:
        return np.zeros(shape)
    return g.detach().cpu().numpy() if hasattr(g, "detach") else np.asarray(g)


# --- checks --------------------------------------------------------------------


def torch_twin_check(np_module, torch_module, x, *, rng: np.random.Generator, floor: float = TINY) -> dict[str, float]:
    """Relative errors of the NumPy module against its torch twin, both in float64.

    Copies the twin's weights (cast to float64) into ``np_module``, runs both forward on
    the same input, backpropagates ``sum(out * dout)`` for a random ``dout`` and
    compares output, input gradients and every parameter gradient (``rel_error`` with ``floor``). Also reports
    "input_changed" / "dout_changed": how much forward/backward wrote into its arguments.
    ``torch_module`` itself is left untouched (a float64 copy is used).
    """
    single_in = not isinstance(x, tuple)
    xs = _copy_inputs(_as_tuple(x))

    tm = copy.deepcopy(torch_module).double()  # buffers like num_batches_tracked keep their int dtype
    np_module.load_state_dict({k: v.detach().cpu().numpy().copy() for k, v in tm.state_dict().items()})
    np_module.train(tm.training)
    np_module.zero_grad()
    tm.zero_grad(set_to_none=True)

    np_names = [n for n, _ in np_module.named_parameters()]
    t_names = [n for n, _ in tm.named_parameters()]
    if sorted(np_names) != sorted(t_names):
        raise AssertionError(f"parameter names differ: numpy {np_names}, torch {t_names}")

    # torch
    xs_t = tuple(torch.tensor(a, requires_grad=_is_float(a)) for a in xs)
    outs_t = _as_tuple(tm(*xs_t))
    douts = _draw_douts(tuple(o.detach() for o in outs_t), rng)
    sum(((o * torch.from_numpy(d)).sum() for o, d in zip(outs_t, douts, strict=True))).backward()

    # numpy, on private copies so writes into the arguments can be detected
    xs_np, douts_np = _copy_inputs(xs), tuple(d.copy() for d in douts)
    outs_np = _as_tuple(np_module.forward(*xs_np))
    if len(outs_np) != len(outs_t):
        raise AssertionError(f"numpy forward returned {len(outs_np)} arrays, torch {len(outs_t)}")
    single_out = len(outs_t) == 1
    outs_np = tuple(np.array(o, copy=True) for o in outs_np)  # backward may not touch them, but be safe
    dxs = _backward(np_module, douts_np, single_out)

    errors: dict[str, float] = {}
    for i, (o_np, o_t) in enumerate(zip(outs_np, outs_t, strict=True)):
        errors[_name("out", i, single_out)] = rel_error(o_np, o_t.detach().numpy(), floor)
    for name, g in _input_grads(xs, dxs, single_in).items():
        i = 0 if single_in else int(name[2:])
        errors[name] = rel_error(g, _grad_or_zeros(xs_t[i].grad, xs[i].shape), floor)
    t_params = dict(tm.named_parameters())
    for name, p in np_module.named_parameters():
        errors[f"grad[{name}]"] = rel_error(_grad_or_zeros(p.grad, p.shape), _grad_or_zeros(t_params[name].grad, p.shape),
                                            floor)
    errors["input_changed"] = max(rel_error(a, b) for a, b in zip(xs_np, xs, strict=True))
    errors["dout_changed"] = max(rel_error(a, b) for a, b in zip(douts_np, douts, strict=True))
    return errors


def finite_difference_check(
    np_module, x, *, rng: np.random.Generator, eps: float = 1e-6, n_probe: int = 24
) -> dict[str, float]:
    """Relative errors of backward's gradients against central differences of ``sum(forward(x) * dout)``.

    Casts ``np_module`` to float64 first. Every float input and every parameter is
    probed at up to ``n_probe`` random entries (all of them when smaller). The analytic
    pass runs first, at the unperturbed point, so caches left by the probing forwards
    never reach backward. The error of one array is max|fd - analytic| over the probed
    entries divided by the largest |analytic| over all entries (or |fd|, if larger).

    Central differences assume smoothness within ``eps`` of every probe: keep inputs far
    (>> eps) from kinks such as ReLU's 0 or ties in a max.
    """
    single_in = not isinstance(x, tuple)
    xs = _copy_inputs(_as_tuple(x))
    np_module.double()  # also drops any stale gradient
    np_module.zero_grad()

    outs = _as_tuple(np_module(*xs))
    single_out = len(outs) == 1
    douts = _draw_douts(outs, rng)
    dxs = _backward(np_module, tuple(d.copy() for d in douts), single_out)

    # name -> (array perturbed in place, analytic gradient)
    probes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, g in _input_grads(xs, dxs, single_in).items():
        probes[name] = (xs[0 if single_in else int(name[2:])], np.asarray(g))
    for name, p in np_module.named_parameters():
        probes[f"grad[{name}]"] = (p.data, _grad_or_zeros(p.grad, p.shape).copy())

    def objective() -> float:
        outs = _as_tuple(np_module(*xs))
        return sum(float(np.sum(np.asarray(o, dtype=np.float64) * d)) for o, d in zip(outs, douts, strict=True))

    errors: dict[str, float] = {}
    for name, (arr, analytic) in probes.items():
        if analytic.shape != arr.shape:
            raise AssertionError(f"{name}: gradient shape {analytic.shape}, expected {arr.shape}")
        picks = rng.choice(arr.size, size=min(n_probe, arr.size), replace=False)
        fd, an = [], []
        for flat in picks:
            idx = np.unravel_index(flat, arr.shape)
            orig = arr[idx]
            arr[idx] = orig + eps
            plus, h_plus = objective(), arr[idx]
            arr[idx] = orig - eps
            minus, h_minus = objective(), arr[idx]
            arr[idx] = orig  # exact restore, no drift from repeated +-eps
            fd.append((plus - minus) / (h_plus - h_minus))  # the step actually taken, after rounding
            an.append(analytic[idx])
        fd, an = np.array(fd), np.array(an)
        scale = max(float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(fd), initial=0.0)), TINY)
        errors[name] = float(np.max(np.abs(fd - an), initial=0.0)) / scale
    return errors
