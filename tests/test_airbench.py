"""airbench94 in twinnet's loop: its network, whitening, schedule, lookahead, parameter groups and
test-time augmentation, each against a direct computation, and the preset end to end on fake data."""

import json

import numpy as np
import pytest
import torch

from fake_data import write_cifar_tree
from twinnet.cli import main
from twinnet import torch_nn
from twinnet.experiments import image


def test_the_triangle_schedule_rises_to_its_peak_then_falls_to_its_end():
    from twinnet.schedules import make_schedule

    f = make_schedule("triangle", 2.0, 100)
    assert f(0) == pytest.approx(0.4) and f(23) == pytest.approx(2.0) and f(100) == pytest.approx(0.14)
    assert f(10) == pytest.approx(2.0 * (0.2 + 0.8 * 10 / 23)) and f(60) == pytest.approx(2.0 * (1 - 0.93 * 37 / 77))
    values = [f(s) for s in range(101)]
    assert values.index(max(values)) == 23


def test_whitening_filters_give_the_patches_unit_variance_along_every_direction():
    from twinnet.whitening import EPS, patches, whitening_filters

    rng = np.random.default_rng(0)
    images = rng.standard_normal((40, 3, 8, 8)) @ np.diag([1.0] * 7 + [3.0])  # correlated pixels along W
    images[:, 1] += 0.5 * images[:, 0]
    filters = whitening_filters(images)
    assert filters.shape == (24, 3, 2, 2) and np.allclose(filters[12:], -filters[:12])
    rows = patches(images)
    out = rows @ filters[:12].reshape(12, -1).T  # what the convolution computes at every position
    cov = out.T @ out / len(out)
    values = np.linalg.eigvalsh(rows.T @ rows / len(rows))[::-1]
    np.testing.assert_allclose(cov, np.diag(values / (values + EPS)), atol=1e-10)
    # a patch is what the convolution sees: torch's conv2d with these filters gives the same numbers
    conv = torch.nn.functional.conv2d(torch.from_numpy(images), torch.from_numpy(filters[:12]))
    np.testing.assert_allclose(conv.permute(0, 2, 3, 1).reshape(-1, 12).numpy(), out, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name, activation", [("airbench94", torch.nn.GELU), ("airbench94-silu", torch.nn.SiLU)])
def test_the_airbench_twins_agree_and_its_frozen_layers_take_no_gradient(name, activation):
    from twinnet.architectures import MODELS
    from twinnet.twins import build_twins, gradient_agreement

    spec = MODELS[name]
    twins = build_twins(spec.build, "float64", 0)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32))
    for model in twins.values():
        spec.prepare(model, x, 5e-4)
    twins["numpy"].train(), twins["torch"].train()
    errors = gradient_agreement(twins["numpy"], twins["torch"], x, np.array([1, 2, 3, 4]))
    trained = {n for n, p in twins["torch"].named_parameters() if p.requires_grad}
    assert max(errors[k] for k in ["loss", *trained]) < 1e-10
    frozen = {n for n, p in twins["torch"].named_parameters() if not p.requires_grad}
    assert frozen == {"0.weight"} | {f"{i}.weight" for i in (4, 7, 11, 14, 18, 21)}  # whitening, batch-norm scales
    assert all(twins["torch"].get_parameter(n).grad is None for n in frozen)
    hooks = {engine: spec.prepare(model, x, 5e-4) for engine, model in twins.items()}
    for engine, hook in hooks.items():  # after the epochs that train it, torch's whitening bias stops training
        hook(99, type("Learner", (), {"trainable_changed": lambda self: None})())
    assert not twins["torch"][0].bias.requires_grad
    assert all(p.requires_grad for p in twins["numpy"].parameters())  # the NumPy engine trains every layer
    norms = [m for m in twins["torch"] if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 6 and all(m.momentum == pytest.approx(0.4) and m.eps == 1e-12 for m in norms)
    assert sum(isinstance(m, activation) for m in twins["torch"]) == 7  # after the whitening and every batch norm
    assert sum(type(m).__name__ == activation.__name__ for m in twins["numpy"]) == 7
    # the convolutions start as the identity on their first input channels
    w = twins["torch"][2].weight.detach()
    assert torch.equal(w[:24, :, 1, 1], torch.eye(24, dtype=w.dtype)) and float(w[:24].abs().sum()) == 24


def test_batch_norm_biases_train_at_their_own_rate_and_frozen_weights_not_at_all():
    from twinnet.experiments.image import ImageConfig, param_groups
    from twinnet.architectures import build_model

    model = build_model("airbench94", "torch")
    cfg = ImageConfig(dataset="cifar10", model="airbench94", engine="torch", optimizer="sgd", lr=1.5,
                      weight_decay=0.01, norm_bias_lr=64.0)
    groups = param_groups(model, cfg)
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [id(p) for p in groups[1]["params"]] == [id(b) for b in biases]
    assert groups[1]["lr"] == 96.0 and groups[1]["weight_decay"] == pytest.approx(0.01 / 64)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad} and len(groups[0]) == 1


