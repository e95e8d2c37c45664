"""The NumPy engine's API against torch 2's: what a torch user writes (constructor arguments by position or
name, Module and Sequential methods, optimiser options and parameter groups) must mean the same here, each
checked against torch itself in float64; what is not implemented is refused with a one-line error."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from twinnet.check import assert_close_rel, torch_twin_check

from twinnet import numpy_nn as nnp
from twinnet.numpy_nn.clip import clip_grad_norm_

TWIN_TOL = 1e-9


def _children(seq) -> list[tuple[str, str]]:
    return [(name, type(m).__name__) for name, m in seq.named_children()]


def _twins(build, seed: int = 0):
    """The same model in both engines, float64, with torch's initial weights in both."""
    torch.manual_seed(seed)
    tm = build(torch.nn).double()
    nm = build(nnp)
    nm.load_state_dict(tm.state_dict())
    return nm, tm


def _mlp(nn):
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


# --- Sequential ----------------------------------------------------------------------------------------

SEQUENTIAL_OPS = {
    "append": lambda nn, s: s.append(nn.Sigmoid()),
    "extend": lambda nn, s: s.extend([nn.Sigmoid(), nn.ReLU()]),
    "insert": lambda nn, s: s.insert(1, nn.Sigmoid()),
    "insert-negative": lambda nn, s: s.insert(-1, nn.Sigmoid()),
    "pop": lambda nn, s: s.pop(1),
    "del": lambda nn, s: s.__delitem__(0),
    "del-slice": lambda nn, s: s.__delitem__(slice(0, 2)),
    "setitem": lambda nn, s: s.__setitem__(-1, nn.Sigmoid()),
    "slice": lambda nn, s: s[1:],
    "add": lambda nn, s: s + nn.Sequential(nn.Sigmoid()),
    "iadd": lambda nn, s: s.__iadd__(nn.Sequential(nn.Sigmoid())),
}


@pytest.mark.parametrize("op", SEQUENTIAL_OPS)
def test_sequential_methods_name_and_order_children_as_torch(op):
    """append/extend/insert/pop/del/setitem/slicing/+ leave the same children, under the same names, as torch's."""
    ours, theirs = _mlp(nnp), _mlp(torch.nn)
    got, want = SEQUENTIAL_OPS[op](nnp, ours), SEQUENTIAL_OPS[op](torch.nn, theirs)
    assert _children(ours) == _children(theirs)
    assert type(got).__name__ == type(want).__name__
    if isinstance(want, torch.nn.Sequential):
        assert _children(got) == _children(want) and len(got) == len(want)
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]


def test_sequential_indexing_and_ordered_dict_as_torch():
    ours, theirs = _mlp(nnp), _mlp(torch.nn)
    assert type(ours[-1]).__name__ == type(theirs[-1]).__name__ == "Linear"
    for seq in (ours, theirs):
        with pytest.raises(IndexError):
            seq[3]
    def layers(nn):
        return OrderedDict([("fc", nn.Linear(2, 3)), ("act", nn.ReLU()), ("out", nn.Linear(3, 1))])

    ours, theirs = nnp.Sequential(layers(nnp)), torch.nn.Sequential(layers(torch.nn))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["fc.weight", "fc.bias", "out.weight", "out.bias"]
    assert _children(ours[1:]) == _children(theirs[1:]) == [("act", "ReLU"), ("out", "Linear")]
    ours.load_state_dict(theirs.double().state_dict())
    x = np.random.default_rng(0).standard_normal((4, 2))
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12)


# --- Module ----------------------------------------------------------------------------------------------


def test_parameters_walk_as_torchs_and_count_with_numel():
    ours, theirs = _mlp(nnp), _mlp(torch.nn)
    assert next(ours.parameters()).shape == tuple(next(theirs.parameters()).shape)  # torch's generator idiom
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert [(p.ndim, p.size(), p.size(-1)) for p in ours.parameters()] == [
        (p.ndim, tuple(p.size()), p.size(-1)) for p in theirs.parameters()]
    assert list(ours.parameters(recurse=False)) == [] and list(theirs.parameters(recurse=False)) == []
    assert len(list(ours[0].parameters(recurse=False))) == len(list(theirs[0].parameters(recurse=False))) == 2
    assert [n for n, _ in ours.named_parameters("net", False)] == [n for n, _ in theirs.named_parameters("net", False)]


