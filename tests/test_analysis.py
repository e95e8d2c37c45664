"""Analysis sentences come from the numbers: each says what the records or counts show, with them."""

import numpy as np

from twinnet.registry import Published
from twinnet.report.analysis import against_published, agreement, classes, collapse, limit, overfitting, parting


def _records(train, test):
    return [{"step": 10 * (k + 1), "epoch": k + 1, "train_loss": a, "test_loss": b} for k, (a, b) in
            enumerate(zip(train, test))]


def test_the_epoch_where_test_loss_turns_up_while_train_loss_falls_is_named():
    said = overfitting(_records([1.0, 0.6, 0.4, 0.2], [1.1, 0.8, 0.9, 1.2]))
    assert "lowest at epoch 2 (0.8000)" in said and "rose by 0.4000 to 1.2000 by epoch 4" in said
    assert "kept falling (0.6000 to 0.2000)" in said and "overfits after epoch 2" in said


def test_a_test_loss_still_falling_says_no_overfitting_and_a_flat_train_loss_says_it_is_not_overfitting():
    assert "no sign of overfitting" in overfitting(_records([1.0, 0.5, 0.3], [1.2, 0.9, 0.7]))
    assert "still falling at the last evaluation (epoch 3: 0.7000, from 1.2000 at epoch 1)" in overfitting(
        _records([1.0, 0.5, 0.3], [1.2, 0.9, 0.7]))
    said = overfitting(_records([0.5, 0.4, 0.45, 0.5], [0.9, 0.8, 0.85, 0.9]))
    assert "did not fall further (0.4000 to 0.5000): not the pattern of overfitting" in said
    assert "too few evaluations" in overfitting(_records([1.0], [1.0]))


def test_the_weakest_classes_and_most_confused_pairs_are_read_from_the_matrix():
    cm = np.array([[90, 8, 2], [30, 60, 10], [0, 5, 95]])
    said = classes(cm, ["cat", "dog", "car"])
    assert said.startswith("The weakest classes are dog (60.0%), cat (90.0%); the best is car (95.0%)")
    assert "overall test accuracy of 81.67%" in said
    assert ("dog taken for cat (30 of the 100 images of dog), dog taken for car (10 of the 100 images of dog), "
            "cat taken for dog") in said
    assert "most frequent confusions" not in classes(np.diag([5, 5, 5]), ["a", "b", "c"])


def test_a_class_the_test_set_lacks_is_named_as_absent_not_ranked_weakest():
    cm = np.array([[9, 1, 0], [0, 0, 0], [2, 0, 8]])  # no "dog" images at all
    said = classes(cm, ["cat", "dog", "car"])
    assert said.startswith("The weakest classes are car (80.0%), cat (90.0%) (every class present is among them),")
    assert said.endswith("The test set has no images of dog.")
    assert classes(np.zeros((2, 2), int), ["a", "b"]) == "The test set is empty: no class to rank."


def test_a_run_is_set_beside_each_published_figure_with_the_difference_in_points():
    said = against_published(0.8123, [Published(0.84, "reduced VGG, Adam"), Published(0.80, "another")])
    assert "84.00% (reduced VGG, Adam): this run's 81.23% is 2.77 points below it" in said
    assert "80.00% (another): this run's 81.23% is 1.23 points above it" in said
    assert "JPEG" not in said and "--quick" not in said
    lossy = against_published(0.8123, [Published(0.84, "x")], lossy=True, quick=True)
    assert "JPEG copy" in lossy and "not a like-for-like" in lossy and "--quick run" in lossy
    assert against_published(0.5, []) == ""


def test_a_published_range_says_whether_the_run_lies_within_above_or_below_it():
    r = [Published(0.96, "students", high=0.985)]
    assert "this run's 97.00% is within that range" in against_published(0.97, r)
    assert "this run's 99.00% is 0.50 points above it" in against_published(0.99, r)
    assert "this run's 95.00% is 1.00 points below it" in against_published(0.95, r)


def test_engine_agreement_is_measured_against_the_dtypes_epsilon():
    close = agreement(4.4e-14, 1200, "float64")
    assert "at most 4.4e-14 (relative) over 1,200 steps, 198 times float64's machine epsilon" in close
    assert "rounding alone" in close
    grown = agreement(3e-3, 500, "float32")
    assert "25,166 times float32's" in grown and "agree in shape" in grown
    assert "parted" in agreement(0.9, 10, "float32")
    assert "identical, bit for bit, at every one of the 7 steps" in agreement(0.0, 7, "float64")


