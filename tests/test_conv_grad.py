"""The small maps' weight gradient as nine matmuls (torch_nn.conv_grad): the same gradients as torch's convolution,
only where it applies, and chosen by the hardware under conv_weight_grad=auto."""

import copy
import json

import pytest
import torch

from twinnet import hardware
from twinnet.cli import main
from twinnet.experiments import image
from twinnet.torch_nn import conv_grad

from fake_data import write_cifar_tree


def _net(c=6):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, c, 3, padding=1, bias=False), torch.nn.GELU(),
        torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.MaxPool2d(2), torch.nn.GELU(),
        torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.Conv2d(c, c, 3, padding=1, bias=True),
        torch.nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), torch.nn.Flatten(), torch.nn.LazyLinear(4))


def _grads(model, x, y):
    x = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return [x.grad] + [p.grad for p in model.parameters()]


@pytest.mark.parametrize("side, layout", [(8, torch.contiguous_format), (8, torch.channels_last),
                                          (5, torch.channels_last), (16, torch.contiguous_format)])
def test_routed_convolutions_give_torchs_gradients_in_float64(side, layout):
    """Every gradient (input's and parameters') equals torch's own to float64 rounding, on maps small enough for the
    matmul path (8, 5: after pooling 4, 2) and on larger ones where only the pooled layers take it (16 -> 8)."""
    x = torch.randn(3, 3, side, side, dtype=torch.float64).contiguous(memory_format=layout)
    y = torch.tensor([0, 1, 3])
    plain = _net().double()
    plain(x)  # the lazy layer's shape
    routed = copy.deepcopy(plain)
    assert conv_grad.route_weight_grads(routed) == 3  # 3x3, stride 1, no bias: not the biased or the strided one
    assert [conv_grad.is_routed(m) for m in routed if isinstance(m, torch.nn.Conv2d)] == [True] * 3 + [False] * 2
    assert [type(m) for m in routed] == [type(m) for m in plain]  # the structure tables name them as before
    expected, got = _grads(plain, x, y), _grads(routed, x, y)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    assert routed.state_dict().keys() == plain.state_dict().keys()


def test_the_weight_gradient_is_the_sum_over_positions_of_output_gradient_times_shifted_input():
    """Against the definition, written out: dW[o, i, a, b] = sum over n, h, w of g[n, o, h, w] * x_pad[n, i, h+a,
    w+b]."""
    torch.manual_seed(1)
    x, g = torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.randn(2, 4, 4, 5, dtype=torch.float64)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    expected = torch.stack([torch.stack([torch.einsum("nohw,nihw->oi", g, padded[:, :, a:a + 4, b:b + 5])
                                         for b in range(3)], -1) for a in range(3)], -2)
    torch.testing.assert_close(conv_grad.weight_grad(g.float(), x.float(), (4, 3, 3, 3)).double(), expected,
                               rtol=1e-5, atol=1e-5)


def test_frozen_weights_and_inputs_without_gradient_skip_their_part_and_bf16_matches_torchs_rounding():
    """A frozen routed layer computes no weight gradient and a first layer no input gradient; under bf16 autocast
    the routed gradients agree with torch's own to bf16's rounding."""
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, bias=False)
    routed = copy.deepcopy(conv)
    conv_grad.route_weight_grads(routed)
    x = torch.randn(8, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_plain, out_routed = conv(x), routed(x)
    assert out_routed.dtype == torch.bfloat16
    torch.testing.assert_close(out_routed, out_plain)
    out_plain.float().square().sum().backward()
    out_routed.float().square().sum().backward()
    scale = conv.weight.grad.abs().max()
    assert (routed.weight.grad - conv.weight.grad).abs().max() <= 1e-2 * scale
    routed.weight.requires_grad_(False)
    routed.weight.grad = None
    xi = x.clone().requires_grad_(True)
    routed(xi).square().sum().backward()
    assert routed.weight.grad is None and xi.grad is not None
    with torch.no_grad():  # evaluation: torch's own path, the same numbers
        assert torch.equal(routed(x), torch.nn.Conv2d.forward(routed, x))


@pytest.mark.parametrize("setting, device, amp, amx, expected", [
    ("auto", "cpu", True, True, True), ("auto", "cpu", True, False, False), ("auto", "cpu", False, True, False),
    ("auto", "cuda", True, True, False), ("matmul", "cpu", False, False, True), ("library", "cpu", True, True, False)])
def test_auto_takes_the_matmul_path_only_on_a_cpu_with_amx_under_bf16(setting, device, amp, amx, expected,
                                                                      monkeypatch):
    monkeypatch.setenv("TWINNET_CPU_AMX", "1" if amx else "0")
    hardware.cpu_amx.cache_clear()
    try:
        assert hardware.resolve_conv_weight_grad(setting, device, amp) is expected
    finally:
        hardware.cpu_amx.cache_clear()


def test_a_run_says_which_path_it_took_and_the_numpy_engine_refuses_matmul(tmp_path, monkeypatch, capsys):
    """airbench94 routes its six 3x3 convolutions when asked, the three on 7x7 and 3x3 maps take the matmul path at
    every step, it trains to the figures of torch's own path in float32, and summary.json records the path;
    engine=numpy refuses matmul by name."""
    write_cifar_tree(tmp_path / "data" / "cifar10", (10, 2))
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    routed_count, sides = [], []
    route, weight_grad = conv_grad.route_weight_grads, conv_grad.weight_grad

    def counted_route(model):
        routed_count.append(route(model))
        return routed_count[-1]

    def counted_weight_grad(g, x, shape):
        sides.append(x.shape[-1])
        return weight_grad(g, x, shape)

    monkeypatch.setattr(conv_grad, "route_weight_grads", counted_route)
    monkeypatch.setattr(conv_grad, "weight_grad", counted_weight_grad)
    summaries = {}
    for path in ("library", "matmul"):
        args = ["run", "airbench94", "--quick", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / path),
                "--threads", "1", "--set", "amp=false", "--set", "steps=3", "--set", "batch_size=25", "--set",
                f"conv_weight_grad={path}"]
        assert main(args) == 0
        summaries[path] = json.loads((tmp_path / path / "summary.json").read_text())
    assert routed_count == [6] and sorted(sides) == [3] * 3 + [7] * 6  # 3 steps: two layers on 7x7 maps, one on 3x3
    assert summaries["library"]["conv_weight_grad"] == "library"
    assert summaries["matmul"]["conv_weight_grad"] == "matmul"
    assert summaries["matmul"]["train_loss"] == pytest.approx(summaries["library"]["train_loss"], rel=1e-3)
    with pytest.raises(ValueError, match="conv_weight_grad=matmul"):
        image.ImageConfig(model="mnist-cnn", engine="numpy", conv_weight_grad="matmul")
    capsys.readouterr()


def test_twinnet_cpu_amx_overrides_the_cpu_and_a_bad_value_is_ignored_with_a_warning(monkeypatch):
    monkeypatch.delenv("TWINNET_CPU_AMX", raising=False)
    hardware.cpu_amx.cache_clear()
    asked = hardware.cpu_amx()  # what this CPU has
    for value, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("TWINNET_CPU_AMX", value)
        hardware.cpu_amx.cache_clear()
        assert hardware.cpu_amx() is expected
    monkeypatch.setenv("TWINNET_CPU_AMX", "yes")
    hardware.cpu_amx.cache_clear()
    try:
        with pytest.warns(UserWarning, match="TWINNET_CPU_AMX='yes' is neither 0 nor 1"):
            assert hardware.cpu_amx() is asked
    finally:
        hardware.cpu_amx.cache_clear()