def test_a_shared_module_is_listed_once_as_in_torch():
    def shared(nn):
        layer = nn.Linear(2, 2)
        return nn.Sequential(layer, nn.ReLU(), layer)

    ours, theirs = shared(nnp), shared(torch.nn)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()] == ["", "0", "1"]
    assert len(list(ours.modules())) == len(list(theirs.modules()))
    assert len(list(ours.children())) == len(list(theirs.children())) == 2
    assert [n for n, _ in ours.named_modules(remove_duplicate=False)] == [
        n for n, _ in theirs.named_modules(remove_duplicate=False)]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_parameters(remove_duplicate=False)] == [
        n for n, _ in theirs.named_parameters(remove_duplicate=False)]
    assert list(ours.state_dict()) == list(theirs.state_dict())  # both names, in both engines


def test_children_buffers_and_lookups_as_torch():
    build = lambda nn: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU())  # noqa: E731
    ours, theirs = build(nnp), build(torch.nn)
    assert _children(ours) == _children(theirs)
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_buffers(prefix="m")] == [n for n, _ in theirs.named_buffers(prefix="m")]
    assert len(list(ours.buffers())) == len(list(theirs.buffers())) == 3
    assert type(ours.get_submodule("1")).__name__ == type(theirs.get_submodule("1")).__name__
    assert ours.get_parameter("1.weight").shape == tuple(theirs.get_parameter("1.weight").shape)
    for model in (ours, theirs):
        with pytest.raises(AttributeError):
            model.get_submodule("7")
        with pytest.raises(AttributeError):
            model.get_parameter("0.missing")
    for model, nn in ((ours, nnp), (theirs, torch.nn)):
        model.add_module("out", nn.Linear(4, 1))
        model.register_module("act", nn.Tanh())
        model[0].register_parameter("bias", None)
    assert _children(ours) == _children(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_apply_visits_children_first_as_torch():
    seen: dict[str, list[str]] = {"ours": [], "theirs": []}
    build = lambda nn: nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 1)))  # noqa: E731
    assert build(nnp).apply(lambda m: seen["ours"].append(type(m).__name__)) is not None
    build(torch.nn).apply(lambda m: seen["theirs"].append(type(m).__name__))
    assert seen["ours"] == seen["theirs"] == ["Linear", "ReLU", "Linear", "Sequential", "Sequential"]


def test_requires_grad_false_freezes_as_in_torch():
    """A frozen layer gets no gradient (None, in both) and no step; the others' gradients are torch's."""
    ours, theirs = _twins(_mlp)
    assert ours[0].requires_grad_(False) is ours[0]
    theirs[0].requires_grad_(False)
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    (theirs(torch.tensor(x)) * torch.tensor(dout)).sum().backward()
    ours.forward(x)
    ours.backward(dout)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if q.grad is not None:
            np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12)
    nnp.SGD(ours.parameters(), lr=0.5).step()
    torch.optim.SGD(theirs.parameters(), lr=0.5).step()
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-12, err_msg=k)
    ours.requires_grad_()  # thawed: every weight has a gradient again
    ours.forward(x)
    ours.backward(dout)
    assert all(p.grad is not None for p in ours.parameters())
    assert [p.requires_grad for p in ours.parameters()] == [True] * 4
    ours[2].weight.requires_grad = False  # the attribute, as torch users set it
    ours.zero_grad()
    ours.forward(x)
    ours.backward(dout)
    assert [p.grad is None for p in ours.parameters()] == [False, False, True, False]


def test_zero_grad_keeps_zeros_with_set_to_none_false_as_torch():
    ours, theirs = _twins(_mlp)
    x = np.ones((2, 3))
    ours.backward(0 * ours.forward(x) + 1)
    theirs(torch.tensor(x)).sum().backward()
    ours[0].zero_grad(set_to_none=False)
    theirs[0].zero_grad(set_to_none=False)
    opt, t_opt = nnp.SGD(ours[2].parameters()), torch.optim.SGD(theirs[2].parameters())
    opt.zero_grad(set_to_none=False)
    t_opt.zero_grad(set_to_none=False)
    assert [None if p.grad is None else float(abs(p.grad).sum()) for p in ours.parameters()] == [
        None if p.grad is None else float(p.grad.abs().sum()) for p in theirs.parameters()] == [0.0] * 4
    ours.zero_grad()
    theirs.zero_grad()
    assert all(p.grad is None for p in ours.parameters()) and all(p.grad is None for p in theirs.parameters())


