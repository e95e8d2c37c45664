"""Convolution and max pooling, in NCHW or NHWC, with the mistakes on image shapes told by their cause."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from twinnet import numpy_nn as nn
from twinnet.grader.compare import Wrong, all_unchanged, error, passes, unchanged
from twinnet.grader.conventions import BUILT_IN
from twinnet.grader.kinds.base import (
    Context, Kind, NotApplicable, Quantities, _attempt, _close, _distinct, _forward, _g, _pair, _probe, _t, _twin)
from twinnet.grader.kinds.dense import _unary
from twinnet.grader.kinds.modules import _build, _caches_apart, _grads, _params, _params_kept, _second_pass, _set_params
from twinnet.grader.loader import StudentError


def _conv_configs(rng, k):
    # every window whole, (H + 2p - k) % s == 0, as courses assume (a 1x1 filter at stride 3 skips pixels)
    fixed = [dict(n=1, c=1, h=5, w=5, f=2, k=3, s=1, p=1), dict(n=2, c=3, h=7, w=7, f=4, k=3, s=2, p=0),
             dict(n=2, c=2, h=6, w=8, f=3, k=2, s=2, p=0), dict(n=1, c=3, h=5, w=7, f=2, k=3, s=1, p=0),
             dict(n=2, c=2, h=5, w=5, f=2, k=3, s=2, p=2), dict(n=1, c=2, h=7, w=7, f=3, k=1, s=3, p=0)]
    out = []
    while len(out) < k:
        kk, s, p = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
        h, w = (kk - 2 * p + s * int(rng.integers(1, 4)) for _ in range(2))
        if h >= 1 and w >= 1 and _windows_read(h, kk, s, p) and _windows_read(w, kk, s, p):
            out.append(dict(n=int(rng.integers(1, 3)), c=int(rng.integers(1, 4)), h=h, w=w, f=int(rng.integers(1, 4)),
                            k=kk, s=s, p=p))
    return fixed + out


def _windows_read(size: int, k: int, s: int, p: int) -> bool:
    """Whether some window of a convolution (kernel ``k``, stride ``s``, padding ``p``) over ``size`` pixels covers
    one of them, not only padding: where none does, the right gradients are zero, and a backward that leaves
    them so would pass."""
    return any(i * s < p + size and i * s + k > p for i in range((size + 2 * p - k) // s + 1))


def _conv(cfg, ctx: Context) -> Quantities:
    """``_conv_on``; where it fails at padding 0 and the same layer passes with padding (the windows still whole),
    ``Wrong`` names the cause: a slice such as ``[pad:-pad]``, which is empty when pad is 0; and where it fails on
    an image whose height and width differ and passes on a square one (W set to H), a height and width swapped."""
    quantities, failure, ok = _attempt(lambda: _conv_on(cfg, ctx))
    if ok:
        return quantities
    if cfg["p"] == 0:
        whole = [p for p in (1, 2, 3) if all((cfg[d] + 2 * p - cfg["k"]) % cfg["s"] == 0 for d in ("h", "w"))]
        try:
            padded = whole and _probe(lambda: _conv_on({**cfg, "p": whole[0]}, ctx)) is not None
        except NotApplicable:  # a class that takes no padding: this configuration's own verdict stands
            padded = False
        if padded:
            here = f" (at pad 0: {failure})" if failure is not None else ""
            where = "[:, pad:-pad, pad:-pad, :]" if ctx.entry.get("images") == "nhwc" else "[:, :, pad:-pad, pad:-pad]"
            raise Wrong(f"wrong only where pad is 0: the same layer passes with pad {whole[0]}; a slice such as "
                        f"{where} is empty when pad is 0 (slice pad:pad + H instead){here}")
    _images_told(ctx, lambda other: _conv_on(cfg, other), failure, "(k, k, C, F) filters, ")
    if cfg["h"] != cfg["w"]:
        _off_square_told(cfg, failure, lambda square: _conv_on(square, ctx), "a loop over the output's rows bounded by "
                         "its width")
    if failure is not None:
        raise failure
    return quantities


def _off_square_told(cfg, failure, grade: Callable[[dict], Quantities], example: str, what: str = "layer") -> None:
    """Where an image layer (or a network: ``what``) failed on an image whose height and width differ and ``grade``
    passes on a square one (W set to H), ``Wrong`` saying so, with ``example`` of such a swap."""
    if _probe(lambda: grade({**cfg, "w": cfg["h"]})) is not None:
        here = f" (at H = {cfg['h']}, W = {cfg['w']}: {failure})" if failure is not None else ""
        raise Wrong(f"wrong only where the height and width differ: the same {what} passes on a square image (H = W "
                    f"= {cfg['h']}); a height and a width swapped somewhere, such as {example}{here}")


def _conv_on(cfg, ctx: Context) -> Quantities:
    rng = ctx.rng
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    w = rng.standard_normal((cfg["f"], cfg["c"], cfg["k"], cfg["k"])) / cfg["k"]
    b = rng.standard_normal(cfg["f"])
    xt, wt, bt = _t(x), _t(w), _t(b)
    out_t = torch.nn.functional.conv2d(xt, wt, bt, stride=cfg["s"], padding=cfg["p"])
    dout = rng.standard_normal(tuple(out_t.shape))
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dx": _g(xt), "dw": _g(wt), "db": _g(bt)}
    twin = _twin(nn.Conv2d(cfg["c"], cfg["f"], cfg["k"], cfg["s"], cfg["p"]), x, dout, weight=w, bias=b)
    refs = [ref, {"out": twin["out"], "dx": twin["dx"], "dw": twin["dweight"], "db": twin["dbias"]}]
    more: Quantities = {}  # a module's gradients after a second backward: summed or overwritten, as its convention says
    if ctx.convention["style"] == "functional":
        other = rng.standard_normal(x.shape)
        if ctx.entry.get("images") == "nhwc":  # deeplearning.ai's: every array in the course's layout, refs too
            x, w, b, dout, other = _nhwc(x), _nhwc_filters(w), b.reshape(1, 1, 1, -1), _nhwc(dout), _nhwc(other)
            refs = [{"out": _nhwc(r["out"]), "dx": _nhwc(r["dx"]), "dw": _nhwc_filters(r["dw"]),
                     "db": r["db"].reshape(1, 1, 1, -1)} for r in refs]
            ref = refs[0]
        conv_param = {"stride": cfg["s"], "pad": cfg["p"]}
        args = (x.copy(), w.copy(), b.copy(), dict(conv_param))
        out, cache = _forward(ctx.call(ctx.find("forward"), *args, what=ctx.entry["forward"]), ctx.entry["forward"], 2)
        all_unchanged(("x", "w", "b"), (x, w, b), args)
        got = dict(zip(("dx", "dw", "db"), _pair(ctx.call(ctx.find("backward"), dout.copy(), cache,
                                                          what=ctx.entry["backward"]), ctx.entry["backward"], 3)))
        more = _caches_apart(ctx, (x.copy(), w.copy(), b.copy(), dict(conv_param)),
                             (other, w.copy(), b.copy(), dict(conv_param)), dout,
                             {k: ref[k] for k in ("dx", "dw", "db")})
    else:
        layer = _build(ctx, "class", cfg["c"], cfg["f"], cfg["k"], cfg["s"], cfg["p"])
        try:
            own = np.shape(_params(ctx, layer)["weight"])
        except Exception:  # noqa: BLE001 - a probe only: setting the weight says what is wrong
            own = None
        if own == (cfg["f"], cfg["c"], cfg["k"]):
            raise Wrong(f"{type(layer).__name__}'s weight has shape {own}, (out, in, kernel): a 1-D convolution, "
                        "which the conv kind, 2-D on (N, C, H, W) images, cannot grade")
        _set_params(ctx, layer, {"weight": w, "bias": b})
        xs = x.copy()
        out = ctx.call(layer.forward, xs, what=f"{ctx.entry['class']}.forward")
        unchanged("x", x, xs)
        dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        _params_kept(ctx, layer, {"weight": w, "bias": b})
        grads = _grads(ctx, layer)
        got = {"dx": dx, "dw": grads.get("weight"), "db": grads.get("bias")}

        def grads_of(dy):
            wt2, bt2 = _t(w), _t(b)
            (torch.nn.functional.conv2d(_t(x, False), wt2, bt2, stride=cfg["s"], padding=cfg["p"])
             * torch.from_numpy(dy)).sum().backward()
            return {"weight": _g(wt2), "bias": _g(bt2)}

        more = _second_pass(ctx, layer, x, {"weight": ref["dw"], "bias": ref["db"]}, grads_of, dout.shape)
    result = {"out": (out, [r["out"] for r in refs]), **{k: (got[k], [r[k] for r in refs]) for k in ("dx", "dw", "db")}}
    return {**result, **more}


def _images_told(ctx: Context, grade: Callable[[Context], Quantities], failure, more: str = "") -> None:
    """Where a functional layer fails on (N, C, H, W) images and ``grade`` passes given them as (N, H, W, C), the
    other convention's layout (deeplearning.ai's), ``Wrong`` saying which spec setting grades it."""
    if ctx.convention["style"] != "functional" or ctx.entry.get("images", "nchw") != "nchw":
        return
    try:
        _, theirs, ok = _attempt(lambda: grade(replace(ctx, entry={**ctx.entry, "images": "nhwc"})))
    except NotApplicable:  # a configuration the other layout cannot give (pooling windows of another height than
        return  # width): the first verdict stands
    except StudentError as e:  # past the time limit: raised, as every probe's is, saying where it ran so long
        raise StudentError(f"{e.args[0]} given (N, H, W, C) images, tried to see whether the layer takes them (given "
                           f"(N, C, H, W): {failure})", e.where, timed_out=e.timed_out) from None
    # or, under a course's own spec (not a built-in convention, each channels-first), it gets past the shapes that
    # stopped it here, to where code of NumPy 1's era stops (float() of a (1, 1, 1) bias, deeplearning.ai's own
    # advice), and here it raised on the shapes (a broadcast, an index)
    era = ctx.convention.get("name") not in BUILT_IN and isinstance(theirs, StudentError) and \
        _SCALAR in str(theirs) and isinstance(failure, StudentError) and bool(_ON_SHAPES.search(str(failure)))
    if ok or era:
        here = f"; given them, {theirs}" if era else f" (here: {failure})" if failure is not None else ""
        raise Wrong(f"the layer takes (N, H, W, C) images, {more}as deeplearning.ai's course does, and this convention "
                    f"gives (N, C, H, W): images = \"nhwc\" in a spec's table for this layer{here}")


_SCALAR = "arrays can be converted to Python scalars"  # NumPy 2's float() of a (1, 1, 1) array; NumPy 1 gave a number


_ON_SHAPES = re.compile(r" raised (ValueError|IndexError)\b")


def _nhwc(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images as (N, H, W, C), deeplearning.ai's layout (``images = "nhwc"``)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _nhwc_filters(w: np.ndarray) -> np.ndarray:
    """(F, C, k, k) filters as (k, k, C, F), deeplearning.ai's layout beside (N, H, W, C) images."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _pool_configs(rng, k):
    # every window whole, (H - ph) % s == 0, as courses assume
    fixed = [dict(n=1, c=1, h=4, w=4, ph=2, pw=2, s=2), dict(n=2, c=3, h=5, w=5, ph=3, pw=3, s=1),
             dict(n=1, c=2, h=7, w=5, ph=3, pw=3, s=2), dict(n=2, c=1, h=8, w=9, ph=2, pw=3, s=3)]
    out = []
    for _ in range(k):
        ph, pw, s = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        out.append(dict(n=int(rng.integers(1, 3)), c=int(rng.integers(1, 3)), h=ph + s * int(rng.integers(0, 3)),
                        w=pw + s * int(rng.integers(0, 3)), ph=ph, pw=pw, s=s))
    return fixed + out


