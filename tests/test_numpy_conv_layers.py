"""The convolutional-network layers of the NumPy engine against torch (float64, rel <= 1e-9)
and against central finite differences (rel <= 1e-6), over seeded random geometries.

Covers Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d/2d, Dropout, GELU and
ResidualBlock; a module applied twice in one pass; inputs and upstream gradients in
non-contiguous memory. Each random-geometry family has a coverage test, so a generator that
stopped drawing (say) stride 3 or batch size 1 fails rather than silently testing less.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from twinnet.check import assert_close_rel, finite_difference_check, rel_error, torch_twin_check

import twinnet.torch_nn
from twinnet import numpy_nn as nnp
from twinnet.numpy_nn.conv import pair

TWIN_TOL = 1e-9
FD_TOL = 1e-6


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors gain nothing from threads, and the machine is shared: one thread, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _load(np_module, torch_module) -> None:
    """Copy every parameter and buffer of the torch twin (in float64) into the NumPy module."""
    np_module.load_state_dict({k: v.detach().double().numpy().copy() if v.is_floating_point() else v.numpy().copy()
                               for k, v in torch_module.state_dict().items()})


def _distinct(rng: np.random.Generator, shape, step: float = 0.1) -> np.ndarray:
    """Values pairwise >= ``step`` apart in random order: no ties in a max, even within a FD step."""
    n = int(np.prod(shape))
    return (rng.permutation(n) - n / 2).reshape(shape) * step


def _size_for(rng: np.random.Generator, k: int, p: int) -> int:
    """An input size with at least one output position: n + 2p >= k, odd and even both drawn."""
    low = max(1, k - 2 * p)
    return int(rng.integers(low, low + 6))


# --- Conv2d --------------------------------------------------------------------------

CONV_SEEDS = range(160)
CONV_FD_SEEDS = range(40)


def _conv_case(seed: int) -> dict:
    """kernel 1-5 (square, or (kh, kw) every third seed), stride 1-3, padding 0-2, each an int
    or a pair; batch 1 every fourth seed; bias on and off."""
    rng = np.random.default_rng(10_000 + seed)
    kernel = int(rng.integers(1, 6)) if seed % 3 else tuple(int(v) for v in rng.integers(1, 6, size=2))
    stride = int(rng.integers(1, 4)) if rng.random() < 0.6 else tuple(int(v) for v in rng.integers(1, 4, size=2))
    padding = int(rng.integers(0, 3)) if rng.random() < 0.6 else tuple(int(v) for v in rng.integers(0, 3, size=2))
    (kh, kw), (ph, pw) = pair(kernel), pair(padding)
    n = 1 if seed % 4 == 0 else int(rng.integers(2, 4))
    c_in, c_out = (int(v) for v in rng.integers(1, 4, size=2))
    shape = (n, c_in, _size_for(rng, kh, ph), _size_for(rng, kw, pw))
    return dict(rng=rng, c_in=c_in, c_out=c_out, kernel=kernel, stride=stride, padding=padding,
                bias=(seed // 3) % 2 == 0, x=rng.standard_normal(shape))


def _conv_pair(case: dict, seed: int):
    args = (case["c_in"], case["c_out"], case["kernel"], case["stride"], case["padding"])
    torch.manual_seed(seed)
    return nnp.Conv2d(*args, bias=case["bias"]), torch.nn.Conv2d(*args, bias=case["bias"])


def test_conv_cases_cover_the_geometry():
    cases = [_conv_case(s) for s in CONV_SEEDS]
    kernels = {k for c in cases for k in pair(c["kernel"])}
    strides = {s for c in cases for s in pair(c["stride"])}
    paddings = {p for c in cases for p in pair(c["padding"])}
    assert kernels == {1, 2, 3, 4, 5} and strides == {1, 2, 3} and paddings == {0, 1, 2}
    assert any(isinstance(c["kernel"], tuple) and c["kernel"][0] != c["kernel"][1] for c in cases)
    assert any(isinstance(c["stride"], tuple) and c["stride"][0] != c["stride"][1] for c in cases)
    assert any(isinstance(c["padding"], tuple) and c["padding"][0] != c["padding"][1] for c in cases)
    assert {c["x"].shape[2] % 2 for c in cases} == {0, 1} and {c["x"].shape[3] % 2 for c in cases} == {0, 1}
    assert {c["bias"] for c in cases} == {True, False}
    assert {(c["x"].shape[0] == 1, c["bias"]) for c in cases} == set(itertools.product([True, False], repeat=2))
    # a stride larger than the kernel skips inputs, whose gradient must then be exactly zero
    assert any(max(pair(c["stride"])) > max(pair(c["kernel"])) for c in cases)
    # 1x1 stride-1 takes the plain-matmul path; with padding too
    assert any(pair(c["kernel"]) == pair(c["stride"]) == (1, 1) and max(pair(c["padding"])) > 0 for c in cases)


@pytest.mark.parametrize("seed", CONV_SEEDS)
@pytest.mark.parametrize("path", ["by blocks", "one product"])
def test_conv2d_matches_torch(seed, path, monkeypatch):
    from twinnet.numpy_nn import conv

    # the two formulations, by blocks or one product (chosen by the channels): each case through both
    monkeypatch.setattr(conv, "_FUSED_MAX_OUT", 1 << 30 if path == "by blocks" else 0)
    monkeypatch.setattr(conv, "_FUSED_MIN_K", 0)
    case = _conv_case(seed)
    errors = torch_twin_check(*_conv_pair(case, seed), case["x"], rng=case["rng"])
    expected = {"out", "dx", "grad[weight]"} | ({"grad[bias]"} if case["bias"] else set())
    assert expected <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("seed", CONV_FD_SEEDS)
def test_conv2d_matches_finite_differences(seed):
    case = _conv_case(seed)
    n_conv, t_conv = _conv_pair(case, seed)
    _load(n_conv, t_conv)
    errors = finite_difference_check(n_conv, case["x"], rng=case["rng"])
    assert errors.keys() == {"dx", "grad[weight]"} | ({"grad[bias]"} if case["bias"] else set())
    assert_close_rel(errors, FD_TOL)


@pytest.mark.parametrize("seed", range(16))
def test_conv2d_without_input_grad_returns_none_and_still_fills_weight_grads(seed):
    case = _conv_case(seed)
    n_conv, t_conv = _conv_pair(case, seed)
    t_conv.double()
    _load(n_conv, t_conv)
    n_conv.input_grad = False
    x = case["x"]
    out_t = t_conv(torch.tensor(x))  # x needs no gradient here either
    dout = case["rng"].standard_normal(out_t.shape)
    (out_t * torch.from_numpy(dout)).sum().backward()

    out = n_conv.forward(x.copy())
    assert n_conv.backward(dout.copy()) is None
    errors = {"out": rel_error(out, out_t.detach().numpy()),
              "grad[weight]": rel_error(n_conv.weight.grad, t_conv.weight.grad.numpy())}
    if case["bias"]:
        errors["grad[bias]"] = rel_error(n_conv.bias.grad, t_conv.bias.grad.numpy())
    assert_close_rel(errors, TWIN_TOL)


# --- MaxPool2d / AvgPool2d ------------------------------------------------------------

POOL_SEEDS = range(120)
POOL_FD_SEEDS = range(30)
# the course's overlapping (3, 2, 1) and the non-overlapping 2x2, always present
FIXED_POOLS = [(3, 2, 1), (2, None, 0), (2, 2, 0), ((2, 3), (1, 2), (1, 1))]


def _pool_case(seed: int, min_area: int = 1) -> dict:
    """kernel 1-5 (square or not), stride None (= kernel) or 1-3, padding 0..kernel//2 per side."""
    rng = np.random.default_rng(20_000 + seed)
    if seed < len(FIXED_POOLS):
        kernel, stride, padding = FIXED_POOLS[seed]
    else:
        while True:
            kernel = int(rng.integers(1, 6)) if seed % 3 else tuple(int(v) for v in rng.integers(1, 6, size=2))
            if np.prod(pair(kernel)) >= min_area:
                break
        stride = None if rng.random() < 0.25 else int(rng.integers(1, 4))
        kh, kw = pair(kernel)
        padding = (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1)))
        if padding[0] == padding[1] and rng.random() < 0.5:
            padding = padding[0]
    (kh, kw), (ph, pw) = pair(kernel), pair(padding)
    n = 1 if seed % 5 == 0 else int(rng.integers(2, 4))
    shape = (n, int(rng.integers(1, 4)), _size_for(rng, kh, ph), _size_for(rng, kw, pw))
    return dict(rng=rng, kernel=kernel, stride=stride, padding=padding, shape=shape)