def test_load_state_dict_strict_and_errors_as_torch():
    ours, theirs = nnp.Linear(2, 2), torch.nn.Linear(2, 2)
    partial = {"weight": torch.ones(2, 2), "extra": torch.zeros(1)}
    got, want = ours.load_state_dict(partial, strict=False), theirs.load_state_dict(partial, strict=False)
    assert (got.missing_keys, got.unexpected_keys) == (want.missing_keys, want.unexpected_keys)
    np.testing.assert_array_equal(ours.weight.data, np.ones((2, 2)))
    full = {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}
    assert tuple(ours.load_state_dict(full)) == tuple(theirs.load_state_dict(full)) == ([], [])
    for bad in ({"weight": torch.zeros(2, 2)}, {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}):
        for model in (ours, theirs):
            with pytest.raises(RuntimeError):
                model.load_state_dict(bad)


def test_reassigning_or_deleting_a_child_unregisters_it_as_torch():
    ours, theirs = _mlp(nnp), _mlp(torch.nn)
    for model, nn in ((ours, nnp), (theirs, torch.nn)):
        model.extra, model.gone = nn.Linear(1, 1), nn.Linear(1, 1)
        model.extra = None
        del model.gone
        model[0].bias = None
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["0.weight", "2.weight", "2.bias"]
    assert len(ours.parameters()) == len(list(theirs.parameters())) == 3
    with pytest.raises(TypeError):
        theirs[2].weight = torch.zeros(2, 4)
    with pytest.raises(TypeError, match="weight"):
        ours[2].weight = np.zeros((2, 4))  # else the old Parameter would stay registered, and trained


def test_to_cpu_and_factory_dtypes_take_torchs_arguments():
    ours = _mlp(nnp)
    assert ours.to("cpu") is ours and ours.cpu() is ours
    assert ours.to(torch.float64).dtype == np.float64
    assert ours.to("cpu", torch.float32).dtype == np.float32
    assert ours.to(device="cpu", dtype=torch.float64).dtype == np.float64
    builds = [
        lambda nn: nn.Linear(2, 3, True, "cpu", torch.float64),
        lambda nn: nn.Conv2d(1, 2, 3, 1, 0, 1, 1, True, "zeros", "cpu", torch.float64),
        lambda nn: nn.BatchNorm1d(3, 1e-5, 0.1, True, True, "cpu", torch.float64),
        lambda nn: nn.BatchNorm2d(3, dtype=torch.float64),
        lambda nn: nn.LayerNorm(4, 1e-5, True, True, "cpu", torch.float64),
    ]
    for build in builds:
        got, want = build(nnp).state_dict(), build(torch.nn).state_dict()
        assert {k: str(v.dtype) for k, v in got.items()} == {k: str(v.dtype).removeprefix("torch.")
                                                             for k, v in want.items()}


def test_parameters_stay_floating_point_as_torchs_do():
    """torch's Module.to takes floating dtypes only; NumPy has no bfloat16: each a one-line TypeError, the
    weights left as they were (not cast to integers, where a default Linear's would all be 0)."""
    ours = _mlp(nnp)
    before = [p.data.copy() for p in ours.parameters()]
    for dtype, message in ((torch.int64, "parameters are floating point"), ("int32", "parameters are floating point"),
                           (torch.bfloat16, "NumPy has no bfloat16")):
        with pytest.raises(TypeError, match=message):
            ours.to(dtype)
        with pytest.raises(TypeError, match=message):
            nnp.Linear(2, 2, dtype=dtype)
    assert all(np.array_equal(p.data, b) for p, b in zip(ours.parameters(), before))
    with pytest.raises(TypeError):
        torch.nn.Linear(2, 2).to(torch.int64)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")  # torch says so of its own
def test_layers_of_no_inputs_are_built_as_torchs():
    """Linear(0, n) and Conv2d(0, n, k): an empty weight and a zero bias (the bound 1/sqrt(fan_in) is 0 at no
    inputs), whose output is the bias, as torch's."""
    for nn in (nnp, torch.nn):
        linear, conv = nn.Linear(0, 3), nn.Conv2d(0, 2, 3)
        assert tuple(linear.weight.shape) == (3, 0) and tuple(conv.weight.shape) == (2, 0, 3, 3)
        assert not np.asarray(linear.bias.detach() if nn is torch.nn else linear.bias.data).any()
    out = nnp.Linear(0, 3)(np.zeros((2, 0)))
    assert out.shape == (2, 3) and not out.any()


