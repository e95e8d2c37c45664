"""Palindrome data, and the palindrome experiments end to end on tiny settings (the sweep resuming too)."""

import json
import os

import numpy as np
import pytest

from twinnet.cli import main
from twinnet.runner import resolve_config
from twinnet.data.palindrome import PalindromeDataset, encode, generate_palindrome, samples
from twinnet import sweep
from twinnet.experiments import palindrome_sweep


@pytest.mark.parametrize("length", range(2, 12))
def test_palindromes_read_the_same_backwards_at_even_and_odd_lengths(length):
    rng = np.random.default_rng(length)
    for _ in range(20):
        p = generate_palindrome(length, rng)
        assert p.shape == (length,) and p.dtype.kind == "i"
        assert np.array_equal(p, p[::-1]) and p.min() >= 0 and p.max() <= 9


def test_the_first_half_is_random_and_the_rest_mirrors_it():
    digits = np.stack([generate_palindrome(7, np.random.default_rng(s)) for s in range(400)])
    for pos in range(4):  # ceil(7/2) free digits, each taking every value
        assert set(digits[:, pos]) == set(range(10))
    assert np.array_equal(digits[:, 4:], digits[:, :3][:, ::-1])


@pytest.mark.parametrize("length", (2, 5, 6, 13))
def test_a_sample_is_the_first_t_minus_1_digits_and_the_label_is_the_last_which_is_the_first(length):
    x, y = samples(length, 64, np.random.default_rng(0))
    assert x.shape == (64, length - 1, 10) and x.dtype == np.float32 and y.shape == (64,)
    assert np.array_equal(x.sum(axis=2), np.ones((64, length - 1)))  # one-hot
    digits = x.argmax(axis=2)
    assert np.array_equal(y, digits[:, 0])  # the label is the first digit ...
    full = np.concatenate([digits, y[:, None]], axis=1)
    assert np.array_equal(full, full[:, ::-1])  # ... because input + label is the palindrome


def test_scalar_encoding_feeds_the_digit_itself_and_dtype_is_the_requested_one():
    x, y = samples(6, 32, np.random.default_rng(1), "scalar", np.float64)
    assert x.shape == (32, 5, 1) and x.dtype == np.float64
    assert np.array_equal(x[:, 0, 0], y) and set(np.unique(x)) <= set(range(10))
    np.testing.assert_array_equal(encode(np.array([[3, 0]]), "onehot")[0, 0], np.eye(10)[3])
    with pytest.raises(ValueError, match="encoding"):
        encode(np.array([[1]]), "binary")


def test_batches_are_fresh_draws_replayed_from_the_generator_or_the_seed():
    def first(ds, rng=None, n=3):
        it = ds.batches(16, True, rng)
        return [next(it) for _ in range(n)]

    def same(p, q):
        return all(np.array_equal(u[0], v[0]) and np.array_equal(u[1], v[1]) for u, v in zip(p, q))

    a, b, c = first(PalindromeDataset(9, seed=4)), first(PalindromeDataset(9, seed=4)), first(PalindromeDataset(9, seed=5))
    assert same(a, b) and not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[0][0], a[1][0])  # every batch a new draw
    # the loop's generator, when given, is the stream (its state is what a checkpoint saves)
    g1, g2 = first(PalindromeDataset(9, seed=4), np.random.default_rng(7)), first(PalindromeDataset(9), np.random.default_rng(7))
    assert same(g1, g2) and not same(g1, a)
    assert same(first(PalindromeDataset(9), np.random.default_rng(4)), a)  # seed 4 either way: one stream
    assert len(PalindromeDataset(9)) > 0 and PalindromeDataset(9, "scalar").input_size == 1


def test_eval_sets_are_fixed_by_their_seed_and_independent_of_the_training_stream():
    ds = PalindromeDataset(11, seed=2)
    e1, e2, other = ds.eval_set(50, seed=2), ds.eval_set(50, seed=2), ds.eval_set(50, seed=2, stream=1)
    assert np.array_equal(e1.x, e2.x) and not np.array_equal(e1.x, other.x)
    train_x, _ = next(ds.batches(50))
    assert not np.array_equal(e1.x, train_x)
    assert e1.x.shape == (50, 10, 10) and ds.eval_set(8, 0, length=4).x.shape == (8, 3, 10)