def test_pool_cases_cover_the_geometry():
    cases = [_pool_case(s) for s in POOL_SEEDS]
    assert {k for c in cases for k in pair(c["kernel"])} == {1, 2, 3, 4, 5}
    assert {c["stride"] for c in cases} >= {None, 1, 2, 3}
    # windows reaching the largest padding allowed, on kernels with a real padding
    assert any(pair(c["padding"])[0] == pair(c["kernel"])[0] // 2 == 2 for c in cases)
    assert any(len(set(pair(c["kernel"]))) == 2 for c in cases)
    assert any(c["shape"][0] == 1 for c in cases)
    assert {c["shape"][2] % 2 for c in cases} == {0, 1} and {c["shape"][3] % 2 for c in cases} == {0, 1}
    # overlapping windows (an input in two windows accumulates two gradients)
    assert any(c["stride"] is not None and c["stride"] < max(pair(c["kernel"])) for c in cases)
    # windows that tile the input (stride = kernel, no padding), with rows or columns no window reaches
    tiled = [c for c in cases if pair(c["stride"] or c["kernel"]) == pair(c["kernel"]) and pair(c["padding"]) == (0, 0)]
    assert any(c["shape"][2] % pair(c["kernel"])[0] or c["shape"][3] % pair(c["kernel"])[1] for c in tiled)
    assert any(pair(c["kernel"])[0] > 1 and not c["shape"][2] % pair(c["kernel"])[0] for c in tiled)


@pytest.mark.parametrize("seed", POOL_SEEDS)
def test_maxpool2d_matches_torch(seed):
    c = _pool_case(seed)
    x = c["rng"].standard_normal(c["shape"])  # continuous draws: no ties
    errors = torch_twin_check(nnp.MaxPool2d(c["kernel"], c["stride"], c["padding"]),
                              torch.nn.MaxPool2d(c["kernel"], c["stride"], c["padding"]), x, rng=c["rng"])
    assert {"out", "dx"} <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("seed", POOL_FD_SEEDS)
def test_maxpool2d_matches_finite_differences(seed):
    c = _pool_case(seed)
    errors = finite_difference_check(nnp.MaxPool2d(c["kernel"], c["stride"], c["padding"]),
                                     _distinct(c["rng"], c["shape"]), rng=c["rng"])
    assert errors.keys() == {"dx"}
    assert_close_rel(errors, FD_TOL)


def _tied_windows(x: np.ndarray, kernel, stride, padding) -> int:
    """How many pooling windows hold their maximum more than once."""
    (kh, kw), (ph, pw) = pair(kernel), pair(padding)
    t = F.pad(torch.from_numpy(x), (pw, pw, ph, ph), value=-float("inf"))
    cols = F.unfold(t.reshape(-1, 1, *t.shape[2:]), (kh, kw), stride=pair(stride if stride is not None else kernel))
    return int(((cols == cols.max(dim=1, keepdim=True).values).sum(dim=1) > 1).sum())


@pytest.mark.parametrize("seed", range(40))
def test_maxpool2d_ties_send_the_gradient_where_torch_does(seed):
    """Small integers and a constant band: many windows hold several maxima; the gradient must
    go to the one torch picks (the first in row-major order), not be split or moved."""
    c = _pool_case(seed, min_area=2)
    x = c["rng"].integers(0, 3, size=c["shape"]).astype(np.float64)
    x[:, :, : x.shape[2] // 2 + 1, :] = 1.0
    assert _tied_windows(x, c["kernel"], c["stride"], c["padding"]) > 0
    errors = torch_twin_check(nnp.MaxPool2d(c["kernel"], c["stride"], c["padding"]),
                              torch.nn.MaxPool2d(c["kernel"], c["stride"], c["padding"]), x, rng=c["rng"])
    assert_close_rel(errors, TWIN_TOL)


def test_maxpool2d_tie_in_a_constant_window_goes_to_its_first_element():
    x = np.zeros((1, 1, 4, 4))
    dout = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    pool = nnp.MaxPool2d(2)
    pool.forward(x)
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, ::2, ::2] = dout[0, 0]  # the top-left of each window
    np.testing.assert_array_equal(pool.backward(dout), expected)
    xt = torch.tensor(x, requires_grad=True)
    (F.max_pool2d(xt, 2) * torch.from_numpy(dout)).sum().backward()
    np.testing.assert_array_equal(xt.grad.numpy(), expected)  # ... as torch has it


@pytest.mark.parametrize("x, kernel, stride, padding", [
    (np.full((1, 1, 2, 2), -np.inf), 3, 1, 1),
    (np.array([[[[1.0, np.nan], [3.0, 2.0]]]]), 2, None, 0),
], ids=["all_minus_inf_with_padding", "nan"])
def test_maxpool2d_non_finite_maxima(x, kernel, stride, padding):
    pool = nnp.MaxPool2d(kernel, stride, padding)
    out = pool.forward(x)
    xt = torch.tensor(x, requires_grad=True)
    out_t = F.max_pool2d(xt, kernel, stride, padding)
    out_t.sum().backward()
    np.testing.assert_array_equal(out, out_t.detach().numpy())  # the forward agrees (NaN == NaN here)
    np.testing.assert_array_equal(pool.backward(np.ones_like(out)), xt.grad.numpy())


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1), ((3, 2), (1, 2), (1, 0))])
@pytest.mark.parametrize("seed", range(3))
def test_maxpool2d_routes_nan_and_minus_inf_windows_as_torch(kernel, stride, padding, seed):
    # several NaNs in a window (torch keeps the last), windows of -inf beside padding, ties, on both paths
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(3, 4, 7, 8)).astype(np.float64)  # small integers: many ties
    x[rng.random(x.shape) < 0.15] = np.nan
    x[rng.random(x.shape) < 0.3] = -np.inf
    x[0, 0] = -np.inf  # a whole map of -inf: every padded window is all -inf
    dout_shape = F.max_pool2d(torch.from_numpy(x), kernel, stride, padding).shape
    dout = rng.standard_normal(dout_shape)
    pool = nnp.MaxPool2d(kernel, stride, padding)
    out = pool.forward(x)
    xt = torch.tensor(x, requires_grad=True)
    out_t = F.max_pool2d(xt, kernel, stride, padding)
    (out_t * torch.from_numpy(dout)).sum().backward()
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    # overlapping windows sum their gradients in another order than torch: equal to rounding, where a
    # wrongly routed gradient is off by a whole dout
    np.testing.assert_allclose(pool.backward(dout), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", ["MaxPool2d", "AvgPool2d"])
@pytest.mark.parametrize(
    "kernel, padding", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), ((2, 4), (1, 3)), ((5, 1), (0, 1))]
)
def test_pool_padding_over_half_the_kernel_raises_like_torch(cls, kernel, padding):
    with pytest.raises(ValueError, match="pad"):
        getattr(nnp, cls)(kernel, 1, padding)
    with pytest.raises(RuntimeError, match="pad"):  # torch refuses the same geometry, at forward
        getattr(torch.nn, cls)(kernel, 1, padding)(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("cls", ["MaxPool2d", "AvgPool2d"])
@pytest.mark.parametrize("kernel, padding", [(2, 1), (3, 1), (4, 2), (5, 2), ((2, 5), (1, 2))])
def test_pool_padding_of_half_the_kernel_is_accepted(cls, kernel, padding):
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 7))
    errors = torch_twin_check(getattr(nnp, cls)(kernel, 1, padding), getattr(torch.nn, cls)(kernel, 1, padding), x,
                              rng=np.random.default_rng(1))
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("seed", POOL_SEEDS)
def test_avgpool2d_matches_torch(seed):
    c = _pool_case(seed)
    include_pad = seed % 2 == 0
    x = c["rng"].standard_normal(c["shape"])
    errors = torch_twin_check(nnp.AvgPool2d(c["kernel"], c["stride"], c["padding"], count_include_pad=include_pad),
                              torch.nn.AvgPool2d(c["kernel"], c["stride"], c["padding"], count_include_pad=include_pad),
                              x, rng=c["rng"])
    assert {"out", "dx"} <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)