def test_a_learning_rate_given_as_a_one_element_tensor_steps_as_torchs():
    """torch takes lr as a tensor, at construction or set in a group later; the same updates here."""
    torch.manual_seed(0)
    theirs = torch.nn.Linear(3, 2).double()
    ours = nnp.Linear(3, 2)
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 3))
    lr = torch.tensor(0.05, dtype=torch.float64)  # one tensor for both: changed in place, as torch's schedulers do
    opt_t = torch.optim.Adam(theirs.parameters(), lr=lr)
    opt_n = nnp.Adam(ours.parameters(), lr=lr)
    for step in range(5):
        if step == 2:
            lr.fill_(0.02)
        if step == 3:
            opt_t.param_groups[0]["lr"] = torch.tensor(0.01, dtype=torch.float64)
            opt_n.param_groups[0]["lr"] = np.array(0.01)
        for opt in (opt_t, opt_n):
            opt.zero_grad()
        theirs(torch.from_numpy(x)).square().sum().backward()
        ours.backward(2 * ours(x))  # the gradient of the same loss, the outputs' squares summed
        for opt in (opt_t, opt_n):
            opt.step()
    assert_close_rel({"weight": float(np.abs(ours.weight.data - theirs.weight.detach().numpy()).max())}, 1e-12)


def test_init_fills_torch_has_give_torchs_values():
    """constant_, eye_ and dirac_ (groups too) equal torch's; trunc_normal_ stays in [a, b] with the truncated
    normal's mean; a random fill refuses an integer array, as torch's."""
    from twinnet.numpy_nn import init

    for shape, groups in (((6, 3, 3, 3), 1), ((6, 2, 3, 3), 2), ((4, 5, 2), 1), ((2, 4, 1, 3, 3), 1)):
        ours = init.dirac_(np.full(shape, 7.0), groups)
        assert np.array_equal(ours, torch.nn.init.dirac_(torch.zeros(shape), groups).numpy()), shape
    for shape in ((3, 5), (4, 2), (3, 3)):
        assert np.array_equal(init.eye_(np.full(shape, 2.0)), torch.nn.init.eye_(torch.zeros(shape)).numpy())
    assert np.array_equal(init.constant_(np.zeros((2, 3)), 0.25), np.full((2, 3), 0.25))
    draws = init.trunc_normal_(np.zeros(100_000), 1.0, 2.0, -1.0, 2.5, generator=np.random.default_rng(0))
    assert draws.min() >= -1.0 and draws.max() <= 2.5
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    mean = 1.0 + 2.0 * (phi(-1.0) - phi(0.75)) / (cdf(0.75) - cdf(-1.0))  # the truncated normal's, 0.8075
    assert abs(draws.mean() - mean) < 0.01  # 5 standard errors of 100,000 draws
    far = init.trunc_normal_(np.zeros(10_000), 0.0, 1.0, 10.0, 11.0, generator=np.random.default_rng(0))
    assert 10.0 <= far.min() and far.max() <= 11.0 and abs(far.mean() - 10.098) < 0.01  # not all b: 1/z above 10
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="floating-point"):
        init.normal_(np.zeros(3, np.int64), generator=rng)
    assert rng.random() == np.random.default_rng(0).random()  # refused before drawing
    with pytest.raises(ValueError, match="2-d"):
        init.eye_(np.zeros((2, 2, 2)))


def test_train_takes_booleans_only_as_torch():
    for model in (_mlp(nnp), _mlp(torch.nn)):
        with pytest.raises(ValueError, match="boolean"):
            model.train("no")


# --- layers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start, end", [(1, -1), (0, -1), (1, 2), (2, 3), (-2, -1), (0, 0), (3, 3)])
def test_flatten_dims_match_torch(start, end):
    rng = np.random.default_rng(abs(start * 7 + end))
    errors = torch_twin_check(nnp.Flatten(start, end), torch.nn.Flatten(start, end),
                              rng.standard_normal((2, 3, 4, 5)), rng=rng)
    assert_close_rel(errors, TWIN_TOL)
    assert (nnp.Flatten().start_dim, nnp.Flatten().end_dim) == (1, -1)


