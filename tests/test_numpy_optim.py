"""twinnet.numpy_nn.SGD against torch.optim.SGD: equal start, equal gradients, equal path."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from twinnet.check import assert_close_rel, rel_error

from twinnet import numpy_nn as nnp

SHAPES = [(3, 4), (4,), (2, 3, 2)]
N_STEPS = 12
CONFIGS = list(itertools.product([0.0, 0.9], [False, True], [0.0, 1e-2], [0.0, 0.5]))


def _valid(momentum: float, nesterov: bool, dampening: float) -> bool:
    return not nesterov or (momentum > 0 and dampening == 0)


def _twin_params(rng: np.random.Generator):
    init = [rng.standard_normal(s) for s in SHAPES]
    return init, [nnp.Parameter(a.copy()) for a in init], [torch.nn.Parameter(torch.tensor(a)) for a in init]


@pytest.mark.parametrize("momentum, nesterov, weight_decay, dampening", CONFIGS)
def test_sgd_follows_torch(momentum, nesterov, weight_decay, dampening):
    kwargs = dict(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, dampening=dampening)
    rng = np.random.default_rng(CONFIGS.index((momentum, nesterov, weight_decay, dampening)))
    init, n_params, t_params = _twin_params(rng)
    # a parameter that never gets a gradient: both optimisers must leave it alone
    idle = rng.standard_normal((2, 2))
    n_idle, t_idle = nnp.Parameter(idle.copy()), torch.nn.Parameter(torch.tensor(idle))

    if not _valid(momentum, nesterov, dampening):
        with pytest.raises(ValueError):
            torch.optim.SGD(t_params, lr=0.1, **kwargs)
        with pytest.raises(ValueError, match="(?i)nesterov"):
            nnp.SGD(n_params, lr=0.1, **kwargs)
        return

    n_opt = nnp.SGD([*n_params, n_idle], lr=0.1, **kwargs)
    t_opt = torch.optim.SGD([*t_params, t_idle], lr=0.1, **kwargs)
    for step in range(N_STEPS):
        lr = 0.05 * (1 + step % 3)  # a schedule: the optimiser must read lr at each step
        n_opt.lr = lr
        t_opt.param_groups[0]["lr"] = lr
        grads = []
        for n_p, t_p in zip(n_params, t_params):
            g = 0.5 * n_p.data + rng.standard_normal(n_p.shape)  # a quadratic's gradient, plus noise
            if step % 2:  # written into the existing arrays, as zero_grad(set_to_none=False) users do,
                n_p.grad[...] = g  # so a momentum buffer aliasing .grad would be corrupted
                t_p.grad.copy_(torch.from_numpy(g))
            else:
                n_p.grad, t_p.grad = g.copy(), torch.tensor(g)
            grads.append(g)
        n_opt.step()
        t_opt.step()
        for n_p, g in zip(n_params, grads):  # torch never writes into .grad; neither may we
            np.testing.assert_array_equal(n_p.grad, g)

    errors = {f"param{i}": rel_error(n_p.data, t_p.detach().numpy()) for i, (n_p, t_p) in enumerate(zip(n_params, t_params))}
    assert_close_rel(errors, 1e-12)
    assert min(rel_error(n_p.data, a) for n_p, a in zip(n_params, init)) > 1e-2  # the weights did move
    np.testing.assert_array_equal(n_idle.data, idle)
    np.testing.assert_array_equal(t_idle.detach().numpy(), idle)


def test_step_after_zero_grad_skips_parameters_even_with_momentum():
    rng = np.random.default_rng(0)
    _, n_params, t_params = _twin_params(rng)
    n_opt = nnp.SGD(n_params, lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD(t_params, lr=0.1, momentum=0.9)
    for n_p, t_p in zip(n_params, t_params):
        g = rng.standard_normal(n_p.shape)
        n_p.grad, t_p.grad = g.copy(), torch.tensor(g)
    n_opt.step()
    t_opt.step()
    before = [p.data.copy() for p in n_params]
    t_before = [p.detach().numpy().copy() for p in t_params]
    n_opt.zero_grad()
    t_opt.zero_grad()
    assert all(p.grad is None for p in n_params)
    n_opt.step()
    t_opt.step()
    for p, b, t_p, t_b in zip(n_params, before, t_params, t_before):
        np.testing.assert_array_equal(p.data, b)
        np.testing.assert_array_equal(t_p.detach().numpy(), t_b)


@pytest.mark.parametrize("lr", [-1e-3, -1.0])
def test_negative_learning_rate_is_rejected(lr):
    with pytest.raises(ValueError, match="(?i)learning rate"):
        nnp.SGD([nnp.Parameter(np.zeros(2))], lr=lr)


@pytest.mark.parametrize("field", ["momentum", "weight_decay"])
def test_negative_hyperparameters_are_rejected(field):
    with pytest.raises(ValueError, match=field):
        nnp.SGD([nnp.Parameter(np.zeros(2))], lr=0.1, **{field: -0.5})


def test_empty_parameter_list_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        nnp.SGD([], lr=0.1)