def test_avgpool_count_include_pad_changes_the_result():
    """Both settings are compared with torch above; here, that they differ where padding is read."""
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4))
    with_pad = nnp.AvgPool2d(3, 1, 1, count_include_pad=True)(x)
    without = nnp.AvgPool2d(3, 1, 1, count_include_pad=False)(x)
    np.testing.assert_allclose(with_pad[0, 0, 0, 0] * 9, without[0, 0, 0, 0] * 4, rtol=1e-14)  # corner: 4 real inputs
    np.testing.assert_allclose(with_pad[0, 0, 1:3, 1:3], without[0, 0, 1:3, 1:3], rtol=1e-14)  # interior: none padded


@pytest.mark.parametrize("seed", POOL_FD_SEEDS)
def test_avgpool2d_matches_finite_differences(seed):
    c = _pool_case(seed)
    pool = nnp.AvgPool2d(c["kernel"], c["stride"], c["padding"], count_include_pad=seed % 2 == 1)
    errors = finite_difference_check(pool, c["rng"].standard_normal(c["shape"]), rng=c["rng"])
    assert errors.keys() == {"dx"}
    assert_close_rel(errors, FD_TOL)


GLOBAL_POOLS = {"avg": (nnp.AdaptiveAvgPool2d, torch.nn.AdaptiveAvgPool2d, 30_000),
                "max": (nnp.AdaptiveMaxPool2d, torch.nn.AdaptiveMaxPool2d, 31_000)}