@pytest.mark.parametrize("padding, kernel", [("same", 3), ("same", (5, 3)), ("valid", 3), ("same", 1)])
def test_conv2d_padding_strings_match_torch(padding, kernel):
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    errors = torch_twin_check(nnp.Conv2d(2, 3, kernel, padding=padding), torch.nn.Conv2d(2, 3, kernel, padding=padding),
                              rng.standard_normal((2, 2, 7, 6)), rng=rng)
    assert_close_rel(errors, TWIN_TOL)


UNBATCHED = [
    (lambda nn: nn.Conv2d(3, 2, 3, padding=1), "Conv2d"),
    (lambda nn: nn.MaxPool2d(2), "MaxPool2d"),
    (lambda nn: nn.AvgPool2d(3, 2, 1), "AvgPool2d"),
    (lambda nn: nn.AdaptiveAvgPool2d(1), "AdaptiveAvgPool2d"),
    (lambda nn: nn.AdaptiveMaxPool2d(1), "AdaptiveMaxPool2d"),
]


@pytest.mark.parametrize("build", [b for b, _ in UNBATCHED], ids=[name for _, name in UNBATCHED])
def test_unbatched_images_match_torch(build):
    """A (C, H, W) input is one image, as torch takes it; a 2-d or 5-d one is refused where torch refuses it."""
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    errors = torch_twin_check(build(nnp), build(torch.nn), rng.standard_normal((3, 6, 5)), rng=rng)
    assert_close_rel(errors, TWIN_TOL)
    for shape in [(6, 5), (1, 1, 3, 6, 5)]:
        x = rng.standard_normal(shape)
        try:
            want = build(torch.nn).double()(torch.tensor(x)).detach().numpy()
        except (RuntimeError, ValueError, IndexError):
            with pytest.raises(ValueError, match="C, H, W"):
                build(nnp)(x)
        else:  # AdaptiveAvgPool2d: torch averages the last two dimensions of any input
            np.testing.assert_allclose(build(nnp)(x), want, rtol=1e-12)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor", [None, 5, 2])
def test_avgpool_divisor_override_matches_torch(divisor, count_include_pad):
    rng = np.random.default_rng(3)
    args = dict(kernel_size=3, stride=2, padding=1, count_include_pad=count_include_pad, divisor_override=divisor)
    errors = torch_twin_check(nnp.AvgPool2d(**args), torch.nn.AvgPool2d(**args), rng.standard_normal((2, 2, 7, 6)),
                              rng=rng)
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("cls", ["BatchNorm1d", "BatchNorm2d"])
def test_batchnorm_without_bias_matches_torch(cls):
    rng = np.random.default_rng(4)
    shape = (5, 3) if cls == "BatchNorm1d" else (2, 3, 4, 4)
    ours, theirs = getattr(nnp, cls)(3, bias=False), getattr(torch.nn, cls)(3, bias=False)
    assert ours.bias is None and theirs.bias is None
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
    assert_close_rel(torch_twin_check(ours, theirs, rng.standard_normal(shape), rng=rng), TWIN_TOL)
    plain, theirs = getattr(nnp, cls)(3, affine=False), getattr(torch.nn, cls)(3, affine=False)
    assert plain.weight is None and plain.bias is None and theirs.weight is None and theirs.bias is None
    untracked = getattr(nnp, cls)(3, track_running_stats=False)
    assert untracked.running_mean is None and getattr(torch.nn, cls)(3, track_running_stats=False).running_mean is None


@pytest.mark.parametrize("cls, shape", [("BatchNorm1d", (2, 3, 4, 4)), ("BatchNorm1d", (3,)),
                                        ("BatchNorm2d", (3, 4, 4))])
def test_batchnorm_refuses_other_dimensions_as_torch(cls, shape):
    with pytest.raises(ValueError):
        getattr(torch.nn, cls)(3)(torch.zeros(shape))
    with pytest.raises(ValueError, match=f"got {len(shape)}D input"):
        getattr(nnp, cls)(3)(np.zeros(shape))


INPLACE = [
    (lambda nn: nn.ReLU(inplace=True), lambda nn: nn.ReLU()),
    (lambda nn: nn.LeakyReLU(0.2, True), lambda nn: nn.LeakyReLU(0.2)),
    (lambda nn: nn.ELU(0.5, True), lambda nn: nn.ELU(0.5)),
    (lambda nn: nn.SiLU(True), lambda nn: nn.SiLU()),
    (lambda nn: nn.Dropout(0.3, True).eval(), lambda nn: nn.Dropout(0.3).eval()),
]


