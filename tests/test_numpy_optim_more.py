"""Adam, AdamW, RMSprop and clip_grad_norm_ against torch: equal start, equal gradients, equal path.

Also the optimiser checkpoint: ``state_dict`` -> .npz -> ``load_state_dict`` resumes bit for bit.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
from twinnet.check import assert_close_rel, rel_error

from twinnet import numpy_nn as nnp
from twinnet.numpy_nn.clip import clip_grad_norm_
from twinnet.numpy_nn.optim import SGD, Adam, AdamW, RMSprop

SHAPES = [(3, 4), (4,), (2, 3, 2)]
N_STEPS = 20

CONFIGS = (
    [("Adam", dict(weight_decay=wd, amsgrad=ams)) for wd, ams in itertools.product([0.0, 0.1], [False, True])]
    + [("Adam", dict(betas=(0.8, 0.95), eps=1e-3))]
    + [("AdamW", dict(weight_decay=wd, amsgrad=ams)) for wd, ams in itertools.product([0.0, 1e-2, 0.3], [False, True])]
    + [
        ("RMSprop", dict(weight_decay=wd, momentum=m, centered=c))
        for wd, m, c in itertools.product([0.0, 0.1], [0.0, 0.9], [False, True])
    ]
    + [("RMSprop", dict(alpha=0.9, eps=1e-4))]
)
OURS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop}


def _twin_params(rng: np.random.Generator):
    init = [rng.standard_normal(s) for s in SHAPES]
    return init, [nnp.Parameter(a.copy()) for a in init], [torch.nn.Parameter(torch.tensor(a)) for a in init]


def _set_grads(rng, step, n_params, t_params=()):
    """A quadratic's gradient plus noise, shrunk after step 8 so that AMSGrad's running max leaves v behind."""
    grads = []
    scale = 1.0 if step < 8 else 0.05
    for i, n_p in enumerate(n_params):
        g = scale * (0.5 * n_p.data + rng.standard_normal(n_p.shape))
        n_p.grad = g.copy()
        if t_params:
            t_params[i].grad = torch.tensor(g)
        grads.append(g)
    return grads


@pytest.fixture(params=["whole", "blocks"])
def update_blocks(request, monkeypatch):
    """Each parameter updated whole, or in blocks of 2 elements shared out between 2 threads."""
    from twinnet.numpy_nn import backend

    if request.param == "blocks":
        before = backend.num_threads()
        monkeypatch.setattr(backend, "_BLOCK_ITEMS", 2)
        monkeypatch.setattr(backend, "_MIN_ITEMS", 1)
        backend.set_num_threads(2)
        yield request.param
        backend.set_num_threads(before)
    else:
        yield request.param


@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_optimizer_follows_torch(name, kwargs, update_blocks):
    rng = np.random.default_rng(CONFIGS.index((name, kwargs)))
    init, n_params, t_params = _twin_params(rng)
    idle = rng.standard_normal((2, 2))  # never gets a gradient: both must leave it alone
    n_idle, t_idle = nnp.Parameter(idle.copy()), torch.nn.Parameter(torch.tensor(idle))
    n_opt = OURS[name]([*n_params, n_idle], lr=0.01, **kwargs)
    t_opt = getattr(torch.optim, name)([*t_params, t_idle], lr=0.01, **kwargs)

    for step in range(N_STEPS):
        lr = 0.01 * (1 + step % 3)  # a schedule: the optimiser must read lr at each step
        n_opt.lr = lr
        t_opt.param_groups[0]["lr"] = lr
        grads = _set_grads(rng, step, n_params, t_params)
        n_opt.step()
        t_opt.step()
        for n_p, g in zip(n_params, grads):  # torch never writes into .grad; neither may we
            np.testing.assert_array_equal(n_p.grad, g)

    errors = {f"param{i}": rel_error(n_p.data, t_p.detach().numpy()) for i, (n_p, t_p) in enumerate(zip(n_params, t_params))}
    # the state under torch's names: step counts and every moment array
    for i, (n_state, t_p) in enumerate(zip(n_opt.state, t_params)):
        t_state = t_opt.state[t_p]
        assert set(n_state) == set(t_state), f"state names {sorted(n_state)} != torch's {sorted(t_state)}"
        assert n_state["step"] == int(t_state["step"]) == N_STEPS
        for key in set(t_state) - {"step"}:
            errors[f"state{i}.{key}"] = rel_error(n_state[key], t_state[key].numpy())
    assert_close_rel(errors, 1e-10)
    assert min(rel_error(n_p.data, a) for n_p, a in zip(n_params, init)) > 1e-3  # the weights did move
    np.testing.assert_array_equal(n_idle.data, idle)
    assert n_opt.state[-1] == {}
    if kwargs.get("amsgrad"):  # the option was exercised: the running max left v behind
        t_state = t_opt.state[t_params[0]]
        assert (t_state["max_exp_avg_sq"] > t_state["exp_avg_sq"] * 1.005).any()


def test_adam_defaults_are_torchs():
    p = [nnp.Parameter(np.zeros(2))]
    for ours, theirs in [(Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW), (RMSprop, torch.optim.RMSprop)]:
        opt = ours(p)
        t_defaults = theirs([torch.nn.Parameter(torch.zeros(2))]).defaults
        for name in ("lr", *ours._hyper):
            assert getattr(opt, name) == t_defaults[name], f"{ours.__name__}.{name}"


def test_float32_parameters_stay_float32():
    rng = np.random.default_rng(0)
    for cls in (Adam, AdamW, RMSprop):
        p = nnp.Parameter(rng.standard_normal((3, 3)).astype(np.float32))
        opt = cls([p], lr=0.1, weight_decay=0.1)
        p.grad = rng.standard_normal((3, 3)).astype(np.float32)
        opt.step()
        assert p.data.dtype == np.float32
        assert all(v.dtype == np.float32 for k, v in opt.state[0].items() if k != "step")


# --- validation, as torch ----------------------------------------------------------------------------

BAD = [
    (Adam, dict(lr=-1e-3), "learning rate", -1e-3),
    (Adam, dict(eps=-1e-8), "epsilon", -1e-8),
    (Adam, dict(betas=(1.0, 0.999)), "beta parameter at index 0", 1.0),
    (Adam, dict(betas=(0.9, -0.1)), "beta parameter at index 1", -0.1),
    (Adam, dict(weight_decay=-0.5), "weight_decay", -0.5),
    (AdamW, dict(lr=-2.0), "learning rate", -2.0),
    (AdamW, dict(betas=(-0.5, 0.999)), "beta parameter at index 0", -0.5),
    (AdamW, dict(weight_decay=-1e-2), "weight_decay", -1e-2),
    (RMSprop, dict(lr=-0.1), "learning rate", -0.1),
    (RMSprop, dict(alpha=-0.5), "alpha", -0.5),
    (RMSprop, dict(eps=-1.0), "epsilon", -1.0),
    (RMSprop, dict(momentum=-0.9), "momentum", -0.9),
    (RMSprop, dict(weight_decay=-0.25), "weight_decay", -0.25),
]


@pytest.mark.parametrize("cls, kwargs, what, value", BAD, ids=[f"{c.__name__}-{k}" for c, k, _, _ in BAD])
def test_invalid_hyperparameters_are_rejected_like_torch(cls, kwargs, what, value):
    with pytest.raises(ValueError):
        getattr(torch.optim, cls.__name__)([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    with pytest.raises(ValueError, match=f"(?i){re.escape(what)}.*{re.escape(str(value))}"):
        cls([nnp.Parameter(np.zeros(2))], **kwargs)


# --- checkpoints -------------------------------------------------------------------------------------

RESUME = [
    ("Adam", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.05, betas=(0.8, 0.9))),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
]


@pytest.mark.parametrize("name, kwargs", RESUME, ids=[n for n, _ in RESUME])
def test_state_dict_round_trip_resumes_exactly(name, kwargs, tmp_path):
    cls = OURS[name]
    rng = np.random.default_rng(1)
    _, params, _ = _twin_params(rng)
    opt = cls(params, **kwargs)
    for step in range(6):
        _set_grads(rng, step, params)
        opt.step()

    # checkpoint through a file, into a fresh optimiser built with the class defaults
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        saved = dict(f)
    resumed_params = [nnp.Parameter(p.data.copy()) for p in params]
    resumed = cls(resumed_params)
    resumed.load_state_dict(saved)
    for hyper in ("lr", *cls._hyper):
        assert getattr(resumed, hyper) == getattr(opt, hyper), hyper

    for step in range(6, 14):
        grads = _set_grads(rng, step, params)
        for p, g in zip(resumed_params, grads):
            p.grad = g.copy()
        opt.step()
        resumed.step()
    for p, q in zip(params, resumed_params):
        np.testing.assert_array_equal(q.data, p.data)


def test_a_fresh_optimizer_does_not_follow_without_the_state():
    """The resume test's control: without the moments and step count the path differs."""
    rng = np.random.default_rng(1)
    _, params, _ = _twin_params(rng)
    opt = Adam(params, lr=0.05)
    for step in range(6):
        _set_grads(rng, step, params)
        opt.step()
    fresh_params = [nnp.Parameter(p.data.copy()) for p in params]
    fresh = Adam(fresh_params, lr=0.05)
    grads = _set_grads(rng, 6, params)
    for p, g in zip(fresh_params, grads):
        p.grad = g.copy()
    opt.step()
    fresh.step()
    assert max(rel_error(q.data, p.data) for p, q in zip(params, fresh_params)) > 1e-6