@pytest.mark.parametrize("kind", list(GLOBAL_POOLS))
@pytest.mark.parametrize("seed", range(24))
def test_global_pools_match_torch_and_finite_differences(kind, seed):
    ours, theirs, base = GLOBAL_POOLS[kind]
    rng = np.random.default_rng(base + seed)
    n = 1 if seed % 4 == 0 else int(rng.integers(2, 4))
    x = rng.standard_normal((n, *(int(v) for v in rng.integers(1, 7, size=3))))
    errors = torch_twin_check(ours(1), theirs(1), x, rng=rng)
    assert {"out", "dx"} <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)
    assert_close_rel(finite_difference_check(ours(1), x, rng=rng), FD_TOL)


def test_global_pools_refuse_other_output_sizes():
    with pytest.raises(ValueError, match="output_size"):
        nnp.AdaptiveAvgPool2d(2)
    with pytest.raises(ValueError, match="output_size"):
        nnp.AdaptiveMaxPool2d((1, 2))


def test_adaptive_maxpool2d_gives_ties_and_nan_torchs_winner():
    """Ties: the first maximum in scan order takes the gradient; a NaN anywhere: the last NaN does."""
    x = np.array([[[[1.0, 3.0, 3.0], [0.0, 3.0, -1.0]], [[2.0, np.nan, 0.0], [np.nan, 5.0, 1.0]]]])
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.AdaptiveMaxPool2d(1)(xt).sum().backward()
    pool = nnp.AdaptiveMaxPool2d(1)
    out = pool.forward(x)
    np.testing.assert_array_equal(out.reshape(-1), [3.0, np.nan])
    dx = pool.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    assert dx[0, 0, 0, 1] == 1 and dx[0, 1, 1, 0] == 1 and dx.sum() == 2


# --- BatchNorm1d / BatchNorm2d --------------------------------------------------------

BN_SEEDS = range(48)
BN_FD_SEEDS = range(16)


