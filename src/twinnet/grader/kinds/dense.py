"""The linear (affine) layer, the elementwise activations (ReLU, ELU, leaky ReLU, sigmoid, tanh) and dropout."""

from __future__ import annotations

import copy

import numpy as np
import torch

from twinnet import numpy_nn as nn
from twinnet.grader.compare import RTOL, Wrong, all_unchanged, unchanged
from twinnet.grader.kinds.base import (
    Context, Kind, Quantities, _away_from_zero, _follows, _forward, _g, _pair, _single, _t, _twin, _valid)
from twinnet.grader.kinds.modules import (
    ARGUMENTS, _backward, _bias_as, _bias_layout, _build, _caches_apart, _forward_mode, _grads, _made_with,
    _params_kept, _positional, _row_from_flat, _second_pass, _set_params, _weight_in_out)
from twinnet.grader.loader import StudentError


def _linear_configs(rng, k):
    fixed = [dict(n=1, d=(3,), m=3), dict(n=4, d=(5,), m=5), dict(n=3, d=(4,), m=2), dict(n=2, d=(2, 3), m=4)]
    return fixed + [dict(n=int(rng.integers(1, 6)), d=(int(rng.integers(1, 8)),), m=int(rng.integers(1, 8)))
                    for _ in range(k)]


def _linear_shaped(cfg: dict, entry: dict) -> dict:
    """A configuration of images, (N, C, H, W), where the layer flattens its input itself (``flatten = true``: Deep
    Learning from Scratch's Affine after a pooling layer): the grader's (N, 2, 3) input grows to (N, 2, 3, 2)."""
    return {**cfg, "d": (*cfg["d"], 2)} if entry.get("flatten") and len(cfg["d"]) == 2 else cfg


