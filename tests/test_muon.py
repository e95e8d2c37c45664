"""Muon (twinnet.torch_nn.optim) against direct computations, and the cifar-fast preset's use of it."""

import dataclasses

import numpy as np
import pytest
import torch

from twinnet.torch_nn.optim import Muon, orthogonalize


@pytest.mark.parametrize("shape", [(24, 60), (60, 24)])
def test_orthogonalize_keeps_the_singular_vectors_and_moves_the_values_towards_one(shape):
    g = torch.from_numpy(np.random.default_rng(0).standard_normal(shape) @ np.diag(np.geomspace(1, 30, shape[1])))
    u, s, vt = torch.linalg.svd(g, full_matrices=False)
    for steps in (3, 5):
        x = orthogonalize(g, steps)
        core = u.T @ x @ vt.T  # diagonal when x = U f(S) V^T
        off = core - torch.diag(torch.diagonal(core))
        assert x.shape == g.shape and off.abs().max() < 1e-10
        values = torch.diagonal(core)
        assert values.min() > 0 and values.max() < 1.3
    assert values.min() > 0.65  # 5 steps: every direction near 1, however small its singular value was
    assert s.max() / s.min() > 10  # which it was not before


def test_muon_steps_filters_by_their_orthogonalised_momentum_and_the_rest_as_torch_sgd():
    rng = np.random.default_rng(1)
    w0, b0 = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    w, b = torch.nn.Parameter(torch.tensor(w0)), torch.nn.Parameter(torch.tensor(b0))
    twin = torch.nn.Parameter(torch.tensor(b0))
    opt = Muon([{"params": [b]}, {"params": [w], "lr": 0.1, "momentum": 0.6, "orthogonalize": True}],
               lr=0.5, momentum=0.85, nesterov=True, weight_decay=0.01)
    sgd = torch.optim.SGD([twin], lr=0.5, momentum=0.85, nesterov=True, weight_decay=0.01)
    expected, buf = torch.tensor(w0), torch.zeros(4, 3, 3, 3, dtype=torch.float64)
    for _ in range(3):
        gw, gb = (torch.tensor(rng.standard_normal(s)) for s in ((4, 3, 3, 3), (4,)))
        w.grad, b.grad, twin.grad = gw.clone(), gb.clone(), gb.clone()
        opt.step()
        sgd.step()
        buf = 0.6 * buf + gw
        expected = expected * (4 ** 0.5 / expected.norm())  # no weight decay: the norm is held instead
        expected = expected - 0.1 * orthogonalize((gw + 0.6 * buf).reshape(4, -1), 3).reshape(4, 3, 3, 3)
    torch.testing.assert_close(b, twin, rtol=0, atol=0)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=1e-12)


def test_muon_refuses_to_orthogonalise_a_vector():
    with pytest.raises(ValueError, match="2 dimensions"):
        Muon([{"params": [torch.nn.Parameter(torch.ones(3))], "orthogonalize": True}], lr=0.1)


def test_cifar_fast_puts_the_trainable_filters_under_muon_and_the_rest_under_sgd():
    from twinnet.architectures import build_model
    from twinnet.experiments.image import param_groups
    from twinnet.learner import make_learner
    from twinnet.runner import resolve_config

    cfg = resolve_config("cifar-fast")
    model = build_model("airbench94", "torch")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    groups = param_groups(model, cfg)
    filters = [g for g in groups if g.get("orthogonalize")]
    assert len(filters) == 1 and filters[0]["lr"] == 0.12 and filters[0]["momentum"] == 0.8
    # every convolution but the frozen whitening one
    assert {id(p) for p in filters[0]["params"]} == {id(c.weight) for c in convs[1:]} and len(convs) == 7
    learner = make_learner(model, cfg, params=groups)
    opt = learner.optimizer
    assert isinstance(opt, Muon) and len(opt.param_groups) == 3
    rest, biases, muon = opt.param_groups
    assert (rest["lr"], biases["lr"], muon["lr"]) == pytest.approx((0.55, 0.55 * 64, 0.12))
    assert not rest["orthogonalize"] and rest["nesterov"] and rest["momentum"] == 0.85
    assert muon["ns_steps"] == 3 and rest["ns_steps"] == 3  # the default; only Muon's group uses it
    five = dataclasses.replace(cfg, muon_ns_steps=5)
    five = make_learner(model, five, params=param_groups(model, five))
    assert [g["ns_steps"] for g in five.optimizer.param_groups if g["orthogonalize"]] == [5]
    learner.scale_lr(0.25)  # a schedule scales each group from its own rate
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.55 / 4, 0.55 * 16, 0.03])


def test_muon_is_refused_where_it_does_not_apply(capsys):
    from twinnet.cli import main

    assert main(["run", "palindrome", "--quick", "--set", "optimizer=muon"]) == 2
    assert "optimizer=muon is not for this experiment" in capsys.readouterr().err
    assert main(["run", "cifar-fast", "--quick", "--set", "engine=numpy", "--set", "norm_bias_lr=1"]) == 2
    assert "belongs to the torch engine" in capsys.readouterr().err
    assert main(["run", "cifar-fast", "--quick", "--set", "muon_ns_steps=0"]) == 2
    assert "muon_ns_steps=0 is a number of Newton-Schulz iterations" in capsys.readouterr().err
