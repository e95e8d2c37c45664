"""The optimisers' update rules (SGD with momentum, RMSprop, Adam), their first steps against torch.optim."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from twinnet.grader.compare import Wrong, unchanged
from twinnet.grader.kinds.base import Context, Kind, Quantities, _pair, _passing
from twinnet.grader.kinds.modules import ARGUMENTS, _build
from twinnet.grader.loader import StudentError


def _optim_configs(rng, k):
    """The course's default hyperparameters first, then drawn ones (an update that ignores ``config`` and
    keeps the defaults fails those)."""
    return [dict(shape=(3, 4), steps=5, seed=int(rng.integers(2**31)), drawn=i > 0) for i in range(max(2, k))]


def _drawn_hyper(name: str, rng) -> dict:
    """Hyperparameters other than the defaults, for ``_optimizer(name)``."""
    lr = float(rng.choice([0.003, 0.03, 0.2]))
    return {"sgd_momentum": {"learning_rate": lr, "momentum": float(rng.choice([0.5, 0.8, 0.95]))},
            "rmsprop": {"learning_rate": lr, "decay_rate": float(rng.choice([0.8, 0.95, 0.99])),
                        "epsilon": float(rng.choice([1e-6, 1e-4]))},
            "adam": {"learning_rate": lr, "beta1": float(rng.choice([0.8, 0.95])),
                     "beta2": float(rng.choice([0.99, 0.9999])), "epsilon": float(rng.choice([1e-6, 1e-4]))}}[name]


def _optimizer(name: str):
    """A check of the CS231n optimiser ``name`` against ``torch.optim``, step by step."""
    hyper = {"sgd_momentum": ({"learning_rate": 0.1, "momentum": 0.9},
                              lambda p, c: torch.optim.SGD([p], lr=c["learning_rate"], momentum=c["momentum"])),
             "rmsprop": ({"learning_rate": 0.01, "decay_rate": 0.9, "epsilon": 1e-8},
                         lambda p, c: torch.optim.RMSprop([p], lr=c["learning_rate"], alpha=c["decay_rate"],
                                                          eps=c["epsilon"])),
             "adam": ({"learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
                      lambda p, c: torch.optim.Adam([p], lr=c["learning_rate"], betas=(c["beta1"], c["beta2"]),
                                                    eps=c["epsilon"]))}
    config0, make = hyper[name]

    def trajectory(w: np.ndarray, dws: list, hyper_now: dict, first_t: int, scaled: bool = False) -> list[np.ndarray]:
        """torch.optim's weights after each step of the gradients ``dws`` from ``w``; ``scaled``: Adam's epsilon
        added before the bias correction scales the step (the paper's efficient form, and Deep Learning from
        Scratch's: lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps))."""
        if scaled:
            b1, b2, eps, lr = hyper_now["beta1"], hyper_now["beta2"], hyper_now["epsilon"], hyper_now["learning_rate"]
            m, v, w, steps = np.zeros_like(w), np.zeros_like(w), w.copy(), []
            for t, dw in enumerate(dws, start=first_t):
                m, v = b1 * m + (1 - b1) * dw, b2 * v + (1 - b2) * dw * dw
                w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
                steps.append(w.copy())
            return steps
        p = torch.tensor(w.copy(), requires_grad=True)
        opt = make(p, hyper_now)
        if name == "adam" and first_t == 2:  # CS231n's 2017 starter: t counted from 2
            opt.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(p),
                            "exp_avg_sq": torch.zeros_like(p)}
        steps = []
        for dw in dws:
            p.grad = torch.from_numpy(dw.copy())
            opt.step()
            steps.append(p.detach().numpy().copy())
        return steps

    def check(cfg, ctx: Context) -> Quantities:
        rng = np.random.default_rng(cfg["seed"])
        w = rng.standard_normal(cfg["shape"])
        hyper_now = _drawn_hyper(name, rng) if cfg.get("drawn") else config0
        dws = [rng.standard_normal(cfg["shape"]) for _ in range(cfg["steps"])]
        module = ctx.convention["style"] == "module"
        if module and "epsilon" in hyper_now:  # a class's epsilon is its own (the book's 1e-7), not an argument
            hyper_now = {**hyper_now, "epsilon": float(ctx.entry.get("eps", 1e-8))}
        first_t, scaled = ctx.entry.get("first_t", 1), ctx.entry.get("eps_form", "corrected") == "scaled"
        refs = trajectory(w, dws, hyper_now, first_t, scaled)
        if module:
            return _updates(ctx, name, w, dws, refs, hyper_now, lambda key: trajectory(
                w, dws, {**hyper_now, key: config0[key]}, first_t, scaled), config0)
        config, mine, result = dict(hyper_now), w.copy(), {}
        # the rate as the update's own argument, not in config: I2DL's _update(w, dw, config, lr)
        lr = (config.pop("learning_rate"),) if ctx.entry.get("learning_rate", "config") == "argument" else ()
        for step, (dw, ref) in enumerate(zip(dws, refs), start=1):
            dws_given = dw.copy()
            function = ctx.find("function")
            try:
                out = _pair(ctx.call(function, mine, dws_given, config, *lr, what=ctx.entry["function"]),
                            ctx.entry["function"], 2)
            except StudentError as e:  # an update that takes the rate as its fourth argument, not given it
                if lr or e.timed_out or not _takes_rate(function):
                    raise
                raise Wrong(f"{e}: {ctx.entry['function']} takes the learning rate as its own argument, and this "
                            "convention gives it in config; for a course whose update is (w, dw, config, lr): "
                            "learning_rate = \"argument\" in a spec's table for this layer") from None
            unchanged("dw", dw, dws_given)
            mine, config = out
            result[f"w after step {step}"] = (mine, [ref])
            if not isinstance(config, dict):
                raise Wrong(f"{ctx.entry['function']} returned a {type(config).__name__} as its config, not a dict")
            mine = np.array(mine, dtype=np.float64, copy=True) if mine is not None else mine
            if mine is None:
                break
            if step == 1:
                _first_step(name, mine, w, dw, hyper_now, ref, first_t)
        _dampened(name, result, w, dws, hyper_now)
        if cfg.get("drawn") and _passing(result) < len(result):
            _ignored(ctx, result, [k for k in hyper_now if hyper_now[k] != config0[k]],
                     lambda key: trajectory(w, dws, {**hyper_now, key: config0[key]}, first_t, scaled), hyper_now,
                     config0)
        return result

    return check