def _linear(cfg, ctx: Context) -> Quantities:
    rng = ctx.rng
    d = int(np.prod(cfg["d"]))
    x = rng.standard_normal((cfg["n"], *cfg["d"]))
    weight = rng.standard_normal((cfg["m"], d)) / np.sqrt(d)  # torch's layout (out, in)
    bias = rng.standard_normal(cfg["m"])
    dout = rng.standard_normal((cfg["n"], cfg["m"]))
    xt, wt, bt = _t(x.reshape(cfg["n"], d)), _t(weight), _t(bias)
    out_t = xt @ wt.T + bt
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dx": _g(xt).reshape(x.shape), "dw": _g(wt), "db": _g(bt)}
    twin = _twin(nn.Linear(d, cfg["m"]), x.reshape(cfg["n"], d), dout, weight=weight, bias=bias)
    twin = {"out": twin["out"], "dx": twin["dx"].reshape(x.shape), "dw": twin["dweight"], "db": twin["dbias"]}
    refs = [ref, twin]
    in_out = ctx.entry.get("weight", "in_out" if ctx.convention["style"] == "functional" else "out_in") == "in_out"
    stored = weight.T.copy() if in_out else weight.copy()
    more: Quantities = {}
    columns = ctx.entry.get("batch", "rows") == "columns"  # samples as columns: x (D, N), out (M, N)
    # the weights' gradients averaged over the batch, where the course's cost puts its 1/N (deeplearning.ai, CMU 2022)
    scale = 1 / cfg["n"] if ctx.entry.get("grad", "sum") == "mean" else 1.0
    if ctx.convention["style"] == "functional":
        layout = ctx.entry.get("bias", "flat")  # the grader passes the bias: in the convention's layout
        given = _bias_as(layout, bias)
        to_layout = (lambda a: a.reshape(cfg["n"], d).T.copy()) if columns else (lambda a: a)  # noqa: E731
        x_in, dout_in = to_layout(x), dout.T.copy() if columns else dout
        args = (x_in.copy(), stored.copy(), given.copy())
        out, cache = _forward(ctx.call(ctx.find("forward"), *args, what=f"{ctx.entry['forward']}"),
                              ctx.entry["forward"], 2)
        all_unchanged(("x", "w", "b"), (x_in, stored, given), args)
        dx, dw, db = _pair(ctx.call(ctx.find("backward"), dout_in.copy(), cache, what=ctx.entry["backward"]),
                           ctx.entry["backward"], 3)
        got = {"out": out, "dx": dx, "dw": dw, "db": _row_from_flat(db, layout, cfg["m"])}
        for r in refs:
            r["dw"], r["db"] = (r["dw"].T if in_out else r["dw"]) * scale, _bias_as(layout, r["db"]) * scale
            r["out"], r["dx"] = (r["out"].T, to_layout(r["dx"])) if columns else (r["out"], r["dx"])
        other = to_layout(ctx.rng.standard_normal(x.shape))
        more = _caches_apart(ctx, (x_in.copy(), stored.copy(), given.copy()), (other, stored.copy(), given.copy()),
                             dout_in, {k: ref[k] for k in ("dx", "dw", "db")})
    else:
        layer = _build(ctx, "class", d, cfg["m"])
        layout = _bias_layout(ctx, layer, cfg["m"])
        if ctx.entry.get("weight") == "any":  # the layout of the weight the student's layer created
            in_out = _weight_in_out(ctx, layer, d, cfg["m"])
            if in_out is None:  # square: a layer of one more output, built to see, tells
                in_out = bool(_weight_in_out(ctx, _build(ctx, "class", d, cfg["m"] + 1), d, cfg["m"] + 1))
            stored = weight.T.copy() if in_out else weight.copy()
        _set_params(ctx, layer, {"weight": stored, "bias": _bias_as(layout, bias)})
        flat = not ctx.entry.get("flatten", False)  # the grader flattens x, or the layer does (its dx: x's shape)
        xs = x.reshape(cfg["n"], d).copy() if flat else x.copy()
        try:
            out = ctx.call(layer.forward, xs, what=f"{ctx.entry['class']}.forward")
        except StudentError as e:
            if flat or e.timed_out or len(cfg["d"]) == 1:
                raise
            raise Wrong(f"{e}: x is {xs.shape} here, images as a pooling layer gives them, and this convention's "
                        "layer flattens them itself (x.reshape(N, -1)), giving dx back in x's shape") from None
        unchanged("x", x.reshape(xs.shape), xs)
        dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        if not flat and np.shape(dx) == (cfg["n"], d) and len(cfg["d"]) > 1:
            raise Wrong(f"dx has shape {np.shape(dx)}, x's flattened: this convention's layer gives dx back in x's "
                        f"shape {xs.shape} (dx.reshape(x.shape), the shape kept from forward)")
        _params_kept(ctx, layer, {"weight": stored, "bias": _bias_as(layout, bias)})
        grads = _grads(ctx, layer)
        got = {"out": out, "dx": dx, "dw": grads.get("weight"),
               "db": _row_from_flat(grads.get("bias"), layout, cfg["m"])}
        for r in refs:
            r["dx"], r["db"] = r["dx"].reshape(xs.shape), _bias_as(layout, r["db"]) * scale
            r["dw"] = (r["dw"].T if in_out else r["dw"]) * scale
        x2 = x.reshape(cfg["n"], d)
        grads_of = lambda dy: {"weight": ((dy.T @ x2).T if in_out else dy.T @ x2) * scale,  # noqa: E731
                               "bias": _bias_as(layout, dy.sum(axis=0)) * scale}
        more = _second_pass(ctx, layer, xs, grads_of(dout), grads_of, dout.shape)
    if d == cfg["m"] and got["out"] is not None:  # a square weight: is it read transposed?
        other = x.reshape(cfg["n"], d) @ weight + bias  # the stored matrix read the other way round
        if _follows(got["out"], other.T if columns else other, ref["out"]):
            layout = "(in, out)" if in_out else "(out, in)"
            raise Wrong(f"forward reads the weight transposed (the convention stores it {layout})")
    result = {k: (got[k], [r[k] for r in refs]) for k in ("out", "dx", "dw", "db")}
    return {**result, **more}


