"""The training loop: batching modes, the evaluation schedule, and the engines agreeing step by step."""

import numpy as np
import pytest
import torch

from twinnet.architectures import mlp_layers
from twinnet.data import ArrayDataset, make_toy
from twinnet.experiments.common import max_relative_difference, seed_everything, sgd_learners, twin_models
from twinnet.train import LoopSettings, batch_indices, fit


def _batches(n, settings, count, seed=0):
    it = batch_indices(n, settings, np.random.default_rng(seed))
    return [next(it) for _ in range(count)]


def test_minibatches_cover_each_sample_once_per_epoch():
    s = LoopSettings(batching="mini", batch_size=4)
    first_epoch = _batches(10, s, 3)
    assert [len(b) for b in first_epoch] == [4, 4, 2]
    assert sorted(np.concatenate(first_epoch)) == list(range(10))
    assert s.steps_per_epoch(10) == 3 and s.total_steps(10) == 30


def test_full_batch_and_single_sample_modes():
    assert [list(b) for b in _batches(5, LoopSettings(batching="full"), 2)] == [list(range(5))] * 2
    singles = _batches(5, LoopSettings(batching="sample"), 5)
    assert all(len(b) == 1 for b in singles) and sorted(int(b[0]) for b in singles) == list(range(5))


def test_batch_order_depends_only_on_the_seed():
    s = LoopSettings(batch_size=3)
    a, b, c = _batches(20, s, 10, seed=1), _batches(20, s, 10, seed=1), _batches(20, s, 10, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def _moons_learners(dtype="float64", lr=0.1, momentum=0.9, same_init=True, hidden=(20,)):
    split = make_toy("moons", n=400, seed=0)
    seed_everything(0)
    build = lambda nn: nn.Sequential(*mlp_layers(nn, 2, hidden, 2))  # noqa: E731
    numpy_model, torch_model = twin_models(build, dtype, same_init)
    return split, sgd_learners(numpy_model, torch_model, lr, momentum)


def test_evaluation_schedule_in_steps_and_epochs():
    split, learners = _moons_learners()
    h = fit(learners["numpy"], split.train, split.test, LoopSettings(batch_size=32, steps=25, eval_every=10,
                                                                     eval_unit="step"), progress=False)
    assert [r["step"] for r in h.records] == [0, 10, 20, 25]
    assert len(h.step_losses) == 25
    h = fit(learners["torch"], split.train, split.test, LoopSettings(batch_size=100, epochs=3), progress=False)
    assert [r["step"] for r in h.records] == [0, 4, 8, 12] and [r["epoch"] for r in h.records] == [0, 1, 2, 3]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "time_s"} <= set(h.last)


def test_running_train_figures_average_the_steps_since_the_last_evaluation():
    split, learners = _moons_learners()
    s = LoopSettings(batching="full", steps=4, eval_every=2, eval_unit="step", train_eval="running")
    h = fit(learners["numpy"], split.train, None, s, progress=False)
    assert h.records[1]["train_loss"] == pytest.approx(np.mean(h.step_losses[:2]))
    assert h.records[2]["train_loss"] == pytest.approx(np.mean(h.step_losses[2:4]))


def test_lr_schedule_is_applied_before_each_step():
    split, learners = _moons_learners()
    seen = []
    learner = learners["torch"]
    original = learner.train_step
    learner.train_step = lambda x, y: (seen.append(learner.lr), original(x, y))[1]
    learner.set_lr(7.0)  # whatever the optimiser was built with, the records show the schedule's rates
    history = fit(learner, split.train, None, LoopSettings(batching="full", steps=3, eval_unit="step"),
                  lr_at=lambda step: 0.1 / (step + 1), progress=False)
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert [r["lr"] for r in history.records] == pytest.approx([0.1, 0.1, 0.05, 0.1 / 3])


@pytest.mark.parametrize("batching, steps", [("mini", 500), ("full", 200), ("sample", 200)])
def test_engines_follow_the_same_loss_curve_in_float64(batching, steps):
    """The twins' central promise: same weights, same batches -> same curve to 1e-9."""
    # one sample at a time needs a smaller step to make progress
    split, learners = _moons_learners(hidden=(20, 20), lr=0.01 if batching == "sample" else 0.1)
    settings = LoopSettings(batching=batching, batch_size=16, steps=steps, eval_every=100, eval_unit="step")
    curves = {e: fit(l, split.train, split.test, settings, seed=5, progress=False) for e, l in learners.items()}
    assert len(curves["numpy"].step_losses) == steps
    assert max_relative_difference(curves["numpy"].step_losses, curves["torch"].step_losses) <= 1e-9
    # the loss really moved, so the agreement is not that of two idle models
    losses = curves["torch"].step_losses
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    for a, b in zip(curves["numpy"].records, curves["torch"].records):
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-9)


def test_agreement_measure_detects_different_initial_weights():
    split, learners = _moons_learners(same_init=False)
    settings = LoopSettings(batch_size=16, steps=50)
    curves = {e: fit(l, split.train, None, settings, progress=False).step_losses for e, l in learners.items()}
    assert max_relative_difference(curves["numpy"], curves["torch"]) > 1e-3


def test_float32_engines_agree_loosely():
    split, learners = _moons_learners(dtype="float32")
    assert learners["numpy"].model.dtype == np.float32
    assert next(learners["torch"].model.parameters()).dtype == torch.float32
    settings = LoopSettings(batch_size=32, steps=200)
    curves = {e: fit(l, split.train, None, settings, progress=False).step_losses for e, l in learners.items()}
    assert max_relative_difference(curves["numpy"], curves["torch"]) < 1e-3


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_stops_with_a_clear_error():
    split, learners = _moons_learners(lr=1e6, momentum=0.0)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(learners["numpy"], ArrayDataset(split.train.x * 1e3, split.train.y), None,
            LoopSettings(batching="full", steps=50), progress=False)


def test_without_a_terminal_progress_goes_to_the_log_as_lines(monkeypatch, capsys):
    import twinnet.train as train_module

    monkeypatch.setattr(train_module, "LOG_EVERY_S", 0.0)
    split, learners = _moons_learners()
    h = fit(learners["numpy"], split.train, split.test, LoopSettings(batch_size=100, steps=6, eval_every=3,
                                                                     eval_unit="step"), desc="moons")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split()[2] for line in lines] == [f"{k}/6" for k in range(1, 7)]
    assert "test_acc=" in lines[-1] and "eta=0s" in lines[-1]
    # the running train figures since the last evaluation, and that evaluation's step and age
    assert all(" acc=" in line and "(running)" in line for line in lines)
    assert "(step 0, " in lines[1] and "(step 3, " in lines[4] and all(" ago)" in line for line in lines)
    assert [r["step"] for r in h.records] == [0, 3, 6]  # evaluations unaffected by the logging


def test_a_schedule_keeps_the_ratio_between_parameter_groups():
    """Groups at 0.1 and 0.01 stay ten to one whatever rate the schedule sets (they were both set to it)."""
    from twinnet.learner import TorchLearner
    from twinnet.schedules import make_schedule

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                           {"params": model[1].parameters(), "lr": 0.01}], lr=0.1)
    learner = TorchLearner(model, opt, torch.nn.CrossEntropyLoss())
    schedule = make_schedule("cosine", 0.1, 10)
    for step in (0, 3, 7):
        learner.set_lr(schedule(step))
        first, second = (g["lr"] for g in opt.param_groups)
        assert first == pytest.approx(schedule(step)) and second == pytest.approx(first / 10)
    assert learner.lr == pytest.approx(schedule(7))