def _bn_case(seed: int, dims: int, min_rows: int = 2) -> dict:
    """dims 2: (N, C) for BatchNorm1d; 3: (N, C, L) for BatchNorm1d; 4: (N, C, H, W) for BatchNorm2d.
    Batch 1 whenever the other dims still give ``min_rows`` values per channel; all four
    (affine, track_running_stats) settings; eps and momentum varied."""
    rng = np.random.default_rng(40_000 + 10 * seed + dims)
    while True:
        n = 1 if seed % 4 == 0 and dims > 2 else int(rng.integers(2, 6))
        spatial = tuple(int(v) for v in rng.integers(1, 5, size=dims - 2))
        if n * int(np.prod(spatial)) >= min_rows:
            break
    c = int(rng.integers(1, 5))
    x = 2.0 * rng.standard_normal((n, c, *spatial)) + rng.standard_normal((1, c, *[1] * len(spatial)))
    kwargs = dict(eps=float(rng.choice([1e-5, 1e-3, 0.1])), momentum=[0.1, None, 0.5][seed % 3],
                  affine=seed % 2 == 0, track_running_stats=(seed // 2) % 2 == 0)
    return dict(rng=rng, c=c, x=x, kwargs=kwargs, cls="BatchNorm2d" if dims == 4 else "BatchNorm1d")


def _bn_pair(case: dict, seed: int, training: bool = True):
    """Twins with random affine parameters and random running statistics, so neither is trivial."""
    n_bn = getattr(nnp, case["cls"])(case["c"], **case["kwargs"])
    t_bn = getattr(torch.nn, case["cls"])(case["c"], **case["kwargs"])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if t_bn.affine:
            t_bn.weight.copy_(0.5 + torch.rand(case["c"], generator=g))
            t_bn.bias.copy_(torch.randn(case["c"], generator=g))
        if t_bn.track_running_stats:
            t_bn.running_mean.copy_(torch.randn(case["c"], generator=g))
            t_bn.running_var.copy_(0.5 + torch.rand(case["c"], generator=g))
            t_bn.num_batches_tracked.fill_(3)
    t_bn.train(training)
    n_bn.train(training)
    return n_bn, t_bn


def test_bn_cases_cover_the_settings():
    for dims in (2, 3, 4):
        cases = [_bn_case(s, dims) for s in BN_SEEDS]
        assert {(c["kwargs"]["affine"], c["kwargs"]["track_running_stats"]) for c in cases} == set(
            itertools.product([True, False], repeat=2))
        assert {c["kwargs"]["momentum"] for c in cases} == {0.1, None, 0.5}
        if dims > 2:
            assert any(c["x"].shape[0] == 1 for c in cases)
        # two values per channel: the smallest batch torch trains on
        assert any(c["x"].size // c["c"] == 2 for c in cases)


@pytest.mark.parametrize("seed", BN_SEEDS)
@pytest.mark.parametrize("dims", [2, 3, 4])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_matches_torch(training, dims, seed):
    """Train mode normalises with batch statistics, eval mode with the running ones (or with the
    batch's when track_running_stats=False); out, dx, d(weight), d(bias) all as torch's."""
    case = _bn_case(seed, dims)
    n_bn, t_bn = _bn_pair(case, seed, training)
    errors = torch_twin_check(n_bn, t_bn, case["x"], rng=case["rng"])
    expected = {"out", "dx"} | ({"grad[weight]", "grad[bias]"} if case["kwargs"]["affine"] else set())
    assert expected <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("seed", BN_FD_SEEDS)
@pytest.mark.parametrize("dims", [2, 3, 4])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_matches_finite_differences(training, dims, seed):
    # >= 4 values per channel: with 2, x -> xhat is nearly constant (xhat = +-1) and dx is all cancellation
    case = _bn_case(seed, dims, min_rows=4)
    n_bn, t_bn = _bn_pair(case, seed, training)
    _load(n_bn, t_bn)
    errors = finite_difference_check(n_bn, case["x"], rng=case["rng"])
    assert errors.keys() == {"dx"} | ({"grad[weight]", "grad[bias]"} if case["kwargs"]["affine"] else set())
    assert_close_rel(errors, FD_TOL)


@pytest.mark.parametrize("momentum", [0.1, None, 0.3])
@pytest.mark.parametrize("dims", [2, 3, 4])
def test_batchnorm_running_statistics_follow_torch(dims, momentum):
    """Several train-mode forwards (batches of different sizes and means), with eval-mode
    forwards between them that must leave the statistics alone; buffers compared after each."""
    rng = np.random.default_rng(dims * 10 + (1 if momentum is None else int(momentum * 10)))
    cls = "BatchNorm2d" if dims == 4 else "BatchNorm1d"
    c = 3
    n_bn, t_bn = getattr(nnp, cls)(c, momentum=momentum).double(), getattr(torch.nn, cls)(c, momentum=momentum).double()
    batch_means = []
    for step in range(6):
        n = int(rng.integers(2, 6))
        x = rng.standard_normal((n, c, *rng.integers(1, 4, size=dims - 2))) * (1 + step) + step
        n_bn.train()
        t_bn.train()
        n_bn.forward(x)
        t_bn(torch.tensor(x))
        batch_means.append(x.mean(axis=tuple(i for i in range(dims) if i != 1)))
        if step % 2:
            n_bn.eval()
            t_bn.eval()
            out = n_bn.forward(x[:1])  # batch 1 is fine in eval mode
            assert rel_error(out, t_bn(torch.tensor(x[:1])).detach().numpy()) <= TWIN_TOL
        n_state, t_state = n_bn.state_dict(), t_bn.state_dict()
        assert int(n_state["num_batches_tracked"]) == int(t_state["num_batches_tracked"]) == step + 1
        assert_close_rel({k: rel_error(n_state[k], t_state[k].numpy()) for k in ("running_mean", "running_var")}, 1e-12)
    if momentum is None:  # cumulative: the plain average of the batch means, whatever torch does
        assert rel_error(n_bn.running_mean, np.mean(batch_means, axis=0)) <= 1e-12
    else:  # and not the cumulative average: the momentum setting is really used
        assert rel_error(n_bn.running_mean, np.mean(batch_means, axis=0)) > 1e-3


@pytest.mark.parametrize("cls", ["BatchNorm1d", "BatchNorm2d"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_batchnorm_state_dict_equals_torch(cls, affine, track):
    kwargs = dict(affine=affine, track_running_stats=track)
    n_bn, t_bn = getattr(nnp, cls)(4, **kwargs), getattr(torch.nn, cls)(4, **kwargs)
    n_state, t_state = n_bn.state_dict(), t_bn.state_dict()
    assert list(n_state) == list(t_state)
    assert ("weight" in n_state) == affine and ("running_mean" in n_state) == track
    assert [k for k, _ in n_bn.named_parameters()] == [k for k, _ in t_bn.named_parameters()]
    for k, t in t_state.items():
        assert n_state[k].shape == tuple(t.shape) and n_state[k].dtype == t.numpy().dtype, k
        np.testing.assert_array_equal(n_state[k], t.numpy())


@pytest.mark.parametrize(
    "cls, shape", [("BatchNorm1d", (1, 3)), ("BatchNorm1d", (1, 3, 1)), ("BatchNorm2d", (1, 3, 1, 1))]
)
@pytest.mark.parametrize("track", [True, False])
def test_batchnorm_one_value_per_channel_in_train_mode_raises_like_torch(cls, shape, track):
    x = np.ones(shape)
    n_bn = getattr(nnp, cls)(3, track_running_stats=track).double()
    t_bn = getattr(torch.nn, cls)(3, track_running_stats=track).double()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        n_bn.forward(x)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        t_bn(torch.tensor(x))
    n_bn.eval()
    t_bn.eval()
    if track:  # running statistics need no batch
        assert rel_error(n_bn.forward(x), t_bn(torch.tensor(x)).detach().numpy()) <= TWIN_TOL
    else:  # no running statistics: eval uses the batch's, which needs more than one value
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            n_bn.forward(x)
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            t_bn(torch.tensor(x))


# --- Dropout ---------------------------------------------------------------------------


@pytest.fixture
def own_generator(monkeypatch):
    """A private seeded generator for the dropout masks; the shared one is restored afterwards."""
    monkeypatch.setattr(nnp.init, "_rng", np.random.default_rng(123))


def _nonzero(rng, shape):
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


def test_dropout_eval_mode_is_the_identity():
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    drop = nnp.Dropout(0.7).eval()
    np.testing.assert_array_equal(drop.forward(x), x)
    np.testing.assert_array_equal(drop.backward(dout), dout)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_dropout_train_zeroes_about_p_and_scales_the_rest(own_generator, p):
    rng = np.random.default_rng(1)
    x, dout = _nonzero(rng, (400, 500)), rng.standard_normal((400, 500))
    drop = nnp.Dropout(p)
    out = drop.forward(x.copy())
    dropped = out == 0
    n = x.size
    # six standard deviations of a binomial proportion: a wrong rate (1-p, or 0) is far outside
    assert abs(dropped.mean() - p) <= 6 * np.sqrt(p * (1 - p) / n)
    # per column too: a mask constant along an axis (a broadcasting slip) would give 0 or 1 here
    col_sd = np.sqrt(p * (1 - p) / x.shape[0])
    assert np.all(np.abs(dropped.mean(axis=0) - p) <= 6 * col_sd)
    assert np.all(np.abs(dropped.mean(axis=1) - p) <= 6 * np.sqrt(p * (1 - p) / x.shape[1]))
    assert rel_error(out[~dropped], x[~dropped] / (1 - p)) <= 1e-15
    dx = drop.backward(dout.copy())
    assert rel_error(dx, dout * out / x) <= 1e-15  # the same mask, the same scale
    assert np.all(dx[dropped] == 0)
    # a second forward draws a fresh mask
    assert not np.array_equal(drop.forward(x) == 0, dropped)


def test_dropout_used_twice_pairs_each_backward_with_its_own_mask(own_generator):
    rng = np.random.default_rng(2)
    x, dout = _nonzero(rng, (50, 40)), rng.standard_normal((50, 40))
    drop = nnp.Dropout(0.4)
    seq = nnp.Sequential(drop, drop)
    out = seq.forward(x)
    assert abs((out == 0).mean() - 0.64) <= 0.06  # an entry survives both masks with probability 0.6**2
    dx = seq.backward(dout)
    assert rel_error(dx, dout * out / x) <= 1e-15


@pytest.mark.parametrize("training", [True, False])
def test_dropout_p0_and_p1(own_generator, training):
    rng = np.random.default_rng(3)
    x, dout = _nonzero(rng, (6, 9)), rng.standard_normal((6, 9))
    keep_all = nnp.Dropout(0.0).train(training)
    np.testing.assert_array_equal(keep_all.forward(x), x)
    np.testing.assert_array_equal(keep_all.backward(dout), dout)
    drop_all = nnp.Dropout(1.0).train(training)
    out = drop_all.forward(x)
    dx = drop_all.backward(dout)
    if training:  # everything dropped, and no 0 * inf = nan from a 1/(1-p) scale
        assert np.all(out == 0) and np.all(dx == 0)
    else:
        np.testing.assert_array_equal(out, x)
        np.testing.assert_array_equal(dx, dout)
    t_out = F.dropout(torch.tensor(x), 1.0, training=training).numpy()
    np.testing.assert_array_equal(out, t_out)  # as torch


@pytest.mark.parametrize("p", [-0.1, 1.0000001, 2.0, float("nan")])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="probability"):
        nnp.Dropout(p)


# --- GELU ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(24))
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_and_finite_differences(approximate, seed):
    rng = np.random.default_rng(50_000 + seed)
    shape = tuple(int(v) for v in rng.integers(1, 6, size=rng.integers(1, 5)))
    x = 3.0 * rng.standard_normal(shape)
    x.flat[0] = 0.0
    x.flat[-1] = [-12.0, 12.0][seed % 2]  # a saturated tail
    errors = torch_twin_check(nnp.GELU(approximate), torch.nn.GELU(approximate), x, rng=rng)
    assert {"out", "dx"} <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)
    if seed < 12:
        fd = finite_difference_check(nnp.GELU(approximate), x, rng=rng)
        assert fd.keys() == {"dx"}
        assert_close_rel(fd, FD_TOL)


def test_gelu_variants_differ_and_bad_name_raises():
    x = np.linspace(-3, 3, 13)
    assert rel_error(nnp.GELU("none")(x), nnp.GELU("tanh")(x)) > 1e-5  # the approximation is really used
    with pytest.raises(ValueError, match="approximate"):
        nnp.GELU("erf")


# --- SiLU ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_silu_matches_torch_and_finite_differences(seed):
    rng = np.random.default_rng(51_000 + seed)
    shape = tuple(int(v) for v in rng.integers(1, 6, size=rng.integers(1, 5)))
    x = 4.0 * rng.standard_normal(shape)
    x.flat[0] = 0.0
    x.flat[-1] = [-800.0, 800.0][seed % 2]  # exp(-x) alone would overflow here
    with np.errstate(all="raise"):
        errors = torch_twin_check(nnp.SiLU(), torch.nn.SiLU(), x, rng=rng)
    assert {"out", "dx"} <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)
    x.flat[-1] = 3.0 * x.flat[-1] / 800  # finite differences away from the huge value's rounding
    fd = finite_difference_check(nnp.SiLU(), x, rng=rng)
    assert fd.keys() == {"dx"}
    assert_close_rel(fd, FD_TOL)


def test_silu_keeps_float32():
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    layer = nnp.SiLU()
    out = layer(x)
    assert out.dtype == np.float32 and layer.backward(np.ones_like(x)).dtype == np.float32
    assert out[3] == 0 and out[-1] == pytest.approx(3 / (1 + np.exp(-3)), rel=1e-6)


# --- ResidualBlock -------------------------------------------------------------------

BLOCKS = [(3, 3, 1), (3, 3, 2), (2, 4, 1), (4, 2, 2)]  # identity shortcut first, then projections


def _block_pair(in_c, out_c, stride, seed):
    """Twins with random BN affine parameters and running statistics (the defaults 1, 0, 0, 1 hide mistakes)."""
    torch.manual_seed(seed)
    t_block = twinnet.torch_nn.ResidualBlock(in_c, out_c, stride)
    with torch.no_grad():
        for m in t_block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 1.5)
    return nnp.ResidualBlock(in_c, out_c, stride), t_block


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("in_c, out_c, stride", BLOCKS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_residual_block_matches_torch(training, in_c, out_c, stride, seed):
    rng = np.random.default_rng(60_000 + seed)
    x = rng.standard_normal((1 if seed == 0 else 3, in_c, int(rng.integers(3, 8)), int(rng.integers(3, 8))))
    n_block, t_block = _block_pair(in_c, out_c, stride, seed)
    t_block.train(training)
    assert (n_block.shortcut is None) == (in_c == out_c and stride == 1)
    errors = torch_twin_check(n_block, t_block, x, rng=rng)
    n_params = 6 + (3 if n_block.shortcut is not None else 0)  # 2 convs + 2 BN x 2, projection conv + BN x 2
    assert sum(k.startswith("grad[") for k in errors) == n_params
    assert_close_rel(errors, TWIN_TOL)

    # the running statistics after a train-mode forward, buffer by buffer
    _load(n_block, t_block)
    t_block = t_block.double().train()
    n_block.train()
    n_block.forward(x)
    t_block(torch.tensor(x))
    t_state, n_state = t_block.state_dict(), n_block.state_dict()
    assert list(n_state) == list(t_state)
    assert_close_rel({k: rel_error(v, t_state[k].numpy()) for k, v in n_state.items()}, TWIN_TOL)


@pytest.mark.parametrize("in_c, out_c, stride", BLOCKS)
def test_residual_block_matches_finite_differences(in_c, out_c, stride):
    rng = np.random.default_rng(in_c * 10 + out_c + stride)
    n_block, t_block = _block_pair(in_c, out_c, stride, 0)
    _load(n_block, t_block)
    errors = finite_difference_check(n_block, rng.standard_normal((3, in_c, 5, 6)), rng=rng, n_probe=12)
    assert_close_rel(errors, FD_TOL)


# --- a module applied twice in one pass --------------------------------------------------


def _shared(kind: str, seed: int):
    torch.manual_seed(seed)
    c = 3
    if kind == "conv":
        args = (c, c, 3, 1, 1)
        n_m, t_m = nnp.Conv2d(*args), torch.nn.Conv2d(*args)
    elif kind == "conv_strided":  # the two uses see different spatial sizes
        args = (c, c, (3, 2), 2, 1)
        n_m, t_m = nnp.Conv2d(*args), torch.nn.Conv2d(*args)
    elif kind == "batchnorm":
        n_m, t_m = nnp.BatchNorm2d(c), torch.nn.BatchNorm2d(c)
        with torch.no_grad():
            t_m.weight.uniform_(0.5, 1.5)
            t_m.bias.normal_()
    elif kind == "maxpool":
        n_m, t_m = nnp.MaxPool2d(3, 1, 1), torch.nn.MaxPool2d(3, 1, 1)
    else:
        n_m, t_m = nnp.AvgPool2d(3, 1, 1, count_include_pad=False), torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    return (nnp.Sequential(n_m, nnp.Tanh(), n_m), torch.nn.Sequential(t_m, torch.nn.Tanh(), t_m), t_m)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["conv", "conv_strided", "batchnorm", "maxpool", "avgpool"])
def test_module_used_twice_accumulates_like_torch(kind, seed):
    nm, tm, t_shared = _shared(kind, seed)
    rng = np.random.default_rng(70_000 + seed)
    x = rng.standard_normal((2, 3, 6, 7))
    errors = torch_twin_check(nm, tm, x, rng=rng)
    assert_close_rel(errors, TWIN_TOL)
    assert [k for k, _ in nm.named_parameters()] == [k for k, _ in tm.named_parameters()]
    if list(t_shared.parameters()):
        # the check above can only fail on a lost use if each use contributes: the gradient of
        # the first use alone (second use a detached copy) must differ from the total
        tm = tm.double()
        twin = torch.nn.Sequential(tm[0], tm[1], _frozen_copy(t_shared))
        out = twin(torch.tensor(x))
        out.sum().backward()
        first_only = {k: p.grad.clone() for k, p in t_shared.named_parameters()}
        t_shared.zero_grad()
        tm(torch.tensor(x)).sum().backward()
        for k, p in t_shared.named_parameters():
            assert rel_error(first_only[k].numpy(), p.grad.numpy()) > 1e-3, k


def _frozen_copy(module):
    frozen = copy.deepcopy(module)
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


# --- memory layout ----------------------------------------------------------------------


def _layouts(x: np.ndarray) -> dict[str, np.ndarray]:
    """The values of ``x`` in non-contiguous memory of several kinds (those that are, given its shape)."""
    strided = np.zeros((*x.shape[:-1], 2 * x.shape[-1]))
    strided[..., ::2] = x
    views = {
        "fortran": np.asfortranarray(x),
        "last_two_swapped": np.ascontiguousarray(x.swapaxes(-1, -2)).swapaxes(-1, -2),
        "strided": strided[..., ::2],
        "reversed": np.ascontiguousarray(x[..., ::-1])[..., ::-1],
    }
    if x.ndim == 4:
        views["channels_last"] = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert all(np.array_equal(v, x) for v in views.values())
    # size-1 axes can leave a view contiguous after all (numpy ignores their strides): drop those
    return {name: v for name, v in views.items() if not v.flags.c_contiguous}


LAYOUT_CASES = {
    "conv": lambda: (nnp.Conv2d(3, 4, 3, 2, 1), torch.nn.Conv2d(3, 4, 3, 2, 1), (2, 3, 7, 6)),
    "conv1x1": lambda: (nnp.Conv2d(3, 2, 1), torch.nn.Conv2d(3, 2, 1), (2, 3, 5, 4)),  # the plain-matmul path
    "maxpool": lambda: (nnp.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1), (2, 3, 7, 6)),
    "maxpool2x2": lambda: (nnp.MaxPool2d(2), torch.nn.MaxPool2d(2), (2, 3, 6, 4)),  # the reshape path
    # count_include_pad by keyword: torch's fourth positional argument is ceil_mode
    "avgpool": lambda: (nnp.AvgPool2d(3, 2, 1, count_include_pad=False),
                        torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 6)),
    "adaptive": lambda: (nnp.AdaptiveAvgPool2d(1), torch.nn.AdaptiveAvgPool2d(1), (2, 3, 5, 4)),
    "adaptive_max": lambda: (nnp.AdaptiveMaxPool2d(1), torch.nn.AdaptiveMaxPool2d(1), (2, 3, 5, 4)),
    "bn2d": lambda: (nnp.BatchNorm2d(3), torch.nn.BatchNorm2d(3), (2, 3, 5, 4)),
    "bn1d_2d": lambda: (nnp.BatchNorm1d(5), torch.nn.BatchNorm1d(5), (6, 5)),
    "bn1d_3d": lambda: (nnp.BatchNorm1d(3), torch.nn.BatchNorm1d(3), (4, 3, 5)),
    "gelu": lambda: (nnp.GELU("tanh"), torch.nn.GELU("tanh"), (2, 3, 5, 4)),
    "silu": lambda: (nnp.SiLU(), torch.nn.SiLU(), (2, 3, 5, 4)),
    "residual": lambda: (nnp.ResidualBlock(2, 3, 2), twinnet.torch_nn.ResidualBlock(2, 3, 2), (2, 2, 6, 5)),
}