@pytest.mark.parametrize("build, plain", INPLACE, ids=["ReLU", "LeakyReLU", "ELU", "SiLU", "Dropout"])
def test_inplace_flag_is_taken_with_torchs_values(build, plain):
    """``inplace=True`` (by name or position) is accepted, with torch's values and gradients; the input is kept
    (torch's autograd refuses an in-place op on a leaf, so the twin is the out-of-place module)."""
    rng = np.random.default_rng(5)
    ours = build(nnp)
    assert ours.inplace is True and build(torch.nn).inplace is True
    errors = torch_twin_check(ours, plain(torch.nn), rng.standard_normal((3, 4)), rng=rng)
    assert_close_rel(errors, TWIN_TOL)


REFUSED = [
    (lambda: nnp.Conv2d(1, 1, 3, padding_mode="reflect"), "padding_mode"),
    (lambda: nnp.Conv2d(1, 1, 4, padding="same"), "odd kernel"),
    (lambda: nnp.Conv2d(1, 1, 3, stride=2, padding="same"), "strided"),
    (lambda: nnp.Conv2d(1, 1, 3, padding="full"), "padding"),
    (lambda: nnp.AdaptiveMaxPool2d(1, True), "return_indices"),
    (lambda: nnp.AvgPool2d(2, divisor_override=0), "divisor_override"),
    (lambda: nnp.Linear(1, 1).register_buffer("b", np.zeros(1), persistent=False), "persistent"),
    (lambda: nnp.Adam([nnp.Parameter(np.zeros(1))], capturable=True), "capturable"),
    (lambda: nnp.SGD([nnp.Parameter(np.zeros(1))], differentiable=True), "differentiable"),
    (lambda: nnp.RMSprop([nnp.Parameter(np.zeros(1))], 0.01, 0.99, 1e-8, 0, 0, False, True), "capturable"),
    (lambda: nnp.Adam([{"params": [nnp.Parameter(np.zeros(1))], "capturable": True}]), "capturable"),  # a group's
    (lambda: nnp.MaxPool2d(2, stride=0), "stride must be at least 1"),
    (lambda: nnp.AvgPool2d(0), "kernel size and stride must be at least 1"),
    (lambda: nnp.MaxPool2d(2, padding=-1), "padding must be non-negative"),
    (lambda: nnp.AvgPool2d(2, padding=(0, -1)), "padding must be non-negative"),
    (lambda: nnp.Linear(4, 3)(np.zeros((2, 5))), r"Linear\(4, 3\) takes inputs whose last dimension is 4"),
    (lambda: nnp.SGD([nnp.Parameter(np.zeros(1))], lr=np.ones(2)), "a learning rate is one number"),
]


@pytest.mark.parametrize("make, name", REFUSED, ids=[name for _, name in REFUSED])
def test_unsupported_torch_options_are_refused_by_name(make, name):
    with pytest.raises(ValueError, match=name):
        make()


# --- optimisers ----------------------------------------------------------------------------------------------

OPTIMIZERS = {
    "SGD": dict(lr=0.05, momentum=0.9, weight_decay=0.1),
    "Adam": dict(lr=0.05, weight_decay=0.1, amsgrad=True),
    "AdamW": dict(lr=0.05, weight_decay=0.1),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1),
}


