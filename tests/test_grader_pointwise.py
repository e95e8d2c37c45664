"""`twinnet check` of the pointwise losses (MSE, L1, binary cross-entropy): the courses' styles graded right,
their common mistakes named, and the spec settings that describe a course checked."""

import re
from pathlib import Path

import pytest

from twinnet import TwinnetError
from twinnet.grader import grade, resolve_convention

# TUM I2DL since 2021: each loss a class, forward(y_out, y_truth, individual_losses=False) the mean over (N,)
# vectors, backward(y_out, y_truth) its gradient
I2DL = """import numpy as np
class Loss:
    def __init__(self):
        self.grad_history = []
class L1(Loss):
    def forward(self, y_out, y_truth, individual_losses=False):
        result = np.abs(y_out - y_truth)
        return result if individual_losses else np.mean(result)
    def backward(self, y_out, y_truth):
        return np.sign(y_out - y_truth) / len(y_out)
class MSE(Loss):
    def forward(self, y_out, y_truth, individual_losses=False):
        result = (y_out - y_truth) ** 2
        return result if individual_losses else np.mean(result)
    def backward(self, y_out, y_truth):
        return 2 * (y_out - y_truth) / len(y_out)
class BCE(Loss):
    def forward(self, y_out, y_truth, individual_losses=False):
        result = -(y_truth * np.log(y_out) + (1 - y_truth) * np.log(1 - y_out))
        return result if individual_losses else np.mean(result)
    def backward(self, y_out, y_truth):
        return -(y_truth / y_out - (1 - y_truth) / (1 - y_out)) / len(y_out)
"""
I2DL_SPEC = 'style = "module"\n' + "".join(f'[layers.{kind}]\nloss = "{cls}"\ndims = 1\n' for kind, cls in
                                             (("mse_loss", "MSE"), ("l1_loss", "L1"), ("bce_loss", "BCE")))
KINDS = ["mse_loss", "l1_loss", "bce_loss"]


def _graded(tmp_path: Path, code: str, spec: str, **kwargs) -> dict:
    (tmp_path / "loss.py").write_text(code)
    (tmp_path / "course.toml").write_text(spec)
    report = grade([tmp_path / "loss.py"], resolve_convention(None, tmp_path / "course.toml"), configs=3, **kwargs)
    return {r.kind: r for r in report.rows}


def _failures(rows: dict) -> dict:
    return {k: r.first_failure for k, r in rows.items() if r.passed < r.total}


def test_the_i2dl_losses_pass_on_vectors_and_are_told_to_set_dims_on_arrays(tmp_path):
    """On (N,) vectors (dims = 1) every configuration passes; under the default (N, C) arrays the same code, whose
    mean's gradient divides by len(y_out), is right on the one-column batches and told that it takes vectors."""
    rows = _graded(tmp_path, I2DL, I2DL_SPEC)
    assert list(rows) == KINDS and not _failures(rows), _failures(rows)
    assert all(r.passed == r.total >= 6 for r in rows.values())
    rows = _graded(tmp_path, I2DL, I2DL_SPEC.replace("dims = 1\n", ""))
    for row in rows.values():
        assert 0 < row.passed < row.total
        assert "right on (N,) vectors, wrong on this (N, C) array" in row.first_failure, row.first_failure
        assert "dims = 1 in a spec" in row.first_failure


def test_a_year_whose_losses_are_kept_per_sample_is_graded_under_reduction_none_and_told_it_otherwise(tmp_path):
    """I2DL 2020: forward returns each sample's loss and backward each one's gradient (the sum's). Graded right
    with reduction = "none"; under the mean, the table says to set it, not only that a shape differs."""
    per_sample = (I2DL.replace("return result if individual_losses else np.mean(result)", "return result")
                  .replace(") / len(y_out)", ")"))
    rows = _graded(tmp_path, per_sample, I2DL_SPEC.replace("dims = 1\n", 'dims = 1\nreduction = "none"\n'))
    assert not _failures(rows), _failures(rows)
    rows = _graded(tmp_path, per_sample, I2DL_SPEC)
    for row in rows.values():
        assert "loss is each element's, shape (6,), where this convention's is their mean" in row.first_failure
        assert 'reduction = "none" in a spec' in row.first_failure