def test_the_training_length_can_change_between_batches_for_a_curriculum():
    ds = PalindromeDataset(20, seed=0)
    ds.length = 5
    it = ds.batches(4)
    assert next(it)[0].shape[1] == 4
    ds.length = 8
    assert next(it)[0].shape[1] == 7
    assert ds.eval_set(4, 0).x.shape[1] == 19  # evaluation stays at the target length
    with pytest.raises(ValueError):
        PalindromeDataset(1)


def _summary(out):
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("engine", ("numpy", "torch"))
def test_palindrome_experiment_end_to_end(tmp_path, engine):
    out = tmp_path / engine
    assert main(["run", "palindrome", "--quick", "--out", str(out), "--set", f"engine={engine}",
                 "--set", "model=gru", "--set", "length=6"]) == 0
    s = _summary(out)
    assert (s["model"], s["length"], s["engine"], s["steps_done"]) == ("gru", 6, engine, 40)
    assert 0 <= s["test_acc"] <= 1 and {p["name"] for p in s["parameters"]} >= {"weight_hh", "W_ph"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 20, 40]
    assert (out / "curves.png").exists() and "## Training curves" in (out / "report.md").read_text()


def test_curriculum_lengthens_training_while_evaluation_stays_at_full_length(tmp_path):
    out = tmp_path / "cur"
    assert main(["run", "palindrome", "--quick", "--out", str(out), "--set", "length=9", "--set", "curriculum=true",
                 "--set", "curriculum_start=3", "--set", "curriculum_step=2", "--set", "curriculum_threshold=0.05",
                 "--set", "steps=60", "--set", "eval_every=10"]) == 0
    lengths = [json.loads(line)["length"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lengths == [3, 3, 5, 7, 9, 9, 9]  # step 0, then one step up per evaluation, up to T
    assert _summary(out)["outcome"] == "completed"


def test_stop_acc_ends_training_and_keep_best_restores_the_best_evaluation(tmp_path):
    out = tmp_path / "stop"
    assert main(["run", "palindrome", "--quick", "--out", str(out), "--set", "stop_acc=0.01",
                 "--set", "keep_best=true", "--set", "eval_every=10"]) == 0
    s = _summary(out)
    assert (s["outcome"], s["steps_done"]) == ("stopped early", 10)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(records, key=lambda r: r["test_acc"])
    assert s["weights_from_step"] == best["step"] and s["best_eval_acc"] == best["test_acc"]
    # reaching stop_acc at the last step ends nothing early: the run completed
    out = tmp_path / "last"
    assert main(["run", "palindrome", "--quick", "--out", str(out), "--set", "stop_acc=0.01", "--set", "steps=10",
                 "--set", "eval_every=10"]) == 0
    assert (_summary(out)["outcome"], _summary(out)["steps_done"]) == ("completed", 10)


def test_settings_that_do_not_apply_are_refused(capsys):
    assert main(["run", "palindrome", "--quick", "--set", "model=lstm", "--set", "hh_init=orthogonal"]) == 2
    assert "model=rnn only" in capsys.readouterr().err
    # ... when asked for; palindrome-best's own orthogonal W_hh is the vanilla RNN's, left out for the others
    assert main(["run", "palindrome-best", "--quick", "--set", "model=gru", "--set", "hh_init=orthogonal"]) == 2
    assert "model=rnn only" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru"])
def test_best_settings_for_each_model(model):
    cfg = resolve_config("palindrome-best", [f"model={model}"])
    assert cfg.hh_init == ("orthogonal" if model == "rnn" else "uniform")
    assert (cfg.lr, cfg.curriculum, cfg.keep_best, cfg.stop_acc) == (3e-4, True, True, 1.0)  # the rest of the preset
    assert resolve_config("palindrome-best", [], quick=True, values={"model": model}).hh_init == cfg.hh_init


def test_rnn_gradients_end_to_end_with_both_engines_agreeing(tmp_path):
    out = tmp_path / "grad"
    assert main(["run", "rnn-gradients", "--quick", "--out", str(out), "--set", "models=rnn,lstm"]) == 0
    s = _summary(out)
    assert [(r["model"], r["length"]) for r in s["results"]] == [("rnn", 4), ("rnn", 8), ("lstm", 4), ("lstm", 8)]
    for r in s["results"]:
        assert len(r["norms_init"]) == len(r["norms_trained"]) == r["length"] - 1
        assert r["engines_max_rel_diff"] <= 1e-9
    assert (out / "hidden_grad_norms.png").exists()


def _triple(spec: dict) -> tuple[str, int, int]:
    labels = spec["job"].labels
    return labels["model"], labels["length"], labels["seed"]


GRID = ["--set", "models=rnn,gru", "--set", "lengths=3,4", "--set", "n_seeds=2"]  # 8 runs


def test_sweep_resumes_where_it_was_interrupted_without_rerunning_finished_runs(tmp_path, monkeypatch):
    out, ran, real = tmp_path / "sweep", [], sweep.run_job

    def interrupted_after_three(job):
        if len(ran) == 3:
            raise KeyboardInterrupt
        ran.append(_triple(job))
        return real(job)

    monkeypatch.setattr(sweep, "run_job", interrupted_after_three)
    assert main(["run", "palindrome-sweep", "--quick", "--out", str(out), *GRID]) == 130
    before = (out / "results.jsonl").read_text().splitlines()
    assert len(before) == 3 and not (out / "summary.json").exists()

    first, ran[:] = list(ran), []
    monkeypatch.setattr(sweep, "run_job", lambda job: ran.append(_triple(job))
                        or real(job))
    assert main(["run", "palindrome-sweep", "--resume", str(out)]) == 0
    after = (out / "results.jsonl").read_text().splitlines()
    assert after[:3] == before  # finished lines untouched
    assert set(json.loads(after[0])) == {"job", "model", "length", "seed", "summary", "pid"}  # what a line holds
    assert json.loads((out / "runs" / "rnn-T3-seed0" / "config.json").read_text())["quick"] is True  # as the sweep
    everything = {(m, t, s) for m in ("rnn", "gru") for t in (3, 4) for s in (0, 1)}
    assert set(ran) == everything - set(first) and len(ran) == 5  # only the unfinished ran
    assert {(r["model"], r["length"], r["seed"]) for r in map(json.loads, after)} == everything
    s = _summary(out)
    assert s["runs"] == 8 and s["missing_runs"] == 0 and set(s["longest_T_99"]) == {"rnn", "gru"}
    # each run's time and the part of it spent evaluating reach the summary, and the analysis says what limits
    assert all(0 < j["eval_time_s"] <= j["train_time_s"] + 5e-4 for j in s["jobs"])  # the total to the millisecond
    said = (out / "report.md").read_text()
    assert all(f"What limits the {n} is learning: at T=" in said or f"Nothing tried limited the {n}'s learning" in said
               for n in ("vanilla RNN", "GRU"))
    assert (out / "accuracy_vs_length.png").exists() and (out / "curves_by_length.png").exists()
    files = (out / "report.md").read_text().split("## Files")[1]
    assert "`results.jsonl`" in files and "*.npz" not in files
    # every run a complete run directory with its own report
    assert all((out / "runs" / f"{m}-T{t}-seed{s}" / "report.md").exists() for m, t, s in everything)
    assert main(["run", "palindrome", "--resume", str(out)]) == 2  # a sweep is no run of palindrome
    # a resume that narrows the grid summarises only the runs inside it, and says which finished ones it leaves out
    with pytest.warns(UserWarning, match=r"4 finished runs of this folder \((runs/(rnn|gru)-T3-seed[01], ){3}"
                      r"\.\.\.\) lie outside the grid now set"):
        assert main(["run", "palindrome-sweep", "--resume", str(out), "--set", "lengths=4"]) == 0
    assert _summary(out)["runs"] == 4 and len((out / "results.jsonl").read_text().splitlines()) == 8


# ---- checkpoints of runs in progress -------------------------------------------------------------------------


class _Break(Exception):
    """Stands in for a process stopped mid-run."""


def _tiny(**changes):
    from twinnet.recurrent_task import PalindromeConfig

    # checkpoints every 100 steps (at batch 32 a nominal epoch of 12,800 samples is 400), at once
    base = dict(model="gru", length=6, hidden=8, steps=250, eval_every=50, eval_size=100, final_size=200,
                batch_size=32, curriculum=True, curriculum_start=3, curriculum_threshold=0.05, keep_best=True,
                checkpoint_every_s=0.0)
    return PalindromeConfig(**{**base, **changes})


def _saver(cfg, path):
    from twinnet.checkpoint import Checkpointer
    from twinnet.config import to_dict

    return Checkpointer(path, to_dict(cfg), cfg.resume_may_change, tolerant=True)


@pytest.mark.parametrize("engine", ("numpy", "torch"))
def test_a_run_stopped_mid_way_continues_from_its_checkpoint_to_the_unbroken_result(tmp_path, engine):
    from twinnet.recurrent_task import train_one

    cfg, path = _tiny(engine=engine), tmp_path / "run.pt"
    whole, learner, records, losses = train_one(cfg, progress=False)

    def stop_at_150(rec):
        if rec["step"] == 150:  # after the checkpoint at step 100, past an evaluation and a curriculum step
            raise _Break

    with pytest.raises(_Break):
        train_one(cfg, on_eval=stop_at_150, progress=False, checkpoints=_saver(cfg, path))
    assert path.exists()
    seen = []
    again, learner2, records2, losses2 = train_one(cfg, on_eval=seen.append, progress=False,
                                                   checkpoints=_saver(cfg, path))
    assert len(losses) == whole["steps_done"] and losses2 == losses  # every step's loss, those before the stop too
    assert again["resumed_from_step"] == 100 and whole["resumed_from_step"] is None
    assert [r["step"] for r in seen] == [150, 200, 250]  # only the evaluations after the checkpoint are new
    assert [r["length"] for r in records2] == [r["length"] for r in records]
    assert len({r["length"] for r in records}) > 1  # the curriculum did move, so its length was restored
    for key in ("test_acc", "test_loss", "best_eval_acc", "weights_from_step", "steps_done", "outcome"):
        assert again[key] == whole[key], key
    assert [(r["step"], r["test_loss"], r["train_loss"]) for r in records2] == \
        [(r["step"], r["test_loss"], r["train_loss"]) for r in records]
    w, w2 = learner.state_dict(), learner2.state_dict()
    assert all(np.array_equal(w[k], w2[k]) for k in w)  # bit for bit


def test_a_run_stopped_right_after_stopping_early_resumes_to_the_same_early_stop(tmp_path, monkeypatch):
    from twinnet import checkpoint
    from twinnet import recurrent_task as palindrome

    cfg, path = _tiny(stop_acc=0.01), tmp_path / "run.pt"  # any evaluation after step 0 ends the run
    whole, learner, _, _ = palindrome.train_one(cfg, progress=False)
    assert (whole["outcome"], whole["steps_done"]) == ("stopped early", 50)
    real_save = checkpoint.save

    def save_then_die(file, learner, state, *args, **kwargs):
        real_save(file, learner, state, *args, **kwargs)
        if state.history.stopped_early:
            raise _Break  # the process ends between the early stop's checkpoint and the result

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(_Break):
        palindrome.train_one(cfg, progress=False, checkpoints=_saver(cfg, path))
    monkeypatch.setattr(checkpoint, "save", real_save)
    again, learner2, records2, _ = palindrome.train_one(cfg, progress=False, checkpoints=_saver(cfg, path))
    assert again["resumed_from_step"] == 50 and [r["step"] for r in records2] == [0, 50]  # nothing trained again
    for key in ("test_acc", "test_loss", "best_eval_acc", "weights_from_step", "steps_done", "outcome"):
        assert again[key] == whole[key], key
    w, w2 = learner.state_dict(), learner2.state_dict()
    assert all(np.array_equal(w[k], w2[k]) for k in w)


def test_a_checkpoint_from_other_settings_is_refused_by_name(tmp_path):
    from twinnet.checkpoint import CheckpointError
    from twinnet.recurrent_task import train_one

    path = tmp_path / "run.pt"

    def stop(rec):
        if rec["step"] == 150:
            raise _Break

    with pytest.raises(_Break):
        train_one(_tiny(), on_eval=stop, progress=False, checkpoints=_saver(_tiny(), path))
    with pytest.raises(CheckpointError, match="changed settings \\(lr\\)") as e:
        train_one(_tiny(lr=0.01), progress=False, checkpoints=_saver(_tiny(lr=0.01), path))
    assert "copied from another run" in str(e.value)  # the other cause when no --set changed it
    # a checkpoint saved without a setting this twinnet has (another version's): named as absent, not as changed
    from twinnet.checkpoint import Checkpointer
    from twinnet.config import to_dict

    newer = Checkpointer(path, {**to_dict(_tiny()), "new_setting": 1}, _tiny().resume_may_change, tolerant=True)
    with pytest.raises(CheckpointError, match="holds no value for new_setting") as e:
        train_one(_tiny(), progress=False, checkpoints=newer)
    assert "changed settings" not in str(e.value)
    # ... unless the setting is at its default: how the run trained before the setting existed, so it resumes
    defaults = {**to_dict(type(_tiny())()), "new_setting": 1}
    off_default = Checkpointer(path, {**to_dict(_tiny()), "new_setting": 2}, _tiny().resume_may_change, tolerant=True,
                               defaults=defaults)
    with pytest.raises(CheckpointError, match="holds no value for new_setting"):
        train_one(_tiny(), progress=False, checkpoints=off_default)
    at_default = Checkpointer(path, {**to_dict(_tiny()), "new_setting": 1}, _tiny().resume_may_change, tolerant=True,
                              defaults=defaults)
    assert train_one(_tiny(), progress=False, checkpoints=at_default)[0]["resumed_from_step"] == 100  # its checkpoint
    # one without what another experiment saves beside its state (an image run's data fingerprint): named as such
    image_like = Checkpointer(path, to_dict(_tiny()), _tiny().resume_may_change, extra={"data_fingerprint": "f"})
    with pytest.raises(CheckpointError, match="holds none of data_fingerprint, which this experiment's checkpoints "
                                              "save: it was written by another experiment"):
        train_one(_tiny(), progress=False, checkpoints=image_like)


def test_a_checkpoint_that_cannot_be_saved_costs_a_warning_not_the_run(tmp_path, capsys):
    from twinnet.recurrent_task import train_one

    plain, _, _, _ = train_one(_tiny(), progress=False)
    nowhere = tmp_path / "no such folder" / "run.pt"
    result, _, _, _ = train_one(_tiny(), progress=False, checkpoints=_saver(_tiny(), nowhere))
    assert result["test_acc"] == plain["test_acc"] and result["test_loss"] == plain["test_loss"]
    err = [line for line in capsys.readouterr().err.splitlines() if "cannot save the checkpoint" in line]
    assert len(err) == 1 and str(nowhere) in err[0]  # said once, not at every later attempt


SMALL = ["--quick", "--set", "models=rnn", "--set", "lengths=4", "--set", "n_seeds=2", "--set", "steps=150",
         "--set", "eval_every=50", "--set", "checkpoint_every_s=0"]  # 2 runs, each with a checkpoint at step 100


def test_a_stopped_sweep_continues_its_runs_in_progress_from_their_checkpoints(tmp_path, monkeypatch, capsys):
    from twinnet import checkpoint

    assert main(["run", "palindrome-sweep", "--out", str(tmp_path / "whole"), *SMALL]) == 0
    unbroken = {_key(r): r for r in map(json.loads, (tmp_path / "whole" / "results.jsonl").read_text().splitlines())}
    out, real_save = tmp_path / "broken", checkpoint.save

    def save_then_stop(path, *args, **kwargs):
        real_save(path, *args, **kwargs)
        raise KeyboardInterrupt  # stopped in the first run, before any result: the run must not be thrown away

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    assert main(["run", "palindrome-sweep", "--out", str(out), *SMALL]) == 130
    assert f"--resume {out}" in capsys.readouterr().err
    assert not (out / "results.jsonl").exists() or (out / "results.jsonl").read_text() == ""
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["rnn-T4-seed0"]
    assert (out / "runs" / "rnn-T4-seed0" / "checkpoint.pt").exists()

    monkeypatch.setattr(checkpoint, "save", real_save)
    assert main(["run", "palindrome-sweep", "--resume", str(out)]) == 0
    results = {_key(r): r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert results[("rnn", 4, 0)]["summary"]["resumed_from_step"] == 100
    assert results[("rnn", 4, 1)]["summary"]["resumed_from_step"] is None
    for key, r in unbroken.items():
        assert (results[key]["summary"]["test_acc"], results[key]["summary"]["test_loss"]) == \
            (r["summary"]["test_acc"], r["summary"]["test_loss"]), key
        job = f"runs/{key[0]}-T{key[1]}-seed{key[2]}"
        assert _curve(out / job) == _curve(tmp_path / "whole" / job), key  # the resumed curve, bit for bit


def _curve(run) -> list:
    return [(r["step"], r["train_loss"], r["test_loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text()
                                                                        .splitlines())]


def test_a_second_unusable_checkpoint_is_set_aside_beside_the_first_not_over_it(tmp_path):
    from twinnet.checkpoint import digest_path, set_aside

    ckpt = tmp_path / "checkpoint.pt"
    kept = []
    for content in (b"first", b"second", b"third"):
        ckpt.write_bytes(content)
        digest_path(ckpt).write_text(content.decode() + "-digest\n")
        kept.append(set_aside(ckpt))
    assert [p.name for p in kept] == ["checkpoint.unusable", "checkpoint.unusable-1", "checkpoint.unusable-2"]
    assert [p.read_bytes() for p in kept] == [b"first", b"second", b"third"]  # none lost
    assert [digest_path(p).read_text() for p in kept] == ["first-digest\n", "second-digest\n", "third-digest\n"]
    assert not ckpt.exists() and not digest_path(ckpt).exists()


@pytest.mark.parametrize("content", ["garbage", "no loop state"])
def test_an_unusable_checkpoint_in_a_sweep_is_set_aside_and_its_run_starts_again(tmp_path, capsys, content):
    import torch

    out = tmp_path / "s"
    args = ["--quick", "--set", "models=rnn", "--set", "lengths=4", "--set", "n_seeds=1"]
    assert main(["run", "palindrome-sweep", "--out", str(out), *args, "--set", "steps=1"]) == 0
    (out / "results.jsonl").write_text("")  # as if the run had not finished, but left a broken checkpoint
    (out / "runs" / "rnn-T4-seed0" / "summary.json").unlink()
    broken = out / "runs" / "rnn-T4-seed0" / "checkpoint.pt"
    if content == "garbage":
        broken.write_bytes(b"half a checkpoint")
    else:  # a readable file of another layout
        torch.save({"config": {}, "learner": {}}, broken)
    before = broken.read_bytes()
    with pytest.warns(UserWarning, match="starts again from step 0; the 2 metric record"):  # they are kept aside
        assert main(["run", "palindrome-sweep", "--resume", str(out)]) == 0
    assert (out / "runs" / "rnn-T4-seed0" / "metrics.before-restart.jsonl").read_text().count("\n") == 2
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "starts again" in err
    assert (out / "runs" / "rnn-T4-seed0" / "checkpoint.unusable").read_bytes() == before
    (result,) = map(json.loads, (out / "results.jsonl").read_text().splitlines())
    assert result["summary"]["resumed_from_step"] is None and result["summary"]["steps_done"] == 1


def _key(r: dict) -> tuple[str, int, int]:
    return r["model"], r["length"], r["seed"]


@pytest.mark.slow
def test_sweep_spreads_runs_over_worker_processes(tmp_path):
    out = tmp_path / "pool"
    assert main(["run", "palindrome-sweep", "--quick", "--out", str(out), "--set", "workers=2",
                 "--set", "models=rnn", "--set", "lengths=3", "--set", "steps=10"]) == 0
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 2 and all(r["pid"] != os.getpid() for r in results)


def test_a_sweep_asking_for_far_more_workers_than_cores_is_told_and_given_fewer(tmp_path, monkeypatch):
    import warnings

    from twinnet import hardware
    from twinnet.experiments import palindrome_sweep

    monkeypatch.setattr(hardware, "cores", lambda: 1)
    asked = []

    def sweep(*args, workers, **kwargs):  # what the sweep would start, and no sweep
        asked.append(workers)
        raise KeyboardInterrupt

    monkeypatch.setattr(palindrome_sweep, "run_sweep", sweep)
    argv = ["run", "palindrome-sweep", "--quick", "--set", "models=rnn", "--set", "lengths=3"]
    with pytest.warns(UserWarning, match=r"workers=1000 is more than 8x this machine's 1 cores.*; using 8$"):
        main([*argv, "--out", str(tmp_path / "many"), "--set", "workers=1000"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # oversubscribed by choice: as asked, without a word
        main([*argv, "--out", str(tmp_path / "few"), "--set", "workers=8"])
    assert asked == [8, 8]


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc), zombies left out."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, ...
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry))
    return kids


def _training_workers(pid: int) -> list[int]:
    """The sweep's pool workers under ``pid`` once they have torch loaded (past their set-up)."""
    found = []
    for kid in _children(pid):
        try:
            if "spawn_main" in open(f"/proc/{kid}/cmdline").read() and "libtorch" in open(f"/proc/{kid}/maps").read():
                found.append(kid)
        except OSError:
            pass
    return found


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z":
                alive.append(pid)
        except OSError:
            pass
    return alive


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_killing_a_sweep_leaves_no_worker_training_on(tmp_path, how):
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "twinnet", "run", "palindrome-sweep", "--quick", "--out", str(tmp_path / "s"),
           "--set", "workers=2", "--set", "models=rnn", "--set", "lengths=3", "--set", "steps=10000000"]
    proc, workers = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            workers = _training_workers(proc.pid)
        assert len(workers) == 2, "the sweep never started its two workers"
        proc.send_signal(getattr(signal, how))
        code = proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(workers) == [], f"workers still running after {how} of the sweep"
        if how == "SIGTERM":  # handled as an interruption: the resume hint, and the terminated exit code (128 + 15)
            assert code == 143 and "interrupted" in proc.stderr.read().lower()
    finally:
        for pid in set(_alive(workers + _children(proc.pid) + [proc.pid])):
            os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_summary_takes_the_longest_length_whose_mean_passes():
    cfg = palindrome_sweep.SweepConfig(models=("rnn",), lengths=(5, 10, 15, 20), n_seeds=2)
    accs = {5: (1.0, 0.995), 10: (1.0, 0.9), 15: (0.999, 0.99), 20: (0.5, 0.1)}
    results = [{"model": "rnn", "length": t, "seed": k, "test_acc": a, "outcome": "completed"}
               for t, pair in accs.items() for k, a in enumerate(pair)]
    s = palindrome_sweep.summarise(cfg, results)
    assert s["longest_T_99"]["rnn"] == {"longest_T": 15, "longest_T_unbroken": 5}
    assert s["missing_runs"] == 0 and s["accuracy"]["rnn"][1]["mean"] == pytest.approx(0.95)


@pytest.mark.parametrize("engine", ("numpy", "torch"))
def test_saved_weights_go_back_into_either_engines_model(engine):
    from twinnet.learner import make_learner
    from twinnet.recurrent_task import PalindromeConfig, build_models

    cfg = PalindromeConfig(hidden=8, engine=engine, model="lstm")
    learner = make_learner(build_models(cfg)[engine], cfg)
    saved = learner.state_dict()
    x, y = samples(5, 16, np.random.default_rng(0))
    learner.train_step(x, y)
    assert not np.array_equal(learner.state_dict()["weight_hh"], saved["weight_hh"])
    learner.load_weights(saved)
    assert all(np.array_equal(v, saved[k]) for k, v in learner.state_dict().items())


def test_the_sweep_says_how_long_is_left_from_the_cost_of_what_finished(tmp_path, capsys):
    assert sweep.time_left(100.0, 10.0, 30.0) == "about 5 min left"  # 3x the cost done still to go: 300 s
    assert sweep.time_left(3600.0, 1.0, 2.0) == "about 2.0 h left"
    assert sweep.time_left(50.0, 4.0, 0.0) == "done"
    assert sweep.time_left(50.0, 0.0, 4.0) == "time left not known yet"
    assert main(["run", "palindrome-sweep", "--quick", "--out", str(tmp_path / "s"), "--set", "models=rnn",
                 "--set", "lengths=3,6", "--set", "n_seeds=1"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and "left]" in lines[0] and lines[1].startswith("[2/2") and ", done]" in lines[1]


def test_an_interrupted_palindrome_run_resumes_from_its_checkpoint_to_the_unbroken_figures(tmp_path, monkeypatch,
                                                                                        capsys):
    from twinnet import checkpoint

    args = ["--quick", "--set", "steps=250", "--set", "eval_every=50", "--set", "checkpoint_every_s=0",
            "--set", "model=gru", "--set", "length=6"]
    assert main(["run", "palindrome", "--out", str(tmp_path / "whole"), *args]) == 0
    real_save, saves = checkpoint.save, []

    def save_then_stop(path, learner, state, *a, **k):
        real_save(path, learner, state, *a, **k)
        saves.append(state.step)
        if state.step == 200:
            raise KeyboardInterrupt  # stopped right after its second checkpoint

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    out = tmp_path / "broken"
    assert main(["run", "palindrome", "--out", str(out), *args]) == 130
    assert f"twinnet run palindrome --resume {out}" in capsys.readouterr().err and saves == [100, 200]
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert main(["run", "palindrome", "--resume", str(out)]) == 0
    whole, again = _summary(tmp_path / "whole"), _summary(out)
    assert again["resumed_from_step"] == 200 and whole["resumed_from_step"] is None
    for key in ("test_acc", "test_loss", "best_eval_acc", "steps_done", "outcome"):
        assert again[key] == whole[key], key
    curve = lambda run: [(r["step"], r["train_loss"], r["test_loss"]) for r in  # noqa: E731
                         map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert curve(out) == curve(tmp_path / "whole")  # the metrics file holds each evaluation once, bit for bit


def test_a_resume_its_checkpoint_refuses_leaves_every_file_as_it_was(tmp_path, monkeypatch, capsys):
    """config.json edited by hand (a larger model) after the run stopped: the checkpoint's check refuses the
    resume, and structure.json still describes the model trained, as every other file is unchanged."""
    from twinnet import checkpoint

    real_save = checkpoint.save

    def save_then_stop(path, learner, state, *a, **k):
        real_save(path, learner, state, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    out = tmp_path / "run"
    assert main(["run", "palindrome", "--quick", "--set", "steps=200", "--set", "checkpoint_every_s=0",
                 "--threads", "1", "--out", str(out)]) == 130
    monkeypatch.setattr(checkpoint, "save", real_save)
    config = json.loads((out / "config.json").read_text())
    config["config"]["hidden"] += 8
    (out / "config.json").write_text(json.dumps(config))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "structure.json" in before
    capsys.readouterr()
    assert main(["run", "palindrome", "--resume", str(out)]) == 2
    assert "changed settings (hidden)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_resume_whose_checkpoint_is_gone_starts_over_and_sets_the_old_records_aside(tmp_path, capsys):
    def marks(text):  # what the records measured (their timings vary)
        return [(r["step"], r["test_acc"]) for r in map(json.loads, text.splitlines())]

    out = tmp_path / "run"
    assert main(["run", "palindrome", "--quick", "--out", str(out), "--threads", "1"]) == 0
    first = (out / "metrics.jsonl").read_text()
    assert first.count("\n") >= 2
    (out / "checkpoint.pt").unlink()
    (out / "summary.json").unlink()  # as if stopped: a finished run would not be trained again
    for attempt in (1, 2):
        kept = "metrics.before-restart.jsonl" if attempt == 1 else "metrics.before-restart-1.jsonl"
        with pytest.warns(UserWarning, match=f"no checkpoint to continue from.* kept in {kept}"):
            assert main(["run", "palindrome", "--resume", str(out)]) == 0
        assert marks((out / kept).read_text()) == marks(first)  # nothing recorded before is lost, the second time either
        assert marks((out / "metrics.jsonl").read_text()) == marks(first)  # the same seeded run, from step 0 again
        (out / "checkpoint.pt").unlink()
        (out / "summary.json").unlink()


def test_a_sweep_with_runs_missing_names_its_own_experiment_to_resume(tmp_path):
    from twinnet.report.blocks import Text

    out = tmp_path / "best"
    args = ["--quick", "--set", "models=rnn", "--set", "lengths=4", "--set", "n_seeds=1", "--set", "steps=1"]
    assert main(["run", "palindrome-sweep-best", "--out", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "missing_runs": 1}))  # as if one run had failed
    texts = [b.markdown for section in palindrome_sweep.report(out) for b in section.blocks if isinstance(b, Text)]
    assert any(f"resume with `twinnet run palindrome-sweep-best --resume {out}`" in t for t in texts), texts


def test_a_length_whose_time_steps_cannot_fit_in_memory_is_refused_before_anything_is_built(monkeypatch):
    from twinnet import TwinnetError, hardware
    from twinnet.recurrent_task import PalindromeConfig

    # float32, the evaluation set's and the final evaluation's one-hot inputs ((2,000 + 10,000) x 10) and a batch's
    # hidden states (128 x 128) per step
    per_step = 4 * ((2000 + 10_000) * 10 + 128 * 128)
    monkeypatch.setattr(hardware, "memory_bytes", lambda: 1000 * per_step)
    refused = r"^length=1002 \(with batch_size=128, hidden=128, eval_size=2000 and final_size=10000\) needs at least"
    assert PalindromeConfig(length=1001).length == 1001  # 1,000 steps: exactly the memory, not refused
    with pytest.raises(TwinnetError, match=refused):
        PalindromeConfig(length=1002)
    with pytest.raises(TwinnetError, match=refused):  # a grid: its longest length
        palindrome_sweep.SweepConfig(lengths=(5, 1002))
    monkeypatch.setattr(hardware, "memory_bytes", lambda: 2000 * per_step)  # float64 doubles it
    with pytest.raises(TwinnetError, match=refused):
        PalindromeConfig(length=1002, dtype="float64")