class _Counter:
    """A learner whose one weight grows by 1 each step (and a counter that must not be averaged)."""

    engine = "numpy"

    def __init__(self):
        self.w = {"w": np.zeros(2), "n": np.array(0)}

    def train_step(self, x, y, total=None):
        self.w = {"w": self.w["w"] + 1, "n": self.w["n"] + 1}
        return 0.0, 0

    def state_dict(self):
        return {k: v.copy() for k, v in self.w.items()}

    def load_weights(self, state):
        self.w = {k: np.asarray(v).copy() for k, v in state.items()}

    def predict(self, x, batch_size=1024):
        return x.reshape(len(x), -1)[:, :3] * 1.0


def test_lookahead_moves_to_its_average_every_k_steps_and_ends_on_it():
    from twinnet.learner import Lookahead

    inner = _Counter()
    learner = Lookahead(inner, every=2, total=5)
    average, w = np.zeros(2), np.zeros(2)
    for step in range(1, 6):
        learner.train_step(None, None)
        w = w + 1
        if step % 2 == 0:
            decay = 0.95**2 * (step / 5) ** 3
            average = average + (1 - decay) * (w - average)
            w = average.copy()
        np.testing.assert_allclose(inner.w["w"], w if step < 5 else average, rtol=1e-15)
    assert inner.w["n"] == 5  # counters follow the model
    state = learner.training_state() if hasattr(inner, "training_state") else None
    assert state is None or "lookahead" in state


@pytest.mark.parametrize("wrapper", ["lookahead", "weight_average"])
def test_weight_averages_of_a_torch_model_stay_beside_it_and_match_the_host_copies_to_the_bit(wrapper, monkeypatch):
    import twinnet.learner as learner_module
    from twinnet.learner import Lookahead, WeightAverage, make_learner
    from twinnet.train import TrainConfig

    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 3, 6, 6)).astype(np.float32), rng.integers(0, 3, 8)) for _ in range(7)]

    def train(host_copies: bool, steps=range(7), state=None):
        if host_copies:  # what the wrappers did before: the weights copied to NumPy at every update
            monkeypatch.setattr(learner_module, "_weights", lambda learner: learner.state_dict())
        else:
            monkeypatch.undo()
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                    torch.nn.Flatten(), torch.nn.Linear(64, 3))
        inner = make_learner(model, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9))
        learner = Lookahead(inner, every=2, total=7) if wrapper == "lookahead" else WeightAverage(inner, decay=0.7)
        if state is not None:
            learner.load_training_state(state)
        for k in steps:
            learner.train_step(*batches[k])
        return learner

    host, device = train(host_copies=True), train(host_copies=False)
    kept = next(iter(device.average.values()))
    assert isinstance(kept, torch.Tensor)  # beside the model (a GPU's tensors there), not copied to the host
    for a, b in zip(host.state_dict().values(), device.state_dict().values()):
        assert isinstance(b, np.ndarray) and np.array_equal(a, b)
    for a, b in zip(host.inner.state_dict().values(), device.inner.state_dict().values()):
        assert np.array_equal(a, b)
    # a checkpoint holds NumPy arrays and a resume from it goes on as the unbroken run did
    state = train(host_copies=False, steps=range(3)).training_state()
    key = "lookahead" if wrapper == "lookahead" else "weight_average"
    saved = state[key]["average"] if wrapper == "lookahead" else state[key]
    assert all(isinstance(v, np.ndarray) for v in saved.values())
    resumed = train(host_copies=False, steps=range(3, 7), state=state)
    assert all(isinstance(v, torch.Tensor) for v in resumed.average.values())
    for a, b in zip(resumed.state_dict().values(), device.state_dict().values()):
        assert np.array_equal(a, b)


