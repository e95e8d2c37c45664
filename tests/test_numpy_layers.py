"""Each NumPy layer against its torch twin (float64, rel <= 1e-9) and against central
finite differences (rel <= 1e-6), over seeded random shapes rather than one hand-picked case."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from twinnet.check import assert_close_rel, finite_difference_check, rel_error, torch_twin_check

import twinnet.torch_nn
from twinnet import numpy_nn as nnp

TWIN_TOL = 1e-9
FD_TOL = 1e-6
SEEDS = range(24)
FEW_SEEDS = range(12)


def _away_from_zero(rng: np.random.Generator, shape, low: float = 0.1, high: float = 3.0) -> np.ndarray:
    """Entries with |x| in [low, high]: far from ReLU's kink compared with the FD step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


# --- Linear ----------------------------------------------------------------------


def _linear_case(seed: int):
    """Shapes from the seed; cycles through 0-3 leading dims and with/without bias."""
    rng = np.random.default_rng(seed)
    n_in, n_out = (int(v) for v in rng.integers(1, 7, size=2))
    lead = tuple(int(v) for v in rng.integers(1, 5, size=seed % 4))  # () is a 1-D input, as torch allows
    bias = (seed // 4) % 2 == 0
    x = rng.standard_normal((*lead, n_in))
    return rng, n_in, n_out, bias, x


@pytest.mark.parametrize("seed", SEEDS)
def test_linear_matches_torch(seed):
    rng, n_in, n_out, bias, x = _linear_case(seed)
    torch.manual_seed(seed)
    errors = torch_twin_check(nnp.Linear(n_in, n_out, bias=bias), torch.nn.Linear(n_in, n_out, bias=bias), x, rng=rng)
    expected = {"out", "dx", "grad[weight]"} | ({"grad[bias]"} if bias else set())
    assert expected <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_linear_matches_finite_differences(seed):
    rng, n_in, n_out, bias, x = _linear_case(seed)
    errors = finite_difference_check(nnp.Linear(n_in, n_out, bias=bias), x, rng=rng)
    assert {"dx", "grad[weight]"} | ({"grad[bias]"} if bias else set()) == errors.keys()
    assert_close_rel(errors, FD_TOL)


# --- activations and Flatten -----------------------------------------------------

ACTIVATIONS = [(nnp.ReLU, torch.nn.ReLU), (nnp.Tanh, torch.nn.Tanh), (nnp.Sigmoid, torch.nn.Sigmoid)]


def _random_shape(rng: np.random.Generator, min_ndim: int = 1, max_ndim: int = 4) -> tuple[int, ...]:
    return tuple(int(v) for v in rng.integers(1, 6, size=rng.integers(min_ndim, max_ndim + 1)))


@pytest.mark.parametrize("seed", FEW_SEEDS)
@pytest.mark.parametrize("np_cls, torch_cls", ACTIVATIONS, ids=lambda c: c.__name__)
def test_activation_matches_torch(np_cls, torch_cls, seed):
    rng = np.random.default_rng(seed)
    x = 4.0 * rng.standard_normal(_random_shape(rng))
    x[rng.random(x.shape) < 0.2] = 0.0  # exact zeros: ReLU's gradient there must be 0, as torch has it
    errors = torch_twin_check(np_cls(), torch_cls(), x, rng=rng)
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("seed", FEW_SEEDS)
@pytest.mark.parametrize("np_cls", [c for c, _ in ACTIVATIONS], ids=lambda c: c.__name__)
def test_activation_matches_finite_differences(np_cls, seed):
    rng = np.random.default_rng(seed)
    x = _away_from_zero(rng, _random_shape(rng))
    errors = finite_difference_check(np_cls(), x, rng=rng)
    assert errors.keys() == {"dx"}
    assert_close_rel(errors, FD_TOL)


def test_sigmoid_saturates_without_overflow():
    x = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    with np.errstate(all="raise"):  # an exp overflow would raise here
        out = nnp.Sigmoid().forward(x)
    ref = torch.sigmoid(torch.from_numpy(x)).numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("np_cls, torch_fn", [(nnp.Sigmoid, torch.sigmoid), (nnp.SiLU, F.silu)],
                         ids=["Sigmoid", "SiLU"])
def test_sigmoid_keeps_its_relative_precision_far_down_its_tail(np_cls, torch_fn):
    """Where the sigmoid is tiny (x from -20 to -700) its value and gradient are torch's to float64's precision
    relative to themselves, not only near 0 in absolute terms: log(sigmoid(-40)) is -40, not -inf."""
    x = -np.geomspace(20, 700, 25)
    xt = torch.tensor(x, requires_grad=True)
    torch_fn(xt).sum().backward()
    layer = np_cls()
    out = layer(x)
    np.testing.assert_allclose(out, torch_fn(torch.from_numpy(x)).numpy(), rtol=1e-13, atol=0)
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), xt.grad.numpy(), rtol=1e-12, atol=0)


