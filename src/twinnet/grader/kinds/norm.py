"""Batch norm (plain, spatial, and the alternative backward), layer norm and spatial group norm."""

from __future__ import annotations

import numpy as np
import torch

from twinnet import numpy_nn as nn
from twinnet.grader.compare import Wrong, all_unchanged, error, passes, unchanged
from twinnet.grader.kinds.base import (
    Context, Kind, Quantities, _attempt, _close, _error_of, _follows, _forward, _g, _pair, _passing, _t, _twin)
from twinnet.grader.kinds.modules import (
    _Fields, _build, _caches_apart, _forward_mode, _grads, _params_kept, _row_from_flat, _second_pass, _set_params)


def _bn_configs(rng, k):
    """Fixed small shapes with the usual eps and momentum, then drawn shapes with other eps and momentum
    (in the functional style, where they come in ``bn_param``: a layer that ignores them fails)."""
    return [dict(n=2, d=3), dict(n=5, d=1), dict(n=8, d=4)] + [
        dict(n=int(rng.integers(2, 9)), d=int(rng.integers(1, 6)), eps=float(rng.choice([1e-5, 1e-3, 1e-2])),
             keep=float(rng.choice([0.9, 0.8, 0.95]))) for _ in range(k)]


def _spatial_bn_configs(rng, k):
    """Images (N, C, H, W): a batch of one (the statistics are still over H and W), one channel, then drawn."""
    return [dict(n=2, c=3, h=4, w=5), dict(n=1, c=2, h=3, w=3), dict(n=4, c=1, h=2, w=2)] + [
        dict(n=int(rng.integers(1, 4)), c=int(rng.integers(1, 5)), h=int(rng.integers(2, 5)), w=int(rng.integers(1, 5)),
             eps=float(rng.choice([1e-5, 1e-3, 1e-2])), keep=float(rng.choice([0.9, 0.8, 0.95]))) for _ in range(k)]