def _relu_configs(rng, k):
    return [dict(shape=(1, 3)), dict(shape=(2, 3, 4, 5), zeros=True)] + [
        dict(shape=(int(rng.integers(1, 5)), int(rng.integers(1, 9)))) for _ in range(k)]


def _relu(cfg, ctx: Context) -> Quantities:
    x, dout = _away_from_zero(ctx.rng, cfg["shape"]), ctx.rng.standard_normal(cfg["shape"])
    # one input above zero with a gradient below it, in every configuration: a backward that masks by the
    # gradient's sign (dZ[dZ <= 0] = 0) rather than the input's then fails each, not those whose signs agree by chance
    x.flat[0], dout.flat[0] = abs(x.flat[0]), -abs(dout.flat[0])
    if cfg.get("zeros"):  # inputs of exactly 0, as a ReLU's own output gives the next layer's
        x.flat[1::5] = 0.0
    refs = [{"out": np.maximum(x, 0), "dx": dout * (x > 0)}, _twin(nn.ReLU(), x, dout)]
    quantities = _unary(ctx, x, dout, refs, ())
    return _any_subgradient_at_zero(quantities, x, dout) if cfg.get("zeros") else quantities


def _any_subgradient_at_zero(quantities: Quantities, x, dout) -> Quantities:
    """A ReLU's gradients where the input is exactly 0: any subgradient, from 0 (torch's) to dout (x >= 0's mask),
    but finite (x / |x| is 0 / 0 there); what is right there is then compared as torch's, the rest as ever."""
    at = x == 0
    out = dict(quantities)
    for name, (value, refs) in quantities.items():
        if not name.startswith("dx") or getattr(value, "dtype", None) != np.float64 or np.shape(value) != x.shape:
            continue  # (another type, float32 say, or shape: told by the comparison, as in every configuration)
        v = np.array(value, copy=True)
        share = v[at] / dout[at]  # (dout is a normal draw: never 0)
        if not np.all(np.isfinite(v[at])):
            raise Wrong(f"{name} is {v[at][~np.isfinite(v[at])][0]} where the input is exactly 0 (a mask such as "
                        "x / |x| divides 0 by 0 there): ReLU's gradient at 0 is 0, as torch's, or dout with x >= 0")
        if np.any(share < -1e-9) or np.any(share > 1 + 1e-9):
            raise Wrong(f"{name} is {share[(share < -1e-9) | (share > 1 + 1e-9)][0]:.6g} times dout where the input "
                        "is exactly 0: ReLU's gradient there is 0, as torch's, or dout, never outside them")
        v[at] = refs[0][at]
        out[name] = (v, refs)
    return out


def _elu_configs(rng, k):
    return [dict(shape=(1, 3), alpha=1.0), dict(shape=(2, 3, 4, 5), alpha=0.5)] + [
        dict(shape=(int(rng.integers(1, 5)), int(rng.integers(1, 9))), alpha=float(rng.choice([0.1, 1.0, 2.0])))
        for _ in range(k)]


def _elu(cfg, ctx: Context) -> Quantities:
    """ELU(x) = x for x > 0, alpha (e^x - 1) otherwise; alpha is the forward's argument (functional) or the
    class's (module: ``ELUModule(alpha)``)."""
    x, dout = _away_from_zero(ctx.rng, cfg["shape"]), ctx.rng.standard_normal(cfg["shape"])
    xt = _t(x)
    out_t = torch.nn.functional.elu(xt, alpha=cfg["alpha"])
    (out_t * torch.from_numpy(dout)).sum().backward()
    return _unary(ctx, x, dout, [{"out": out_t.detach().numpy(), "dx": _g(xt)}], (cfg["alpha"],))