def test_flip_and_translate_tta_averages_the_eight_views_as_airbench_does():
    from twinnet.learner import FlipAveraged

    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4))
    tta = FlipAveraged(_Counter(), translate=1)

    def view(z):
        return z.reshape(len(z), -1)[:, :3]

    mirror = lambda z: (view(z) + view(z[..., ::-1])) / 2  # noqa: E731
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    expected = mirror(x) / 2 + (mirror(padded[..., :4, :4]) + mirror(padded[..., 2:, 2:])) / 4
    np.testing.assert_allclose(tta.predict(x), expected, rtol=1e-15)
    assert not np.allclose(FlipAveraged(_Counter()).predict(x), expected)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar_tree(root / "cifar10", (10, 2))
    return root


def _run(out, data, *sets, preset="airbench94"):
    args = ["run", preset, "--quick", "--data-dir", str(data), "--out", str(out), "--threads", "1"]
    return main(args + [a for s in sets for a in ("--set", s)])


@pytest.mark.parametrize("preset, extra", [("airbench94", ()), ("cifar-fast", ()), ("cifar-fast", ("freeze=9@1",)),
                                           ("cifar-fast-small", ()), ("cifar-fast-small", ("small_crop_until=1",))])
def test_the_preset_trains_and_resumes_to_the_same_figures(preset, extra, cifar_dir, tmp_path, monkeypatch, capsys):
    """Lookahead's average, the whitening layer and its bias frozen after the epochs before the
    checkpoint, the alternating flips of the epoch under way, Muon's momentum (cifar-fast) and the small
    crops (cifar-fast-small: the first epoch's, or, until=1, every epoch's, replayed on resume) all
    cross an interruption unchanged."""
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("twinnet.whitening.FREEZE_BIAS_AFTER", 1)
    # 100 training images in batches of 25: epochs of 4 steps, checkpoints at steps 4 (epoch's end), 5, 8, 9
    sets = ("steps=9", "batch_size=25", "eval_every=3", "checkpoint_every=5", "lookahead=2", "train_subset=0",
            "test_subset=0", *extra)
    whole = tmp_path / "whole"
    assert _run(whole, cifar_dir, *sets, preset=preset) == 0
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["steps"] == 9 and summary["lossy_data"] is False
    from twinnet.runs import RunDir

    append = RunDir.append_metrics

    def append_then_stop(self, record):
        append(self, record)
        if record["step"] == 6:  # after the checkpoint at step 5: the second epoch's first step, its flips
            # the other way round, and the bias frozen at the end of the first
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "append_metrics", append_then_stop)
    broken = tmp_path / "broken"
    assert _run(broken, cifar_dir, *sets, preset=preset) == 130
    monkeypatch.setattr(RunDir, "append_metrics", append)
    assert main(["run", preset, "--resume", str(broken), "--data-dir", str(cifar_dir)]) == 0
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, broken))
    for key in ("test_acc", "test_loss", "train_loss", "train_acc", "per_class_acc"):
        assert a[key] == b[key], key
    capsys.readouterr()


