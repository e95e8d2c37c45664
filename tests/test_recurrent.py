"""The recurrent twins: each NumPy model equals its PyTorch twin in float64 (outputs, the loss, every
gradient, dLoss/dh(t)), matches central finite differences, and the PyTorch models compute what
torch.nn.RNN/LSTM/GRU compute (used here as references only, never in the models)."""

import re

import numpy as np
import pytest
import torch

from twinnet.check import assert_close_rel, finite_difference_check, rel_error, torch_twin_check
from twinnet import numpy_nn, torch_nn
from twinnet.data.palindrome import samples
from twinnet.experiments.rnn_gradients import hidden_grad_norms
from twinnet.learner import NumpyLearner, TorchLearner
from twinnet.numpy_nn import recurrent as np_rec
from twinnet.torch_nn import recurrent as torch_rec

MODELS = ("rnn", "lstm", "gru", "irnn")


def _twins(name, d=10, h=12, c=10, seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    tm = torch_rec.RECURRENT[name](d, h, c, **kw).to(dtype)
    nm = np_rec.RECURRENT[name](d, h, c, **kw)
    nm.load_state_dict(tm.state_dict())
    return nm, tm


def _palindromes(length=12, n=16, seed=0):
    return samples(length, n, np.random.default_rng(seed), "onehot", np.float64)


@pytest.mark.parametrize("name", MODELS)
def test_numpy_model_equals_its_torch_twin_for_a_random_upstream_gradient(name):
    nm, tm = _twins(name, d=3, h=7, c=4)
    x = np.random.default_rng(1).standard_normal((5, 9, 3))
    errors = torch_twin_check(nm, tm, x, rng=np.random.default_rng(2))
    assert_close_rel(errors, 1e-12)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("steps", (1, 2))
def test_one_and_two_time_steps_equal_the_torch_twin_and_w_hh_meets_only_a_given_h0_at_step_one(name, steps):
    nm, tm = _twins(name, d=3, h=5, c=4)
    x = np.random.default_rng(1).standard_normal((4, steps, 3))
    assert_close_rel(torch_twin_check(nm, tm, x, rng=np.random.default_rng(2)), 1e-12)
    w_hh = nm.W_hh if name in ("rnn", "irnn") else nm.weight_hh
    assert (w_hh.grad == 0).all() == (steps == 1)  # h(0) = 0: W_hh h(0) adds nothing to learn from
    nm.zero_grad()
    out = nm.forward(x, h0=np.ones((4, 5)))
    nm.backward(np.ones_like(out))
    assert (w_hh.grad != 0).any()


@pytest.mark.parametrize("name", MODELS)
def test_loss_and_every_gradient_equal_the_torch_twins_on_palindromes(name):
    nm, tm = _twins(name)
    x, y = _palindromes()
    loss_fn = numpy_nn.CrossEntropyLoss()
    loss_np = loss_fn.forward(nm.forward(x), y)
    nm.backward(loss_fn.backward())
    loss_t = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    errors = {"loss": rel_error(loss_np, loss_t.item())}
    theirs = dict(tm.named_parameters())
    assert [n for n, _ in nm.named_parameters()] == list(theirs)  # same names, same order
    errors.update({f"grad[{n}]": rel_error(p.grad, theirs[n].grad.numpy()) for n, p in nm.named_parameters()})
    assert_close_rel(errors, 1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_backpropagation_through_time_matches_finite_differences(name):
    nm, _ = _twins(name, d=3, h=6, c=4, seed=3)
    x = np.random.default_rng(4).standard_normal((4, 6, 3))
    if name == "irnn":
        x = np.abs(x) + 0.1  # positive inputs through an identity W_hh keep ReLU's units off its kink
    assert_close_rel(finite_difference_check(nm, x, rng=np.random.default_rng(5)), 1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_dloss_dh_of_every_step_equal_between_engines(name):
    nm, tm = _twins(name)
    x, y = _palindromes(length=15)
    norms = {e: hidden_grad_norms(m, e, x, y) for e, m in (("numpy", nm), ("torch", tm))}
    assert norms["numpy"].shape == (14,)
    assert rel_error(norms["numpy"], norms["torch"]) <= 1e-9
    nm.record_hidden, tm.record_hidden = True, True  # the raw (B, L, H) arrays too
    loss_fn = numpy_nn.CrossEntropyLoss()
    loss_fn.forward(nm.forward(x), y)
    nm.backward(loss_fn.backward())
    torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    assert rel_error(nm.hidden_grads(), tm.hidden_grads()) <= 1e-9
    assert (nm.hidden_grads()[:, -1] != 0).all()


def _reference(name, tm):
    """torch.nn's own layer holding the twin's weights: (layer, readout of its last output)."""
    h = tm.hidden_size
    if name in ("rnn", "irnn"):
        ref = torch.nn.RNN(tm.input_size, h, batch_first=True, nonlinearity=tm.nonlinearity).double()
        weights = {"weight_ih_l0": tm.W_hx, "weight_hh_l0": tm.W_hh, "bias_ih_l0": tm.b_h,
                   "bias_hh_l0": torch.zeros(h)}  # the course's single bias b_h
    else:
        ref = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name](tm.input_size, h, batch_first=True).double()
        weights = {f"{k}_l0": getattr(tm, k) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    ref.load_state_dict({k: v.detach() for k, v in weights.items()})
    return lambda x: ref(x)[0][:, -1] @ tm.W_ph.T + tm.b_o


@pytest.mark.parametrize("name", MODELS)
def test_explicit_loops_compute_what_torch_nn_recurrent_layers_compute(name):
    _, tm = _twins(name)
    assert list(tm.children()) == []  # built from Parameters alone: no torch.nn.RNN/LSTM/GRU inside
    x = torch.from_numpy(_palindromes(length=20)[0])
    with torch.no_grad():
        assert rel_error(tm(x).numpy(), _reference(name, tm)(x).numpy()) <= 1e-12


@pytest.mark.parametrize("name", ("rnn", "lstm", "gru"))
def test_rmsprop_with_clipping_follows_torchs_loss_curve(name):
    nm, tm = _twins(name, h=16)
    learners = [NumpyLearner(nm, numpy_nn.RMSprop(nm.parameters(), lr=1e-2), numpy_nn.CrossEntropyLoss(), 0.5),
                TorchLearner(tm, torch.optim.RMSprop(tm.parameters(), lr=1e-2), torch.nn.CrossEntropyLoss(), 0.5)]
    rng = np.random.default_rng(0)
    curves = [[], []]
    for _ in range(8):
        x, y = samples(9, 32, rng, "onehot", np.float64)
        for curve, learner in zip(curves, learners):
            curve.append(learner.train_step(x, y)[0])
    assert rel_error(curves[0], curves[1]) <= 1e-9


def test_initialisation_defaults_and_the_vanilla_rnns_w_hh_options():
    for name in MODELS:
        nm, tm = _twins(name, h=16, dtype=torch.float32)
        bound = 1 / np.sqrt(16)
        for n, p in tm.named_parameters():
            if not (name == "irnn" and n in ("W_hh", "b_h")):
                assert p.abs().max() <= bound, n
    fresh = np_rec.VanillaRNN(10, 16)  # the NumPy engine draws its own weights by the same law
    assert fresh.W_hh.data.dtype == np.float32 and np.abs(fresh.W_hh.data).max() <= 0.25
    for engine in (np_rec, torch_rec):
        w = lambda m: np.asarray(m.W_hh.data if engine is np_rec else m.W_hh.detach(), dtype=np.float64)  # noqa: E731
        ortho = engine.VanillaRNN(10, 16, hh_init="orthogonal", hh_gain=0.9)
        np.testing.assert_allclose(w(ortho) @ w(ortho).T, 0.81 * np.eye(16), atol=1e-5)
        np.testing.assert_array_equal(w(engine.VanillaRNN(10, 16, hh_init="identity", hh_gain=0.5)), 0.5 * np.eye(16))
        irnn = engine.IRNN(10, 16)
        np.testing.assert_array_equal(w(irnn), np.eye(16))
        with pytest.raises(ValueError, match="hh_init"):
            engine.VanillaRNN(10, 16, hh_init="zeros")


def test_float32_by_default_and_float64_when_loaded_with_float64():
    nm, tm = _twins("lstm", dtype=torch.float32)
    x = _palindromes()[0]
    assert nm.forward(x.astype(np.float32)).dtype == np.float32
    nm.load_state_dict(tm.double().state_dict())
    assert nm.forward(x).dtype == np.float64


@pytest.mark.parametrize("name", MODELS)
def test_an_input_of_the_wrong_shape_is_refused_with_the_shape_it_needs(name):
    nm, _ = _twins(name)  # input_size 10
    for bad in (np.zeros((4, 5)), np.zeros((4, 5, 7)), np.zeros((2, 4, 5, 10))):
        with pytest.raises(ValueError, match=r"\(batch, steps, input_size = 10\), got " + re.escape(str(bad.shape))):
            nm.forward(bad)
    assert nm.forward(np.zeros((4, 5, 10))).shape == (4, 10)


def test_hidden_grads_need_recording_first():
    nm, tm = _twins("rnn")
    with pytest.raises(RuntimeError, match="record_hidden"):
        nm.hidden_grads()
    with pytest.raises(RuntimeError, match="record_hidden"):
        tm.hidden_grads()


def test_namespaces_build_the_same_architecture():
    for nn in (numpy_nn, torch_nn):
        assert nn.LSTM(10, 8).weight_hh.shape == (32, 8) and nn.GRU(10, 8).weight_ih.shape == (24, 10)
        assert nn.VanillaRNN(10, 8).W_hx.shape == (8, 10)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("given", (False, True))
def test_inference_runs_time_in_chunks_to_the_logits_that_training_mode_and_torch_give(name, given, monkeypatch):
    """Inside no_grad the NumPy models keep the states of INFERENCE_CHUNK steps at a time, not all L;
    each chunk starts from the last one's h (and c), so the logits stay those of the whole-sequence
    forward (torch's twin's too, from zero states; from given ones tests/test_course_layers.py checks
    the whole-sequence forward against torch.nn's layers)."""
    nm, tm = _twins(name)
    x = _palindromes(length=24, n=5)[0]  # 23 input steps
    rng = np.random.default_rng(3)
    initial = {k: rng.standard_normal((5, 12)) for k in (("h0", "c0") if name == "lstm" else ("h0",))} if given else {}
    monkeypatch.setattr(np_rec, "INFERENCE_CHUNK", 7)  # 23 steps: chunks of 7, 7, 7 and 2
    lengths, run = [], type(nm)._run
    monkeypatch.setattr(type(nm), "_run", lambda self, xs, *a: lengths.append(len(xs)) or run(self, xs, *a))
    whole = nm.forward(x, **initial)
    assert lengths == [23] and len(nm._caches) == 1
    with numpy_nn.no_grad():
        chunked = nm.forward(x, **initial)
    assert lengths == [23, 7, 7, 7, 2] and len(nm._caches) == 0  # the training-mode forward's cache dropped
    assert rel_error(chunked, whole) <= 1e-13
    if not given:
        with torch.no_grad():
            assert rel_error(chunked, tm(torch.from_numpy(x)).numpy()) <= 1e-12


@pytest.mark.parametrize("name", MODELS)
def test_inference_chunks_run_in_the_first_chunks_arrays_and_a_training_forward_gets_its_own(name, monkeypatch):
    """Within one no_grad forward every chunk writes its states into the arrays the first chunk had (a
    fresh large array costs a page fault per page at its first write); the logits it returns outlive them,
    and the next forward, or one that trains, starts afresh."""
    nm, _ = _twins(name)
    x = _palindromes(length=24, n=5)[0]  # 23 input steps
    monkeypatch.setattr(np_rec, "INFERENCE_CHUNK", 7)
    where, kept, run = [], [], type(nm)._run

    def spy(self, xs, *a):
        states = run(self, xs, *a)
        where.append(tuple(s.__array_interface__["data"][0] for s in states))
        kept.append(states)  # alive to the end: no address is handed out again meanwhile
        return states

    monkeypatch.setattr(type(nm), "_run", spy)
    with numpy_nn.no_grad():
        first = nm.forward(x)
        again = nm.forward(x[::-1].copy())
    assert len(where) == 8 and len(set(where[:4])) == 1 and len(set(where[4:])) == 1
    assert nm._workspace is None
    whole = nm.forward(x)  # training mode: all 23 steps kept for backward, in arrays of its own
    nm.forward(x[::-1].copy())  # and a second one: neither may write into the other's arrays
    assert np.array_equal(first, whole) and not np.array_equal(first, again)
    assert len(where) == 10 and not set(where[8]) & set(where[9])


@pytest.mark.parametrize("name", ("lstm", "gru"))
def test_two_threads_evaluating_one_model_at_once_each_get_their_own_logits(name):
    """Each thread's evaluation has arrays of its own (grad mode is per thread too), so evaluations of one
    model running side by side give what each gives alone."""
    import threading

    nm, _ = _twins(name)
    inputs = [_palindromes(length=400, n=6, seed=s)[0] for s in range(2)]
    with numpy_nn.no_grad():
        alone = [nm.forward(x) for x in inputs]
    got, start = {}, threading.Barrier(2)

    def evaluate(k):
        start.wait()
        with numpy_nn.no_grad():
            got[k] = [nm.forward(inputs[k]) for _ in range(4)]

    threads = [threading.Thread(target=evaluate, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not np.array_equal(alone[0], alone[1])
    assert all(np.array_equal(out, alone[k]) for k in range(2) for out in got[k])
    assert nm._workspace is None
