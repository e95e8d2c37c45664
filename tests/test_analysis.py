"""Analysis sentences come from the numbers: each says what the records or counts show, with them."""

import numpy as np

from twinnet.report.analysis import classes, overfitting


def _records(train, test):
    return [{"step": 10 * (k + 1), "epoch": k + 1, "train_loss": a, "test_loss": b} for k, (a, b) in
            enumerate(zip(train, test))]


def test_the_epoch_where_test_loss_turns_up_while_train_loss_falls_is_named():
    said = overfitting(_records([1.0, 0.6, 0.4, 0.2], [1.1, 0.8, 0.9, 1.2]))
    assert "lowest at epoch 2 (0.8000)" in said and "rose by 0.4000 to 1.2000 by epoch 4" in said
    assert "kept falling (0.6000 to 0.2000)" in said and "overfits after epoch 2" in said


def test_a_test_loss_still_falling_says_no_overfitting_and_a_flat_train_loss_says_noise():
    assert "no sign of overfitting" in overfitting(_records([1.0, 0.5, 0.3], [1.2, 0.9, 0.7]))
    assert "still falling at the last evaluation (epoch 3: 0.7000, from 1.2000 at epoch 1)" in overfitting(
        _records([1.0, 0.5, 0.3], [1.2, 0.9, 0.7]))
    said = overfitting(_records([0.5, 0.4, 0.45], [0.9, 0.8, 0.85]))
    assert "noise rather than overfitting" in said
    assert "too few evaluations" in overfitting(_records([1.0], [1.0]))


def test_the_weakest_classes_and_most_confused_pairs_are_read_from_the_matrix():
    cm = np.array([[90, 8, 2], [30, 60, 10], [0, 5, 95]])
    said = classes(cm, ["cat", "dog", "car"])
    assert said.startswith("The weakest classes are dog (60.0%), cat (90.0%); the best is car (95.0%)")
    assert "overall test accuracy of 81.67%" in said
    assert "dog taken for cat (30 of 100 dog images), dog taken for car (10 of 100 dog images), cat taken for dog" in said
    assert "most frequent confusions" not in classes(np.diag([5, 5, 5]), ["a", "b", "c"])