def _leaky_relu_configs(rng, k):
    return [dict(shape=(1, 3), negative_slope=0.01), dict(shape=(2, 3, 4, 5), negative_slope=0.2)] + [
        dict(shape=(int(rng.integers(1, 5)), int(rng.integers(1, 9))),
             negative_slope=float(rng.choice([0.01, 0.02, 0.1, 0.3]))) for _ in range(k)]


def _leaky_relu(cfg, ctx: Context) -> Quantities:
    """LeakyReLU(x) = x for x > 0, negative_slope * x otherwise; the slope is the forward's argument
    (functional) or the class's (module: UvA 2019's ``LeakyReLUModule(neg_slope)``)."""
    x, dout = _away_from_zero(ctx.rng, cfg["shape"]), ctx.rng.standard_normal(cfg["shape"])
    slope = cfg["negative_slope"]
    refs = [{"out": np.where(x > 0, x, slope * x), "dx": dout * np.where(x > 0, 1.0, slope)},
            _twin(nn.LeakyReLU(slope), x, dout)]
    return _unary(ctx, x, dout, refs, (slope,))


def _smooth_configs(rng, k):
    """A batch of one, images, and one with inputs far out (20 times a normal draw, with 40 and -60 among them,
    where 1 - s and tanh's 1 - t^2 round to 0), then drawn shapes."""
    return [dict(shape=(1, 3)), dict(shape=(2, 3, 4, 5)), dict(shape=(3, 4), scale=20.0)] + [
        dict(shape=(int(rng.integers(1, 5)), int(rng.integers(1, 9)))) for _ in range(k)]


def _smooth(torch_fn):
    """The check of an activation of no parameters whose derivative needs no care at 0 (sigmoid, tanh), against
    ``torch_fn``'s values and autograd gradient."""
    def check(cfg, ctx: Context) -> Quantities:
        x = cfg.get("scale", 2.0) * ctx.rng.standard_normal(cfg["shape"])
        if "scale" in cfg:
            x.flat[:2] = 40.0, -60.0
        dout = ctx.rng.standard_normal(cfg["shape"])
        xt = _t(x)
        out_t = torch_fn(xt)
        (out_t * torch.from_numpy(dout)).sum().backward()
        return _unary(ctx, x, dout, [{"out": out_t.detach().numpy(), "dx": _g(xt)}], ())
    return check


def _unary(ctx: Context, x, dout, refs: list[dict], args: tuple) -> Quantities:
    """A layer of one input (and fixed arguments ``args``): forward, then backward of ``dout``."""
    xs = x.copy()
    # the class's arguments, not the forward's: an instance's method whose class holds the slope (I2DL's LeakyRelu)
    if ctx.convention["style"] == "functional" and "args" in ctx.entry:
        ctx.made_with, args = _made_with(ctx, args), ()
    if ctx.convention["style"] == "functional":
        forward = ctx.find("forward")
        if ctx.made_with and getattr(forward, "__self__", None) is None:
            raise Wrong(f"args = {list(ctx.entry['args'])} gives the class's constructor the "
                        f"{ARGUMENTS[ctx.kind][0][0]}, and {ctx.entry['forward']} is not an instance's method (a "
                        "@staticmethod, or a function): leave args out, so that forward is given it")
        try:
            result = ctx.call(forward, xs, *copy.deepcopy(args), what=ctx.entry["forward"])
        except StudentError as e:  # an instance's forward(x) whose class holds the slope, graded without args
            if e.timed_out or not args or "TypeError" not in str(e) or getattr(forward, "__self__", None) is None \
                    or _positional(forward) != 1:
                raise
            names = ", ".join(f'"{name}"' for name, _ in ARGUMENTS[ctx.kind])
            raise Wrong(f"{e}: {ctx.entry['forward']} takes x alone, and this convention passes it the "
                        f"{ARGUMENTS[ctx.kind][0][0]} too; for a course whose class takes it (its constructor's "
                        f"argument): args = [{names}] in a spec's table for this layer") from None
        out, cache = _forward(result, ctx.entry["forward"], 2)
        unchanged("x", x, xs)
        dx = _single(ctx.call(ctx.find("backward"), dout.copy(), cache, what=ctx.entry["backward"]))
        # -x: another ReLU mask, other max positions (the values are distinct)
        more = _caches_apart(ctx, (x.copy(), *copy.deepcopy(args)), (-x, *copy.deepcopy(args)), dout,
                             {"dx": refs[0]["dx"]})
    else:
        layer = _build(ctx, "class", *args)
        out = ctx.call(layer.forward, xs, what=f"{ctx.entry['class']}.forward")
        unchanged("x", x, xs)
        if ctx.entry.get("derivative", False):  # backward() returns d out / d x, elementwise (CMU's mytorch, 2022)
            method, name = _backward(layer)
            derivative = ctx.call(method, what=f"{ctx.entry['class']}.{name}")
            if derivative is None or np.shape(derivative) != x.shape:
                raise Wrong(f"{ctx.entry['class']}.{name}() returned {'None' if derivative is None else 'shape '}"
                            f"{'' if derivative is None else np.shape(derivative)}; derivative = true expects "
                            f"d out / d x elementwise, of x's shape {x.shape}")
            dx = np.asarray(derivative) * dout
        else:
            dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        more = {}
    return {"out": (out, [r["out"] for r in refs]), "dx": (dx, [r["dx"] for r in refs]), **more}