def test_relu_takes_a_0_d_input_and_elu_passes_a_nans_gradient_as_torch_does():
    relu = nnp.ReLU()
    for v in (-1.5, 0.0, 2.5):
        out = relu(np.array(v))
        assert out.shape == () and out == max(v, 0.0)
        grad = relu.backward(np.array(3.0))
        assert grad.shape == () and grad == (3.0 if v > 0 else 0.0)
    x = np.array([np.nan, -1.0, 0.0, 2.0])
    xt = torch.tensor(x, requires_grad=True)
    F.elu(xt).backward(torch.ones(4))
    elu = nnp.ELU()
    np.testing.assert_array_equal(elu(x), F.elu(torch.from_numpy(x)).numpy())
    np.testing.assert_allclose(elu.backward(np.ones(4)), xt.grad.numpy(), rtol=1e-15)  # [1, e^-1, 1, 1]


@pytest.mark.parametrize("seed", FEW_SEEDS)
def test_flatten_matches_torch_and_finite_differences(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(_random_shape(rng, min_ndim=2, max_ndim=5))
    assert_close_rel(torch_twin_check(nnp.Flatten(), torch.nn.Flatten(), x, rng=rng), TWIN_TOL)
    assert_close_rel(finite_difference_check(nnp.Flatten(), x, rng=rng), FD_TOL)


# --- CrossEntropyLoss ----------------------------------------------------------------


def _ce_case(seed: int):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 9)), int(rng.integers(2, 7))
    return rng, 3.0 * rng.standard_normal((n, c)), rng.integers(0, c, size=n)


