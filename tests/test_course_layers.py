"""The course layers of the NumPy engine (Softmax, ELU, LeakyReLU, LayerNorm, MultiMarginLoss, cross-entropy on
probability targets, dropout with a given mask, recurrent models from a given h0 returning every h(t)): each
against its torch twin in float64 (rel <= 1e-9) and against central finite differences (rel <= 1e-6), over
seeded shapes that include a batch of 1 and odd sizes, plus the behaviours a student's version is graded on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from twinnet.check import assert_close_rel, finite_difference_check, rel_error, torch_twin_check

from twinnet import numpy_nn as nnp
from twinnet.numpy_nn import recurrent as np_rec
from twinnet.torch_nn import recurrent as torch_rec

TWIN_TOL = 1e-9
FD_TOL = 1e-6
SHAPES = [(1, 1), (1, 7), (3, 5), (2, 3, 7), (5,), (4, 1, 3, 2), (9, 2)]  # batch 1, odd sizes, 1 to 4 dims


def _away_from_zero(rng: np.random.Generator, shape, low: float = 0.1, high: float = 3.0) -> np.ndarray:
    """Entries with |x| in [low, high]: far from a kink at 0 compared with the FD step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


# --- Softmax, ELU, LeakyReLU -------------------------------------------------------------

ACTIVATIONS = {  # name -> (numpy layer, torch twin) for each setting tested
    "softmax": lambda dim: (nnp.Softmax(dim), torch.nn.Softmax(dim)),
    "elu": lambda alpha: (nnp.ELU(alpha), torch.nn.ELU(alpha)),
    "leaky_relu": lambda slope: (nnp.LeakyReLU(slope), torch.nn.LeakyReLU(slope)),
}
SETTINGS = {"softmax": [-1, 0], "elu": [1.0, 0.5, 2.3], "leaky_relu": [0.01, 0.2, 1.5]}
ACTIVATION_CASES = [(name, arg, i) for name, args in SETTINGS.items() for arg in args for i in range(len(SHAPES))]


@pytest.mark.parametrize("name, arg, i", ACTIVATION_CASES)
def test_activation_matches_torch(name, arg, i):
    rng = np.random.default_rng(i)
    x = 4.0 * rng.standard_normal(SHAPES[i])
    x[rng.random(x.shape) < 0.2] = 0.0  # exact zeros: the gradient there must be torch's (alpha, slope)
    layer, twin = ACTIVATIONS[name](arg)
    errors = torch_twin_check(layer, twin, x, rng=rng)
    assert {"out", "dx"} <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("name, arg, i", ACTIVATION_CASES)
def test_activation_matches_finite_differences(name, arg, i):
    rng = np.random.default_rng(100 + i)
    layer, _ = ACTIVATIONS[name](arg)
    errors = finite_difference_check(layer, _away_from_zero(rng, SHAPES[i]), rng=rng)
    assert errors.keys() == {"dx"}
    assert_close_rel(errors, FD_TOL)


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_sums_to_one_along_its_dim_only(dim):
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    out = nnp.Softmax(dim).forward(x)
    np.testing.assert_allclose(out.sum(axis=dim), 1.0, rtol=0, atol=1e-15)
    for other in {0, 1, 2} - {dim % 3}:  # along any other dim the sums are not 1: the dim was honoured
        assert np.abs(out.sum(axis=other) - 1).max() > 1e-3


def test_softmax_of_huge_logits_neither_overflows_nor_loses_the_answer():
    x = np.array([[1000.0, 1000.0, 999.0], [-1000.0, 0.0, 1000.0], [1000.0, 1000.0 - np.log(3.0), -1e4]])
    sm = nnp.Softmax(dim=-1)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the right answer
        out = sm.forward(x)
        dx = sm.backward(np.ones_like(x) + np.arange(3.0))
    e = np.exp(-1.0)
    expected = np.array([[1 / (2 + e), 1 / (2 + e), e / (2 + e)], [0.0, 0.0, 1.0], [0.75, 0.25, 0.0]])
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(out, torch.softmax(torch.from_numpy(x), -1).numpy(), rtol=1e-14, atol=1e-300)