def _updates(ctx: Context, name: str, w: np.ndarray, dws: list, refs: list, hyper: dict, replayed,
             defaults: dict) -> Quantities:
    """A module-style optimiser, Deep Learning from Scratch's: a class made with its hyperparameters (``ARGUMENTS``,
    ``Momentum(lr, momentum)``), whose ``update(params, grads)`` changes the arrays of a dict of parameters in place
    and keeps its own state between calls."""
    opt = _build(ctx, "class", *(hyper[key] for key, _ in ARGUMENTS[name]))
    cls, mine, result = ctx.entry["class"], w.copy(), {}
    for step, (dw, ref) in enumerate(zip(dws, refs), start=1):
        params, grads = {"W": mine.copy()}, {"W": dw.copy()}
        ctx.call(opt.update, params, grads, what=f"{cls}.update")
        unchanged("grads['W']", dw, grads["W"])
        result[f"w after step {step}"] = (params.get("W"), [ref])
        try:
            mine = np.array(params.get("W"), dtype=np.float64, copy=True)
        except Exception:  # noqa: BLE001 - not numbers: the comparison tells it
            break
        if mine.shape != w.shape:
            break
        if step == 1:
            _first_step(name, mine, w, dw, hyper, ref, ctx.entry.get("first_t", 1))
    _dampened(name, result, w, dws, hyper)
    drawn = [k for k, _ in ARGUMENTS[name] if hyper[k] != defaults[k]]
    if drawn and _passing(result) < len(result):
        _ignored(ctx, result, drawn, replayed, hyper, defaults)
    return result


def _takes_rate(fn) -> bool:
    """Whether an update's fourth positional parameter is its learning rate (``lr``, ``learning_rate``)."""
    try:
        parameters = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(parameters) >= 4 and parameters[3].name.lower() in ("lr", "learning_rate", "rate", "eta", "alpha")


def _dampened(name: str, result: Quantities, w: np.ndarray, dws: list, hyper: dict) -> None:
    """``Wrong`` naming it where a failing momentum update's weights are, at every step, those of a velocity
    dampened as an exponential average from the first step, v = momentum * v + (1 - momentum) * dw."""
    if name != "sgd_momentum" or _passing(result) == len(result):
        return
    lr, mu = hyper["learning_rate"], hyper["momentum"]
    v, w, steps = np.zeros_like(w), w.copy(), []
    for dw in dws[:len(result)]:  # (not torch's dampening, whose first step takes dw whole)
        v = mu * v + (1 - mu) * dw
        w = w - lr * v
        steps.append(w)
    if _passing({k: (value, [s]) for (k, (value, _)), s in zip(result.items(), steps)}) == len(result):
        raise Wrong("the velocity is dampened, an average of the gradients, v = momentum * v + (1 - momentum) * dw: "
                    "this convention's momentum adds each gradient whole, v = momentum * v - learning_rate * dw, then "
                    "w + v (torch's SGD with momentum and no dampening)")


def _ignored(ctx: Context, result: Quantities, drawn: list[str], replayed, hyper: dict, defaults: dict) -> None:
    """``Wrong`` naming it where a failing update's weights are, at every step, those of the drawn hyperparameters
    with one of them at its default (``replayed(key)``): the update ignores that entry of config."""
    mine = [(name, value, refs[0]) for name, (value, refs) in result.items()]
    for key in drawn:
        steps = replayed(key)
        if _passing({name: (value, [s]) for (name, value, _), s in zip(mine, steps)}) == len(mine) and \
                _passing({name: (s, [ref]) for (name, _, ref), s in zip(mine, steps)}) < len(mine):
            given = "its lr argument" if key == "learning_rate" and ctx.entry.get("learning_rate") == "argument" \
                else f"the {key} it is made with" if ctx.convention["style"] == "module" else f"config['{key}']"
            raise Wrong(f"the weights are those of {key} = {defaults[key]:g}, the default, where the grader gives "
                        f"{hyper[key]:g}: the update ignores {given} (a value written into the code, or a "
                        "setdefault read before the given one)")