def _dropout_configs(rng, k):
    """Inputs of 100,000 values or more (the kept fraction then lies within 0.7% of the keep probability at 5
    standard deviations), at keep probabilities away from 0.5, where p's two meanings differ."""
    fixed = [dict(shape=(1000, 100), keep=0.8), dict(shape=(50, 8, 16, 16), keep=0.3),
             dict(shape=(250, 400), keep=0.65)]
    return fixed + [dict(shape=(int(rng.integers(200, 400)), int(rng.integers(500, 1000))),
                         keep=float(rng.choice([0.2, 0.3, 0.7, 0.8, 0.9]))) for _ in range(k)]


def _dropout(cfg, ctx: Context) -> Quantities:
    """Dropout's mask is random, so its properties are checked, not its values: in train mode each output is 0
    or x / keep (inverted dropout; x itself where ``inverted = false``, as Deep Learning from Scratch's, whose test
    mode multiplies by keep instead), a fraction keep of them kept, and backward lets dout through the student's own
    mask (out / x); in test mode x passes unchanged (times keep, not inverted). The functional style's mask is the
    same again for the same seed; a class's is drawn anew at each forward, and its backward takes the last one's.
    The convention's ``p`` is the keep probability (CS231n since 2018) or the drop probability (2016-17; the book's
    ``dropout_ratio``; CMU 11-785's)."""
    rng, keep = ctx.rng, cfg["keep"]
    meaning, inverted = ctx.entry.get("p", "keep"), ctx.entry.get("inverted", True)
    p = keep if meaning == "keep" else 1 - keep
    x, dout = _away_from_zero(rng, cfg["shape"]), rng.standard_normal(cfg["shape"])
    seed = int(rng.integers(2**31))
    tested = x if inverted else x * keep  # test mode's output
    scale = 1 / keep if inverted else 1.0  # what train mode multiplies the values it keeps by
    if ctx.convention["style"] == "module":
        layer = _build(ctx, "class", p)

        def train(s: int):
            np.random.seed(s)  # a class draws from NumPy's global generator: the grade is the same on every run
            xs = x.copy()
            result = _forward_mode(ctx, layer, xs, train=True)
            unchanged("x", x, xs)
            return result

        out = _dropout_mask(train(seed), x, keep, p, meaning, inverted)
        dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        _dropout_dx_named(dx, dout, out, x, keep, inverted)
        again = _valid("out (train mode, a second forward)", train(seed + 1), x)
        if np.array_equal(again != 0, out != 0):
            raise Wrong("a second forward in train mode dropped the same values as the first: draw a new mask at "
                        "each forward (as a network's every step does)")
        dx_again = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward (after a second forward)")
        out_test = _forward_mode(ctx, layer, x.copy(), train=False)
        _dropout_test_named(out_test, x, keep, inverted)
        return {"out (train mode)": (out, [np.where(out != 0, x * scale, 0.0)]),
                "dx (train mode)": (dx, [dout * out / x]),
                "dx (after a second forward: its mask)": (dx_again, [dout * again / x]),
                "out (test mode)": (out_test, [tested])}
    forward, backward = ctx.entry["forward"], ctx.entry["backward"]

    def param(mode: str, s: int = seed) -> dict:
        return {"p": p, "mode": mode, "seed": s}

    def run(mode: str) -> tuple:
        xs = x.copy()
        out, cache = _forward(ctx.call(ctx.find("forward"), xs, param(mode), what=f"{forward} (mode {mode})"),
                              forward, 2)
        unchanged("x", x, xs)
        return out, cache

    def back(cache, mode: str):
        return _single(ctx.call(ctx.find("backward"), dout.copy(), cache, what=f"{backward} (mode {mode})"))

    out, cache = run("train")
    out = _dropout_mask(out, x, keep, p, meaning, inverted)
    kept = out != 0
    again, _ = run("train")
    if np.shape(again) == out.shape and not np.allclose(again, out, rtol=1e-12):
        raise Wrong("the same dropout_param['seed'] gave another mask on a second call: seed NumPy with it "
                    "(np.random.seed(dropout_param['seed']), as the starter code does), so that gradient checks "
                    "see one mask")
    dx = back(cache, "train")
    _dropout_dx_named(dx, dout, out, x, keep, inverted)
    out_test, cache_test = run("test")
    _dropout_test_named(out_test, x, keep, inverted)
    dx_test = back(cache_test, "test")
    through = dout * out / x  # the student's own mask: 0 or 1 / keep (0 or 1, not inverted)
    more = _caches_apart(ctx, (x.copy(), param("train")), (-x, param("train", seed + 1)), dout, {"dx": through})
    return {"out (train mode)": (out, [np.where(kept, x * scale, 0.0)]),
            "dx (train mode)": (dx, [through]), "out (train mode, the same seed again)": (again, [out]),
            "out (test mode)": (out_test, [tested]), "dx (test mode)": (dx_test, [dout if inverted else dout * keep]),
            **more}