def test_whiten_eps_sets_the_whitening_filters_and_is_refused_where_there_is_no_such_layer(cifar_dir, tmp_path,
                                                                                           monkeypatch, capsys):
    """A filter is v_k / sqrt(l_k + eps): from the default run's filters, each direction's variance l_k, and from
    it the filters' norms under another eps; a model without a whitening layer, or eps <= 0, refused by name."""
    from twinnet.whitening import EPS

    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    norms = {}
    for eps in (EPS, 0.05):
        assert _run(tmp_path / str(eps), cifar_dir, "steps=1", f"whiten_eps={eps}") == 0
        filters = _weights(tmp_path / str(eps))["0.weight"].double().reshape(24, -1)
        norms[eps] = (filters * filters).sum(1)[:12]  # 1 / (l_k + eps), the negatives alike
    variances = 1 / norms[EPS] - EPS
    assert variances.min() > 0 and variances.max() / variances.min() > 2  # the fake images' directions differ
    np.testing.assert_allclose(norms[0.05].numpy(), (1 / (variances + 0.05)).numpy(), rtol=1e-4)
    capsys.readouterr()
    assert main(["run", "cnn-vgg", "--quick", "--data-dir", str(cifar_dir), "--out", str(tmp_path / "vgg"),
                 "--set", "whiten_eps=0.01"]) == 2
    assert "whiten_eps sets a whitening layer, which vgg-reduced has none of" in capsys.readouterr().err
    assert _run(tmp_path / "zero", cifar_dir, "whiten_eps=0") == 2
    assert "whiten_eps=0.0 is added to each patch variance" in capsys.readouterr().err
    for bad in ("inf", "nan"):
        with pytest.raises(ValueError, match=f"whiten_eps={bad} .*finite number > 0"):
            image.ImageConfig(model="airbench94", dataset="cifar10", whiten_eps=float(bad))
    assert not (tmp_path / "vgg").exists() and not (tmp_path / "zero").exists()


def _weights(run):
    from twinnet.checkpoint import read

    return {k: torch.as_tensor(v) for k, v in read(run / "checkpoint.pt")["learner"]["model"].items()}


def test_frozen_layers_stop_where_their_epoch_left_them_and_the_rest_train_on(cifar_dir, tmp_path, monkeypatch):
    """freeze=1@0,9@1: airbench94's whitening bias never trains; the whitening layer and first group (layers
    0-8), over two epochs of 4 steps, end exactly as a one-epoch run (freeze=1@0) of the same batches and rates
    leaves them; every later layer moves on."""
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    sets = ("batch_size=25", "schedule=constant", "lookahead=0", "train_subset=0", "test_subset=0", "eval_every=4")
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run(one, cifar_dir, "steps=4", "freeze=1@0", *sets, preset="cifar-fast") == 0
    assert _run(two, cifar_dir, "steps=8", "freeze=1@0,9@1", *sets, preset="cifar-fast") == 0
    a, b = _weights(one), _weights(two)
    assert torch.equal(a["0.bias"], torch.zeros(24)) and torch.equal(b["0.bias"], torch.zeros(24))  # as initialised
    params = {n for n, _ in image.MODELS["airbench94"].build(torch_nn).named_parameters()}
    early = {k for k in params if int(k.split(".")[0]) < 9} - {"0.bias"}
    assert early and all(torch.equal(a[k], b[k]) for k in early)
    later = {k for k in params if int(k.split(".")[0]) >= 9} - {f"{i}.weight" for i in (11, 14, 18, 21)}  # BN scales
    assert later and all(not torch.equal(a[k], b[k]) for k in later)


@pytest.mark.parametrize("value, says", [("9", "LAYERS@EPOCH"), ("0@1", "LAYERS >= 1"), ("x@1", "whole numbers"),
                                         ("9@-1", "whole numbers"), ("9@٣", "whole numbers"),
                                         ("1@99999999999", "beyond any"), ("9@0,1@1", "more layers"),
                                         ("99@1", "has 27 layers"), ("26@1", "freeze at most 25"),
                                         ("9@2", "trains 2 epoch(s)")])