def _first_step(name: str, mine, w, dw, hyper: dict, ref, first_t: int = 1) -> None:
    """``Wrong`` naming it where the student's first step of optimiser ``name`` (from a zero velocity, cache or
    moments) is exactly that of a known misreading of the update, and not the reference's."""
    if np.shape(mine) != np.shape(w) or not np.all(np.isfinite(mine)):
        return
    for misread, message in _first_step_misreadings(name, w, dw, hyper, first_t):
        if np.allclose(mine, misread, rtol=1e-9, atol=0) and not np.allclose(mine, ref, rtol=1e-6, atol=0):
            raise Wrong(message)


def _first_step_misreadings(name: str, w, dw, hyper: dict, first_t: int = 1) -> list[tuple[np.ndarray, str]]:
    """The first steps of an optimiser's known misreadings, each with what to tell: Adam's t = 2 (CS231n's 2017
    starter code, where torch counts the first step as t = 1; t = 1 where the convention's ``first_t`` is 2) and no
    bias correction; RMSprop's epsilon inside the square root and its decay rate weighing the new squared gradient;
    Nesterov's momentum for the plain one."""
    lr = hyper["learning_rate"]
    if name == "sgd_momentum":
        mu = hyper["momentum"]
        return [(w - (1 + mu) * lr * dw, "the update is Nesterov's momentum (w - momentum * v_prev + (1 + momentum) "
                 "* v): this convention's sgd_momentum is the plain one, v = momentum * v - learning_rate * dw, "
                 "then w + v, as torch's SGD with momentum")]
    if name == "rmsprop":
        decay, eps = hyper["decay_rate"], hyper["epsilon"]
        return [(w - lr * dw / np.sqrt((1 - decay) * dw**2 + eps), "epsilon is inside the square root, dw / "
                 "sqrt(cache + epsilon); RMSprop (torch's, and this convention's) adds it outside, dw / (sqrt(cache) + "
                 "epsilon)"),
                (w - lr * dw / (np.sqrt(decay * dw**2) + eps), "the cache keeps (1 - decay_rate) of itself and adds "
                 "decay_rate times the new squared gradient; decay_rate is the old cache's weight: cache = "
                 "decay_rate * cache + (1 - decay_rate) * dw**2")]
    if name == "adam" and first_t == 2:  # the paper's count, where this course's starter's is t = 2
        return [(w - lr * dw / (np.abs(dw) + hyper["epsilon"]), "the first step's bias correction uses t = 1 (as "
                 "the paper and torch), and this convention counts as its starter code does, config['t'] from 1, "
                 "incremented before use, so that the first step is t = 2 (first_t = 2 in its spec)")]
    if name == "adam":
        b1, b2, eps = hyper["beta1"], hyper["beta2"], hyper["epsilon"]
        m_hat, v_hat = (1 - b1) * dw / (1 - b1**2), (1 - b2) * dw**2 / (1 - b2**2)
        inside = "epsilon is inside the square root, m / sqrt(v + epsilon); Adam adds it outside, m / (sqrt(v) + epsilon)"
        return [(w - lr * dw / np.sqrt(dw**2 + eps), inside),  # the first step's corrected moments: dw and dw**2
                (w - lr * np.sqrt(1 - b2) * dw / np.sqrt((1 - b2) * dw**2 + eps), inside),  # eps_form = "scaled"
                (w - lr * m_hat / (np.sqrt(v_hat) + eps), "the first step's bias correction uses t = 2 "
                 "(config['t'] starts at 1 and is incremented before use, as CS231n's 2017 starter code had it); "
                 "the first step is t = 1, as in the original paper and torch: start t at 0, or increment it after "
                 "use (a course whose starter counts so: first_t = 2 in a spec)"),
                (w - lr * (1 - b1) * dw / (np.sqrt((1 - b2) * dw**2) + eps), "the first step has no bias "
                 "correction: increment config['t'] at each step and divide the moments by (1 - beta1**t) and (1 - "
                 "beta2**t) before the update, as the original paper and torch do")]
    return []


# this module's kinds, in the order ``twinnet check`` lists them
KINDS = (
    Kind("sgd_momentum", "SGD with momentum", ("function",), ("class",), _optim_configs, _optimizer("sgd_momentum")),
    Kind("rmsprop", "RMSprop", ("function",), ("class",), _optim_configs, _optimizer("rmsprop")),
    Kind("adam", "Adam", ("function",), ("class",), _optim_configs, _optimizer("adam")),
)