def test_a_backward_of_the_sum_beside_a_forward_of_the_mean_is_named_and_grad_sum_grades_it(tmp_path):
    summed = I2DL.replace(") / len(y_out)", ")")
    rows = _graded(tmp_path, summed, I2DL_SPEC)
    for row in rows.values():  # (n=1: the sum is the mean, so that configuration passes)
        assert row.passed == 1, row.failures
        assert "dx is the gradient of the elements' summed loss, 6 times the mean's" in row.first_failure
        assert 'grad = "sum" in a spec' in row.first_failure
    rows = _graded(tmp_path, summed, I2DL_SPEC.replace("dims = 1\n", 'dims = 1\ngrad = "sum"\n'))
    assert not _failures(rows), _failures(rows)


def test_the_reverse_mistakes_of_a_spec_are_named_too(tmp_path):
    """A loss of the mean graded where the course keeps each element's (reduction = "none"), and a backward of the
    mean's gradient where the course's is the sum's (grad = "sum"): each told which setting fits it."""
    rows = _graded(tmp_path, I2DL, I2DL_SPEC.replace("dims = 1\n", 'dims = 1\nreduction = "none"\n'))
    for row in rows.values():
        assert "loss is the elements' mean, one number, where this convention's is each element's" in \
            row.first_failure, row.first_failure
    rows = _graded(tmp_path, I2DL, I2DL_SPEC.replace("dims = 1\n", 'dims = 1\ngrad = "sum"\n'))
    for row in rows.values():
        assert "dx is the mean's gradient, 1/6 of the sum's" in row.first_failure, row.first_failure
        assert "leave grad out" in row.first_failure


def test_a_gradient_divided_by_n_is_never_told_as_a_missing_2(tmp_path):
    """Per-sample losses whose backward divides by N: at two elements that is also half the right gradient, so no
    configuration of two elements is drawn, and the message is never the missing 2 (a student's real mistake)."""
    per_sample = I2DL.replace("return result if individual_losses else np.mean(result)", "return result")
    spec = I2DL_SPEC.replace("dims = 1\n", 'dims = 1\nreduction = "none"\n')
    for seed in (0, 1, 2):
        row = _graded(tmp_path, per_sample, spec, seed=seed, only=["mse_loss"])["mse_loss"]
        assert row.passed == 1 and all("the 2 is missing" not in f for f in row.failures), row.failures
        assert all(" n=" in f and " c=" not in f for f in row.failures)  # (N,) vectors: labelled by N alone


@pytest.mark.parametrize("kind, old, new, told", [
    ("mse_loss", "return 2 * (y_out - y_truth) / len(y_out)", "return (y_out - y_truth) / len(y_out)",
     "dx is half the reference's: the derivative of (x - y)^2 is 2 (x - y)"),

    ("l1_loss", "np.sign(y_out - y_truth)", "np.sign(y_truth - y_out)", "dx: relative error 2.00e+00"),
    ("bce_loss", "(1 - y_truth) * np.log(1 - y_out)", "(1 - y_truth) * np.log(y_out)", "loss: relative error"),
    ("bce_loss", "-(y_truth / y_out - (1 - y_truth) / (1 - y_out))",
     "(y_out - y_truth) / (y_out * (1 - y_out) + 1e-2)", "dx: relative error"),
])
def test_each_losss_mistakes_fail_it_alone(tmp_path, kind, old, new, told):
    assert old in I2DL
    rows = _graded(tmp_path, I2DL.replace(old, new), I2DL_SPEC)
    # (a bce whose (1 - y) term is wrong is right where every target is 1: the one-element batch may pass)
    assert rows[kind].passed <= (kind == "bce_loss") and told in rows[kind].first_failure, rows[kind].first_failure
    assert all(r.passed == r.total for k, r in rows.items() if k != kind)


def test_an_mse_with_a_half_in_front_is_named(tmp_path):
    """SSE / 2N and its gradient (x - y) / N, consistent with each other and half the MSE's (a CMU 11-785 student's
    choice): told as the 1/2, not as a mean where a sum belongs."""
    code = (I2DL.replace("        result = (y_out - y_truth) ** 2\n", "        result = (y_out - y_truth) ** 2 / 2\n")
            .replace("return 2 * (y_out - y_truth) / len(y_out)", "return (y_out - y_truth) / len(y_out)"))
    row = _graded(tmp_path, code, I2DL_SPEC, only=["mse_loss"])["mse_loss"]
    assert row.passed == 0 and "loss and dx are half the MSE's and its gradient" in row.first_failure, row.failures