def _rows(means, spread=0.0, n=3, start=5, step=5):
    return [{"length": start + step * k, "mean": m, "min": max(m - spread, 0), "max": min(m + spread, 1), "n": n}
            for k, m in enumerate(means)]


def test_collapse_names_the_first_failing_length_chance_and_the_widest_seed_spread():
    rows = _rows([1.0, 0.995, 0.6, 0.11])
    rows[2].update(min=0.2, max=0.98)
    said = collapse("vanilla RNN", rows)
    assert said.startswith("The vanilla RNN held a mean of at least 99.00% up to T=10 and first fell below it at T=15 "
                           "(mean 60.00% over 3 seeds, seeds from 20.00% to 98.00%); it is near chance (10.00%) by T=20 (mean 11.00%).")
    assert "spread most at T=15: from 20.00% to 98.00%" in said
    assert "beyond this sweep" in collapse("GRU", _rows([1.0, 1.0]))
    assert "up to T=10, 100.00% there" in collapse("GRU", _rows([1.0, 1.0]))
    assert ("The LSTM reached a mean of 99.00% at no length tried: at T=5, the shortest, its mean was 50.00% over 3 "
            "seeds (seeds from 50.00% to 50.00%)") in collapse("LSTM", _rows([0.5, 0.4]))
    assert "passed again (T=15)" in collapse("LSTM", _rows([1.0, 0.5, 1.0]))
    assert "no finished runs" in collapse("LSTM", [])


def _run(length, acc, outcome, train_s, eval_s=None):
    return {"length": length, "test_acc": acc, "outcome": outcome, "steps_done": 100, "train_time_s": train_s,
            **({} if eval_s is None else {"eval_time_s": eval_s})}


def test_limit_names_time_when_every_length_passed_and_learning_where_one_failed():
    runs = [_run(5, 1.0, "stopped early", 10.0, 1.0), _run(10, 1.0, "stopped early", 300.0, 270.0),
            _run(10, 0.999, "completed", 900.0, 630.0)]
    said = limit("GRU", _rows([1.0, 0.9995]), runs)
    # the longest length's runs: 300 and 900 s, (270 + 630) / 1200 = 75% evaluating, one ran its whole budget
    assert said.startswith("Nothing tried limited the GRU's learning: at its longest length, T=10, a run took 300 to "
                           "900 s of training, 75% of it evaluating the fixed eval set at the full length; of its 2 "
                           "runs: 1 completed, 1 stopped early.")
    # (10 s at T=5, a mean of 600 s at T=10): the time measured to grow with T
    assert said.endswith(" The mean time per run grew from 10 s at T=5 to 600 s at T=10, so time bounds a longer "
                         "sweep here.")
    shorter = [_run(5, 1.0, "completed", 50.0), _run(10, 1.0, "stopped early", 20.0)]  # stopped early at T=10
    assert limit("GRU", _rows([1.0, 1.0]), shorter).endswith("The mean time per run did not grow from 50 s at T=5 "
                                                                "to 20 s at T=10.")
    one = limit("GRU", _rows([1.0]), [_run(5, 1.0, "stopped early", 10.0, 1.0)])
    assert "10 s of training, 10% of it evaluating the fixed eval set at the full length; of its one run: 1 stopped " \
           "early." in one and "mean time" not in one  # one length: no trend to tell
    assert "; of its 2 runs: 2 stopped early" in limit("GRU", _rows([1.0]), [_run(5, 1.0, "stopped early", 10.0)] * 2)
    assert "a run took 0.4 s of training" in limit("GRU", _rows([1.0]), [_run(5, 1.0, "stopped early", 0.42)])
    failed = [*runs, _run(15, 0.5, "completed", 1200.0), _run(15, 0.995, "stopped early", 400.0)]
    said = limit("LSTM", _rows([1.0, 1.0, 0.7]), failed)
    # T=15 failed: the verdict is learning, over that length's runs only; no evaluation share without their times
    assert said == ("What limits the LSTM is learning: at T=15, 1 of its 2 runs ended below 99.00%, 1 of them after "
                    "their whole step budget; a run there took 400 to 1,200 s of training.")
    assert limit("LSTM", _rows([1.0]), [{"length": 5, "test_acc": 1.0, "outcome": "completed"}]) == ""  # no times