def _dropout_mask(out, x: np.ndarray, keep: float, p: float, meaning: str, inverted: bool) -> np.ndarray:
    """Train mode's ``out`` as an array, or ``Wrong`` naming what its mask shows: none dropped, the probability
    read the other way round, the kept values scaled otherwise than the convention's dropout does, or too few or
    too many kept."""
    out = _valid("out (train mode)", out, x)
    kept = out != 0
    share, spread = kept.mean(), 5 * np.sqrt(keep * (1 - keep) / x.size)  # 5 binomial standard deviations
    if kept.all():
        raise Wrong(f"train mode dropped none of the values at p = {p:g} (mode \"train\" drops each with "
                    f"probability {1 - keep:g})")
    if abs(share - (1 - keep)) <= spread:
        other = "drop" if meaning == "keep" else "keep"
        raise Wrong(f"kept {share:.3f} of the values at p = {p:g}: p is taken as the {other} probability, where this "
                    f"convention's p is the {meaning} probability (p = \"{other}\" in a spec, if that is the course's: "
                    "CS231n's p was the drop probability until 2017, the keep probability since 2018)")
    ratio = out[kept] / x[kept]  # what the kept values were multiplied by: 1 / keep (1, not inverted)
    scale = 1 / keep if inverted else 1.0
    # to the grader's tolerance (a float32 mask scales by 1 / keep rounded to float32: 2e-8 off, not a bug)
    if kept.any() and np.allclose(ratio, ratio[0], rtol=RTOL, atol=0) and not np.isclose(ratio[0], scale, rtol=RTOL):
        if inverted and np.isclose(ratio[0], 1, rtol=RTOL):
            raise Wrong("the kept values are x itself: the dropout is not inverted (train mode divides what it keeps "
                        "by the keep probability, so that test mode returns x unchanged)")
        if not inverted and np.isclose(ratio[0], 1 / keep, rtol=RTOL):
            raise Wrong(f"the kept values are x / {keep:g}: an inverted dropout, where this convention's keeps x as it "
                        "is in training and multiplies by the keep probability in test mode (Deep Learning from "
                        "Scratch's x * (1 - dropout_ratio); inverted = true in a spec, if the course's divides)")
        divided = ", divided by p, the drop probability" if meaning == "drop" and np.isclose(ratio[0], 1 / p) else ""
        digits = next((d for d in range(4, 18) if f"{ratio[0]:.{d}g}" != f"{scale:.{d}g}"), 17)  # shown apart
        expected = (f"inverted dropout divides them by the keep probability {'1 - p = ' if meaning == 'drop' else ''}"
                    f"{keep:g} (x times {scale:.{digits}g})" if inverted else
                    "this convention's dropout keeps them as they are (x times 1)")
        raise Wrong(f"the kept values are x times {ratio[0]:.{digits}g}{divided}; {expected}")
    if abs(share - keep) > spread:
        raise Wrong(f"kept {share:.3f} of the values at p = {p:g}, where the keep probability is {keep:g} "
                    f"(+-{spread:.3f}: 5 standard deviations)")
    return out