def _maxpool(cfg, ctx: Context) -> Quantities:
    """``_maxpool_on``; where it fails on (N, C, H, W) images and passes on (N, H, W, C) ones, that is told."""
    quantities, failure, ok = _attempt(lambda: _maxpool_on(cfg, ctx))
    if ok:
        return quantities
    _images_told(ctx, lambda other: _maxpool_on(cfg, other), failure)
    # the same windows on a square image, where they still tile it whole
    if cfg["h"] != cfg["w"] and cfg["h"] >= cfg["pw"] and (cfg["h"] - cfg["pw"]) % cfg["s"] == 0:
        _off_square_told(cfg, failure, lambda square: _maxpool_on(square, ctx), "an output allocated as (N, C, W_out, "
                         "H_out)")
    if failure is not None:
        raise failure
    return quantities


def _maxpool_on(cfg, ctx: Context) -> Quantities:
    x = _distinct(ctx.rng, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    xt = _t(x)
    out_t = torch.nn.functional.max_pool2d(xt, (cfg["ph"], cfg["pw"]), cfg["s"])
    dout = ctx.rng.standard_normal(tuple(out_t.shape))
    (out_t * torch.from_numpy(dout)).sum().backward()
    refs = [{"out": out_t.detach().numpy(), "dx": _g(xt)},
            _twin(nn.MaxPool2d((cfg["ph"], cfg["pw"]), cfg["s"]), x, dout)]
    nhwc = ctx.convention["style"] == "functional" and ctx.entry.get("images") == "nhwc"
    if nhwc:
        if cfg["ph"] != cfg["pw"]:  # deeplearning.ai's pool_forward(A_prev, {"f", "stride"}): square windows
            raise NotApplicable("hparameters give one window size, f")
        refs = [{k: _nhwc(r[k]) for k in ("out", "dx")} for r in refs]
        got = _unary(ctx, _nhwc(x), _nhwc(dout), refs, ({"f": cfg["ph"], "stride": cfg["s"]},))
    elif ctx.convention["style"] == "functional":
        got = _unary(ctx, x, dout, refs, ({"pool_height": cfg["ph"], "pool_width": cfg["pw"], "stride": cfg["s"]},))
    elif {"kernel_height", "kernel_width"} <= set(ctx.entry.get("args", ())):  # Pooling(pool_h, pool_w, stride)
        got = _unary(ctx, x, dout, refs, (cfg["ph"], cfg["s"], cfg["ph"], cfg["pw"]))
    elif cfg["ph"] != cfg["pw"]:
        raise NotApplicable("a module takes one kernel size here")
    else:
        got = _unary(ctx, x, dout, refs, (cfg["ph"], cfg["s"]))
    return _overwritten_told(got, x, dout, cfg, nhwc=nhwc)


def _overwritten_told(got: Quantities, x: np.ndarray, dout: np.ndarray, cfg, nhwc: bool = False) -> Quantities:
    """``got``; where windows overlap and its dx is what a backward that assigns each window's gradient, rather than
    adding it, gives, ``Wrong`` saying so (``x``, ``dout``: (N, C, H, W); ``nhwc``: the student's are (N, H, W, C))."""
    if cfg["s"] < max(cfg["ph"], cfg["pw"]) and "dx" in got and not passes(error("dx", *got["dx"])):
        def overwritten(whole: bool) -> np.ndarray:
            dx = _pool_overwritten(x, dout, cfg["ph"], cfg["pw"], cfg["s"], whole)
            return _nhwc(dx) if nhwc else dx

        if any(_close(got["dx"][0], overwritten(whole)) for whole in (False, True)):
            raise Wrong(f"dx: where windows overlap (stride {cfg['s']}, windows {cfg['ph']}x{cfg['pw']}), a pixel that "
                        "is the maximum of several windows gets only the last one's gradient: add each window's "
                        "(dx[...] += ...), not assign it")
    return got


def _pool_overwritten(x: np.ndarray, dout: np.ndarray, ph: int, pw: int, s: int, whole: bool) -> np.ndarray:
    """Max pooling's input gradient as a backward that assigns each window's gradient (``=``, not ``+=``),
    window after window in row-major order, would give it: to the window's maximum, or (``whole``) to the whole
    window as a mask, ``dx[window] = (window == window.max()) * dout``, zeroing the rest of it."""
    dx = np.zeros_like(x)
    n, c = np.indices(x.shape[:2])
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s:i * s + ph, j * s:j * s + pw]
            if whole:
                top = window.max(axis=(2, 3), keepdims=True)
                dx[:, :, i * s:i * s + ph, j * s:j * s + pw] = (window == top) * dout[:, :, i:i + 1, j:j + 1]
                continue
            a, b = np.divmod(window.reshape(*x.shape[:2], -1).argmax(axis=2), pw)
            dx[n, c, i * s + a, j * s + b] = dout[:, :, i, j]
    return dx


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("conv", "convolution", ("forward", "backward"), ("class",), _conv_configs, _conv),
    Kind("maxpool", "max pooling", ("forward", "backward"), ("class",), _pool_configs, _maxpool),
)
