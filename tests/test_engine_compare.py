"""``engine-compare``: one preset trained whole in both engines from the same weights on the same batches."""

import json

import numpy as np
import pytest

from twinnet.cli import main


def _compare(out, *settings):
    return main(["run", "engine-compare", "--quick", "--out", str(out), "--threads", "1", "--set", "preset=palindrome",
                 *(a for s in settings for a in ("--set", s))])


@pytest.fixture(scope="module")
def rnn(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "rnn"
    assert _compare(out, "settings=steps=60,eval_every=20") == 0
    return out


def test_the_two_engines_train_the_same_rnn_to_float32_rounding(rnn):
    s = json.loads((rnn / "summary.json").read_text())
    assert s["preset"] == "palindrome" and s["dtype"] == "float32" and s["steps_compared"] == 60
    losses = {e: np.load(rnn / e / "step_loss.npz")["step_loss"] for e in ("numpy", "torch")}
    assert len(losses["numpy"]) == len(losses["torch"]) == 60
    rel = np.abs(losses["numpy"] - losses["torch"]) / np.maximum(np.abs(losses["torch"]), 1e-4)
    assert s["max_rel_loss_diff"] == pytest.approx(rel.max()) and s["max_rel_loss_diff"] < 1e-5
    assert s["first_rel_loss_diff"] == pytest.approx(rel[0]) and s["final_rel_loss_diff"] == pytest.approx(rel[-1])
    for engine in ("numpy", "torch"):  # each a run of its own, in its engine, of the same settings
        run = json.loads((rnn / engine / "summary.json").read_text())
        config = json.loads((rnn / engine / "config.json").read_text())["config"]
        assert run["engine"] == config["engine"] == engine and config["steps"] == 60
        assert s["runs"][engine]["test_acc"] == run["test_acc"]
        # time per step trained: the evaluations' share of the run's time left out, as for image runs
        assert 0 < run["eval_time_s"] < run["train_time_s"]
        assert s["runs"][engine]["s_per_step"] == pytest.approx((run["train_time_s"] - run["eval_time_s"]) / 60)
    assert s["speed_ratio"] == pytest.approx(s["runs"]["numpy"]["s_per_step"] / s["runs"]["torch"]["s_per_step"])


def test_the_report_sets_the_engines_side_by_side_with_sentences_from_the_numbers(rnn):
    s = json.loads((rnn / "summary.json").read_text())
    report = (rnn / "report.md").read_text()
    assert f"at most {s['max_rel_loss_diff']:.1e} (relative) over 60 steps" in report
    assert "float32's machine epsilon" in report and "rounding alone" in report
    faster, ratio = ("PyTorch" if s["speed_ratio"] >= 1 else "NumPy"), max(s["speed_ratio"], 1 / s["speed_ratio"])
    assert (f"{faster} was {ratio:.2f} times faster per step" if round(ratio, 2) > 1 else
            "the two took the same time per step, to the hundredth") in report
    assert "![engines.png](engines.png)" in report and (rnn / "engines.png").read_bytes()[:4] == b"\x89PNG"
    # each engine's run as its own report shows it, its files found from here
    assert "## The numpy engine's run" in report and "![numpy/curves.png](numpy/curves.png)" in report
    assert "## The torch engine's run" in report and (rnn / "torch" / "curves.png").is_file()
    # the network's structure tables and traced step once, with the first engine's run, not twice
    assert report.count("Model structure") == 1 and report.count("one step traced") == 1
    assert "shown with the numpy engine's run above" in report


def test_a_resume_trains_neither_engine_again(rnn, capsys):
    stamp = (rnn / "numpy" / "step_loss.npz").stat().st_mtime_ns
    assert main(["run", "engine-compare", "--resume", str(rnn)]) == 0
    assert "2 runs already finished, 0 to run" in capsys.readouterr().err
    assert (rnn / "numpy" / "step_loss.npz").stat().st_mtime_ns == stamp


def test_a_wrong_numpy_layer_shows_as_engines_that_part(tmp_path, monkeypatch):
    from twinnet.numpy_nn import recurrent

    cell = recurrent.VanillaRNN
    forward = cell.forward

    def wrong(self, x, *a, **k):  # a planted bug: the NumPy RNN sees its inputs doubled
        return forward(self, 2 * x, *a, **k)

    monkeypatch.setattr(cell, "forward", wrong)
    assert _compare(tmp_path / "bug", "settings=steps=20,eval_every=20") == 0
    s = json.loads((tmp_path / "bug" / "summary.json").read_text())
    assert s["first_rel_loss_diff"] > 1e-3  # wrong from the first step
    assert "agree in shape rather than in every digit" in (tmp_path / "bug" / "report.md").read_text() or \
        "parted" in (tmp_path / "bug" / "report.md").read_text()


@pytest.mark.parametrize("settings, said", [
    (["preset=mlp-compare"], "not a single run with an engine"),
    (["preset=cnn-ablation"], "not a single run with an engine"),
    (["preset=palindrome", "settings=engine=torch"], "other than engine and seed"),
    (["preset=palindrome", "settings=lenght=9"], "lenght"),
    (["preset=cifar-fast"], "muon"),  # the NumPy engine cannot take that recipe: said before anything trains
])
def test_a_preset_or_setting_that_cannot_be_compared_is_one_clear_line(tmp_path, capsys, settings, said):
    args = ["run", "engine-compare", "--quick", "--out", str(tmp_path / "x")]
    assert main([*args, *(a for s in settings for a in ("--set", s))]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and not (tmp_path / "x").exists()


def test_the_agreement_figure_draws_losses_trained_to_zero_and_non_finite_steps(tmp_path):
    """A loss trained to ~0 (1e-8 in one engine, exactly 0 in the other) and a diverged step must draw,
    not overflow the log scale."""
    from twinnet.report import plots

    ours = np.array([2.3, 1.0, 1e-8, 3e-9, np.inf, np.nan])
    reference = np.array([2.3, 1.0 + 1e-7, 0.0, 1e-300, np.inf, 1.0])
    fig, ax = plots.figure(1, 4.0, 3.0)
    plots.agreement(ax[0, 0], ours, reference, "float32", floor=1e-4)
    plots.save(fig, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert ax[0, 0].get_ylim()[1] < 1  # the largest difference drawn is 1e-4 (1e-8 against the floor), not 1e300


def test_the_headline_gives_short_times_their_digits_and_long_ones_whole_seconds():
    from twinnet.experiments.engine_compare import headline

    runs = {"numpy": {"test_acc": 0.37, "training_s": 0.31}, "torch": {"test_acc": 0.3701, "training_s": 1041.2}}
    said = headline({"preset": "cnn-vgg", "runs": runs, "max_rel_loss_diff": 1e-7, "steps_compared": 60})
    assert said.startswith("cnn-vgg: numpy 37.00% in 0.31 s, torch 37.01% in 1041 s;")