def _follow(make_ours, make_theirs, steps: int = 8, between=None, seed: int = 0) -> float:
    """Largest parameter difference after ``steps`` steps on equal gradients; ``between(opt)`` runs on both
    optimisers before the third step."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in [(3, 4), (4,), (2, 3)]]
    ours, theirs = [nnp.Parameter(a.copy()) for a in init], [torch.nn.Parameter(torch.tensor(a)) for a in init]
    opt, t_opt = make_ours(ours), make_theirs(theirs)
    for step in range(steps):
        for p, q in zip(ours, theirs):
            g = rng.standard_normal(p.shape)
            p.grad, q.grad = g.copy(), torch.tensor(g)
        if between is not None and step == 2:
            between(opt)
            between(t_opt)
        opt.step()
        t_opt.step()
    return max(float(np.abs(p.data - q.detach().numpy()).max()) for p, q in zip(ours, theirs))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_maximize_follows_torch(name):
    kwargs = {**OPTIMIZERS[name], "maximize": True}
    assert _follow(lambda p: getattr(nnp, name)(p, **kwargs), lambda p: getattr(torch.optim, name)(p, **kwargs)) < 1e-12


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_assigning_a_param_groups_lr_takes_effect_as_in_torch(name):
    def retune(opt):
        opt.param_groups[0]["lr"] = 0.3
        opt.param_groups[0]["weight_decay"] = 0.0

    kwargs = OPTIMIZERS[name]
    assert _follow(lambda p: getattr(nnp, name)(p, **kwargs), lambda p: getattr(torch.optim, name)(p, **kwargs),
                   between=retune) < 1e-12
    opt = getattr(nnp, name)([nnp.Parameter(np.zeros(1))], **kwargs)
    opt.lr = 0.25  # the engine's own shorthand: every group's rate
    assert opt.param_groups[0]["lr"] == 0.25


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_parameter_groups_with_their_own_hyperparameters_follow_torch(name):
    def groups(p):
        return [{"params": p[:1]}, {"params": p[1:], "lr": 0.2, "weight_decay": 0.0}]

    kwargs = OPTIMIZERS[name]
    assert _follow(lambda p: getattr(nnp, name)(groups(p), **kwargs),
                   lambda p: getattr(torch.optim, name)(groups(p), **kwargs)) < 1e-12

    def added(p):  # the second group joins later, through add_param_group
        opt = getattr(nnp if isinstance(p[0], nnp.Parameter) else torch.optim, name)(p[:2], **kwargs)
        opt.add_param_group({"params": p[2], "lr": 0.1})
        return opt

    assert _follow(added, added) < 1e-12


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_defaults_and_group_keys_are_torchs(name):
    ours = getattr(nnp, name)([nnp.Parameter(np.zeros(2))])
    theirs = getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(2))])
    assert ours.defaults == {k: v for k, v in theirs.defaults.items() if k in ours.defaults}
    assert set(theirs.defaults) - set(ours.defaults) <= {"foreach", "fused", "capturable", "differentiable"}
    assert set(ours.param_groups[0]) <= set(theirs.param_groups[0])


def test_adam_decoupled_weight_decay_follows_torch():
    kwargs = dict(lr=0.05, weight_decay=0.3, decoupled_weight_decay=True)
    assert _follow(lambda p: nnp.Adam(p, **kwargs), lambda p: torch.optim.Adam(p, **kwargs)) < 1e-12


def test_rmsprop_positional_arguments_mean_torchs():
    """torch's RMSprop takes capturable, foreach, maximize and differentiable by position, after centered."""
    args = (0.01, 0.9, 1e-6, 0.1, 0.5, True, False, None, True)
    assert _follow(lambda p: nnp.RMSprop(p, *args), lambda p: torch.optim.RMSprop(p, *args)) < 1e-12


def test_optimizers_take_named_parameters_a_closure_and_refuse_duplicates_as_torch():
    named = lambda p: [(str(i), q) for i, q in enumerate(p)]  # noqa: E731
    assert _follow(lambda p: nnp.SGD(named(p), lr=0.1, foreach=True),
                   lambda p: torch.optim.SGD(named(p), lr=0.1, foreach=True)) < 1e-12
    p = nnp.Parameter(np.ones(2))
    p.grad = np.ones(2)
    opt = nnp.SGD([p], lr=0.5)
    assert opt.step(lambda: 3.5) == 3.5
    assert torch.optim.SGD([torch.nn.Parameter(torch.ones(2))]).step(lambda: 3.5) == 3.5
    np.testing.assert_array_equal(p.data, [0.5, 0.5])
    t = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError):
        torch.optim.SGD([t]).add_param_group({"params": [t]})
    with pytest.raises(ValueError, match="more than once"):
        opt.add_param_group({"params": [p]})
    with pytest.raises(TypeError):
        torch.optim.SGD([t]).add_param_group({"params": {torch.nn.Parameter(torch.ones(1))}})
    with pytest.raises(TypeError, match="set"):  # a set's order, and so the state's, changes between runs
        opt.add_param_group({"params": {nnp.Parameter(np.ones(1))}})
    for make in (torch.optim.SGD, nnp.SGD):
        with pytest.raises(TypeError):
            make(t if make is torch.optim.SGD else p)