@pytest.mark.parametrize("name", list(LAYOUT_CASES))
def test_non_contiguous_inputs_and_gradients_give_the_same_results(name):
    """Every layout of x and of dout gives torch's out, dx and parameter gradients, and is left unmodified."""
    torch.manual_seed(0)
    n_m, t_m, shape = LAYOUT_CASES[name]()
    t_m = t_m.double()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    out_t = t_m(xt)
    dout = rng.standard_normal(tuple(out_t.shape))
    (out_t * torch.from_numpy(dout)).sum().backward()
    t_grads = {k: p.grad.numpy() for k, p in t_m.named_parameters()}

    x_views = {"contiguous": x, **_layouts(x)}
    d_views = {"contiguous": dout, **_layouts(dout)} if dout.ndim > 1 else {"contiguous": dout}
    # each x layout with a contiguous dout, and a contiguous x with each dout layout
    pairs = [(xv, "contiguous") for xv in x_views] + [("contiguous", dv) for dv in d_views if dv != "contiguous"]
    errors = {}
    for xv, dv in pairs:
        _load(n_m, t_m)
        x_in, d_in = x_views[xv], d_views[dv]
        x_before, d_before = x_in.copy(), d_in.copy()
        out = n_m.forward(x_in)
        dx = n_m.backward(d_in)
        tag = f"x:{xv},dout:{dv}"
        errors[f"{tag} out"] = rel_error(out, out_t.detach().numpy())
        errors[f"{tag} dx"] = rel_error(dx, xt.grad.numpy())
        errors |= {f"{tag} grad[{k}]": rel_error(p.grad, t_grads[k]) for k, p in n_m.named_parameters()}
        errors[f"{tag} inputs_changed"] = max(rel_error(x_in, x_before), rel_error(d_in, d_before))
    assert len(x_views) >= 5 and len(d_views) >= 3  # at least four (x) and two (dout) real layout changes
    assert_close_rel(errors, TWIN_TOL)