@pytest.mark.parametrize("seed", FEW_SEEDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_functional(smoothing, seed):
    rng, logits, target = _ce_case(seed)
    lt = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(lt, torch.from_numpy(target), label_smoothing=smoothing)
    ref.backward()

    ce = nnp.CrossEntropyLoss(label_smoothing=smoothing)
    loss = ce(logits, target)
    dlogits = ce.backward()  # dout defaults to 1.0, as loss.backward() in torch
    errors = {"loss": rel_error(loss, ref.item()), "dlogits": rel_error(dlogits, lt.grad.numpy())}
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("seed", FEW_SEEDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_upstream_gradient_and_finite_differences(smoothing, seed):
    """A random scalar dout scales dlogits; targets are passed through undifferentiated."""
    rng, logits, target = _ce_case(seed)
    twin = torch_twin_check(
        nnp.CrossEntropyLoss(label_smoothing=smoothing),
        torch.nn.CrossEntropyLoss(label_smoothing=smoothing),
        (logits, target),
        rng=rng,
    )
    assert {"out", "dx0"} <= twin.keys()
    assert_close_rel(twin, TWIN_TOL)
    fd = finite_difference_check(nnp.CrossEntropyLoss(label_smoothing=smoothing), (logits, target), rng=rng)
    assert fd.keys() == {"dx0"}
    assert_close_rel(fd, FD_TOL)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_huge_logits_stay_finite(smoothing):
    rng = np.random.default_rng(0)
    logits, target = 1e3 * rng.standard_normal((6, 5)), rng.integers(0, 5, size=6)
    lt = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(lt, torch.from_numpy(target), label_smoothing=smoothing)
    ref.backward()
    ce = nnp.CrossEntropyLoss(label_smoothing=smoothing)
    with np.errstate(over="raise", invalid="raise"):
        loss, dlogits = ce(logits, target), ce.backward()
    assert_close_rel({"loss": rel_error(loss, ref.item()), "dlogits": rel_error(dlogits, lt.grad.numpy())}, TWIN_TOL)


def test_cross_entropy_rejects_bad_smoothing():
    with pytest.raises(ValueError, match="label_smoothing"):
        nnp.CrossEntropyLoss(label_smoothing=1.5)


# --- whole networks ----------------------------------------------------------------


def _load_torch_weights(np_model, torch_model) -> None:
    np_model.load_state_dict({k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()})


@pytest.mark.parametrize("seed", range(8))
def test_mlp_loss_and_gradients_equal_torch(seed):
    rng = np.random.default_rng(seed)
    n_in, n_classes, n = int(rng.integers(1, 7)), int(rng.integers(2, 6)), int(rng.integers(1, 11))
    hidden = [int(h) for h in rng.integers(1, 9, size=seed % 4)]  # 0 to 3 hidden layers
    torch.manual_seed(seed)
    tm = twinnet.torch_nn.MLP(n_in, hidden, n_classes).double()
    nm = nnp.MLP(n_in, hidden, n_classes)
    _load_torch_weights(nm, tm)
    x, y = rng.standard_normal((n, n_in)), rng.integers(0, n_classes, size=n)

    xt = torch.tensor(x, requires_grad=True)
    ref = F.cross_entropy(tm(xt), torch.from_numpy(y))
    ref.backward()

    ce = nnp.CrossEntropyLoss()
    loss = ce(nm(x), y)
    dx = nm.backward(ce.backward())

    t_params = dict(tm.named_parameters())
    assert [k for k, _ in nm.named_parameters()] == list(t_params)
    errors = {"loss": rel_error(loss, ref.item()), "dx": rel_error(dx, xt.grad.numpy())}
    errors |= {f"grad[{k}]": rel_error(p.grad, t_params[k].grad.numpy()) for k, p in nm.named_parameters()}
    assert len(errors) == 2 + 2 * (len(hidden) + 1)
    assert_close_rel(errors, 1e-12)


def _shared_pair(kind: str, seed: int):
    """The same module object at two places of one Sequential, built in both engines."""
    torch.manual_seed(seed)
    if kind == "linear":  # one Linear applied twice: its weight gets two gradient terms
        t_lin, n_lin = torch.nn.Linear(4, 4), nnp.Linear(4, 4)
        return (torch.nn.Sequential(t_lin, torch.nn.Tanh(), t_lin), nnp.Sequential(n_lin, nnp.Tanh(), n_lin))
    # one ReLU object used twice: each use needs its own mask
    t_act, n_act = torch.nn.ReLU(), nnp.ReLU()
    return (
        torch.nn.Sequential(torch.nn.Linear(4, 5), t_act, torch.nn.Linear(5, 3), t_act, torch.nn.Linear(3, 2)),
        nnp.Sequential(nnp.Linear(4, 5), n_act, nnp.Linear(5, 3), n_act, nnp.Linear(3, 2)),
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["linear", "relu"])
def test_module_used_twice_accumulates_like_torch(kind, seed):
    tm, nm = _shared_pair(kind, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((int(rng.integers(1, 6)), 4))
    errors = torch_twin_check(nm, tm, x, rng=rng)
    assert_close_rel(errors, TWIN_TOL)
    # a shared weight is one parameter, as torch's parameters() has it, so an optimiser steps it once
    assert [k for k, _ in nm.named_parameters()] == [k for k, _ in tm.named_parameters()]


def test_shared_linear_gradient_is_the_sum_of_both_uses():
    """d/dW of sum(dout * W (W x)) has two terms; a single-use gradient would miss one."""
    rng = np.random.default_rng(0)
    lin = nnp.Linear(3, 3, bias=False).double()
    w, x, dout = lin.weight.data.copy(), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    seq = nnp.Sequential(lin, lin)
    seq.forward(x)
    seq.backward(dout)
    h = x @ w.T
    expected = dout.T @ h + (dout @ w).T @ x  # outer use + inner use
    assert rel_error(lin.weight.grad, expected) <= 1e-12
    assert rel_error(lin.weight.grad, dout.T @ h) > 1e-3  # the two terms do not coincide here


def test_shared_weight_sgd_step_matches_torch():
    tm, nm = _shared_pair("linear", 0)
    tm.double()
    _load_torch_weights(nm, tm)
    x = np.random.default_rng(1).standard_normal((3, 4))
    t_opt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    n_opt = nnp.SGD(nm.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        t_opt.zero_grad()
        tm(torch.from_numpy(x)).square().sum().backward()
        t_opt.step()
        n_opt.zero_grad()
        out = nm(x)
        nm.backward(2 * out)
        n_opt.step()
    t_state = tm.state_dict()
    errors = {k: rel_error(v, t_state[k].numpy()) for k, v in nm.state_dict().items()}
    assert_close_rel(errors, 1e-12)


@pytest.mark.parametrize("call", ["forward", "__call__"])
def test_backward_pairs_with_the_latest_forward(call):
    """Two outermost forwards (an evaluation, then a training pass) and one backward: the
    gradient is that of the second input, and a second backward has no forward left to pair
    with and must say so rather than reuse a stale cache."""
    rng = np.random.default_rng(0)
    model = nnp.Sequential(nnp.Linear(3, 4), nnp.ReLU(), nnp.Linear(4, 2)).double()
    run = getattr(model, call)
    x1, x2, dout = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    run(x2)
    expected_dx = model.backward(dout)
    expected = {k: p.grad.copy() for k, p in model.named_parameters()}
    model.zero_grad()
    run(x1)
    run(x2)
    dx = model.backward(dout)
    errors = {"dx": rel_error(dx, expected_dx)}
    errors |= {k: rel_error(p.grad, expected[k]) for k, p in model.named_parameters()}
    assert_close_rel(errors, 0.0)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(dout)


# --- dtypes ----------------------------------------------------------------------


def test_float32_is_the_default_and_float64_weights_make_float64_outputs():
    model = nnp.MLP(3, [4], 2)
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert nnp.Linear(2, 2).weight.dtype == np.float32
    x32 = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    out = model(x32)
    assert out.dtype == np.float32
    model.backward(np.ones_like(out))
    assert all(p.grad.dtype == np.float32 for p in model.parameters())

    model.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model(x32).dtype == np.float64  # the weights decide, not the input
    assert model(x32.astype(np.float64)).dtype == np.float64
    assert all(v.dtype == np.float64 for v in model.state_dict().values())

    model.load_state_dict({k: v.astype(np.float32) for k, v in model.state_dict().items()})
    assert model(x32).dtype == np.float32


@pytest.mark.parametrize("env, code, expected", [
    ({}, "import twinnet", "4 True"),  # imported before NumPy: OpenBLAS will load with threads that sleep at once
    ({"OPENBLAS_THREAD_TIMEOUT": "12"}, "import twinnet", "12 True"),  # the user's own setting is kept
    ({}, "import numpy, twinnet", "4 False"),  # too late for this process (children still get it)
])
def test_openblas_thread_spin_is_limited_when_twinnet_loads_before_numpy(env, code, expected):
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'], "
                          "twinnet.BLAS_SPIN_LIMITED)"], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == expected


# --- what torch refuses, or does at its edges ---------------------------------------------------------------


@pytest.mark.parametrize("target, message", [
    (np.array([[0], [1], [2], [1]]), r"must have shape \(4,\)"),
    (np.array([1]), r"must have shape \(4,\)"),
    (np.array([0, 1, -1, 2]), r"class target -1 is outside \[0, 3\)"),
    (np.array([0, 3, 1, 2]), r"class target 3 is outside \[0, 3\)"),
    (np.array([0, -100, 1, 7]), r"class target 7 is outside"),
    (np.array([True, False, True, True]), "must be integers"),
])
@pytest.mark.parametrize("loss", [nnp.CrossEntropyLoss, nnp.NLLLoss, nnp.MultiMarginLoss])
def test_class_targets_torch_refuses_are_refused_not_broadcast_or_wrapped(loss, target, message):
    logits = np.random.default_rng(0).standard_normal((4, 3))
    if -100 in target and loss is nnp.MultiMarginLoss:  # the losses with ignore_index skip -100 and name the 7
        message = "class target -100 is outside"
    with pytest.raises(ValueError, match=message):
        loss()(logits, target)
    with pytest.raises(ValueError, match="class target -100 is outside"):  # no ignore_index in torch's hinge
        nnp.MultiMarginLoss()(logits, np.array([0, -100, 1, 2]))


def _loss_against_torch(mine, theirs, x: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The loss and the gradient of ``mine`` (a twinnet loss) and ``theirs`` (torch's functional form) on the
    same float64 inputs, with a random upstream gradient of the loss's shape."""
    xt = torch.tensor(x, requires_grad=True)
    out_t = theirs(xt, torch.from_numpy(target))
    dout = np.random.default_rng(7).standard_normal(tuple(out_t.shape))
    out_t.backward(torch.from_numpy(np.asarray(dout)))
    out = mine(x, target)
    dx = mine.backward(dout if dout.ndim else float(dout))
    assert np.shape(out) == tuple(out_t.shape) and dx.dtype == x.dtype
    return {"loss": rel_error(np.asarray(out), out_t.detach().numpy()), "dx": rel_error(dx, xt.grad.numpy())}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("targets", ["classes", "ignored", "probabilities"])
def test_cross_entropy_matches_torchs_with_every_option(reduction, smoothing, weighted, targets):
    """Class weights, ignore_index, label smoothing and each reduction, alone and together: torch's values
    (its mean divides by the counted rows' weights for class targets, by N for probabilities)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4))
    weight = rng.random(4) + 0.5 if weighted else None
    if targets == "probabilities":
        y = rng.random((6, 4))
        y /= y.sum(axis=1, keepdims=True)
    else:
        y = rng.integers(0, 4, 6)
        if targets == "ignored":
            y[[1, 4]] = -100
    mine = nnp.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=smoothing)
    theirs = lambda a, b: F.cross_entropy(a, b, weight=None if weight is None else torch.from_numpy(weight),  # noqa: E731
                                          reduction=reduction, label_smoothing=smoothing)
    assert_close_rel(_loss_against_torch(mine, theirs, x, y), TWIN_TOL)


@pytest.mark.parametrize("make", [lambda w: nnp.CrossEntropyLoss(weight=w), lambda w: nnp.NLLLoss(weight=w)])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_row_ignored_gives_a_nan_loss_and_no_gradient_as_torchs(make, weighted):
    x = np.random.default_rng(4).standard_normal((3, 5))
    loss_fn = make(np.arange(1.0, 6.0) if weighted else None)
    assert np.isnan(loss_fn(x, np.array([-100, -100, -100])))
    dx = loss_fn.backward()
    assert dx.shape == x.shape and np.all(dx == 0)  # torch's gradient: zeros, not nan nor a division by zero


def test_cross_entropy_of_every_row_ignored_is_nan_as_torchs_and_a_custom_ignore_index_is_honoured():
    x = np.random.default_rng(4).standard_normal((3, 5))
    assert np.isnan(nnp.CrossEntropyLoss()(x, np.array([-100, -100, -100])))
    with pytest.raises(ValueError, match="ignore_index=0 is not supported for probability targets"):
        nnp.CrossEntropyLoss(ignore_index=0)(x, np.full((3, 5), 0.2))
    assert np.isfinite(nnp.CrossEntropyLoss(ignore_index=-5)(x, np.full((3, 5), 0.2)))  # as torch, a negative one
    y = np.array([2, 7, 0])
    mine, theirs = nnp.CrossEntropyLoss(ignore_index=7), lambda a, b: F.cross_entropy(a, b, ignore_index=7)
    assert_close_rel(_loss_against_torch(mine, theirs, x, y), TWIN_TOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_and_log_softmax_match_torchs_and_chain_to_cross_entropy(reduction, weighted):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((5, 3)), np.array([0, 2, -100, 1, 2])
    weight = rng.random(3) + 0.5 if weighted else None
    mine = nnp.NLLLoss(weight=weight, reduction=reduction)
    theirs = lambda a, b: F.nll_loss(a, b, weight=None if weight is None else torch.from_numpy(weight),  # noqa: E731
                                     reduction=reduction)
    logp = F.log_softmax(torch.from_numpy(x), dim=1).numpy()
    assert_close_rel(_loss_against_torch(mine, theirs, logp, y), TWIN_TOL)
    log_softmax, nll = nnp.LogSoftmax(dim=1), nnp.NLLLoss(weight=weight, reduction="sum")
    ce = nnp.CrossEntropyLoss(weight=weight, reduction="sum")
    chained = nll(log_softmax(x), y)
    assert rel_error(chained, ce(x, y)) < TWIN_TOL
    assert rel_error(log_softmax.backward(nll.backward()), ce.backward()) < TWIN_TOL


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_softmax_matches_torchs_where_softmax_underflows(dim):
    x = np.random.default_rng(6).standard_normal((3, 4)) * 400  # exp underflows: log(softmax) would be -inf
    dout = np.random.default_rng(7).standard_normal((3, 4))
    xt = torch.tensor(x, requires_grad=True)
    out_t = F.log_softmax(xt, dim=dim)
    out_t.backward(torch.from_numpy(dout))
    mine = nnp.LogSoftmax(dim)
    out = mine(x)
    assert np.all(np.isfinite(out))
    assert_close_rel({"out": rel_error(out, out_t.detach().numpy()), "dx": rel_error(mine.backward(dout),
                                                                                    xt.grad.numpy())}, TWIN_TOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_the_hinge_match_torchs(reduction):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3))
    assert_close_rel(_loss_against_torch(nnp.MSELoss(reduction=reduction),
                                         lambda a, b: F.mse_loss(a, b, reduction=reduction), x,
                                         rng.standard_normal((4, 3))), TWIN_TOL)
    y, weight = np.array([0, 2, 1, 2]), rng.random(3) + 0.5
    for p in (1, 2):  # torch scales a term by w_y after its power
        mine = nnp.MultiMarginLoss(p=p, margin=0.7, weight=weight, reduction=reduction)
        theirs = lambda a, b: F.multi_margin_loss(a, b, p=p, margin=0.7, weight=torch.from_numpy(weight),  # noqa: E731
                                                  reduction=reduction)
        assert_close_rel(_loss_against_torch(mine, theirs, x, y), TWIN_TOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 2)])
def test_l1_and_the_binary_cross_entropies_match_torchs(reduction, shape):
    """L1 (its gradient 0 where input equals target, as torch's sign), BCE on probabilities with 0 and 1 among them
    (torch's clamped log and floored denominator: finite, and equal), and BCE on scores of size 800 (stable), with
    an element weight and a positive-class weight."""
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    y.flat[0] = x.flat[0]  # a tie: L1's gradient is 0 there
    assert_close_rel(_loss_against_torch(nnp.L1Loss(reduction=reduction),
                                         lambda a, b: F.l1_loss(a, b, reduction=reduction), x, y), TWIN_TOL)
    p, t = rng.uniform(0, 1, shape), rng.integers(0, 2, shape).astype(np.float64)
    p.flat[:3], t.flat[:3] = (0.0, 1.0, 1e-13), (1.0, 0.0, 1.0)  # log(0) clamped at -100, and p (1 - p) floored
    weight = rng.uniform(0.5, 2.0, shape[-1:])
    for w in (None, weight):
        theirs = lambda a, b: F.binary_cross_entropy(a, b, None if w is None else torch.from_numpy(w),  # noqa: E731
                                                     reduction=reduction)
        assert_close_rel(_loss_against_torch(nnp.BCELoss(w, reduction=reduction), theirs, p, t), TWIN_TOL)
    z = rng.standard_normal(shape) * 30
    z.flat[:2] = (800.0, -800.0)  # exp(800) overflows: the stable form does not
    pos = rng.uniform(0.5, 3.0, shape[-1:])
    for w, pw in ((None, None), (weight, pos)):
        theirs = lambda a, b: F.binary_cross_entropy_with_logits(  # noqa: E731
            a, b, None if w is None else torch.from_numpy(w), reduction=reduction,
            pos_weight=None if pw is None else torch.from_numpy(pw))
        mine = nnp.BCEWithLogitsLoss(w, reduction=reduction, pos_weight=pw)
        assert_close_rel(_loss_against_torch(mine, theirs, z, t), TWIN_TOL)


def test_pointwise_weights_that_would_broadcast_beyond_the_input_are_refused_and_no_elements_give_nan():
    with pytest.raises(ValueError, match=r"weight of shape \(4, 1\) does not broadcast to the input's \(4,\)"):
        nnp.BCELoss(weight=np.ones((4, 1)))(np.full(4, 0.5), np.ones(4))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(3,\) does not broadcast"):
        nnp.BCEWithLogitsLoss(pos_weight=np.ones(3))(np.zeros((2, 2)), np.ones((2, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's mean of no elements: nan, silently
        loss_fn = nnp.MSELoss()
        assert np.isnan(loss_fn(np.zeros((0, 3)), np.zeros((0, 3)))) and loss_fn.backward().shape == (0, 3)


def test_bce_refuses_what_is_not_a_probability_and_points_to_the_logits_form():
    for bad in (np.array([0.5, 1.5]), np.array([-0.1, 0.5]), np.array([np.nan, 0.5])):
        with pytest.raises(ValueError, match="every input must be a probability, in \\[0, 1\\].*BCEWithLogitsLoss"):
            nnp.BCELoss()(bad, np.array([1.0, 0.0]))


@pytest.mark.parametrize("name, args", [
    ("CrossEntropyLoss", ("weight", None, 2)),  # ignore_index is the third, after torch's size_average
    ("CrossEntropyLoss", (None, False)),  # size_average=False: the sum
    ("CrossEntropyLoss", (None, None, -100, None, "none", 0.1)),
    ("NLLLoss", (None, False)),
    ("NLLLoss", ("weight", None, 1, False)),  # reduce=False: per sample
    ("MSELoss", (None, False)),
    ("MSELoss", ("sum",)),  # a truthy size_average, as torch takes it: the mean
    ("MultiMarginLoss", (2, 0.5, "weight", None, None, "sum")),
    ("MultiMarginLoss", (1, 1.0, None, True, True)),
    ("L1Loss", (None, False)),
    ("BCELoss", ("weight", None, False)),  # reduce=False: per element
    ("BCEWithLogitsLoss", (None, False, None, "mean", "pos")),
])
def test_losses_take_torchs_arguments_in_torchs_order(name, args):
    """Positional arguments mean what they mean to torch's constructors, whose deprecated size_average and reduce
    still hold their slots and, given, decide the reduction as torch's do."""
    rng = np.random.default_rng(3)
    x, weight = rng.standard_normal((4, 3)), rng.random(3) + 0.5
    if name == "NLLLoss":
        x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    target = rng.standard_normal((4, 3)) if name in ("MSELoss", "L1Loss") else np.array([0, 2, 1, 2])
    if name.startswith("BCE"):
        target = rng.integers(0, 2, (4, 3)).astype(np.float64)
        x = 1 / (1 + np.exp(-x)) if name == "BCELoss" else x
    pos = rng.random(3) + 0.5
    mine_args = tuple(weight if a == "weight" else pos if a == "pos" else a for a in args)
    their_args = tuple(torch.from_numpy(weight) if a == "weight" else torch.from_numpy(pos) if a == "pos" else a
                       for a in args)
    legacy = {"CrossEntropyLoss": (1, 3), "NLLLoss": (1, 3), "MSELoss": (0, 1), "MultiMarginLoss": (3, 4),
              "L1Loss": (0, 1), "BCELoss": (1, 2), "BCEWithLogitsLoss": (1, 2)}[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mine = getattr(nnp, name)(*mine_args)
    assert bool(caught) == any(i < len(args) and args[i] is not None for i in legacy)  # told, as torch tells
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(torch.nn, name)(*their_args)
    assert mine.reduction == theirs.reduction
    assert_close_rel(_loss_against_torch(mine, theirs, x, target), TWIN_TOL)


@pytest.mark.parametrize("make, message", [
    (lambda: nnp.CrossEntropyLoss(reduction="avg"), "reduction must be one of 'mean', 'sum', 'none'"),
    (lambda: nnp.MSELoss(reduction=None), "reduction must be one of"),
    (lambda: nnp.MultiMarginLoss(p=3), "only p = 1 and p = 2"),
    (lambda: nnp.CrossEntropyLoss(weight=np.ones((2, 2))), "weight must be a 1-d array"),
])
def test_loss_settings_torch_refuses_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_weight_for_the_wrong_number_of_classes_and_mse_shapes_that_differ_are_refused():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="weight has 4 values for 3 classes"):
        nnp.CrossEntropyLoss(weight=np.ones(4))(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"the target's shape \(3,\) differs from the input's \(2, 3\)"):
        nnp.MSELoss()(x, np.zeros(3))


def test_probability_targets_need_logits_of_two_dimensions():
    """torch's (N, C, d) form is not this loss's: refused, where its gradient would be off by d."""
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    with pytest.raises(ValueError, match=r"expects logits \(N, C\), got shape \(3, 4, 5\)"):
        nnp.CrossEntropyLoss()(x, np.full((3, 4, 5), 0.25))


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 3, 2, 2)])
def test_softmax_without_dim_takes_torchs_implicit_dimension(shape):
    x = np.random.default_rng(1).standard_normal(shape)
    dout = np.random.default_rng(2).standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        out_t = torch.nn.Softmax()(xt)
    out_t.backward(torch.from_numpy(dout))
    mine = nnp.Softmax()
    assert_close_rel({"out": rel_error(mine(x), out_t.detach().numpy()),
                      "dx": rel_error(mine.backward(dout), xt.grad.numpy())}, TWIN_TOL)


@pytest.mark.parametrize("make", [lambda: nnp.Conv2d(1, 1, 2.7), lambda: nnp.Conv2d(1, 1, 3, stride=1.5),
                                  lambda: nnp.Conv2d(1, 1, (3, 3, 3)), lambda: nnp.MaxPool2d(2.5),
                                  lambda: nnp.AvgPool2d((2, 2, 2))])
def test_geometry_that_is_not_whole_numbers_in_pairs_is_refused_not_truncated(make):
    with pytest.raises(TypeError, match="an int or a pair of ints"):
        make()


@pytest.mark.parametrize("layer", [nnp.Conv2d(1, 1, 3), nnp.MaxPool2d(3, 1), nnp.AvgPool2d(3, 1)])
def test_an_input_smaller_than_the_kernel_is_refused_not_an_empty_output(layer):
    with pytest.raises(ValueError, match="smaller than the kernel's 3"):
        layer(np.zeros((1, 1, 2, 2), np.float32))


def test_relu_passes_the_gradient_at_nan_as_torch_does():
    x = np.array([np.nan, 1.0, -1.0, 0.0])
    xt = torch.tensor(x, requires_grad=True)
    torch.relu(xt).backward(torch.ones(4))
    mine = nnp.ReLU()
    mine(x)
    np.testing.assert_array_equal(mine.backward(np.ones(4)), xt.grad.numpy())  # [1, 1, 0, 0]