def test_a_checkpoint_of_several_groups_resumes_exactly():
    rng = np.random.default_rng(6)
    params = [nnp.Parameter(rng.standard_normal(s)) for s in [(3,), (2, 2)]]
    opt = nnp.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.2, "amsgrad": True}], lr=0.05)
    for _ in range(3):
        for p in params:
            p.grad = rng.standard_normal(p.shape)
        opt.step()
    copies = [nnp.Parameter(p.data.copy()) for p in params]
    resumed = nnp.Adam([{"params": copies[:1]}, {"params": copies[1:]}])
    resumed.load_state_dict(opt.state_dict())
    assert [g["lr"] for g in resumed.param_groups] == [0.05, 0.2] and resumed.param_groups[1]["amsgrad"]
    for _ in range(3):
        for p, q in zip(params, copies):
            p.grad = rng.standard_normal(p.shape)
            q.grad = p.grad.copy()
        opt.step()
        resumed.step()
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="groups"):
        nnp.Adam(copies).load_state_dict(opt.state_dict())


def test_a_checkpoint_from_before_maximize_still_loads():
    p = nnp.Parameter(np.ones(2))
    p.grad = np.ones(2)
    opt = nnp.AdamW([p])
    opt.step()
    saved = {k: v for k, v in opt.state_dict().items() if k not in ("hyper.maximize", "hyper.decoupled_weight_decay")}
    resumed = nnp.AdamW([nnp.Parameter(np.ones(2))], maximize=True)
    resumed.load_state_dict(saved)
    assert resumed.maximize is False and resumed.decoupled_weight_decay is True


def test_clip_grad_norm_takes_torchs_keywords_and_returns_an_item():
    rng = np.random.default_rng(7)
    grads = [rng.standard_normal(s) for s in [(3, 2), (4,)]]
    ours = [nnp.Parameter(np.zeros(g.shape)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = g.copy(), torch.tensor(g)
    got = clip_grad_norm_(parameters=iter(ours), max_norm=0.5, norm_type=2.0, foreach=None)
    want = torch.nn.utils.clip_grad_norm_(parameters=iter(theirs), max_norm=0.5, norm_type=2.0, foreach=None)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-12)


def test_a_frozen_weight_is_left_out_of_the_ranks_gradient_exchange(monkeypatch):
    """Data-parallel NumPy training with a weight frozen (``requires_grad = False``, the same on every rank):
    the exchange is given the gradients there are, not the frozen weight's None."""
    from twinnet import distributed
    from twinnet.learner import NumpyLearner

    model = nnp.Sequential(nnp.Linear(3, 4), nnp.ReLU(), nnp.Linear(4, 2))
    model[0].weight.requires_grad = False
    learner = NumpyLearner(model, nnp.SGD(model.parameters(), lr=0.1), nnp.CrossEntropyLoss())
    exchanged = []
    learner.world = distributed.World(rank=0, size=2)
    monkeypatch.setattr(distributed, "average_gradients", lambda grads, count, total: exchanged.append(grads))
    learner.train_step(np.ones((2, 3), dtype=np.float32), np.array([0, 1]), total=4)
    assert len(exchanged) == 1 and len(exchanged[0]) == 3 and all(g is not None for g in exchanged[0])


def test_names_torch_refuses_for_children_buffers_and_parameters_are_refused():
    """A child named after a method ("forward") would replace it, a buffer over a weight would leave the weight
    training unseen, and None in a Sequential would drop a layer's name: torch refuses the first two (KeyError),
    and a Sequential here refuses None."""
    from collections import OrderedDict

    for make in (lambda: nnp.Sequential(OrderedDict([("forward", nnp.Linear(2, 3))])),
                 lambda: nnp.Linear(2, 3).register_buffer("weight", np.zeros((3, 2))),
                 lambda: nnp.Linear(2, 3).register_parameter("forward", None),
                 lambda: nnp.Linear(2, 3).register_buffer("a.b", np.zeros(1))):
        with pytest.raises(KeyError):
            make()
    for make in (lambda: torch.nn.Sequential(OrderedDict([("forward", torch.nn.Linear(2, 3))])),
                 lambda: torch.nn.Linear(2, 3).register_buffer("weight", torch.zeros(3, 2))):
        with pytest.raises(KeyError):  # torch's own refusals, the same
            make()
    seq = nnp.Sequential(nnp.Linear(2, 2), nnp.Tanh(), nnp.Linear(2, 3))
    with pytest.raises(TypeError, match="del seq"):
        seq[1] = None
    assert list(dict(seq.named_children())) == ["0", "1", "2"]
    assert nnp.SGD([{"params": []}], lr=0.1).step() is None  # every group empty: nothing to step, as torch
    with pytest.raises(TypeError, match="divisor_override must be an int"):
        nnp.AvgPool2d(2, divisor_override=2.5)