def test_activations_keep_float32():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for layer in (nnp.Softmax(), nnp.ELU(), nnp.LeakyReLU()):
        out = layer.forward(x)
        assert out.dtype == np.float32, type(layer).__name__
        assert layer.backward(np.ones_like(out)).dtype == np.float32, type(layer).__name__


def test_elu_and_leaky_relu_values_on_both_sides():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(nnp.ELU(0.7).forward(x), np.where(x > 0, x, 0.7 * (np.exp(x) - 1)), rtol=1e-15)
    np.testing.assert_array_equal(nnp.LeakyReLU(0.1).forward(x), [-0.2, -0.05, 0.0, 0.5, 3.0])
    with np.errstate(over="raise"):  # the unused exp branch of a large positive input must not overflow
        np.testing.assert_array_equal(nnp.ELU().forward(np.array([800.0])), [800.0])


# --- LayerNorm -----------------------------------------------------------------------------

# (input shape, normalized_shape as passed, elementwise_affine, bias)
LAYERNORM_CASES = [
    ((1, 5), 5, True, True),
    ((3, 7), (7,), True, True),
    ((2, 3, 4), 4, True, False),
    ((2, 3, 4), (3, 4), True, True),
    ((5, 2, 3), (2, 3), False, True),
    ((1, 1, 9), 9, True, True),
    ((4, 3), 3, False, False),
    ((2, 2, 3, 5), (3, 5), True, True),
]


def _layernorm_pair(normalized_shape, affine, bias, rng):
    """Both engines' LayerNorm with the same random (non-default) weights."""
    kw = {"eps": 1e-5, "elementwise_affine": affine, "bias": bias}
    twin = torch.nn.LayerNorm(normalized_shape, **kw).double()
    with torch.no_grad():
        for p in twin.parameters():  # ones and zeros would hide a weight applied wrongly
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape))))
    return nnp.LayerNorm(normalized_shape, **kw), twin


@pytest.mark.parametrize("i", range(len(LAYERNORM_CASES)))
def test_layernorm_matches_torch(i):
    shape, normalized_shape, affine, bias = LAYERNORM_CASES[i]
    rng = np.random.default_rng(i)
    layer, twin = _layernorm_pair(normalized_shape, affine, bias, rng)
    x = 2.0 * rng.standard_normal(shape) + 1.0
    errors = torch_twin_check(layer, twin, x, rng=rng)
    names = ({"grad[weight]"} if affine else set()) | ({"grad[bias]"} if affine and bias else set())
    assert {"out", "dx"} | names <= errors.keys()
    assert [k for k, _ in layer.named_parameters()] == [k for k, _ in twin.named_parameters()]
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("i", range(len(LAYERNORM_CASES)))
def test_layernorm_matches_finite_differences(i):
    shape, normalized_shape, affine, bias = LAYERNORM_CASES[i]
    rng = np.random.default_rng(50 + i)
    layer, twin = _layernorm_pair(normalized_shape, affine, bias, rng)
    layer.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    errors = finite_difference_check(layer, 2.0 * rng.standard_normal(shape), rng=rng)
    assert len(errors) == 1 + affine + (affine and bias)
    assert_close_rel(errors, FD_TOL)


def test_layernorm_parameters_are_torchs_and_the_weights_decide_the_dtype():
    layer = nnp.LayerNorm((3, 4))
    twin = torch.nn.LayerNorm((3, 4))
    assert layer.state_dict().keys() == twin.state_dict().keys()
    assert all(v.shape == (3, 4) and v.dtype == np.float32 for v in layer.state_dict().values())
    x32 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    assert layer.forward(x32).dtype == np.float32
    assert layer.double().forward(x32).dtype == np.float64
    assert nnp.LayerNorm(4, elementwise_affine=False).parameters() == []
    assert nnp.LayerNorm(4, bias=False).state_dict().keys() == {"weight"}


def test_layernorm_rejects_a_mismatched_trailing_shape():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 4, 3\)"):
        nnp.LayerNorm((3, 4)).forward(np.zeros((2, 4, 3)))


# --- MultiMarginLoss ---------------------------------------------------------------------------