def test_an_evaluation_part_way_through_an_epoch_is_named_by_its_step_with_the_epoch_beside_it():
    records = [{"step": 1500 * (k + 1), "epoch": 1500 * (k + 1) / 1563, "train_loss": a, "test_loss": b}
               for k, (a, b) in enumerate(zip([1.0, 0.6, 0.4, 0.3], [1.1, 0.7, 0.9, 0.95]))]
    said = overfitting(records)
    assert "lowest at step 3,000 in epoch 2 (0.7000)" in said and "by step 6,000 in epoch 4," in said
    assert "overfits after step 3,000 in epoch 2." in said and "1.919" not in said


def test_the_step_where_two_engines_part_is_named_with_the_float64_check_only_in_single_precision():
    rel = [1e-7, 3e-6, 8e-4, 2e-3, 1e-4, 0.3]
    said = parting(rel, "float32")
    assert said.startswith("The difference first passed 1e-03 at step 4, after 3 steps within it.")
    assert "dtype=float64" in said
    assert "dtype=float64" not in parting(rel, "float64") and "at step 4," in parting(rel, "float64")
    assert parting([1e-15, 2e-15], "float64") == ""  # never parted: nothing to say
    assert "at step 1." in parting([0.5], "float32") and "at step 2, after 1 step within" in parting([0, float("nan")],
                                                                                                       "float64")


def test_classes_tied_with_the_weakest_are_all_named_and_digit_names_read_well():
    cm = np.array([[0, 5, 0, 0], [0, 5, 0, 0], [5, 0, 0, 0], [0, 0, 0, 5]])
    said = classes(cm, ["0", "1", "2", "3"])
    assert said.startswith("The weakest classes are 0 (0.0%), 2 (0.0%); the best are 1 (100.0%), 3 (100.0%),")
    assert "0 taken for 1 (5 of the 5 images of 0)" in said and "The most frequent confusions are" in said
    single = classes(np.array([[5, 1, 0], [0, 6, 0], [0, 0, 6]]), ["a", "b", "c"], weakest=1)
    assert "the best are b (100.0%), c (100.0%)" in single  # tied at the top: both named
    assert "The most frequent confusion is a taken for b (1 of the 6 images of a)." in single
    one = classes(np.array([[4, 1], [0, 5]]), ["a", "b"], weakest=1)
    assert one.startswith("The weakest class is a (80.0%);")


def test_a_test_loss_rise_within_noise_is_not_called_overfitting():
    said = overfitting(_records([2.30, 2.30, 2.29], [2.3029, 2.3020, 2.3054]))
    assert "ended within 1% of it (2.3054 at epoch 3)" in said and "overfits" not in said
    assert "overfits after epoch 2" in overfitting(_records([2.30, 2.0, 1.5, 1.2], [2.3, 2.0, 2.1, 2.2]))
    one_rise = overfitting(_records([2.30, 2.0, 1.5], [2.3, 2.0, 2.1]))  # one evaluation above the lowest
    assert "too little to tell overfitting from noise" in one_rise and "overfits" not in one_rise
    dipped = overfitting(_records([2.3, 2.0, 1.5, 1.2, 1.0], [2.3, 2.0, 2.2, 2.005, 2.2]))  # back near it once
    assert "too little to tell" in dipped


def test_the_ablation_headline_calls_a_tie_a_tie():
    from twinnet.experiments.ablation import headline

    rows = [{"variant": "course", "test_acc": 0.1094}, {"variant": "augment", "test_acc": 0.1094}]
    assert headline({"variants": rows, "best": "course"}).endswith("(tied best: course, augment)")
    rows[1]["test_acc"] = 0.8223
    assert headline({"variants": rows, "best": "augment"}) == "course 10.94%; augment 82.23% (best: augment)"


def test_the_sweep_places_its_first_failing_length_against_the_published_range_in_words():
    from twinnet.experiments.palindrome_sweep import PUBLISHED_COLLAPSE, _against_published

    low, high = PUBLISHED_COLLAPSE
    rows = [{"length": 3, "mean": 1.0}, {"length": low - 1, "mean": 0.5}, {"length": high + 5, "mean": 0.1}]
    said = _against_published({"accuracy": {"rnn": rows}})
    assert said.endswith(f"Here its mean first fell below 99% at T={low - 1}, shorter than that range "
                         f"(T=3 to {high + 5} tried).")