@pytest.mark.parametrize("old, new", [
    ("np.log(y_out) + (1 - y_truth) * np.log(1 - y_out)",
     "np.log(y_out + 1e-7) + (1 - y_truth) * np.log(1 - y_out + 1e-7)"),
    ("-(y_truth / y_out - (1 - y_truth) / (1 - y_out))", "(y_out - y_truth) / (y_out * (1 - y_out) + 1e-6)"),
    ("-(y_truth / y_out - (1 - y_truth) / (1 - y_out))",
     "-(y_truth / (y_out + 1e-5) - (1 - y_truth) / (1 - y_out + 1e-5))"),
])
def test_a_binary_cross_entropy_guarded_by_a_small_epsilon_passes(tmp_path, old, new):
    """An epsilon in the logs, or in the gradient's denominator, at least 1,000 times below every p and 1 - p
    (p is drawn in [0.05, 0.95]) is a guard, graded against the loss with that epsilon: it passes at every seed,
    where the exact reference alone would fail it by its relative error (1e-6 of 0.05 is 2e-5)."""
    assert old in I2DL
    for seed in (0, 1):
        row = _graded(tmp_path, I2DL.replace(old, new), I2DL_SPEC, seed=seed)["bce_loss"]
        assert row.passed == row.total, row.failures


def test_a_forward_and_a_backward_guarded_by_different_epsilons_or_in_one_log_pass(tmp_path):
    """Each quantity is graded against its own guard: 1e-7 in the forward's logs beside 1e-8 in the backward's
    denominators, or an epsilon in one of the two logs alone."""
    code = (I2DL.replace("np.log(y_out) + (1 - y_truth) * np.log(1 - y_out)",
                         "np.log(y_out + 1e-7) + (1 - y_truth) * np.log(1 - y_out + 1e-7)")
            .replace("-(y_truth / y_out - (1 - y_truth) / (1 - y_out))",
                     "-(y_truth / (y_out + 1e-8) - (1 - y_truth) / (1 - y_out + 1e-8))"))
    one_log = I2DL.replace("np.log(y_out) + (1 - y_truth)", "np.log(y_out + 1e-7) + (1 - y_truth)")
    for source in (code, one_log):
        for seed in (0, 1, 2):
            row = _graded(tmp_path, source, I2DL_SPEC, seed=seed, only=["bce_loss"])["bce_loss"]
            assert row.passed == row.total, row.failures


def test_a_bug_that_depends_on_the_targets_is_not_blamed_on_the_inputs_shape(tmp_path):
    """The y term's log of 1 - p is right wherever every target is 0, as in some columns: the dims hint needs the
    loss right on every column as a vector, not on one."""
    code = ("import numpy as np\ndef bce(p, y):\n    loss = -(y * np.log(1 - p) + (1 - y) * np.log(1 - p))\n"
            "    return np.mean(loss), (1 / (1 - p)) / p.size\n")
    spec = 'style = "functional"\n[layers.bce_loss]\nfunction = "bce"\n'
    for seed in range(6):
        row = _graded(tmp_path, code, spec, seed=seed)["bce_loss"]
        assert row.passed < row.total and not any("right on (N,) vectors" in f for f in row.failures), row.failures


def test_a_mean_gradient_where_the_course_keeps_each_elements_loss_names_grad_mean(tmp_path):
    per_sample = I2DL.replace("return result if individual_losses else np.mean(result)", "return result")
    rows = _graded(tmp_path, per_sample, I2DL_SPEC.replace("dims = 1\n", 'dims = 1\nreduction = "none"\n'))
    for row in rows.values():
        assert "dx is the gradient of the elements' mean, 1/6 of their summed loss's" in row.first_failure
        assert 'grad = "mean" in a spec' in row.first_failure


def test_a_forward_returning_more_than_the_loss_is_told_its_loss_item_first(tmp_path):
    """The one-element configuration, where every returned array is one number, comes last: the first failure
    names the loss's place in the tuple."""
    code = I2DL.replace("return result if individual_losses else np.mean(result)", "return (result, np.mean(result))")
    for row in _graded(tmp_path, code, I2DL_SPEC).values():
        assert "loss_item = 1 in a spec" in row.first_failure, row.first_failure