def _hinge_case(seed: int):
    """logits (N, C), target, margin with every hinge term |margin - x_y + x_j| >= 1e-3: smooth for the FD step."""
    rng = np.random.default_rng(seed)
    n, c = [(1, 2), (1, 5), (3, 3), (7, 4), (5, 7), (2, 9)][seed % 6]
    margin = [1.0, 0.5, 2.0][seed % 3]
    while True:
        logits, target = rng.standard_normal((n, c)), rng.integers(0, c, size=n)
        z = margin - logits[np.arange(n), target][:, None] + logits
        if np.abs(z).min() >= 1e-3:
            return rng, logits, target, margin


@pytest.mark.parametrize("seed", range(12))
def test_multi_margin_matches_torch_and_finite_differences(seed):
    rng, logits, target, margin = _hinge_case(seed)
    twin = torch_twin_check(nnp.MultiMarginLoss(margin=margin), torch.nn.MultiMarginLoss(p=1, margin=margin),
                            (logits, target), rng=rng)
    assert {"out", "dx0"} <= twin.keys()
    assert_close_rel(twin, TWIN_TOL)
    fd = finite_difference_check(nnp.MultiMarginLoss(margin=margin), (logits, target), rng=rng)
    assert fd.keys() == {"dx0"}
    assert_close_rel(fd, FD_TOL)


def test_multi_margin_known_value_and_torchs_gradient_at_the_hinge():
    loss_fn = nnp.MultiMarginLoss()
    # torch's documented example: (0.3 + 0.4 + 0.6) / 4
    assert loss_fn.forward(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([3])) == pytest.approx(0.325, abs=1e-15)
    # margin - x_y + x_j exactly 0 for j = 1: no loss and, as in torch, no gradient from that term
    logits, target = np.array([[1.0, 0.0, 0.5], [0.2, 0.3, -4.0]]), np.array([0, 2])
    loss = loss_fn.forward(logits, target)
    dlogits = loss_fn.backward()
    lt = torch.tensor(logits, requires_grad=True)
    ref = F.multi_margin_loss(lt, torch.from_numpy(target), margin=1.0)
    ref.backward()
    assert_close_rel({"loss": rel_error(loss, ref.item()), "dlogits": rel_error(dlogits, lt.grad.numpy())}, 1e-15)
    assert dlogits[0, 1] == 0.0 and dlogits[0, 2] != 0.0


def test_multi_margin_backward_needs_a_forward_kept_for_it():
    loss_fn = nnp.MultiMarginLoss()
    with nnp.no_grad():
        loss_fn.forward(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(RuntimeError, match="forward"):
        loss_fn.backward()


# --- CrossEntropyLoss with probability targets -------------------------------------------------


class _FixedTarget(nnp.Module):
    """A NumPy loss of the logits alone, the target held fixed: the harness differentiates the logits only."""

    def __init__(self, loss, target) -> None:
        super().__init__()
        self.loss, self.target = loss, target

    def forward(self, logits):
        return self.loss.forward(logits, self.target)

    def backward(self, dout):
        return self.loss.backward(dout)


class _TorchFixedTarget(torch.nn.Module):
    """The torch twin of ``_FixedTarget`` (the target a plain attribute, so no state_dict key)."""

    def __init__(self, loss, target) -> None:
        super().__init__()
        self.loss, self.target = loss, torch.from_numpy(target)

    def forward(self, logits):
        return self.loss(logits, self.target)


def _probability_case(seed: int, kind: str):
    rng = np.random.default_rng(seed)
    n, c = [(1, 2), (1, 5), (3, 3), (7, 4), (5, 7), (2, 9)][seed % 6]
    logits, labels = 3.0 * rng.standard_normal((n, c)), rng.integers(0, c, size=n)
    if kind == "onehot":
        target = np.eye(c)[labels]
    elif kind == "soft":
        target = rng.dirichlet(np.ones(c), size=n)
    else:  # rows not summing to 1: torch takes them as they are, and so must the gradient
        target = rng.uniform(0.0, 2.0, size=(n, c))
    return rng, logits, target, labels


PROBABILITY_CASES = [(seed, kind, s) for seed in range(6) for kind in ("onehot", "soft", "unnormalised")
                     for s in (0.0, 0.1, 0.35)]


@pytest.mark.parametrize("seed, kind, smoothing", PROBABILITY_CASES)
def test_cross_entropy_probability_targets_match_torch(seed, kind, smoothing):
    rng, logits, target, _ = _probability_case(seed, kind)
    errors = torch_twin_check(_FixedTarget(nnp.CrossEntropyLoss(label_smoothing=smoothing), target),
                              _TorchFixedTarget(torch.nn.CrossEntropyLoss(label_smoothing=smoothing), target),
                              logits, rng=rng)
    assert {"out", "dx"} <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)