def test_state_dict_is_a_copy_of_numpy_arrays():
    p = nnp.Parameter(np.ones(3))
    opt = Adam([p], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    assert sd["state.0.step"].dtype == np.int64 and int(sd["state.0.step"]) == 1
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["state.0.exp_avg"][...] = 0.0
    assert np.all(opt.state[0]["exp_avg"] != 0.0)


def _stepped_adam():
    p = nnp.Parameter(np.ones((2, 3)))
    opt = Adam([p], lr=0.1)
    p.grad = np.full((2, 3), 0.5)
    opt.step()
    return opt


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda sd: sd.update(optimizer=np.asarray("RMSprop")), "RMSprop"),
        (lambda sd: sd.pop("state.0.exp_avg_sq"), "exp_avg_sq"),
        (lambda sd: sd.pop("hyper.betas"), "betas"),
        (lambda sd: sd.update({"state.0.exp_avg": np.zeros((3, 2))}), r"\(3, 2\)"),
        (lambda sd: sd.update({"state.1.exp_avg": np.zeros((2, 3))}), "state.1.exp_avg"),
        (lambda sd: sd.update({"hyper.betas": np.asarray(0.9)}), "shape"),
    ],
    ids=["other-class", "missing-moment", "missing-hyper", "wrong-shape", "extra-param", "bad-hyper"],
)
def test_load_state_dict_rejects_a_mismatch_and_changes_nothing(corrupt, match):
    opt = _stepped_adam()
    sd = opt.state_dict()
    corrupt(sd)
    target = Adam([nnp.Parameter(np.ones((2, 3)))], lr=0.7, betas=(0.5, 0.6))
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(sd)
    assert target.lr == 0.7 and target.betas == (0.5, 0.6) and target.state == [{}]