def test_a_freeze_that_cannot_be_done_is_refused_with_one_line(value, says, cifar_dir, tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = _run(out, cifar_dir, "steps=8", "batch_size=25", "train_subset=0", f"freeze={value}", preset="cifar-fast")
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err, err
    assert not (out / "checkpoint.pt").exists()


def test_freeze_is_refused_for_the_numpy_engine(cifar_dir, tmp_path, capsys):
    code = main(["run", "cnn-vgg", "--quick", "--data-dir", str(cifar_dir), "--out", str(tmp_path / "run"),
                 "--set", "engine=numpy", "--set", "freeze=1@0"])
    err = capsys.readouterr().err
    assert code == 2 and "freeze needs engine=torch" in err, err


def test_cifar_time_sweeps_budgets_and_sets_accuracy_against_training_time(cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "time"
    assert main(["run", "cifar-time", "--quick", "--data-dir", str(cifar_dir), "--out", str(out), "--threads", "1",
                 "--set", "seeds=0,1"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [(p["preset"], p["steps"], p["seeds"]) for p in s["points"]] == [("airbench94", 2, 2), ("airbench94", 4, 2)]
    for r in s["runs"]:  # each a complete run of the preset at its budget, evaluated once at its end
        records = [json.loads(line) for line in (out / r["job"] / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in records] == [r["steps"]]
        assert r["training_s"] == pytest.approx(records[-1]["time_s"] - records[-1]["eval_s"])
    runs = {(r["steps"], r["seed"]): r for r in s["runs"]}
    assert s["points"][0]["test_acc"] == pytest.approx((runs[(2, 0)]["test_acc"] + runs[(2, 1)]["test_acc"]) / 2)
    report = (out / "report.md").read_text()
    assert "accuracy_vs_time.png" in report and (out / "accuracy_vs_time.png").stat().st_size > 1000
    # a resume with another grid adds its runs to the earlier ones: the figure gathers the folder's budgets
    assert main(["run", "cifar-time", "--resume", str(out), "--data-dir", str(cifar_dir), "--threads", "1",
                 "--set", "budgets=0.25", "--set", "seeds=1"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [(p["preset"], p["steps"], p["seeds"]) for p in s["points"]] == [
        ("airbench94", 1, 1), ("airbench94", 2, 2), ("airbench94", 4, 2)]
    assert sorted(r["job"] for r in s["runs"]) == sorted([r["job"] for r in runs.values()] + ["airbench94-1steps-seed1"])
    assert main(["run", "cifar-time", "--quick", "--set", "presets=palindrome"]) == 2
    assert "not an image preset" in capsys.readouterr().err


def test_cifar_time_sets_each_budget_against_the_other_presets_shortest_budget_that_trained_as_long():
    from twinnet.experiments.cifar_time import _equal_time_blocks, equal_time

    def point(preset, steps, seconds, acc):
        return {"preset": preset, "steps": steps, "training_s": seconds, "test_acc": acc, "seeds": 1}

    points = [point("fast", 88, 200.0, 0.845), point("fast", 350, 750.0, 0.904),
              point("slow", 97, 210.0, 0.820), point("slow", 121, 264.0, 0.839), point("slow", 485, 995.0, 0.907)]
    rows = {(r["preset"], r["steps"]): r for r in equal_time(points)}
    # fast's 200 s against slow's 210 s (not 264 s, which also trained longer); 750 s against 995 s
    assert (rows[("fast", 88)]["other_steps"], rows[("fast", 350)]["other_steps"]) == (97, 485)
    assert rows[("fast", 88)]["lead"] == pytest.approx(0.025) and rows[("fast", 350)]["lead"] == pytest.approx(-0.003)
    # slow's 210 s and 264 s both against fast's 750 s; slow's 995 s outlasts every fast budget: no row
    assert rows[("slow", 97)]["other_steps"] == rows[("slow", 121)]["other_steps"] == 350
    assert ("slow", 485) not in rows
    text = _equal_time_blocks(list(rows.values()))[0].markdown
    assert "fast at 88 steps is at least 2.50 points ahead of slow (84.50% in 200 s against 82.00% in 210 s)" in text
    table = _equal_time_blocks(list(rows.values()))[1]
    assert [row[0] for row in table.rows] == ["fast (88)"]  # only leads bound anything
    assert table.rows[0][-1] == "not recorded" and "run by run" not in text  # no seeds' times in these points
    assert _equal_time_blocks([rows[("fast", 350)]]) == []

    # with the seeds' times: slow's shortest run against fast's longest decides whether the bound holds run by run
    points[0].update(training_s_min=190.0, training_s_max=214.0)  # one fast run outlasted one of slow's
    points[2].update(training_s_min=205.0, training_s_max=215.0)
    [row] = [r for r in equal_time(points) if r["preset"] == "fast" and r["steps"] == 88]
    text, table = (b for b in _equal_time_blocks([row]))
    assert row["every_run"] is False and table.rows[0][-1] == "on the means only"
    assert "for the seeds' mean times only" in text.markdown
    points[0]["training_s_max"] = 205.0
    [row] = [r for r in equal_time(points) if r["preset"] == "fast" and r["steps"] == 88]
    text, table = (b for b in _equal_time_blocks([row]))
    assert row["every_run"] is True and table.rows[0][-1] == "yes" and "holds run by run" in text.markdown


def test_cifar_time_judges_the_presets_longest_budgets_by_their_seeds_spread():
    from twinnet.experiments.cifar_time import _longest_budget_blocks, longest_budgets

    def point(preset, steps, seconds, accs):
        return {"preset": preset, "steps": steps, "training_s": seconds, "seeds": len(accs),
                "test_acc": float(np.mean(accs)), "test_acc_std": float(np.std(accs))}

    fast = [0.9036, 0.9077, 0.9042, 0.9028, 0.9030]
    slow = [0.9070, 0.9072, 0.9034, 0.9071, 0.9030]
    points = [point("slow", 325, 603.0, [0.8989, 0.8978]), point("slow", 485, 885.0, slow),
              point("fast", 350, 585.0, fast)]
    [row] = longest_budgets(points)  # one pair, seen from the preset that trained for less time
    assert (row["preset"], row["steps"], row["other"], row["other_steps"]) == ("fast", 350, "slow", 485)
    assert row["time_ratio"] == pytest.approx(585 / 885)
    assert row["difference"] == pytest.approx(np.mean(fast) - np.mean(slow))
    standard_error = np.sqrt(np.var(fast, ddof=1) / 5 + np.var(slow, ddof=1) / 5)
    assert row["standard_error"] == pytest.approx(standard_error)
    text = _longest_budget_blocks(points)[0].markdown
    assert ("fast (350 steps, 5 seeds) trains in 0.66x the time of slow (485 steps, 5 seeds) and is 0.13 points lower "
            "(90.43% against 90.55%)") in text
    assert f"is {100 * standard_error:.2f} points: less than twice it, so these seeds cannot tell" in text
    # a gap of many standard errors is one the seeds resolve; a single seed has no spread to judge by
    points[1] = point("slow", 485, 885.0, [a - 0.01 for a in slow])
    assert "higher" in _longest_budget_blocks(points)[0].markdown and "these seeds resolve" in \
        _longest_budget_blocks(points)[0].markdown
    points[1] = point("slow", 485, 885.0, [0.9070])
    assert longest_budgets(points)[0]["standard_error"] is None
    assert "leaves no spread" in _longest_budget_blocks(points)[0].markdown
    assert _longest_budget_blocks(points[:2]) == []  # one preset: no pair


def test_cifar_time_gives_the_seeds_time_range_beside_the_ratio_of_the_means():
    from twinnet.experiments.cifar_time import _longest_budget_blocks, _points, _time_range, longest_budgets

    def run(preset, seed, seconds, acc):
        return {"preset": preset, "steps": 350 if preset == "fast" else 485, "seed": seed, "training_s": seconds,
                "test_acc": acc}

    # a noisy machine: the same run took 475-624 s
    runs = [run("slow", 0, 790.5, 0.9077), run("slow", 1, 716.0, 0.9083), run("slow", 2, 749.9, 0.9051),
            run("fast", 0, 475.5, 0.9051), run("fast", 1, 624.0, 0.9031), run("fast", 2, 522.7, 0.9063)]
    points = _points(runs)
    fast = next(p for p in points if p["preset"] == "fast")
    assert (fast["training_s_min"], fast["training_s_max"]) == (475.5, 624.0)
    assert fast["training_s"] == pytest.approx((475.5 + 624.0 + 522.7) / 3)
    assert _time_range(fast) == " (476-624)"
    [row] = longest_budgets(points)
    assert row["time_ratio_range"] == pytest.approx((475.5 / 790.5, 624.0 / 716.0))
    text = _longest_budget_blocks(points)[0].markdown
    assert "trains in 0.72x the time of slow" in text
    assert "Run against run, the time ratio lies between 0.60x and 0.87x" in text
    # runs whose times agree (or a summary from before the seeds' times were kept) add nothing
    steady = _points([run("slow", 0, 800.0, 0.90), run("slow", 1, 800.2, 0.91), run("fast", 0, 500.0, 0.90)])
    assert _time_range(steady[1]) == "" and "Run against run" not in _longest_budget_blocks(steady)[0].markdown
    for p in steady:
        del p["training_s_min"], p["training_s_max"]
    assert longest_budgets(steady)[0]["time_ratio_range"] is None and _time_range(steady[0]) == ""
    assert "Run against run" not in _longest_budget_blocks(steady)[0].markdown


def test_the_whitening_layer_is_set_up_from_every_class_of_a_sorted_training_set():
    from twinnet.experiments.image import setup_sample

    labels = np.repeat(np.arange(10), 5000)  # sorted by class, as the JPEG copy's training set is
    picked = labels[setup_sample(len(labels))]
    assert len(picked) == 5000 and np.bincount(picked).tolist() == [500] * 10
    assert len(setup_sample(300)) == 300 and len(set(setup_sample(300).tolist())) == 300


def test_a_negative_colour_jitter_is_refused_by_the_name_the_user_set():
    with pytest.raises(ValueError, match=r"jitter=-0\.1 .*>= 0"):
        image.ImageConfig(model="airbench94", dataset="cifar10", jitter=-0.1)
    assert image.ImageConfig(model="airbench94", dataset="cifar10", jitter=0.2).augment().contrast == 0.2


def test_a_lookahead_longer_than_the_run_is_refused_before_it_could_end_on_the_initial_weights(cifar_dir, tmp_path,
                                                                                                 capsys):
    from twinnet import TwinnetError
    from twinnet.experiments.cifar_time import TimeConfig
    from twinnet.learner import Lookahead
    from twinnet.runner import resolve_config

    with pytest.raises(ValueError, match="every <= total"):
        Lookahead(_Counter(), every=3, total=2)
    with pytest.raises(TwinnetError, match="lookahead=5 is more steps than the run's 3"):
        resolve_config("cifar-fast", ["steps=3"])
    with pytest.raises(TwinnetError, match="lookahead=5 is more steps than the run's 4"):  # 0.01 of 350 steps
        TimeConfig(presets="cifar-fast", budgets="0.01,1.0").jobs()
    for preset in ("airbench94", "cifar-fast"):  # their smoke tests average too, even at one step
        assert 1 <= resolve_config(preset, quick=True).lookahead <= resolve_config(preset, quick=True).steps
    # epochs on a training set so small that the run has fewer steps than the lookahead: refused, no training
    out = tmp_path / "tiny"
    assert main(["run", "airbench94", "--data-dir", str(cifar_dir), "--out", str(out), "--threads", "1", "--set",
                 "steps=0", "--set", "epochs=1", "--set", "eval_unit=epoch", "--set", "eval_every=1", "--set",
                 "checkpoint_every=0", "--set", "train_subset=64", "--set", "test_subset=32",
                 "--set", "batch_size=32"]) == 2
    assert "lookahead=5 is more steps than the run's 2" in capsys.readouterr().err
    assert not (out / "summary.json").exists()