@pytest.mark.parametrize("seed, kind, smoothing", PROBABILITY_CASES)
def test_cross_entropy_probability_targets_match_finite_differences(seed, kind, smoothing):
    rng, logits, target, _ = _probability_case(seed, kind)
    errors = finite_difference_check(_FixedTarget(nnp.CrossEntropyLoss(label_smoothing=smoothing), target),
                                     logits, rng=rng)
    assert errors.keys() == {"dx"}
    assert_close_rel(errors, FD_TOL)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_one_hot_probabilities_give_what_class_indices_give(smoothing):
    """torch defines both so that they agree (smoothing included); a wrong smoothing of either would differ."""
    _, logits, onehot, labels = _probability_case(4, "onehot")
    ce = nnp.CrossEntropyLoss(label_smoothing=smoothing)
    soft_loss, soft_grad = ce(logits, onehot), ce.backward()
    hard_loss, hard_grad = ce(logits, labels), ce.backward()
    assert_close_rel({"loss": rel_error(soft_loss, hard_loss), "dlogits": rel_error(soft_grad, hard_grad)}, 1e-14)


@pytest.mark.parametrize("bad_shape", [(4,), (7,), (4, 6), (1, 7), (4, 7, 1)])
def test_probability_targets_of_another_shape_are_refused(bad_shape):
    logits = np.zeros((4, 7))
    with pytest.raises(ValueError, match=r"\(4, 7\).*" + str(bad_shape).replace("(", r"\(").replace(")", r"\)")):
        nnp.CrossEntropyLoss().forward(logits, np.full(bad_shape, 1 / 7))


def test_probability_targets_with_huge_logits_stay_finite():
    rng = np.random.default_rng(0)
    logits, target = 1e3 * rng.standard_normal((6, 5)), rng.dirichlet(np.ones(5), size=6)
    lt = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(lt, torch.from_numpy(target), label_smoothing=0.1)
    ref.backward()
    ce = nnp.CrossEntropyLoss(label_smoothing=0.1)
    with np.errstate(over="raise", invalid="raise"):
        loss, dlogits = ce(logits, target), ce.backward()
    assert_close_rel({"loss": rel_error(loss, ref.item()), "dlogits": rel_error(dlogits, lt.grad.numpy())}, TWIN_TOL)


# --- Dropout with a given mask -------------------------------------------------------------------


class _TorchDropoutDraw(torch.nn.Module):
    """torch.nn.Dropout(p) drawing after ``torch.manual_seed(seed)``; ``forward(x, mask)`` ignores the mask,
    which the test took from the same draw: our dropout given that mask must then be torch's."""

    def __init__(self, p: float, seed: int) -> None:
        super().__init__()
        self.drop, self.seed = torch.nn.Dropout(p), seed

    def forward(self, x, mask):
        torch.manual_seed(self.seed)
        return self.drop(x)