def test_dropout_on_non_contiguous_input_keeps_its_mask(own_generator):
    rng = np.random.default_rng(4)
    x = _nonzero(rng, (8, 3, 6, 5))
    dout = rng.standard_normal(x.shape)
    drop = nnp.Dropout(0.5)
    views = _layouts(x)
    assert len(views) == 5
    for name, xv in views.items():
        out = drop.forward(xv)
        dx = drop.backward(_layouts(dout)["channels_last"])
        assert 0 < (out == 0).mean() < 1, name
        assert rel_error(dx, dout * out / x) <= 1e-15, name


# --- threads and cache blocks ----------------------------------------------------------


def _small_conv_net():
    # no conv biases: ahead of batch norm their gradient is zero but for rounding, which no tolerance fits
    layers = [nnp.Conv2d(3, 8, 3, 1, 1, bias=False), nnp.BatchNorm2d(8), nnp.ReLU(), nnp.MaxPool2d(3, 2, 1),
              nnp.Conv2d(8, 6, 3, 1, 1, bias=False), nnp.BatchNorm2d(6), nnp.ReLU(), nnp.MaxPool2d(2)]
    net = nnp.Sequential(*layers)
    net.load_state_dict({k: v.astype(np.float64) for k, v in net.state_dict().items()})
    return net