def test_the_gradient_table_is_read_into_sentences_with_its_numbers():
    from twinnet.experiments.rnn_gradients import analysis

    def row(model, length, init, trained, acc):
        return {"model": model, "length": length, "norms_init": [init, 1.0], "norms_trained": [trained, 1.0],
                "test_acc": acc}

    said = analysis([row("rnn", 4, 0.5, 0.4, 1.0), row("lstm", 4, 0.2, 0.3, 1.0),
                     row("rnn", 8, 0.05, 0.01, 0.3), row("lstm", 8, 0.004, 0.2, 0.9)])
    assert said.startswith("At T=8, after training, the gradient reaching the first step is 2.0e-01 for the LSTM "
                           "(90.0% test accuracy), and 1.0e-02 for the vanilla RNN (30.0% test accuracy).")
    assert "from T=4 to T=8, the ratio goes the vanilla RNN's from 5.0e-01 to 5.0e-02; the LSTM's from 2.0e-01 to 4.0e-03." in said
    assert "nothing to compare" in analysis([row("rnn", 4, 0.5, float("nan"), 0.1)])


def test_the_learning_rate_is_said_constant_or_given_its_range_from_the_records():
    from twinnet.report.analysis import learning_rate

    assert learning_rate([{"lr": 0.1}, {"lr": 0.1}]) == "The learning rate was 0.1 at every evaluation recorded."
    assert learning_rate([{"lr": 0.1}]) == "The learning rate was 0.1 at the one evaluation recorded."
    assert learning_rate([{"lr": 0.12341}, {"lr": 0.12344}]) == (  # three digits would print them alike
        "The learning rate moved between 0.12341 and 0.12344 (from 0.12341 at the first evaluation to 0.12344 at the "
        "last).")
    assert learning_rate([{"lr": 1e-4}, {"lr": 2e-3}, {"lr": 8e-9}]) == (
        "The learning rate moved between 8e-09 and 0.002 (from 0.0001 at the first evaluation to 8e-09 at the last).")
    assert learning_rate([{"step": 0}]) == ""


def test_the_ladder_says_what_each_rung_bought_against_the_one_above_it():
    from twinnet.report.analysis import ladder

    rungs = [{"variant": "course", "test_acc": 0.70, "ladder": True},
             {"variant": "augment", "test_acc": 0.75, "ladder": True},
             {"variant": "adamw", "test_acc": 0.74, "ladder": True, "step": "schedule + adamw"},
             {"variant": "wider", "test_acc": 0.78, "ladder": False}]
    said = ladder(rungs, base="adamw")
    assert "augment +5.00 (70.00% to 75.00%), schedule + adamw -1.00 (75.00% to 74.00%)" in said
    assert "The largest step is augment's (+5.00 points)" in said
    assert "from course (70.00%) to adamw (74.00%) the ladder moves +4.00 points in all" in said
    assert "One change each on adamw (74.00%): wider +4.00 points" in said
    assert "The most accurate is wider (78.00%)" in said and "one seed" in said
    worse = ladder([{"variant": "a", "test_acc": 0.6}, {"variant": "b", "test_acc": 0.5}])
    assert "No rung improved on the one above it" in worse and "-10.00" in worse
    flat = ladder([{"variant": "a", "test_acc": 0.6}, {"variant": "b", "test_acc": 0.60001}])
    assert "No rung improved" in flat  # +0.00 is no step
    tied = ladder([{"variant": "a", "test_acc": 0.5}, {"variant": "b", "test_acc": 0.55}, {"variant": "c", "test_acc": 0.6}])
    assert "The largest step is b and c's (+5.00 points)" in tied
    # variants of a rung that did not run: nothing to measure them against, and no false difference
    alone = ladder([{"variant": "course", "test_acc": 0.7, "ladder": True},
                    {"variant": "wider", "test_acc": 0.8, "ladder": False}], base="adamw")
    assert "One change each on adamw, which this ablation did not run" in alone and "wider 80.00%" in alone
    assert "+10.00" not in alone
    assert ladder([{"variant": "course", "test_acc": 0.7}]) == ""  # one rung: nothing to compare