def _torch_keep_mask(shape, p: float, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    return (torch.nn.functional.dropout(torch.ones(shape, dtype=torch.float64), p, training=True) != 0).numpy()


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("i", range(len(SHAPES)))
def test_dropout_given_torchs_mask_is_torchs_dropout(p, i):
    rng = np.random.default_rng(i)
    x = rng.standard_normal(SHAPES[i])
    keep = _torch_keep_mask(x.shape, p, seed=i)  # bool: the harness passes it through, undifferentiated
    errors = torch_twin_check(nnp.Dropout(p), _TorchDropoutDraw(p, seed=i), (x, keep), rng=rng)
    assert {"out", "dx0"} <= errors.keys()
    assert_close_rel(errors, TWIN_TOL)
    if 0 < p < 1:
        assert_close_rel(finite_difference_check(nnp.Dropout(p), (x, keep), rng=rng), FD_TOL)


@pytest.mark.parametrize("mask_dtype", [bool, np.int64, np.float32])
def test_dropout_with_a_mask_is_x_times_mask_over_keep_probability(mask_dtype):
    rng = np.random.default_rng(3)
    x, dout = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    mask = (rng.random((5, 3)) < 0.6).astype(mask_dtype)
    drop = nnp.Dropout(0.4)
    out = drop.forward(x, mask)
    dx = drop.backward(dout)
    assert_close_rel({"out": rel_error(out, x * mask / 0.6), "dx": rel_error(dx, dout * mask / 0.6)}, 1e-15)
    assert (out[mask == 0] == 0).all() and (out[mask == 1] != 0).all()


def test_dropout_without_a_mask_draws_as_before_and_eval_is_the_identity():
    x = np.random.default_rng(0).standard_normal((4, 6))
    keep = np.random.default_rng(7).random(x.shape, dtype="float32") >= 0.3  # the draw Dropout always made
    drop = nnp.Dropout(0.3).manual_seed(7)
    assert rel_error(drop.forward(x), x * keep / 0.7) <= 1e-15
    drop.eval()
    assert drop.forward(x, keep) is x  # in eval nothing is dropped, given mask or not, as torch


def test_dropout_refuses_a_mask_of_another_shape_or_already_scaled():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        nnp.Dropout(0.5).forward(x, np.ones((3, 2)))
    with pytest.raises(ValueError, match="0 .* 1"):
        nnp.Dropout(0.5).forward(x, np.full((2, 3), 2.0))  # keep / (1 - p): scaled twice if accepted


# --- recurrent models from a given h0, returning every h(t) -----------------------------------


class _TorchRecurrent(torch.nn.Module):
    """The course model's parameters, named as the NumPy model names them, run through torch.nn.RNN/LSTM/GRU
    (batch_first=True) from a given initial state: every h(t) (B, L, H), or the readout of the last."""

    def __init__(self, name: str, d: int, h: int, c: int, sequences: bool) -> None:
        super().__init__()
        twin = torch_rec.RECURRENT[name](d, h, c)  # torch's initialisation of the same parameters
        for k, p in twin.named_parameters():
            self.register_parameter(k, p)
        if name in ("rnn", "irnn"):
            layer = torch.nn.RNN(d, h, batch_first=True, nonlinearity=twin.nonlinearity)
        else:
            layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name](d, h, batch_first=True)
        self.name, self.sequences = name, sequences
        self.layers = [layer.double()]  # in a list: its own weights are not parameters of this module

    def forward(self, x, h0, c0=None):
        if self.name in ("rnn", "irnn"):  # the course's single bias b_h: torch's bias_hh is zero
            weights = {"weight_ih_l0": self.W_hx, "weight_hh_l0": self.W_hh, "bias_ih_l0": self.b_h,
                       "bias_hh_l0": torch.zeros_like(self.b_h)}
        else:
            weights = {f"{k}_l0": getattr(self, k) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        hx = h0[None] if self.name != "lstm" else (h0[None], (torch.zeros_like(h0) if c0 is None else c0)[None])
        out, _ = torch.func.functional_call(self.layers[0], weights, (x, hx))
        return out if self.sequences else out[:, -1] @ self.W_ph.T + self.b_o


# (model, batch, length, input size, hidden size, initial states given): batch 1, length 1, odd sizes
RECURRENT_CASES = [
    ("rnn", 1, 1, 3, 5, "h0"), ("rnn", 4, 6, 3, 7, "h0"), ("rnn", 3, 9, 1, 2, "h0"),
    ("irnn", 2, 5, 3, 4, "h0"),
    ("lstm", 1, 4, 2, 3, "h0,c0"), ("lstm", 3, 1, 3, 5, "h0,c0"), ("lstm", 5, 6, 3, 4, "h0"),
    ("gru", 1, 5, 3, 3, "h0"), ("gru", 4, 1, 2, 5, "h0"), ("gru", 3, 7, 5, 2, "h0"),
]


def _recurrent_inputs(case, rng):
    """x (B, L, D) followed by each initial state (B, H) the case gives."""
    name, b, length, d, h, initial = case
    shapes = [(b, length, d)] + [(b, h)] * len(initial.split(","))
    if name == "irnn":  # positive inputs and h0 through an identity W_hh keep ReLU's units off its kink
        return tuple(np.abs(rng.standard_normal(s)) + 0.1 for s in shapes)
    return tuple(rng.standard_normal(s) for s in shapes)


@pytest.mark.parametrize("sequences", [False, True], ids=["logits", "sequences"])
@pytest.mark.parametrize("i", range(len(RECURRENT_CASES)))
def test_recurrent_from_h0_matches_torch_nn_recurrent_layers(i, sequences):
    case = RECURRENT_CASES[i]
    name, b, length, d, h, initial = case
    rng = np.random.default_rng(i)
    torch.manual_seed(i)
    twin = _TorchRecurrent(name, d, h, 4, sequences)
    model = np_rec.RECURRENT[name](d, h, 4)
    model.return_sequences = sequences
    inputs = _recurrent_inputs(case, rng)
    errors = torch_twin_check(model, twin, inputs, rng=rng)
    assert {"out", "dx0", "dx1", "grad[W_ph]"} | ({"dx2"} if len(inputs) == 3 else set()) <= errors.keys()
    assert_close_rel(errors, 1e-12)


@pytest.mark.parametrize("sequences", [False, True], ids=["logits", "sequences"])
@pytest.mark.parametrize("i", range(len(RECURRENT_CASES)))
def test_recurrent_from_h0_matches_finite_differences(i, sequences):
    case = RECURRENT_CASES[i]
    name, _, _, d, h, _ = case
    rng = np.random.default_rng(200 + i)
    model = np_rec.RECURRENT[name](d, h, 4)
    model.return_sequences = sequences
    # eps 1e-5, not 1e-6: dLoss/dh0 shrinks through many tanh steps (the vanishing gradient, ~1e-5 for
    # L = 9, H = 2), so the objective's round-off over eps would otherwise swamp it
    errors = finite_difference_check(model, _recurrent_inputs(case, rng), rng=rng, eps=1e-5)
    assert {"dx0", "dx1", "grad[W_hh]" if name in ("rnn", "irnn") else "grad[weight_hh]"} <= errors.keys()
    assert_close_rel(errors, FD_TOL)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "irnn"])