FUNCTIONAL = """import numpy as np
def mse_loss(x, y):
    return np.mean((x - y) ** 2), 2 * (x - y) / x.size
def l1_loss(x, y):
    return np.mean(np.abs(x - y)), np.sign(x - y) / x.size
def bce_with_logits(x, y):
    p = 1 / (1 + np.exp(-x))
    loss = np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))
    return loss, (p - y) / x.size
"""


def test_functions_returning_loss_and_gradient_and_a_binary_cross_entropy_of_scores_pass(tmp_path):
    spec = ('style = "functional"\n[layers.mse_loss]\nfunction = "mse_loss"\n[layers.l1_loss]\nfunction = "l1_loss"\n'
            '[layers.bce_loss]\nfunction = "bce_with_logits"\ninput = "logits"\n')
    rows = _graded(tmp_path, FUNCTIONAL, spec)
    assert list(rows) == KINDS and not _failures(rows), _failures(rows)
    rows = _graded(tmp_path, FUNCTIONAL, spec.replace('input = "logits"\n', ""))  # scores read as probabilities
    assert rows["bce_loss"].passed == 0


# CMU 11-785's mytorch (2022 on): MSELoss keeps A and Y, backward() takes nothing; (N, C) arrays
CMU = """import numpy as np
class MSELoss:
    def forward(self, A, Y):
        self.A, self.Y = A, Y
        N, C = A.shape
        se = (A - Y) * (A - Y)
        return np.ones((1, N)) @ se @ np.ones((C, 1)) / (N * C)
    def backward(self):
        N, C = self.A.shape
        return 2 * (self.A - self.Y) / (N * C)
"""


def test_a_loss_whose_backward_takes_nothing_on_arrays_passes_and_is_told_when_given_vectors(tmp_path):
    spec = 'style = "module"\n[layers.mse_loss]\nloss = "MSELoss"\nbackward = "nothing"\n'
    row = _graded(tmp_path, CMU, spec)["mse_loss"]
    assert row.passed == row.total >= 6, row.failures
    row = _graded(tmp_path, CMU, spec + "dims = 1\n")["mse_loss"]  # N, C = A.shape fails on (N,)
    assert row.passed == 0
    assert "right on (N, 1) arrays, wrong on this (N,) vector" in row.first_failure, row.first_failure
    assert "dims = 2 in a spec" in row.first_failure


@pytest.mark.parametrize("table, message", [
    ('[layers.mse_loss]\nloss = "MSE"\ndims = 3\n', "dims must be 1"),
    ('[layers.mse_loss]\nloss = "MSE"\ndims = true\n', "dims must be 1"),
    ('[layers.mse_loss]\nloss = "MSE"\ndims = 1.0\n', "dims must be 1"),
    ('[layers.l1_loss]\nloss = "L1"\ninput = "logits"\n', "unknown key(s) input"),
    ('[layers.bce_loss]\nloss = "BCE"\ninput = "scores"\n', "input must be one of logits, probabilities"),
    ('[layers.bce_loss]\nloss = "BCE"\nbackward = "dout"\n', 'backward must be "inputs"'),
    ('[layers.mse_loss]\nloss = "MSE"\nloss_item = -1\n', "loss_item must be the loss's place"),
])
def test_pointwise_loss_settings_that_describe_no_course_are_refused(tmp_path, table, message):
    (tmp_path / "course.toml").write_text('style = "module"\n' + table)
    with pytest.raises(TwinnetError, match=re.escape(message)):
        resolve_convention(None, tmp_path / "course.toml")


def test_a_bce_of_probabilities_needs_no_softmax_and_a_loss_item_picks_the_loss(tmp_path):
    """input = "probabilities" asks a softmax only of the cross-entropy; loss_item works for these losses too."""
    code = I2DL.replace("return result if individual_losses else np.mean(result)",
                        "return (result, np.mean(result))")
    spec = I2DL_SPEC.replace("dims = 1\n", "dims = 1\nloss_item = 1\n")
    spec = spec.replace('loss = "BCE"\n', 'loss = "BCE"\ninput = "probabilities"\n')
    rows = _graded(tmp_path, code, spec)
    assert not _failures(rows), _failures(rows)