def test_the_ladder_over_seeds_tells_which_steps_the_seeds_cannot_tell_apart():
    from twinnet.report.analysis import ladder_over_seeds

    rungs = [{"variant": "course", "mean": 0.78, "std": 0.002}, {"variant": "augment", "mean": 0.82, "std": 0.003},
             {"variant": "smoothing", "mean": 0.824, "std": 0.002}, {"variant": "adamw", "mean": 0.8215, "std": 0.001}]
    said = ladder_over_seeds(rungs, [0, 1])
    assert said.startswith("Over seeds 0, 1, each rung's mean test accuracy against the one above it, in points: "
                           "augment +4.00 (78.00% to 82.00%), smoothing +0.40 (82.00% to 82.40%), adamw -0.25")
    # +0.40 against 0.3 + 0.2 points of spread, and -0.25 against 0.2 + 0.1: neither told apart from the seed
    assert "smoothing and adamw's steps are no larger than the two rungs' seed spreads" in said
    clear = ladder_over_seeds(rungs[:2], [3, 4])
    assert "Every step is larger than the two rungs' seed spreads" in clear and "Over seeds 3, 4" in clear
    assert ladder_over_seeds(rungs[:1], [0, 1]) == ""


def test_overfitting_across_runs_names_those_whose_test_loss_turned_up_and_those_whose_did_not():
    from twinnet.report.analysis import overfitting_across

    said = overfitting_across([("course", _records([1.0, 0.6, 0.4, 0.3], [1.0, 0.7, 0.9, 0.95])),
                               ("augment", _records([1.0, 0.8, 0.7, 0.65], [1.0, 0.8, 0.75, 0.74])),
                               ("flat", _records([1.0, 0.8, 0.9, 0.95], [1.0, 0.7, 0.9, 0.95])),  # train loss rose
                               ("once", _records([1.0, 0.6, 0.4], [1.0, 0.7, 0.9]))])  # one evaluation after
    assert "in course (lowest 0.7000 at epoch 2, 0.9500 at epoch 4); not in augment, flat, once." in said
    none = overfitting_across([("augment", _records([1.0, 0.8, 0.7], [1.0, 0.8, 0.75]))])
    assert "no rung overfits" in none
    assert overfitting_across([("one", _records([1.0], [1.0]))]) == ""  # too few evaluations to say


def test_the_ablation_names_the_machine_each_rung_trained_on(tmp_path):
    import json

    from twinnet.experiments.ablation import _machines

    def rung(name, env=None, device="cpu"):
        (tmp_path / name).mkdir()
        if env is not None:
            (tmp_path / name / "env.json").write_text(env if isinstance(env, str) else json.dumps(env))
        (tmp_path / name / "summary.json").write_text(json.dumps({"device": device}))
        return {"variant": name}

    epyc = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "cuda": None}
    rows = [rung("course", epyc), rung("augment", {**epyc, "resumed": [{"cpu": "Intel Xeon", "cpu_capability": "AVX2"}]}),
            rung("schedule", {**epyc, "cuda": "NVIDIA H200"}, device="cuda"), rung("smoothing"),
            rung("adamw", "[]")]
    said = _machines(tmp_path, rows)
    assert "course on AMD EPYC with AVX512;" in said
    assert "augment on AMD EPYC with AVX512 then Intel Xeon with AVX2;" in said
    assert "schedule on NVIDIA H200 (CUDA);" in said
    assert "smoothing on a machine its folder does not record (smoothing)" in said
    assert "adamw on a machine its folder does not record (adamw)" in said  # env.json not the object a run writes
    assert "(all on AMD EPYC with AVX512)" in _machines(tmp_path, rows[:1])


def test_collapse_gives_the_seed_count_of_the_length_it_quotes():
    """A partial sweep, or one resumed with more seeds: each length's own count, not the largest."""
    rows = _rows([1.0, 0.6], n=5)
    rows[1]["n"] = 2  # the failing length has only two seeds finished
    assert "first fell below it at T=10 (mean 60.00% over 2 seeds" in collapse("RNN", rows)
    mixed = _rows([1.0, 1.0], n=5)
    mixed[1]["n"] = 3
    assert "mean of 3 to 5 seeds at least 99.00%" in collapse("RNN", mixed)