def test_zero_h0_changes_nothing_but_adds_its_gradient(name):
    """forward(x) and backward(dlogits) are as before (one array each); forward(x, zeros) computes the same
    and backward then also returns dh0, which is nonzero: h(0) feeds h(1)."""
    rng = np.random.default_rng(1)
    model = np_rec.RECURRENT[name](3, 5, 4).double()
    x, dout = rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 4))
    logits = model.forward(x)
    dx = model.backward(dout)
    grads = {k: p.grad.copy() for k, p in model.named_parameters()}
    assert isinstance(logits, np.ndarray) and isinstance(dx, np.ndarray) and dx.shape == x.shape
    model.zero_grad()
    logits0 = model.forward(x, np.zeros((2, 5)))
    dx0, dh0 = model.backward(dout)
    errors = {"out": rel_error(logits0, logits), "dx": rel_error(dx0, dx)}
    errors |= {k: rel_error(p.grad, grads[k]) for k, p in model.named_parameters()}
    assert_close_rel(errors, 1e-14)
    assert dh0.shape == (2, 5) and np.abs(dh0).max() > 1e-6


def test_sequences_end_with_the_state_the_readout_reads():
    model = np_rec.VanillaRNN(3, 5, 4).double()
    x, h0 = np.random.default_rng(2).standard_normal((2, 6, 3)), np.random.default_rng(3).standard_normal((2, 5))
    logits = model.forward(x, h0)
    model.return_sequences = True
    hs = model.forward(x, h0)
    assert hs.shape == (2, 6, 5)
    assert rel_error(hs[:, -1] @ model.W_ph.data.T + model.b_o.data, logits) <= 1e-15
    assert rel_error(hs[:, 0], np.tanh(x[:, 0] @ model.W_hx.data.T + h0 @ model.W_hh.data.T + model.b_h.data)) <= 1e-15


def test_an_initial_state_of_the_wrong_shape_is_refused():
    x = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match=r"h0 .*\(2, 5\).*\(5,\)"):
        np_rec.VanillaRNN(3, 5).forward(x, np.zeros(5))
    with pytest.raises(ValueError, match=r"c0 .*\(2, 5\).*\(1, 2, 5\)"):
        np_rec.LSTM(3, 5).forward(x, None, np.zeros((1, 2, 5)))