def _batchnorm(cfg, ctx: Context, backward_only: bool = False) -> Quantities:
    """Batch norm of features (N, D), or spatial batch norm of images (N, C, H, W) with one mean and variance
    per channel over N, H and W: the training output and gradients, the running statistics, test mode.
    ``backward_only`` (the alternative backward's row): a misreading of test mode or of the running statistics,
    which the training cache does not carry, is left to the batch norm row to name."""
    rng, n = ctx.rng, cfg["n"]
    shape = (n, cfg["d"]) if "d" in cfg else (n, cfg["c"], cfg["h"], cfg["w"])
    d, axes = shape[1], (0,) if len(shape) == 2 else (0, 2, 3)  # d: features or channels

    def per(v):  # (d,) against x's shape
        return v.reshape(-1, *(1,) * (len(shape) - 2))

    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    rm, rv = rng.standard_normal(d), rng.random(d) + 0.5
    dout = rng.standard_normal(shape)
    functional = ctx.convention["style"] == "functional"
    layer = None if functional else _build(ctx, "class", d)
    eps = cfg.get("eps", 1e-5) if functional else float(ctx.entry.get("eps", 1e-5))  # a module's: its default
    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    out_t = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    (out_t * torch.from_numpy(dout)).sum().backward()
    biased = ctx.entry.get("running_var", "biased") == "biased"
    var = x.var(axis=axes, ddof=0 if biased else 1)
    keep = ctx.entry.get("momentum", "keep") == "keep"
    momentum = (cfg.get("keep", 0.9) if functional else 0.9) if keep else 0.1
    new = (1 - momentum) if keep else momentum  # the weight of this batch's statistics
    ref = {"out": out_t.detach().numpy(), "running_mean": (1 - new) * rm + new * x.mean(axis=axes),
           "running_var": (1 - new) * rv + new * var, "dx": _g(xt), "dgamma": _g(gt), "dbeta": _g(bt)}
    test_x = rng.standard_normal(shape)
    # a course whose own test mode divides by sqrt(running_var), no eps (TUM's I2DL): test_eps = "none"
    test_eps = 0.0 if ctx.entry.get("test_eps", "inside") == "none" else eps
    ref_test = per(gamma) * (test_x - per(ref["running_mean"])) / np.sqrt(per(ref["running_var"]) + test_eps) \
        + per(beta)
    more: Quantities = {}
    if functional:
        param = {"mode": "train", "eps": eps, "momentum": momentum, "running_mean": rm.copy(), "running_var": rv.copy()}
        xs, gs, bs = x.copy(), gamma.copy(), beta.copy()
        out, cache = _forward(ctx.call(ctx.find("forward"), xs, gs, bs, param, what=ctx.entry["forward"]),
                              ctx.entry["forward"], 2)
        all_unchanged(("x", "gamma", "beta"), (x, gamma, beta), (xs, gs, bs))
        stats = {k: _flat_statistic(param.get(k), d) for k in ("running_mean", "running_var")}
        dx, dgamma, dbeta = _pair(ctx.call(ctx.find("backward"), dout.copy(), cache, what=ctx.entry["backward"]),
                                  ctx.entry["backward"], 3)
        dgamma, dbeta = _flat_statistic(dgamma, d), _flat_statistic(dbeta, d)  # summed with keepdims=True
        param["mode"] = "test"
        test = ctx.call(ctx.find("forward"), test_x.copy(), gamma.copy(), beta.copy(), param,
                        what=f"{ctx.entry['forward']} (mode test)")
        test_out = test[0] if isinstance(test, (tuple, list)) else test
        fresh = lambda: {**param, "mode": "train", "running_mean": rm.copy(), "running_var": rv.copy()}  # noqa: E731
        more = _caches_apart(ctx, (x.copy(), gamma.copy(), beta.copy(), fresh()),
                             (rng.standard_normal(shape) * 3 - 1, gamma.copy(), beta.copy(), fresh()), dout,
                             {k: ref[k] for k in ("dx", "dgamma", "dbeta")})
        more = {k: ((_flat_statistic(v, d), r) if k.startswith(("dgamma", "dbeta")) else (v, r))
                for k, (v, r) in more.items()}
    else:
        # a course's own layout of gamma, beta and the statistics (CMU's (1, D): layout = "row"), their names
        shaped = (lambda v: v.reshape(1, -1)) if ctx.entry.get("layout", "flat") == "row" else (lambda v: v)
        for key in ("running_mean", "running_var", "dgamma", "dbeta"):
            ref[key] = shaped(ref[key])
        if hasattr(layer, "momentum"):
            layer.momentum = momentum
        _set_params(ctx, layer, {"weight": shaped(gamma), "bias": shaped(beta)})
        running = _Fields(ctx, layer, ctx.entry.get("running", {"mean": "running_mean", "var": "running_var"}))
        if absent := [running.paths[k] for k in ("mean", "var") if k not in running]:  # None: filled in later
            raise Wrong(f"{type(layer).__name__} has no attribute {' or '.join(absent)} (its running statistics; a "
                        "course's own names go in the spec: running = {mean = \"running_M\", var = \"running_V\"})")
        running["mean"], running["var"] = shaped(rm.copy()), shaped(rv.copy())
        xs = x.copy()
        out = _forward_mode(ctx, layer, xs, train=True)
        unchanged("x", x, xs)
        stats = {f"running_{k}": running.get(k) for k in ("mean", "var")}
        stats = {k: None if v is None else np.array(v, copy=True) for k, v in stats.items()}
        dx = ctx.call(layer.backward, dout.copy(), what=f"{ctx.entry['class']}.backward")
        _params_kept(ctx, layer, {"weight": shaped(gamma), "bias": shaped(beta)})
        grads = _grads(ctx, layer)
        dgamma, dbeta = grads.get("weight"), grads.get("bias")
        test_out = _forward_mode(ctx, layer, test_x.copy(), train=False)
        if hasattr(layer, "train"):  # back to training mode for a second pass: summed or overwritten gradients

            def grads_of(dy):
                g2, b2 = _t(gamma), _t(beta)
                (torch.nn.functional.batch_norm(_t(x, False), None, None, g2, b2, training=True, eps=eps)
                 * torch.from_numpy(dy)).sum().backward()
                return {"weight": shaped(_g(g2)), "bias": shaped(_g(b2))}

            ctx.call(layer.train, what="train")
            more = _second_pass(ctx, layer, x, {"weight": ref["dgamma"], "bias": ref["dbeta"]}, grads_of, dout.shape)
    got = {"out": out, **stats, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    if _close(out, ref["out"]) and not _close(dx, ref["dx"]) and _close(dx, _bn_dx(x, gamma, beta, dout, 1e-300)):
        raise Wrong(f"dx is batch norm's gradient without eps (eps = {eps:g} here): the backward divides by "
                    "sqrt(var) where the forward divides by sqrt(var + eps); use the forward's sqrt(var + eps) in "
                    "the backward too (keep it in the cache)")
    # where the eps is misplaced, named (a relative error of 1e-4 alone does not say so); never in the alternative
    # backward's row, which tells a wrong output only beside wrong gradients. Training's output names it whatever
    # the gradients (its cache moves them too); test mode's, a near miss of its own, only where training's every
    # quantity is right: what is far off there is told first, as the rows' rule is
    if not backward_only:
        _bn_eps_placed(out, x, x.mean(axis=axes), x.var(axis=axes), ref["out"], gamma, beta, eps, per, "out")
        from twinnet.grader import NEAR_MISS

        if all(_error_of(got[k], ref[k]) < NEAR_MISS for k in ref):
            mean, var = np.ravel(ref["running_mean"]), np.ravel(ref["running_var"])
            if test_eps:
                _bn_eps_placed(test_out, test_x, mean, var, ref_test, gamma, beta, eps, per, "out (test mode)")
            elif _exactly_and_apart(test_out, per(gamma) * (test_x - per(mean)) / np.sqrt(per(var) + eps) + per(beta),
                                    ref_test):
                raise Wrong(f"out (test mode) divides by sqrt(var + eps) (eps = {eps:g} here), where this convention's "
                            "test mode divides by sqrt(var), with no eps (test_eps = \"none\" in its spec, as the "
                            "course's own forward does)")
    stat_name = "biased" if biased else "unbiased"
    for key in () if backward_only else ("running_var",):
        other = (1 - new) * rv + new * x.var(axis=axes, ddof=1 if biased else 0)
        other = other if np.shape(ref[key]) == other.shape else other.reshape(np.shape(ref[key]))
        if _follows(got[key], other, ref[key]):
            raise Wrong(f"the running variance is updated with the {'unbiased' if biased else 'biased'} batch "
                        f"variance; this convention uses the {stat_name} one")
    # in a failure, the course's own attribute names beside the grader's (CMU's dLdBW for dgamma)
    own = {} if functional else {**{f"d{g}": ctx.entry.get("grads", {}).get(p) for g, p in (("gamma", "weight"),
                                                                                           ("beta", "bias"))},
                                 **{f"running_{k}": ctx.entry.get("running", {}).get(k) for k in ("mean", "var")}}
    result = {(f"{k} ({own[k]})" if own.get(k) else k): (got[k], [ref[k]]) for k in ref}
    result = {**result, "out (test mode)": (test_out, [ref_test]), **more}
    if not functional and ctx.entry.get("layout", "flat") == "row":
        # gamma's and beta's gradients flat, (D,), beside the layout's (1, D): they update the (1, D) parameters
        # alike (a step's w - lr * dw broadcasts), and the course's own tests never read their shape
        result = {k: (_row_from_flat(v, "row", d) if k.startswith(("dgamma", "dbeta", "dweight", "dbias")) else v, r)
                  for k, (v, r) in result.items()}
    return result


# where a batch norm puts its eps instead of sqrt(var + eps): what it divides by, told as written
_EPS_PLACED = {"sqrt(var) + eps, eps outside the square root": lambda v, eps: np.sqrt(v) + eps,
               "sqrt(var) + sqrt(eps)": lambda v, eps: np.sqrt(v) + np.sqrt(eps),
               "sqrt(var), with no eps": lambda v, eps: np.sqrt(v)}


def _exactly_and_apart(theirs, wrong, right) -> bool:
    """Whether a student's value is ``wrong`` to rounding, where ``wrong`` is told apart from ``right`` (an eps
    misplaced moves an output by about 1e-5 relative: so close a match says which formula it followed)."""
    return theirs is not None and np.shape(theirs) == np.shape(wrong) and \
        np.allclose(theirs, wrong, rtol=1e-11, atol=0) and not np.allclose(wrong, right, rtol=1e-6)


def _bn_eps_placed(theirs, x, mean, var, right, gamma, beta, eps: float, per, name: str) -> None:
    """``Wrong`` naming it where a batch norm's output (``name``) divides by another of ``_EPS_PLACED`` than
    sqrt(var + eps): a relative error of 1e-4 alone does not say that the eps is what is off."""
    for said, denominator in _EPS_PLACED.items():
        wrong = per(gamma) * (x - per(mean)) / per(denominator(var, eps)) + per(beta)
        # to rounding, not to 1e-8: an eps far smaller than the convention's (CMU's 1e-8 under a spec left at
        # 1e-5) is within 1e-8 of none, and is a setting of the spec, not a formula of the student's to mend
        if _exactly_and_apart(theirs, wrong, right):
            raise Wrong(f"{name} divides by {said} (eps = {eps:g} here), where batch norm divides by "
                        "sqrt(var + eps): put eps inside the square root")


def _bn_dx(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dout: np.ndarray, eps: float) -> np.ndarray:
    """Training-mode batch norm's dx (features (N, D) or images (N, C, H, W)) with this ``eps`` (torch refuses
    0: 1e-300 is none beside any variance but 0)."""
    xt = _t(x)
    (torch.nn.functional.batch_norm(xt, None, None, _t(gamma, False), _t(beta, False), training=True, eps=eps)
     * torch.from_numpy(dout)).sum().backward()
    return _g(xt)


def _flat_statistic(value, d: int):
    """A running statistic or a gradient kept as (1, D) or (1, C, 1, 1) (a batch mean or sum taken with
    keepdims=True) as the (D,) one: the course's test-mode forward and its checks broadcast it alike (test mode is
    graded on its own)."""
    return value.reshape(d) if tuple(getattr(value, "shape", ())) in ((1, d), (1, d, 1, 1)) else value


def _batchnorm_alt(cfg, ctx: Context) -> Quantities:
    """CS231n's ``batchnorm_backward_alt``, graded on its gradients alone: the forward it is given is batch
    norm's, graded on that row, so a forward's bug is not charged twice under the backward's name. A forward
    whose output is wrong hands the backward its cache, which may carry the bug: where the gradients are wrong
    too, the failure says so, so that the forward is mended first."""
    forward = ctx.entry.get("forward") or f"{ctx.entry.get('class', 'the layer')}.forward"
    quantities = _batchnorm(cfg, ctx, backward_only=True)
    grads = {k: v for k, v in quantities.items() if k.startswith(("dx", "dgamma", "dbeta"))}

    def wrong(name: str) -> float | None:
        value, refs = quantities[name]
        try:
            err = error(name, value, refs)
        except Wrong:
            return np.inf
        return err if not passes(err) else None

    out_error = wrong("out") if "out" in quantities else None
    if out_error is not None:
        bad = [(k, e) for k in grads if (e := wrong(k)) is not None]
        if bad:
            k, e = bad[0]
            raise Wrong(f"{k}: relative error {e:.2e}, but {forward}'s out is wrong here too "
                        f"(relative error {out_error:.2e}) and this backward is given its cache: mend the "
                        "forward (the batch norm row) first, then grade this again")
    return grads


def _ln_configs(rng, k):
    """A batch of one (layer norm's statistics are each sample's own), then drawn shapes and eps."""
    return [dict(n=1, d=4), dict(n=4, d=3), dict(n=6, d=7)] + [
        dict(n=int(rng.integers(1, 7)), d=int(rng.integers(2, 8)), eps=float(rng.choice([1e-5, 1e-3, 1e-2])))
        for _ in range(k)]


def _layernorm(cfg, ctx: Context) -> Quantities:
    """Each row of x (N, D) normalised over its D features, then gamma and beta (D,); ln_param = {"eps": eps}.
    A layer that normalises each feature over the batch, as batch norm does, is told so."""
    rng, n, d, eps = ctx.rng, cfg["n"], cfg["d"], cfg.get("eps", 1e-5)
    x = rng.standard_normal((n, d)) * 2 + 1
    gamma, beta, dout = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal((n, d))
    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    out_t = torch.nn.functional.layer_norm(xt, (d,), gt, bt, eps)
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dx": _g(xt), "dgamma": _g(gt), "dbeta": _g(bt)}
    twin = _twin(nn.LayerNorm(d, eps=eps), x, dout, weight=gamma, bias=beta)
    twin = {"out": twin["out"], "dx": twin["dx"], "dgamma": twin["dweight"], "dbeta": twin["dbias"]}
    result = _normalisation(ctx, (x, gamma, beta), (), {"eps": eps}, dout, [ref, twin],
                            rng.standard_normal((n, d)) * 3 - 1)
    out = result["out"][0]
    over_batch = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta
    if _follows(out, over_batch, ref["out"]):
        raise Wrong("out normalises each feature over the batch (axis 0), as batch norm does; layer norm normalises "
                    "each sample over its D features (axis 1)")
    return result


def _gn_configs(rng, k):
    """Groups of two channels, one group (layer norm over C, H and W), a group per channel (instance norm), a
    batch of one, then drawn shapes, groups and eps."""
    fixed = [dict(n=2, c=4, h=3, w=3, g=2), dict(n=2, c=3, h=2, w=3, g=1), dict(n=2, c=4, h=2, w=2, g=4),
             dict(n=1, c=6, h=3, w=2, g=3)]
    drawn = []
    for _ in range(k):
        g = int(rng.integers(1, 4))
        drawn.append(dict(n=int(rng.integers(1, 4)), c=g * int(rng.integers(1, 4)), h=int(rng.integers(2, 5)),
                          w=int(rng.integers(1, 5)), g=g, eps=float(rng.choice([1e-5, 1e-3, 1e-2]))))
    return fixed + drawn


def _groupnorm(cfg, ctx: Context) -> Quantities:
    """x (N, C, H, W) normalised over each group of C / G channels (and H, W), then gamma and beta (1, C, 1, 1),
    or where the layer fails with those, flat (C,): ``forward(x, gamma, beta, G, gn_param)`` with gn_param =
    {"eps": eps}."""
    rng, c, eps = ctx.rng, cfg["c"], cfg.get("eps", 1e-5)
    shape = (cfg["n"], c, cfg["h"], cfg["w"])
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta, dout = rng.standard_normal((1, c, 1, 1)), rng.standard_normal((1, c, 1, 1)), rng.standard_normal(shape)
    xt, gt, bt = _t(x), _t(gamma), _t(beta)
    out_t = torch.nn.functional.group_norm(xt, cfg["g"], gt.reshape(c), bt.reshape(c), eps)
    (out_t * torch.from_numpy(dout)).sum().backward()
    ref = {"out": out_t.detach().numpy(), "dx": _g(xt), "dgamma": _g(gt), "dbeta": _g(bt)}
    other_x = rng.standard_normal(shape) * 3 - 1

    def graded(g, b) -> Quantities:  # dgamma and dbeta in gamma's shape, or flat (C,) wherever they come so
        result = _normalisation(ctx, (x, g, b), (cfg["g"],), {"eps": eps}, dout, [ref], other_x)
        return {k: (np.reshape(v, (1, c, 1, 1)) if k.startswith(("dgamma", "dbeta")) and np.shape(v) == (c,) else v,
                    r) for k, (v, r) in result.items()}

    result, failure, ok = _attempt(lambda: graded(gamma, beta))
    if ok:
        return result
    # gamma and beta flat, (C,), as CS231n's 2018-19 docstring gave them (its notebook: (1, C, 1, 1)); where both
    # layouts fail, the one under which more quantities pass is the layer's own, and its failure is the one told
    flat, _, flat_ok = _attempt(lambda: graded(gamma.reshape(c), beta.reshape(c)))
    if flat_ok or _passing(flat) > _passing(result):
        return flat
    if failure is not None:
        raise failure
    return result


def _normalisation(ctx: Context, inputs: tuple, extra: tuple, param: dict, dout, refs: list[dict],
                   other_x) -> Quantities:
    """A functional normalisation, ``forward(x, gamma, beta, *extra, param) -> (out, cache)`` and
    ``backward(dout, cache) -> (dx, dgamma, dbeta)``, against ``refs``; then the first cache after a forward
    of ``other_x``."""
    x, gamma, beta = inputs
    forward, backward = ctx.entry["forward"], ctx.entry["backward"]

    def args(first) -> tuple:
        return (first.copy(), gamma.copy(), beta.copy(), *extra, dict(param))

    given = args(x)
    out, cache = _forward(ctx.call(ctx.find("forward"), *given, what=forward), forward, 2)
    all_unchanged(("x", "gamma", "beta"), inputs, given)
    grads = _pair(ctx.call(ctx.find("backward"), dout.copy(), cache, what=backward), backward, 3)
    got = {"out": out, **dict(zip(("dx", "dgamma", "dbeta"), grads))}
    more = _caches_apart(ctx, args(x), args(other_x), dout, {k: refs[0][k] for k in ("dx", "dgamma", "dbeta")})
    return {**{k: (v, [r[k] for r in refs]) for k, v in got.items()}, **more}


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("batchnorm", "batch norm", ("forward", "backward"), ("class",), _bn_configs, _batchnorm),
    Kind("batchnorm_alt", "batch norm, alternative backward", ("forward", "backward"), (), _bn_configs, _batchnorm_alt),
    Kind("spatial_batchnorm", "spatial batch norm", ("forward", "backward"), (), _spatial_bn_configs, _batchnorm),
    Kind("layernorm", "layer norm", ("forward", "backward"), (), _ln_configs, _layernorm),
    Kind("spatial_groupnorm", "spatial group norm", ("forward", "backward"), (), _gn_configs, _groupnorm),
)