def _conv_net_pass(net, x: np.ndarray, dout_seed: int) -> list[np.ndarray]:
    """Output, input gradient and every parameter gradient of a conv net (train mode)."""
    out = net.forward(x)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape)
    dx = net.backward(dout)
    return [out, dx, *(p.grad for p in net.parameters())]


def test_layers_give_the_same_numbers_however_the_batch_is_cut_into_threads_and_blocks(monkeypatch):
    from twinnet.numpy_nn import backend

    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((6, 3, 11, 10)), 0)  # ReLU-like zeros: ties inside the pools
    before = backend.num_threads()
    try:
        backend.set_num_threads(1)
        monkeypatch.setattr(backend, "_BLOCK_ITEMS", 1 << 40)
        net = _small_conv_net()
        whole = _conv_net_pass(copy.deepcopy(net), x, 1)
        chunks: list[int] = []
        real = backend.parallel

        def counting(fn, n, size=None, **kwargs):
            calls = [0]

            def counted(s):
                calls[0] += 1
                fn(s)

            real(counted, n, size, **kwargs)
            chunks.append(calls[0])

        backend.set_num_threads(2)
        monkeypatch.setattr(backend, "_BLOCK_ITEMS", 40)
        monkeypatch.setattr(backend, "_MIN_ITEMS", 1)
        monkeypatch.setattr(backend, "parallel", counting)
        cut = _conv_net_pass(net, x, 1)
    finally:
        backend.set_num_threads(before)
    # every call cut (images one per block; batch-norm rows in blocks too)
    assert min(chunks) >= 2 and 6 in chunks and max(chunks) > 6
    assert_close_rel({f"array {i}": rel_error(b, a) for i, (a, b) in enumerate(zip(whole, cut, strict=True))},
                     1e-12)  # only the order of partial sums may differ


def test_conv_weights_stay_laid_out_kernel_last_through_loading_casting_and_training():
    def kernel_last(conv):
        return conv.weight.data.transpose(2, 3, 1, 0).flags.c_contiguous

    torch.manual_seed(0)
    twin = torch.nn.Conv2d(4, 6, 3, 1, 1)
    conv = nnp.Conv2d(4, 6, 3, 1, 1)
    assert kernel_last(conv)
    conv.load_state_dict(twin.state_dict())  # torch's contiguous (O, C, kh, kw) tensors
    assert kernel_last(conv)
    np.testing.assert_array_equal(conv.weight.data, twin.weight.detach().numpy())
    conv.double()
    assert kernel_last(conv) and conv.weight.dtype == np.float64
    saved = conv.state_dict()["weight"]
    assert saved.flags.c_contiguous and saved.shape == (6, 4, 3, 3)  # interchange stays plain
    opt = nnp.Adam(conv.parameters(), lr=0.1)
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5))
    conv.backward(np.ones_like(conv.forward(x)))
    assert conv.weight.grad.strides == conv.weight.data.strides  # the gradient arrives in the same layout
    before = conv.weight.data
    opt.step()
    assert conv.weight.data is before and kernel_last(conv)  # updated in place
