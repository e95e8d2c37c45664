"""The training loop: batching modes, the evaluation schedule, and the engines agreeing step by step."""

import time

import numpy as np
import pytest
import torch

from twinnet.architectures import mlp_layers
from twinnet.data import ArrayDataset, make_toy
from twinnet.learner import make_learner
from twinnet.train import TrainConfig, batch_indices, fit
from twinnet.twins import build_twins, max_relative_difference


def LoopSettings(**kwargs) -> TrainConfig:  # noqa: N802 - the loop's settings alone, SGD as the learners below
    return TrainConfig(**{"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, **kwargs})


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
    models = build_twins(lambda nn: nn.Sequential(*mlp_layers(nn, 2, hidden, 2)), dtype, 0, same_init)
    cfg = TrainConfig(optimizer="sgd", lr=lr, momentum=momentum)
    return split, {engine: make_learner(model, cfg) for engine, model in models.items()}


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
    history = fit(learner, split.train, None, LoopSettings(batching="full", steps=3, eval_unit="step",
                                                           schedule="linear"), progress=False)
    # torch's LinearLR from 1 to 0 over 3 steps, times the optimiser's base rate 0.1
    assert seen == pytest.approx([0.1, 0.1 * 2 / 3, 0.1 / 3])
    assert [r["lr"] for r in history.records] == pytest.approx([0.1, 0.1, 0.1 * 2 / 3, 0.1 / 3])


@pytest.mark.parametrize("batching, steps", [("mini", 500), ("full", 200), ("sample", 200)])
def test_engines_follow_the_same_loss_curve_in_float64(batching, steps):
    """The twins' central promise: same weights, same batches -> same curve to 1e-9."""
    # one sample at a time needs a smaller step to make progress
    split, learners = _moons_learners(hidden=(20, 20), lr=0.01 if batching == "sample" else 0.1)
    settings = LoopSettings(batching=batching, batch_size=16, steps=steps, eval_every=100, eval_unit="step", seed=5)
    curves = {e: fit(l, split.train, split.test, settings, progress=False) for e, l in learners.items()}
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


def test_a_schedule_multiplies_each_parameter_groups_own_rate():
    """Groups at 0.1 and 0.01 stay ten to one through a whole schedule in fit (they were both set to one rate)."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 2))
    cfg = LoopSettings(batching="full", steps=6, eval_unit="step", schedule="onecycle", lr=0.1, momentum=0.0)
    learner = make_learner(model, cfg, params=[{"params": model[0].parameters(), "lr": 0.1},
                                              {"params": model[1].parameters(), "lr": 0.01}])
    seen = []
    original = learner.train_step
    learner.train_step = lambda x, y: (seen.append([g["lr"] for g in learner.optimizer.param_groups]), original(x, y))[1]
    split = make_toy("moons", n=40, seed=0)
    fit(learner, ArrayDataset(split.train.x.astype(np.float32), split.train.y), None, cfg, progress=False)
    factors = [cfg.lr_factor(len(split.train))(k) for k in range(6)]
    assert len(seen) == 6 and len(set(f for f in factors)) > 2  # the rate really moved
    for (first, second), factor in zip(seen, factors):
        assert first == pytest.approx(0.1 * factor) and second == pytest.approx(0.01 * factor)
        assert first / second == pytest.approx(10.0)


# ---- the loop's own policies -------------------------------------------------------------------------------


class _Lazy:
    """A loss left on a device: counts how often it is read back."""

    reads = 0

    def __init__(self, value):
        self.value = value

    def __float__(self):
        _Lazy.reads += 1
        return float(self.value)

    def __int__(self):
        return int(self.value)


def test_the_loss_is_read_back_only_when_recorded_not_every_step():
    split, learners = _moons_learners()
    learner = learners["torch"]
    original, read_before = learner.train_step, []
    learner.train_step = lambda x, y: (read_before.append(_Lazy.reads), tuple(_Lazy(v) for v in original(x, y)))[1]
    _Lazy.reads = 0
    h = fit(learner, split.train, None, LoopSettings(batch_size=32, steps=40, eval_every=20, eval_unit="step"),
            progress=False)
    assert len(h.step_losses) == 40 and _Lazy.reads == 40  # each loss read once, all of them kept
    assert read_before[:20] == [0] * 20 and read_before[20:] == [20] * 20  # ... at the evaluations only
    assert [r["step"] for r in h.records] == [0, 20, 40]


class _Saves:
    def __init__(self):
        self.steps = []

    def save(self, learner, state):
        self.steps.append(state.step)


def test_checkpoints_fall_every_k_steps_and_at_the_end():
    split, learners = _moons_learners()
    saves = _Saves()
    fit(learners["numpy"], split.train, None, LoopSettings(batch_size=32, steps=25, checkpoint_every=10),
        checkpoints=saves, progress=False)
    assert saves.steps == [10, 20, 25]
    saves = _Saves()  # 0: at the end of every epoch (320 samples / 32 = 10 steps)
    fit(learners["numpy"], split.train, None, LoopSettings(batch_size=32, epochs=2), checkpoints=saves, progress=False)
    assert saves.steps == [10, 20]


def test_keep_best_ends_with_the_best_evaluations_weights_and_patience_stops():
    split, learners = _moons_learners(lr=5.0, momentum=0.9)  # far too large: the accuracy jumps about
    learner = learners["numpy"]
    h = fit(learner, split.train, split.test, LoopSettings(batch_size=32, steps=60, eval_every=5, eval_unit="step",
                                                          keep_best=True, lr=5.0), progress=False)
    best = max(h.records, key=lambda r: r["test_acc"])
    assert h.best["step"] == best["step"] and h.best["value"] == best["test_acc"]
    from twinnet.learner import evaluate

    assert evaluate(learner, split.test.x, split.test.y)[1] == best["test_acc"]  # the learner holds those weights
    split, learners = _moons_learners(lr=1e-9)  # nothing moves: no evaluation beats step 0's
    h = fit(learners["numpy"], split.train, split.test, LoopSettings(batch_size=32, steps=100, eval_every=5,
                                                                     eval_unit="step", patience=3), progress=False)
    assert h.stopped_early and h.last["step"] == 15 and h.best["step"] == 0


def test_a_source_with_its_own_state_has_it_recorded_and_updated_by_the_loop():
    from twinnet.data.palindrome import Curriculum, PalindromeDataset
    from twinnet.learner import make_learner
    from twinnet.recurrent_task import PalindromeConfig, build_models

    cfg = PalindromeConfig(length=9, hidden=8, steps=30, eval_every=10, batch_size=16, eval_size=50,
                           checkpoint_every_s=0.0)
    data = PalindromeDataset(9, curriculum=Curriculum(start=3, step=2, threshold=0.0))  # lengthens at every evaluation
    learner = make_learner(build_models(cfg)["numpy"], cfg)
    saves = _Saves()
    h = fit(learner, data, data.eval_set(50, 0), cfg, checkpoints=saves, progress=False)
    # each record carries the length its running figures were drawn at; the source moved on after it
    assert [(r["step"], r["length"]) for r in h.records] == [(0, 3), (10, 3), (20, 5), (30, 7)]
    assert data.length == 9


def test_weight_averaging_predicts_with_the_average_and_trains_the_raw_weights():
    from twinnet.learner import WeightAverage, evaluate

    split, plain = _moons_learners()
    _, wrapped = _moons_learners()
    averaged = WeightAverage(wrapped["torch"], decay=0.5)
    start = plain["torch"].state_dict()
    expected = dict(start)
    for x, y in [(split.train.x[:32], split.train.y[:32]), (split.train.x[32:64], split.train.y[32:64])]:
        assert plain["torch"].train_step(x, y)[0] == averaged.train_step(x, y)[0]  # the same raw steps
        expected = {k: 0.5 * expected[k] + 0.5 * v for k, v in plain["torch"].state_dict().items()}
    assert all(np.allclose(averaged.state_dict()[k], v, rtol=1e-12) for k, v in expected.items())
    raw = averaged.inner.state_dict()
    assert all(np.array_equal(raw[k], v) for k, v in plain["torch"].state_dict().items())  # raw weights untouched
    reference = make_learner(build_twins(lambda nn: nn.Sequential(*mlp_layers(nn, 2, (20,), 2)), "float64", 0)["torch"],
                             TrainConfig())
    reference.load_weights(expected)
    assert np.allclose(averaged.predict(split.test.x), reference.predict(split.test.x), rtol=1e-12)
    assert evaluate(averaged, split.test.x, split.test.y) == evaluate(reference, split.test.x, split.test.y)
    assert all(np.array_equal(averaged.inner.state_dict()[k], raw[k]) for k in raw)  # predicting put them back


def test_flip_averaging_averages_the_logits_of_each_image_and_its_mirror():
    from twinnet.learner import FlipAveraged

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    learner = make_learner(model, TrainConfig())
    x = np.random.default_rng(0).normal(size=(5, 1, 3, 4))
    both = FlipAveraged(learner).predict(x)
    assert np.allclose(both, (learner.predict(x) + learner.predict(x[..., ::-1].copy())) / 2)
    assert not np.allclose(both, learner.predict(x))


def test_the_epoch_hook_is_called_after_each_epochs_last_step():
    split, learners = _moons_learners()
    seen = []
    fit(learners["numpy"], split.train, None, LoopSettings(batch_size=100, epochs=3),
        on_epoch=lambda epoch, learner: seen.append((epoch, len(learner.optimizer.state_dict()))), progress=False)
    assert [e for e, _ in seen] == [1, 2, 3]


def test_a_checkpoint_in_the_middle_of_an_epoch_resumes_onto_the_same_batches(tmp_path):
    """Stored samples are shuffled once per epoch: resuming at step 7 of a 10-step epoch must train on
    that epoch's batches 8-10, then the next epoch's, as the unbroken run did."""
    from twinnet.checkpoint import Checkpointer

    settings = LoopSettings(batch_size=32, steps=25, checkpoint_every=7, eval_every=5, eval_unit="step")
    split, learners = _moons_learners()
    seen_whole: list = []
    learner = learners["numpy"]
    step = learner.train_step
    learner.train_step = lambda x, y, total=None: (seen_whole.append(y.tolist()), step(x, y))[1]
    whole = fit(learner, split.train, split.test, settings, progress=False)

    class Stop(Exception):
        pass

    split, learners = _moons_learners()
    saves = Checkpointer(tmp_path / "c.pt", {})
    original = saves.save

    def save_then_stop(learner, state):
        original(learner, state)
        if state.step == 7:
            raise Stop

    saves.save = save_then_stop
    with pytest.raises(Stop):
        fit(learners["numpy"], split.train, split.test, settings, checkpoints=saves, progress=False)
    split, learners = _moons_learners()
    resumed_learner, seen = learners["numpy"], []
    step2 = resumed_learner.train_step
    resumed_learner.train_step = lambda x, y, total=None: (seen.append(y.tolist()), step2(x, y))[1]
    state = Checkpointer(tmp_path / "c.pt", {}).restore(resumed_learner)
    assert state.step == 7 and state.batches_into_epoch == 7
    resumed = fit(resumed_learner, split.train, split.test, settings, resume=state, progress=False)
    assert seen == seen_whole[7:]
    assert resumed.step_losses == whole.step_losses
    assert [r["test_loss"] for r in resumed.records] == [r["test_loss"] for r in whole.records]


def test_a_checkpoint_that_came_too_soon_is_taken_once_its_time_has_passed(monkeypatch):
    """checkpoint_every=10 at most once per 15 s, each step 1 s: step 10 comes too soon (10 s), so it is taken
    at step 15, then step 20's at step 30 (15 s after 15). A starved process, whose steps grow slow, thus still
    saves about every checkpoint_every_s, where it had waited for the next multiple of the steps."""
    import types

    import twinnet.train

    clock = types.SimpleNamespace(now=0.0)
    fake = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    fake.perf_counter = fake.monotonic = lambda: clock.now
    monkeypatch.setattr(twinnet.train, "time", fake)
    split, learners = _moons_learners()
    learner = learners["numpy"]
    step = learner.train_step

    def one_second(x, y, total=None):
        clock.now += 1.0
        return step(x, y)

    learner.train_step = one_second
    saves = _Saves()
    fit(learner, split.train, None, LoopSettings(batch_size=32, steps=40, checkpoint_every=10, checkpoint_every_s=15),
        checkpoints=saves, progress=False)
    assert saves.steps == [15, 30, 40]
    clock.now, saves = 0.0, _Saves()  # no time limit: every 10 steps, as before
    fit(learner, split.train, None, LoopSettings(batch_size=32, steps=40, checkpoint_every=10), checkpoints=saves,
        progress=False)
    assert saves.steps == [10, 20, 30, 40]