def _dropout_dx_named(dx, dout: np.ndarray, out: np.ndarray, x: np.ndarray, keep: float, inverted: bool) -> None:
    """``Wrong`` where train mode's backward lets dout through the kept places scaled otherwise than the forward
    scaled x: unscaled beside an inverted forward, divided by keep beside one that is not."""
    mask, right = (out != 0).astype(np.float64), dout * out / x
    if inverted and _follows(dx, dout * mask, right):
        raise Wrong(f"dx is dout at the kept places, not divided by the keep probability {keep:g}: the backward of an "
                    "inverted dropout scales as its forward does (dout * mask, the mask holding 1 / keep)")
    if not inverted and _follows(dx, dout * mask / keep, right):
        raise Wrong(f"dx is dout at the kept places divided by the keep probability {keep:g}, where the forward kept "
                    "x as it is: the backward lets dout through the mask unscaled")


def _dropout_test_named(out, x: np.ndarray, keep: float, inverted: bool) -> None:
    """``Wrong`` where test mode's output is the other form of dropout's: x scaled by keep where an inverted
    dropout returns x, or x where one that is not inverted scales it."""
    if np.shape(out) != x.shape:
        return  # compared as a quantity: its shape is told there
    if inverted and _follows(out, x * keep, x):
        raise Wrong(f"test mode multiplied x by the keep probability {keep:g}: an inverted dropout scaled in training "
                    "already, so test mode returns x unchanged")
    if not inverted and _follows(out, x, x * keep):
        raise Wrong(f"test mode returned x unchanged: a dropout that keeps x as it is in training multiplies by the "
                    f"keep probability {keep:g} in test mode")


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("linear", "linear (affine)", ("forward", "backward"), ("class",), _linear_configs, _linear, _linear_shaped),
    Kind("relu", "ReLU", ("forward", "backward"), ("class",), _relu_configs, _relu),
    Kind("elu", "ELU", ("forward", "backward"), ("class",), _elu_configs, _elu),
    Kind("leaky_relu", "leaky ReLU", ("forward", "backward"), ("class",), _leaky_relu_configs, _leaky_relu),
    Kind("sigmoid", "sigmoid", ("forward", "backward"), ("class",), _smooth_configs, _smooth(torch.sigmoid)),
    Kind("tanh", "tanh", ("forward", "backward"), ("class",), _smooth_configs, _smooth(torch.tanh)),
    Kind("dropout", "dropout", ("forward", "backward"), ("class",), _dropout_configs, _dropout),
)