# --- gradient clipping -------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    rng = np.random.default_rng(7)
    _, n_params, t_params = _twin_params(rng)
    for n_p, t_p in zip(n_params[:-1], t_params[:-1]):  # the last has no gradient, in both
        g = rng.standard_normal(n_p.shape)
        n_p.grad, t_p.grad = g.copy(), torch.tensor(g)
    before = [p.grad.copy() for p in n_params[:-1]]

    total = clip_grad_norm_(n_params, max_norm, norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(t_params, max_norm, norm_type)

    assert isinstance(total, float)
    assert total == pytest.approx(float(t_total), rel=1e-12)
    errors = {f"grad{i}": rel_error(n_p.grad, t_p.grad.numpy()) for i, (n_p, t_p) in enumerate(zip(n_params[:-1], t_params[:-1]))}
    assert_close_rel(errors, 1e-12)
    assert n_params[-1].grad is None
    p = float(norm_type)
    flat = np.concatenate([g.ravel() for g in before])
    assert total == pytest.approx(np.linalg.norm(flat, ord=p), rel=1e-12)
    clipped = np.linalg.norm(np.concatenate([q.grad.ravel() for q in n_params[:-1]]), ord=p)
    if max_norm < total:
        assert clipped == pytest.approx(max_norm, rel=1e-5)
    else:
        for q, g in zip(n_params, before):
            np.testing.assert_array_equal(q.grad, g)


def test_clip_grad_norm_single_parameter_and_no_gradients():
    p = nnp.Parameter(np.zeros(4))
    assert clip_grad_norm_([p], 1.0) == 0.0  # no gradient at all: torch returns 0 too
    p.grad = np.array([3.0, 4.0, 0.0, 0.0])
    assert clip_grad_norm_(p, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad, [0.6, 0.8, 0.0, 0.0], rtol=1e-6)


def test_clip_grad_norm_nonfinite_like_torch():
    g = np.array([1.0, np.nan, 2.0])
    n_p, t_p = nnp.Parameter(np.zeros(3)), torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    n_p.grad, t_p.grad = g.copy(), torch.tensor(g)
    with pytest.raises(RuntimeError, match="nan"):
        clip_grad_norm_([n_p], 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_([t_p], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(n_p.grad, g)  # the failed call changed nothing
    total = clip_grad_norm_([n_p], 1.0)
    t_total = torch.nn.utils.clip_grad_norm_([t_p], 1.0)
    assert math.isnan(total) and math.isnan(float(t_total))
    assert np.isnan(t_p.grad.numpy()).all() and np.isnan(n_p.grad).all()


@pytest.mark.parametrize("name", ["Adam", "RMSprop"])
def test_a_non_contiguous_parameter_is_updated_in_place_like_a_contiguous_one(name, update_blocks):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 5))
    strided, dense = nnp.Parameter(a.T.copy().T), nnp.Parameter(a.copy())  # same values, different memory order
    assert not strided.data.flags.c_contiguous
    held = strided.data
    opt_s, opt_d = OURS[name]([strided], lr=0.1), OURS[name]([dense], lr=0.1)
    for _ in range(3):
        g = rng.standard_normal(a.shape)
        strided.grad, dense.grad = g.T.copy().T, g.copy()
        opt_s.step()
        opt_d.step()
    assert strided.data is held and not np.array_equal(held, a)  # updated where it lies
    np.testing.assert_array_equal(strided.data, dense.data)
